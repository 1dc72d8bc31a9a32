"""The chunks: output ranges along the first spatial axis, each from its input with the halo.

:class:`Chunker` reads a chunk's input (halo and padding included), runs the layer's
valid-correlation twin on it and crops the output; every chunk shares that twin's geometry,
so the kernel spectra are computed once.
"""

from __future__ import annotations

import math

import numpy as np

from .._validate import as_shape, result_dtype
from ..layers import NUMPY_PAD_MODE, Planning, SpectralConv, check_padding_fits
from ._plan import plan_chunk


def check_layer(layer):
    if not isinstance(layer, SpectralConv):
        raise TypeError(f"layer must be a specconv.SpectralConv, got {type(layer).__name__}.")
    return layer


def output_shape_of(layer, shape, name="shape"):
    """:func:`output_shape`; ``name`` is the parameter the errors name (``source`` in apply)."""
    check_layer(layer)
    shape = as_shape(name, shape)
    d = layer.ndim
    if len(shape) not in (d + 1, d + 2):
        raise ValueError(
            f"{name} must be (C_in, *spatial) or (B, C_in, *spatial) with {d} spatial "
            f"dimension(s), got shape {shape}."
        )
    lead = shape[: len(shape) - d - 1]
    if shape[len(lead)] != layer.in_channels:
        raise ValueError(
            f"the input has {shape[len(lead)]} channels but the layer expects "
            f"{layer.in_channels} ({name} of shape {shape})."
        )
    out = []
    for a, n in enumerate(shape[-d:]):
        (pl, pr), s, e = layer.pads[a], layer.stride[a], layer.kernel_span[a]
        m = (n + pl + pr - e) // s + 1
        if m < 1:
            raise ValueError(
                f"The kernel (span {e}) is larger than the padded input ({n + pl + pr}) "
                f"along spatial axis {a} ({name} of shape {shape})."
            )
        out.append(m)
    return lead + (layer.out_channels,) + tuple(out)


class Chunker:
    """Output chunks along the first spatial axis, each from its input with the halo."""

    def __init__(self, layer, src, memory_budget, chunk_size=None):
        d = layer.ndim
        self.layer, self.src, self.budget = layer, src, memory_budget
        shape = src.shape
        self.batched = len(shape) == d + 2
        self.out_shape = output_shape_of(layer, shape, "source")
        self.axis = len(shape) - d  # the chunked axis in source and output arrays
        self.n_in = shape[self.axis]
        self.n_out = self.out_shape[self.axis]
        self.pads = layer.pads
        self.stride, self.span = layer.stride[0], layer.kernel_span[0]
        self.dtype = result_dtype(
            np.empty(0, src.dtype), layer.weight, layer.bias, names=("source", "weight", "bias")
        )
        check_padding_fits(layer.padding_mode, self.pads, shape[-d:])
        # every chunk runs through one valid-correlation layer of one geometry, so the
        # kernel spectra are computed once (the last chunk is padded to the same length);
        # the user's layer holds the frozen weight: no second copy
        planning = Planning(borrow_weight=True)
        if chunk_size is None:
            self.chunk, spectra_budget, self.estimate = plan_chunk(self, memory_budget)
            planning = Planning(
                borrow_weight=True, spectra_cached=True, spectra_budget=spectra_budget
            )
        else:
            self.chunk = min(chunk_size, self.n_out)
            self.estimate = math.nan
        self.valid = layer.unpadded(planning=planning)

    def in_range(self, m0):
        """Source indices ``[lo, hi)`` along the axis that the outputs from ``m0`` need."""
        s = self.stride
        lo = m0 * s - self.pads[0][0]
        return lo, lo + (self.chunk - 1) * s + self.span

    def read(self, m0, out=None):
        """The input that outputs ``m0 .. m0 + chunk`` need, halo and padding included (in
        ``out``, a previous chunk's input, where the source can fill it)."""
        lo, hi = self.in_range(m0)
        x = self._read_padded(lo, hi, out)
        d = self.layer.ndim
        if d > 1 and any(p != (0, 0) for p in self.pads[1:]):
            widths = ((0, 0),) * (x.ndim - d + 1) + tuple(self.pads[1:])
            x = np.pad(x, widths, mode=NUMPY_PAD_MODE[self.layer.padding_mode])
        return x

    def run(self, m0, x, out=None):
        """Outputs ``m0 .. m0 + chunk`` (cropped at the end) from ``read(m0)`` (computed
        in ``out``, from :meth:`output_buffer`, if given)."""
        y = self.valid(x, out=out)
        stop = min(self.chunk, self.n_out - m0)
        return y[(slice(None),) * self.axis + (slice(0, stop),)]

    def output_buffer(self):
        """An array :meth:`run` can compute a chunk in."""
        shape = list(self.out_shape)
        shape[self.axis] = self.chunk
        return np.empty(shape, self.dtype)

    def compute(self, m0):
        return self.run(m0, self.read(m0))

    def _read_padded(self, lo, hi, out=None):
        n, axis = self.n_in, self.axis
        a, b = max(lo, 0), min(hi, n)
        if lo >= 0 and hi <= n:
            return self.src.read(axis, lo, hi, out)
        shape = list(self.src.shape)
        shape[axis] = hi - lo
        if out is not None and out.shape == tuple(shape):  # a chunk at an end: reuse the buffer
            x = out
            x.fill(0)
        else:
            x = np.zeros(shape, dtype=self.src.dtype)

        def put(i0, i1, values):  # source indices i0 .. i1 - 1 into the padded chunk
            x[(slice(None),) * axis + (slice(i0 - lo, i1 - lo),)] = values

        if b > a:
            put(a, b, self.src.read(axis, a, b))
        mode = self.layer.padding_mode
        if mode == "zeros":
            return x
        pl, pr = self.pads[0]
        for i0, i1 in ((max(lo, -pl), min(hi, 0)), (max(lo, n), min(hi, n + pr))):
            if i1 <= i0:
                continue
            idx = np.arange(i0, i1)
            if mode == "reflect":
                src_idx = np.where(idx < 0, -idx, 2 * (n - 1) - idx)
            elif mode == "replicate":
                src_idx = np.clip(idx, 0, n - 1)
            else:
                src_idx = idx % n
            r0, r1 = int(src_idx.min()), int(src_idx.max()) + 1
            part = self.src.read(axis, r0, r1)
            put(i0, i1, np.take(part, src_idx - r0, axis=axis))
        return x
