"""The direct method: the same valid correlation as the engine, one kernel tap at a time.

For every tap k the layer is a plain channel matmul, ``y += W[:, :, k] @ x_shifted(k)``, so a
1 × 1 kernel is exactly one GEMM and small kernels cost a few. No FFT is involved: this is the
method ``"auto"`` picks for tiny kernels, and an independent path the tests compare against.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np

from . import _blas

#: Multiply-adds per tap below which the channel matmul runs on one BLAS thread.
SMALL_PRODUCT = 2**22


def zero_pad(x, pads):
    """``x`` (B, C, *spatial) with ``(before, after)`` zeros per spatial axis (negative crops)."""
    crop = tuple(slice(max(-a, 0), n - max(-b, 0)) for (a, b), n in zip(pads, x.shape[2:]))
    x = x[(Ellipsis,) + crop]
    widths = ((0, 0), (0, 0)) + tuple((max(a, 0), max(b, 0)) for a, b in pads)
    if any(w != (0, 0) for w in widths):
        x = np.pad(x, widths)
    return x


def correlate_direct(x, pads, weight, geom, dtype):
    """Valid correlation of the zero-padded ``x`` with ``weight``; see ``_engine.Geometry``."""
    # multiply in the result dtype, never in the inputs' own (int overflow, float16 rounding)
    xp = zero_pad(x, pads).astype(dtype, copy=False)
    weight = weight.astype(dtype, copy=False)
    B = xp.shape[0]
    G = geom.groups
    ci, co = geom.in_channels // G, geom.out_channels // G
    n = geom.out_shape
    xg = xp.reshape((B, G, ci) + xp.shape[2:])
    wg = weight.reshape((G, co, ci) + weight.shape[2:])
    out = np.zeros((B, G, co, math.prod(n)), dtype=dtype)
    small = out.size * ci < SMALL_PRODUCT  # one BLAS thread for small matmuls (see _blas)
    with _blas.limit(1) if small else contextlib.nullcontext():
        for k in np.ndindex(*geom.kernel):
            window = tuple(
                slice(kk * dl, kk * dl + (m - 1) * s + 1, s)
                for kk, dl, m, s in zip(k, geom.dilation, n, geom.stride)
            )
            xs = xg[(Ellipsis,) + window].reshape(B, G, ci, -1)
            wk = wg[(Ellipsis,) + k]  # (G, co, ci)
            if ci == 1:
                out += wk[np.newaxis, :, :, 0, np.newaxis] * xs
            else:
                out += np.matmul(wk, xs)
    return out.reshape((B, geom.out_channels) + n)
