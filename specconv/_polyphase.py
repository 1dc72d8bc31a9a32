"""Strided layers by polyphase decomposition: every product at the lower rate, none wasted.

Both kinds of strided layer become one stride-1 layer of the engine -- a bigger kernel matrix
at every frequency of shorter transforms -- with a reshuffle of samples on one side.

Interpolation (a transposed layer, stride s per axis)
    Output sample ``r + s·j`` (phase r) reads only the taps ``k`` with
    ``r + k·d − p ≡ 0 (mod s)``, at input sample ``j + (r + k·d − p) / s``: every output
    phase is a stride-1 correlation of the *input itself*. Stacked as extra output rows of the kernel
    matrix (s^d · C_out rows; groups stay block-diagonal, the phases inside each group), that
    is one layer at the input rate: one forward transform per input channel, one inverse per
    (phase, output channel), then the phases are interleaved into the output ("pixel
    shuffle"). The input is never zero-stuffed.
Decimation (a strided layer)
    Output ``n`` reads padded sample ``n·s + k·d``; with ``k·d − a = q·s + v`` (a the left
    padding) that is sample ``n + q`` of the input's phase ``v``, ``x_v[j] = x[v + j·s]``. The
    input's phases become extra input channels (columns of the kernel matrix) of a stride-1
    layer at the output rate. The alternative, folding the spectrum of a full-rate layer (see
    ``_engine._fold``), stays: :func:`choose_strided` prices both with the cost model.

Per axis, the taps of a phase are evenly spaced; across phases their offsets share the
spacing ``D`` = the gcd of their differences, which becomes the phase layer's dilation.
Taps reach only the residues of one class modulo ``g = gcd(dilation, stride)``: the phases
are that class's ``stride / g`` residues (evenly spaced, so the engine reads the input's
phases and writes the output's in place, through strided views), the other residues are left
out -- their outputs are zero (transposed), their inputs unused (strided).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import math

import numpy as np

from . import _costmodel
from ._geometry import Geometry


@dataclasses.dataclass(frozen=True)
class AxisPhases:
    """The phase layer along one axis.

    ``phases``: the residues modulo the stride that some tap reaches, in order;
    ``taps``: ``(phase index, original tap, tap of the phase kernel)`` for every original tap;
    ``kernel``, ``dilation``: the phase kernel's taps and their spacing; ``lo``: the input
    sample of phase-kernel tap 0 relative to the phase's output sample.
    """

    phases: tuple
    taps: tuple
    kernel: int
    dilation: int
    lo: int

    @staticmethod
    def make(stride, entries, phases=None):
        """From ``(residue, original tap, input offset)`` triples (``phases``: default, the
        residues some tap reaches)."""
        phases = phases or tuple(sorted({r for r, _, _ in entries}))
        offsets = [e for _, _, e in entries]
        lo = min(offsets)
        spacing = functools.reduce(math.gcd, (e - lo for e in offsets), 0) or 1
        taps = tuple((phases.index(r), k, (e - lo) // spacing) for r, k, e in entries)
        return AxisPhases(phases, taps, (max(offsets) - lo) // spacing + 1, spacing, lo)

    @property
    def span(self):
        return (self.kernel - 1) * self.dilation + 1


def transposed_axis(K, dilation, stride, before):
    """Output phases of a transposed layer's axis (``before``: the stuffed input's left pad,
    ``span − 1 − padding``); see the module docstring.

    The phases are every residue ``≡ before`` modulo ``g = gcd(dilation, stride)``, evenly
    spaced so that the phase layer can write straight into the interleaved output; with
    fewer than ``stride / g`` taps some of them hold no tap (and compute zeros).
    """
    entries = [
        (r, k, (r + k * dilation - before) // stride)
        for r in range(stride)
        for k in range(K)
        if (r + k * dilation - before) % stride == 0
    ]
    g = math.gcd(dilation, stride)
    return AxisPhases.make(stride, entries, tuple(range(before % g, stride, g)))


def strided_axis(K, dilation, stride, before):
    """Input phases of a strided layer's axis (``before``: its left zero padding)."""
    entries = []
    for k in range(K):
        q, v = divmod(k * dilation - before, stride)
        entries.append((v, k, q))
    g = math.gcd(dilation, stride)  # as for transposed_axis: evenly spaced, read in place
    return AxisPhases.make(stride, entries, tuple(range(-before % g, stride, g)))


