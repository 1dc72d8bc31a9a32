"""A plain numpy direct reference for conv layers, written from PyTorch's definitions.

Independent of specconv: nothing here imports it. Everything is computed in float64 or
complex128, one kernel tap at a time, so non-finite inputs propagate exactly as in a direct
convolution (``0 * NaN = NaN``: every output whose receptive field covers a NaN is NaN).

PyTorch ``Conv`` (cross-correlation), with ``g(o)`` the group of output channel ``o``::

    y[b, o, n] = bias[o] + sum_{c < C_in/G} sum_k w[o, c, k] · xpad[b, g(o)·C_in/G + c, n·s + k·d]

PyTorch ``ConvTranspose`` (the scatter form), weight ``(C_in, C_out/G, *k)``::

    full[b, g(i)·C_out/G + o, n·s + k·d] += w[i, o, k] · x[b, i, n];  y = full[p : p + out]
"""

from __future__ import annotations

import itertools

import numpy as np

_NUMPY_PAD = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def _tuple(v, d):
    return tuple(v) if isinstance(v, (tuple, list)) else (int(v),) * d


def _ref_dtype(*arrays):
    is_complex = any(a is not None and np.asarray(a).dtype.kind == "c" for a in arrays)
    return np.complex128 if is_complex else np.float64


def _pairs(padding, d):
    """int, d ints or d (before, after) pairs -> d (before, after) pairs."""
    if isinstance(padding, (tuple, list)) and all(isinstance(p, (tuple, list)) for p in padding):
        return tuple((int(a), int(b)) for a, b in padding)
    return tuple((p, p) for p in _tuple(padding, d))


def _prepare(x, w, bias):
    """Batched x and w in the reference dtype, the number of spatial dims, whether x was batched."""
    w = np.asarray(w)
    d = w.ndim - 2
    x = np.asarray(x)
    batched = x.ndim == d + 2
    dtype = _ref_dtype(x, w, bias)
    xb = (x if batched else x[None]).astype(dtype)
    return xb, w.astype(dtype), d, batched, dtype


