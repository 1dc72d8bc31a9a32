"""The standard form of a conv layer, and the kernel-matrix arithmetic done on it.

A layer in standard form (:class:`StandardForm`) is its taps, per-side pads and one padding
mode: what composing, adding and scaling layers work on. This module knows no layer classes;
``layers`` converts between layers and this form (``standard_form``, ``from_standard_form``)
and ``kernels`` builds the rest of the kernel-matrix algebra on top, so the arithmetic sits
below both and no import runs in a circle.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from . import _correlate
from ._geometry import Geometry, kernel_span
from ._typing import Method, NanPolicy, PaddingMode
from ._validate import result_dtype


@dataclass(frozen=True)
class StandardForm:
    """A conv layer as taps with explicit per-side pads (``layers.standard_form`` makes one)."""

    weight: np.ndarray  # (C_out, C_in/groups, *K)
    groups: int
    dilation: tuple[int, ...]
    pads: tuple[tuple[int, int], ...]  # ((lo, hi), ...) per spatial axis
    mode: PaddingMode
    bias: np.ndarray | None
    stride: tuple[int, ...]
    method: Method
    nan_policy: NanPolicy

    @property
    def ndim(self):
        return self.weight.ndim - 2

    @property
    def out_channels(self):
        return self.weight.shape[0]

    @property
    def in_channels(self):
        return self.weight.shape[1] * self.groups

    @property
    def span(self):
        return kernel_span(self.weight.shape[2:], self.dilation)

    def replace(self, **changes):
        """A copy with ``changes`` to its fields."""
        return dataclasses.replace(self, **changes)


def dilate(weight, dilation, axes_mask):
    """Insert zeros between taps on the axes where ``axes_mask`` is true (dilation -> 1)."""
    d = weight.ndim - 2
    if not any(m and dl > 1 for m, dl in zip(axes_mask, dilation)):
        return weight, tuple(dilation)
    k = weight.shape[2:]
    new_k = tuple((n - 1) * dl + 1 if m else n for n, dl, m in zip(k, dilation, axes_mask))
    out = np.zeros(weight.shape[:2] + new_k, dtype=weight.dtype)
    idx = tuple(slice(None, None, dl) if m else slice(None) for dl, m in zip(dilation, axes_mask))
    out[(Ellipsis,) + idx] = weight
    new_dil = tuple(1 if m else dl for dl, m in zip(dilation, axes_mask))
    assert len(new_dil) == d
    return out, new_dil


def at_groups(t, groups):
    """Weight of ``t`` with ``groups`` blocks, ``groups`` dividing ``t.groups`` (zeros filled)."""
    if t.groups == groups:
        return t.weight
    r = t.groups // groups  # sub-blocks per target block
    co, ci = t.out_channels // t.groups, t.weight.shape[1]
    k = t.weight.shape[2:]
    out = np.zeros((t.out_channels, ci * r) + k, dtype=t.weight.dtype)
    for g in range(t.groups):
        rows = slice(g * co, (g + 1) * co)
        j = g % r
        out[rows, j * ci : (j + 1) * ci] = t.weight[rows]
    return out


def expressible(t):
    """(weight, padding) SpectralConv can take: asymmetric pads become zero taps."""
    weight, dilation = t.weight, t.dilation
    asym = [lo != hi for lo, hi in t.pads]
    if not any(asym):
        return weight, tuple(lo for lo, _ in t.pads), dilation
    span = t.span
    same = tuple(((e - 1) // 2, e - 1 - (e - 1) // 2) for e in span)
    if all(s == 1 for s in t.stride) and t.pads == same:
        return weight, "same", dilation
    # a zero tap at offset lo-side (or hi-side) shifts the pads into balance
    need = [a and (hi - lo) % dl != 0 for a, (lo, hi), dl in zip(asym, t.pads, dilation)]
    weight, dilation = dilate(weight, dilation, need)
    padding = []
    for ax, ((lo, hi), dl) in enumerate(zip(t.pads, dilation)):
        if lo == hi:
            padding.append(lo)
            continue
        extra = abs(hi - lo) // dl
        width = [(0, 0)] * weight.ndim
        width[2 + ax] = (extra, 0) if hi > lo else (0, extra)
        weight = np.pad(weight, width)
        padding.append(max(lo, hi))
    return weight, tuple(padding), dilation


def merge_dilation(taps):
    """Common dilation per axis, expanding to 1 where the layers disagree."""
    d = taps[0].ndim
    dil = []
    for ax in range(d):
        values = {t.dilation[ax] for t in taps}
        dil.append(values.pop() if len(values) == 1 else 1)
    out = []
    for t in taps:
        mask = [t.dilation[ax] != dil[ax] for ax in range(d)]
        w, nd = dilate(t.weight, t.dilation, mask)
        out.append(t.replace(weight=w, dilation=nd))
    return out, tuple(dil)


def nonzero_bias(t):
    return t.bias is not None and bool(np.any(t.bias != 0))


def check_same_ndim(taps, names):
    d = taps[0].ndim
    for t, n in zip(taps, names):
        if t.ndim != d:
            raise ValueError(
                f"all layers must have the same number of spatial dimensions: {names[0]} has "
                f"{d}, {n} has {t.ndim}."
            )


def composed_mode(t2, t1):
    """Padding mode of ``t2 ∘ t1`` and whether it equals sequential application (see compose)."""
    p1, p2, e1 = t1.pads, t2.pads, t1.span
    reads = [(lo2 > 0, hi2 > 0) for lo2, hi2 in p2]
    if not any(a or b for a, b in reads):
        return (t1.mode if any(lo or hi for lo, hi in p1) else "zeros"), True, ""
    pointwise1 = all(e == 1 for e in e1) and all(lo == 0 and hi == 0 for lo, hi in p1)
    if pointwise1:
        if t2.mode == "zeros" and nonzero_bias(t1):
            return (
                t2.mode,
                False,
                ("the first layer's bias is not zero where the second layer zero-pads"),
            )
        return t2.mode, True, ""
    padded1 = any(lo or hi for lo, hi in p1)
    if t2.mode == "zeros" and (t1.mode == "zeros" or not padded1):
        full = all(
            (not r_lo or lo1 >= e - 1) and (not r_hi or hi1 >= e - 1)
            for (r_lo, r_hi), (lo1, hi1), e in zip(reads, p1, e1)
        )
        if not full:
            return (
                "zeros",
                False,
                (
                    "the second layer zero-pads a side where the first layer's output does not "
                    "contain the whole convolution (pad < dilation·(kernel − 1) there)"
                ),
            )
        if nonzero_bias(t1):
            return (
                "zeros",
                False,
                ("the first layer's bias is not zero where the second layer zero-pads"),
            )
        return "zeros", True, ""
    if t2.mode == "circular" and (t1.mode == "circular" or not padded1):
        periodic = all(
            not (r_lo or r_hi) or lo1 + hi1 == e - 1
            for (r_lo, r_hi), (lo1, hi1), e in zip(reads, p1, e1)
        )
        if periodic:
            return "circular", True, ""
        return (
            "circular",
            False,
            (
                "the first layer does not keep the length (circular padding totalling "
                "dilation·(kernel − 1)) on an axis the second layer pads"
            ),
        )
    return (
        t2.mode,
        False,
        (
            f"the second layer pads with {t2.mode!r} and the first layer's output (padding "
            f"mode {t1.mode!r}, pads {p1}) does not continue that way"
        ),
    )


def product_taps(w2, w1, G, d):
    """Taps of the product of two grouped kernel matrices (offsets add: a convolution)."""
    c2, c1 = w2.shape[0], w1.shape[0]
    k1, k2 = w1.shape[2:], w2.shape[2:]
    if math.prod(k1) == 1 or math.prod(k2) == 1:
        # a pointwise factor: a plain matrix product per group, no convolution needed
        a = w2.reshape((G, c2 // G, c1 // G, -1))  # (G, rows, middle, taps2)
        b = w1.reshape((G, c1 // G, w1.shape[1], -1))  # (G, middle, cols, taps1)
        out = np.einsum("gojs,gjct->gocst", a, b)  # one of s, t has length 1
        return out.reshape((c2, w1.shape[1]) + (k2 if math.prod(k1) == 1 else k1))
    # the composed layer's inputs become the batch: one grouped full convolution for every
    # block, i.e. a valid correlation with the flipped taps over the fully padded input
    x = np.moveaxis(w1, 1, 0)  # (c0/G, c1, *K1)
    taps = w2[(Ellipsis,) + (slice(None, None, -1),) * d]
    pads = tuple((m - 1, m - 1) for m in k2)
    padded = tuple(a + 2 * (m - 1) for a, m in zip(k1, k2))
    dtype = result_dtype(x, taps)
    geom = Geometry(x.shape[0], c1, c2, G, k2, (1,) * d, (1,) * d, padded, dtype.kind == "c")
    y = _correlate.correlate(x, taps, geom, pads, dtype, method="auto", nan_policy="propagate")
    return np.moveaxis(y, 0, 1)


def compose_pair(t2, t1, exact, names):
    if t2.ndim != t1.ndim:
        raise ValueError(
            f"{names[0]} has {t2.ndim} spatial dimension(s) but {names[1]} has {t1.ndim}."
        )
    if t2.in_channels != t1.out_channels:
        raise ValueError(
            f"{names[0]} expects {t2.in_channels} input channels but {names[1]} produces "
            f"{t1.out_channels}."
        )
    if any(s != 1 for s in t1.stride):
        raise ValueError(
            f"{names[1]} has stride {t1.stride}; only the last-applied layer of a composition "
            "may be strided (a strided layer followed by another is not one convolution)."
        )
    mode, is_exact, reason = composed_mode(t2, t1)
    if exact and not is_exact:
        raise ValueError(
            f"compose({names[0]}, {names[1]}) would not equal applying them in turn: {reason}. "
            "Pass exact=False to get the layer that agrees away from the edges."
        )
    (t2, t1), dil = merge_dilation([t2, t1])
    G = math.gcd(t1.groups, t2.groups)
    w1 = at_groups(t1, G)  # (c1, c0/G, *K1)
    w2 = at_groups(t2, G)  # (c2, c1/G, *K2)
    d = t1.ndim
    w = product_taps(w2, w1, G, d)
    pads = tuple((a1 + a2, b1 + b2) for (a1, b1), (a2, b2) in zip(t1.pads, t2.pads))
    bias = t2.bias
    if t1.bias is not None:
        dense2 = at_groups(t2, 1).sum(axis=tuple(range(2, 2 + d)))
        carried = dense2 @ t1.bias
        bias = carried if bias is None else bias + carried
    return StandardForm(
        np.ascontiguousarray(w), G, dil, pads, mode, bias, t2.stride, t2.method, t2.nan_policy
    )


def compose_forms(forms, names, exact):
    """The standard form of ``forms`` applied right to left (see ``layers.compose``)."""
    n = len(forms)
    acc = forms[-1]
    acc_name = names[-1]
    for i in range(n - 2, -1, -1):
        acc = compose_pair(forms[i], acc, exact, (names[i], acc_name))
        acc_name = f"compose({', '.join(names[i:])})"
    return acc


def add_forms(forms, names):
    """The standard form of the sum of ``forms`` (see ``layers.add``)."""
    check_same_ndim(forms, names)
    first = forms[0]
    d = first.ndim
    for t, n in zip(forms[1:], names[1:]):
        if (t.out_channels, t.in_channels) != (first.out_channels, first.in_channels):
            raise ValueError(
                f"{n} maps {t.in_channels} -> {t.out_channels} channels but {names[0]} maps "
                f"{first.in_channels} -> {first.out_channels}."
            )
        if t.stride != first.stride:
            raise ValueError(f"{n} has stride {t.stride} but {names[0]} has {first.stride}.")
        grow = tuple(lo + hi - e for (lo, hi), e in zip(t.pads, t.span))
        grow0 = tuple(lo + hi - e for (lo, hi), e in zip(first.pads, first.span))
        if grow != grow0:
            raise ValueError(
                f"{n} changes the signal length by {tuple(g + 1 for g in grow)} but "
                f"{names[0]} by {tuple(g + 1 for g in grow0)}: their outputs cannot be added."
            )
    modes = {t.mode for t in forms if any(lo or hi for lo, hi in t.pads)}
    if len(modes) > 1:
        raise ValueError(
            f"the padded layers use different padding modes {sorted(modes)}; their sum is no "
            "single layer."
        )
    mode: PaddingMode = modes.pop() if modes else "zeros"
    lo = tuple(max(t.pads[ax][0] for t in forms) for ax in range(d))
    top = tuple(
        max(e - 1 - t.pads[ax][0] for t, e in ((t, t.span[ax]) for t in forms)) for ax in range(d)
    )
    # a common dilation survives only if every layer's forms sit on one grid
    dil = []
    for ax in range(d):
        values = {t.dilation[ax] for t in forms}
        dl = values.pop() if len(values) == 1 else 1
        if dl > 1 and len({(lo[ax] - t.pads[ax][0]) % dl for t in forms}) > 1:
            dl = 1
        if dl > 1 and (lo[ax] + top[ax]) % dl:
            dl = 1
        dil.append(dl)
    dil = tuple(dil)
    G = math.gcd(*[t.groups for t in forms])
    size = tuple((lo[ax] + top[ax]) // dil[ax] + 1 for ax in range(d))
    dtype = np.result_type(*[t.weight for t in forms])
    out = np.zeros((first.out_channels, first.in_channels // G) + size, dtype=dtype)
    for t in forms:
        mask = [t.dilation[ax] != dil[ax] for ax in range(d)]
        w, _ = dilate(t.weight, t.dilation, mask)
        w = at_groups(t.replace(weight=w), G)
        start = tuple((lo[ax] - t.pads[ax][0]) // dil[ax] for ax in range(d))
        idx = tuple(slice(s, s + n) for s, n in zip(start, w.shape[2:]))
        out[(Ellipsis,) + idx] += w
    span = tuple(dil[ax] * (size[ax] - 1) + 1 for ax in range(d))
    pads = tuple(
        (lo[ax], first.pads[ax][0] + first.pads[ax][1] - first.span[ax] + span[ax] - lo[ax])
        for ax in range(d)
    )
    biases = [t.bias for t in forms if t.bias is not None]
    bias = sum(biases[1:], biases[0].copy()) if biases else None
    return StandardForm(out, G, dil, pads, mode, bias, first.stride, first.method, first.nan_policy)