def phase_weight(weight, groups, axes, transposed):
    """The phase layer's kernels from the (forward, cross-correlation) ``weight``
    ``(C_out, C_in/G, *kernel)``.

    Transposed: ``(G · P · C_out/G, C_in/G, *phase kernel)``, rows ordered (group, phase,
    channel). Strided: ``(C_out, P · C_in/G, *phase kernel)``, columns ordered (phase,
    channel). ``P`` is the number of phases (their product over the axes).
    """
    d = len(axes)
    co, ci = weight.shape[0] // groups, weight.shape[1]
    grid = np.ix_(*[np.arange(len(a.taps)) for a in axes])  # every combination of taps
    phase = tuple(np.array([t[0] for t in a.taps])[g] for a, g in zip(axes, grid))
    tap = tuple(np.array([t[1] for t in a.taps])[g] for a, g in zip(axes, grid))
    where = tuple(np.array([t[2] for t in a.taps])[g] for a, g in zip(axes, grid))
    counts = tuple(len(a.phases) for a in axes)
    kernel = tuple(a.kernel for a in axes)
    # the selected taps, tap axes first (where numpy puts split advanced indices)
    taps = np.moveaxis(weight[(slice(None), slice(None)) + tap], range(2, 2 + d), range(d))
    if transposed:
        w = np.zeros((groups,) + counts + (co, ci) + kernel, weight.dtype)
        taps = taps.reshape(taps.shape[:d] + (groups, co, ci))
        w[(slice(None),) + phase + (slice(None), slice(None)) + where] = taps
        return w.reshape((groups * math.prod(counts) * co, ci) + kernel)
    w = np.zeros((weight.shape[0],) + counts + (ci,) + kernel, weight.dtype)
    w[(slice(None),) + phase + (slice(None),) + where] = taps
    return w.reshape((weight.shape[0], math.prod(counts) * ci) + kernel)