def conv_pads(kernel, dilation, padding):
    """(before, after) per axis for PyTorch's padding argument (the extra "same" sample right)."""
    d = len(kernel)
    if padding == "valid":
        return ((0, 0),) * d
    if padding == "same":
        total = [dl * (k - 1) for k, dl in zip(kernel, dilation)]
        return tuple((t // 2, t - t // 2) for t in total)
    return _pairs(padding, d)


def conv(x, w, bias=None, *, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"):
    """PyTorch ``conv{d}d`` for any d; ``x`` is ``(C_in, *n)`` or ``(B, C_in, *n)``."""
    xb, w, d, batched, dtype = _prepare(x, w, bias)
    stride, dilation = _tuple(stride, d), _tuple(dilation, d)
    kernel = w.shape[2:]
    pads = conv_pads(kernel, dilation, padding)
    xp = np.pad(xb, ((0, 0), (0, 0)) + pads, mode=_NUMPY_PAD[padding_mode])
    B, C_in = xp.shape[:2]
    C_out = w.shape[0]
    ci, co = C_in // groups, C_out // groups
    out = tuple(
        (n - dl * (k - 1) - 1) // s + 1
        for n, k, dl, s in zip(xp.shape[2:], kernel, dilation, stride)
    )
    y = np.zeros((B, C_out) + out, dtype=dtype)
    for k in itertools.product(*(range(m) for m in kernel)):
        window = tuple(
            slice(kk * dl, kk * dl + (m - 1) * s + 1, s)
            for kk, dl, m, s in zip(k, dilation, out, stride)
        )
        xs = xp[(slice(None), slice(None)) + window]
        for o in range(C_out):
            g = o // co
            for c in range(ci):
                y[:, o] += w[(o, c) + k] * xs[:, g * ci + c]
    if bias is not None:
        y += np.asarray(bias).astype(dtype).reshape((-1,) + (1,) * d)
    return y if batched else y[0]


def conv_transpose(x, w, bias=None, *, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """PyTorch ``conv_transpose{d}d`` for any d, by scattering every input sample.

    ``padding`` may also be d (before, after) pairs: that many samples are cut from each end.
    """
    xb, w, d, batched, dtype = _prepare(x, w, bias)
    stride, dilation = _tuple(stride, d), _tuple(dilation, d)
    pads, output_padding = _pairs(padding, d), _tuple(output_padding, d)
    kernel = w.shape[2:]
    B, C_in = xb.shape[:2]
    n = xb.shape[2:]
    C_out = w.shape[1] * groups
    ci, co = C_in // groups, C_out // groups
    out = tuple(
        (m - 1) * s - a - b + dl * (k - 1) + op + 1
        for m, s, (a, b), dl, k, op in zip(n, stride, pads, dilation, kernel, output_padding)
    )
    full_shape = tuple(
        (m - 1) * s + dl * (k - 1) + 1 + op
        for m, s, dl, k, op in zip(n, stride, dilation, kernel, output_padding)
    )
    full = np.zeros((B, C_out) + full_shape, dtype=dtype)
    for k in itertools.product(*(range(m) for m in kernel)):
        window = tuple(
            slice(kk * dl, kk * dl + (m - 1) * s + 1, s)
            for kk, dl, m, s in zip(k, dilation, n, stride)
        )
        for i in range(C_in):
            g = i // ci
            for o in range(co):
                full[(slice(None), g * co + o) + window] += w[(i, o) + k] * xb[:, i]
    y = full[(Ellipsis,) + tuple(slice(a, a + m) for (a, _), m in zip(pads, out))]
    if bias is not None:
        y = y + np.asarray(bias).astype(dtype).reshape((-1,) + (1,) * d)
    return y if batched else y[0]


# --------------------------------------------------------------------------------------------
# Random test data and layer geometries for the property tests (no specconv here either).

FLOAT_DTYPES = (np.float32, np.float64, np.complex64, np.complex128)
METHODS = ("auto", "fft", "direct")
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def random_array(rng, shape, dtype):
    """Standard-normal data of ``dtype`` (complex: both parts); small ints for int dtypes."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        return rng.integers(-3, 4, size=shape).astype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, size=shape).astype(bool)
    a = rng.standard_normal(shape)
    if dtype.kind == "c":
        a = a + 1j * rng.standard_normal(shape)
    return a.astype(dtype)


def hypothesis_settings(max_examples):
    """Deterministic, deadline-free hypothesis settings that leave no database behind."""
    from hypothesis import HealthCheck, settings

    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def channel_layouts():
    """(groups, C_in/groups, C_out/groups): dense, grouped, depthwise, depthwise multiplier."""
    from hypothesis import strategies as st

    dense = st.tuples(st.just(1), st.integers(1, 3), st.integers(1, 3))
    grouped = st.tuples(st.integers(2, 3), st.integers(1, 2), st.integers(1, 3))
    depthwise = st.tuples(st.integers(1, 4), st.just(1), st.just(1))
    multiplier = st.tuples(st.integers(2, 3), st.just(1), st.integers(2, 3))
    return st.one_of(dense, grouped, depthwise, multiplier)


def conv_configs(dims=(1, 2, 3), modes=PADDING_MODES):
    """A hypothesis strategy of valid PyTorch-conv layer configurations (small sizes).

    Returns dicts with ``x_shape``, ``w_shape``, ``bias`` (bool), ``kwargs`` (stride, padding,
    dilation, groups, padding_mode) and ``seed`` (for :func:`random_array`).
    """
    from hypothesis import strategies as st

    @st.composite
    def configs(draw):
        d = draw(st.sampled_from(dims))
        groups, ci, co = draw(channel_layouts())
        max_k = {1: 5, 2: 3}.get(d, 2)
        max_extra = {1: 9, 2: 4}.get(d, 2)
        kernel = tuple(draw(st.integers(1, max_k)) for _ in range(d))
        dilation = tuple(draw(st.integers(1, 3 if d == 1 else 2)) for _ in range(d))
        padding_kind = draw(st.sampled_from(["int", "tuple", "pairs", "same", "valid"]))
        stride = tuple(draw(st.integers(1, 3)) for _ in range(d))
        if padding_kind == "int":
            padding = draw(st.integers(0, 2))
        elif padding_kind == "tuple":
            padding = tuple(draw(st.integers(0, 2)) for _ in range(d))
        elif padding_kind == "pairs":
            padding = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(d))
        else:
            padding = padding_kind
            if padding == "same":
                stride = (1,) * d
        padding_mode = draw(st.sampled_from(modes))
        pads = conv_pads(kernel, dilation, padding)
        span = [dl * (k - 1) + 1 for k, dl in zip(kernel, dilation)]
        n = []
        for e, (a, b) in zip(span, pads):
            lo = max(1, e - a - b)
            if padding_mode == "reflect":
                lo = max(lo, a + 1, b + 1)
            elif padding_mode == "circular":
                lo = max(lo, a, b)
            n.append(lo + draw(st.integers(0, max_extra)))
        batch = draw(st.sampled_from([(), (1,), (2,)]))
        return {
            "x_shape": batch + (groups * ci,) + tuple(n),
            "w_shape": (groups * co, ci) + kernel,
            "bias": draw(st.booleans()),
            "kwargs": dict(
                stride=stride,
                padding=padding,
                dilation=dilation,
                groups=groups,
                padding_mode=padding_mode,
            ),
            "seed": draw(st.integers(0, 2**32 - 1)),
        }

    return configs()


def transpose_configs(dims=(1, 2, 3)):
    """A hypothesis strategy of valid PyTorch-ConvTranspose configurations (small sizes)."""
    from hypothesis import strategies as st

    @st.composite
    def configs(draw):
        d = draw(st.sampled_from(dims))
        groups, ci, co = draw(channel_layouts())
        max_k = {1: 5, 2: 3}.get(d, 2)
        max_n = {1: 8, 2: 4}.get(d, 3)
        kernel = tuple(draw(st.integers(1, max_k)) for _ in range(d))
        dilation = tuple(draw(st.integers(1, 2)) for _ in range(d))
        stride = tuple(draw(st.integers(1, 3)) for _ in range(d))
        output_padding = tuple(
            draw(st.integers(0, max(s, dl) - 1)) for s, dl in zip(stride, dilation)
        )
        n = tuple(draw(st.integers(1, max_n)) for _ in range(d))
        # keep the output non-empty: (n-1)s - before - after + span + op >= 1
        room = [
            (m - 1) * s + dl * (k - 1) + op
            for m, s, dl, k, op in zip(n, stride, dilation, kernel, output_padding)
        ]
        if draw(st.booleans()):
            padding = tuple(draw(st.integers(0, r // 2)) for r in room)
        else:  # (before, after) pairs
            before = [draw(st.integers(0, r)) for r in room]
            padding = tuple((a, draw(st.integers(0, r - a))) for a, r in zip(before, room))
        batch = draw(st.sampled_from([(), (2,)]))
        return {
            "x_shape": batch + (groups * ci,) + n,
            "w_shape": (groups * ci, co) + kernel,
            "bias": draw(st.booleans()),
            "kwargs": dict(
                stride=stride,
                padding=padding,
                output_padding=output_padding,
                dilation=dilation,
                groups=groups,
            ),
            "seed": draw(st.integers(0, 2**32 - 1)),
        }

    return configs()