@dataclasses.dataclass(frozen=True)
class Plan:
    """A strided layer run as its phase layer by the FFT engine (a choice, like
    :class:`~specconv._costmodel.Choice`, with ``method == "fft"``).

    ``geom``/``pads``: the phase layer's geometry and the zero padding of its input;
    ``choice``: the engine's tiling for it; ``axes``: :class:`AxisPhases` per axis;
    ``lengths``: the phase input's length per axis (strided) or the output's (transposed).
    """

    transposed: bool
    seconds: float
    geom: Geometry
    pads: tuple
    choice: _costmodel.Choice
    axes: tuple
    stride: tuple
    lengths: tuple
    method: str = "fft"

    @property
    def tiling(self):
        return self.choice.tiling

    @property
    def phases(self):
        """The number of phases in the phase layer (over all axes)."""
        return math.prod(len(a.phases) for a in self.axes)

    def weight(self, weight):
        """The phase layer's kernels for the layer's (forward) ``weight``."""
        return phase_weight(weight, self.geom.groups, self.axes, self.transposed)

    def digest(self, weight, digest):
        """A digest of the phase kernels from the ``digest`` of ``weight`` (no second hash)."""
        layout = repr((self.transposed, weight.shape, weight.dtype.str, self.axes))
        return hashlib.sha256(digest + layout.encode()).digest()

    def phase_input(self, x):
        """The strided layer's input phases as channels ordered (group, phase, channel).

        A view of ``x``, ``(B, G, *phases per axis, C_in/G, *lengths)``, where every phase
        has ``lengths`` samples (each axis a multiple of its stride); otherwise a copy
        ``(B, G · P · C_in/G, *lengths)`` with zeros past each phase's end.
        """
        B, C = x.shape[:2]
        if all(n == m * s for n, m, s in zip(x.shape[2:], self.lengths, self.stride)):
            xg = x.reshape((B, self.geom.groups, C // self.geom.groups) + x.shape[2:])
            first = tuple(a.phases[0] for a in self.axes)
            rows = xg.strides[3:]
            spacing = tuple(
                a.phases[1] - a.phases[0] if len(a.phases) > 1 else 1 for a in self.axes
            )
            return np.lib.stride_tricks.as_strided(
                xg[(Ellipsis,) + first],
                xg.shape[:2]
                + tuple(len(a.phases) for a in self.axes)
                + xg.shape[2:3]
                + self.lengths,
                xg.strides[:2]
                + tuple(g * r for g, r in zip(spacing, rows))
                + xg.strides[2:3]
                + tuple(s * r for s, r in zip(self.stride, rows)),
                writeable=False,
            )
        G = self.geom.groups
        counts = tuple(len(a.phases) for a in self.axes)
        out = np.empty((B, G) + counts + (C // G,) + self.lengths, x.dtype)
        xg = x.reshape((B, G, C // G) + x.shape[2:])
        for index in itertools.product(*[range(c) for c in counts]):
            src = xg[
                (Ellipsis,)
                + tuple(
                    slice(a.phases[i], None, s) for a, i, s in zip(self.axes, index, self.stride)
                )
            ]
            dst = out[(slice(None), slice(None)) + index]
            dst[(Ellipsis,) + tuple(slice(0, n) for n in src.shape[3:])] = src
            for a, n in enumerate(src.shape[3:]):  # the tail past this phase's samples
                dst[
                    (Ellipsis,)
                    + (slice(None),) * a
                    + (slice(n, None),)
                    + (slice(None),) * (len(counts) - a - 1)
                ] = 0
        return out.reshape((B, -1) + self.lengths)

    def output(self, batch, dtype):
        """``(y, phases)``: the transposed layer's output ``(B, C_out, *n)`` and the view of it
        the phase layer writes, ``(B, G, *phases per axis, C_out/G, *M)`` (phase ``p`` of an
        axis is output sample ``phases[p] + stride · j``). Residues no phase covers are zero.

        ``y`` is a view of a buffer up to ``stride − 1`` samples longer per axis, where the
        last phase sample of some phases falls past the output's end.
        """
        G, d = self.geom.groups, self.geom.ndim
        P = self.phases
        co = self.geom.out_channels // (G * P)
        M = self.geom.out_shape
        first = tuple(a.phases[0] for a in self.axes)
        ext = tuple(max(n, c + s * m) for n, c, s, m in zip(self.lengths, first, self.stride, M))
        buf = np.empty((batch, G * co) + ext, dtype)
        y = buf[(Ellipsis,) + tuple(slice(0, n) for n in self.lengths)]
        spacing = tuple(a.phases[1] - a.phases[0] if len(a.phases) > 1 else 1 for a in self.axes)
        for a, (axis, s) in enumerate(zip(self.axes, self.stride)):
            for r in set(range(s)) - set(axis.phases):  # residues no tap reaches
                y[
                    (Ellipsis,)
                    + (slice(None),) * a
                    + (slice(r, None, s),)
                    + (slice(None),) * (d - a - 1)
                ] = 0
        rows = buf.strides[2:]
        phases = np.lib.stride_tricks.as_strided(
            buf[(Ellipsis,) + first],
            (batch, G) + tuple(len(a.phases) for a in self.axes) + (co,) + M,
            buf.strides[:1]
            + (co * buf.strides[1],)
            + tuple(g * r for g, r in zip(spacing, rows))
            + buf.strides[1:2]
            + tuple(s * r for s, r in zip(self.stride, rows)),
        )
        return y, phases


def copy_seconds(samples, itemsize, is_complex, workers):
    """The cost model's time to copy ``samples`` samples once (its gather and scatter rate)."""
    prec = _costmodel.precision(itemsize, is_complex)
    return samples * _costmodel.machine(prec, workers).T_COPY


@functools.lru_cache(maxsize=256)
def strided_plan(geom, pads, method, itemsize, workers, **planning):
    """The strided layer ``geom`` (input zero-padded by ``pads``) as its input phases' layer,
    priced by the cost model (memoised)."""
    axes = tuple(
        strided_axis(K, dl, s, a)
        for K, dl, s, (a, _) in zip(geom.kernel, geom.dilation, geom.stride, pads)
    )
    n = tuple(p - a - b for p, (a, b) in zip(geom.padded, pads))  # the input's own length
    lengths = tuple(-(-m // s) for m, s in zip(n, geom.stride))
    P = math.prod(len(a.phases) for a in axes)
    part = dataclasses.replace(
        geom,
        in_channels=geom.in_channels * P,
        kernel=tuple(a.kernel for a in axes),
        dilation=tuple(a.dilation for a in axes),
        stride=(1,) * geom.ndim,
        padded=tuple(m + a.span - 1 for m, a in zip(geom.out_shape, axes)),
    )
    part_pads = tuple((-a.lo, p - m + a.lo) for a, m, p in zip(axes, lengths, part.padded))
    choice = _costmodel.choose(part, method, itemsize, workers, **planning)
    # read in place where every phase is equally long; else copied once
    exact = all(m == q * s for m, q, s in zip(n, lengths, geom.stride))
    copies = (
        0
        if exact
        else copy_seconds(
            geom.batch * part.in_channels * math.prod(lengths), itemsize, geom.is_complex, workers
        )
    )
    return Plan(False, choice.seconds + copies, part, part_pads, choice, axes, geom.stride, lengths)


@functools.lru_cache(maxsize=256)
def transposed_plan(geom, stride, pads, n, method, itemsize, workers, **planning):
    """The transposed layer as its output phases' layer, priced by the cost model (memoised).

    ``geom`` is the layer's equivalent stride-1 correlation of the input zero-stuffed by
    ``stride`` and padded by ``pads``; ``n`` the input's own shape. None if no output sample
    is reached by a tap (the output is the bias alone).
    """
    axes = tuple(
        transposed_axis(K, dl, s, a)
        for K, dl, s, (a, _) in zip(geom.kernel, geom.dilation, stride, pads)
    )
    size = geom.out_shape
    M = tuple(max(-(-(m - r) // s) for r in a.phases) for a, s, m in zip(axes, stride, size))
    if min(M) < 1:
        return None
    P = math.prod(len(a.phases) for a in axes)
    part = dataclasses.replace(
        geom,
        out_channels=geom.out_channels * P,
        kernel=tuple(a.kernel for a in axes),
        dilation=tuple(a.dilation for a in axes),
        padded=tuple(m + a.span - 1 for m, a in zip(M, axes)),
    )
    part_pads = tuple((-a.lo, p - m + a.lo) for a, m, p in zip(axes, n, part.padded))
    choice = _costmodel.choose(part, method, itemsize, workers, **planning)
    # no copy to add: the engine scatters its tiles straight into the interleaved output
    return Plan(True, choice.seconds, part, part_pads, choice, axes, stride, size)


def choose_strided(geom, pads, method, itemsize, workers, **planning):
    """The cost model's choice for ``geom``, or its :func:`strided_plan` where that is
    cheaper (strided layers, ``method`` "auto" or "fft")."""
    choice = _costmodel.choose(geom, method, itemsize, workers, **planning)
    chunked = planning.get("spectra_budget") is not None
    if method == "direct" or all(s == 1 for s in geom.stride) or chunked:
        # the out-of-core chunker plans its spectra within a budget: its memory plan is the
        # folding path's
        return choice
    plan = strided_plan(geom, tuple(pads), "fft", itemsize, workers, **planning)
    # ``choice`` is the cheaper of folding and (for "auto") the direct method
    return plan if plan.seconds < choice.seconds else choice
