"""Streaming: a 1-D conv layer over a signal that arrives block by block.

:class:`StreamingConv` turns a :class:`~specconv.SpectralConv` into a stateful filter for live
signals (audio callbacks, EEG acquisition): ``process(block)`` returns the output for exactly
the samples of that block, so the only latency is the time it takes to collect a block, and
``flush()`` returns the tail that rings on after the last input.

Long kernels (a 2 s reverb at 48 kHz has 96 000 taps) are split into partitions and convolved
in the frequency domain (partitioned overlap-save): the head of the kernel uses partitions of
the block size, later parts of the kernel use partitions 2-8 times larger per level, which can
be computed ahead of time because they only see older input. The per-sample cost then grows
with the logarithm of the kernel length instead of linearly, and the latency stays one block.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.fft

from . import _costmodel, fft
from ._typing import ArrayLike, DTypeLike
from ._validate import (
    COMPUTE_DTYPES,
    as_array,
    as_dtype,
    as_int,
    check_finite_weights,
    result_dtype,
)
from .layers import SpectralConv

logger = logging.getLogger("specconv")

__all__ = ["StreamingConv", "Level"]

#: sentinel: set_kernel keeps the current bias (Any: the default of a parameter typed
#: ``ArrayLike | None``)
_KEEP: Any = object()

_RATIOS = (2, 4, 8)  # growth of the partition size from one level to the next
_MAX_PARTITION = 2**17
# the partition levels are priced with the cost model's constants (_costmodel.machine)
_MATMUL_MIN_CHANNELS = 8  # per group, in and out: below it einsum beats a per-frequency matmul


@dataclass(frozen=True)
class Level:
    """One uniformly partitioned segment of the kernel.

    The taps ``[first_tap, first_tap + count * size)`` are cut into ``count`` partitions of
    ``size`` taps, each transformed with length ``fft_len``.
    """

    size: int
    fft_len: int
    first_tap: int
    count: int


def _fft_len(size):
    return fft.next_fast_len(2 * size - 1)


def _levels_for(span, sizes):
    """Levels with partition ``sizes``: level 0 starts at tap 0, level l at tap ``sizes[l]``."""
    if len(sizes) == 1:
        return (Level(sizes[0], _fft_len(sizes[0]), 0, -(-span // sizes[0])),)
    levels = [Level(sizes[0], _fft_len(sizes[0]), 0, sizes[1] // sizes[0])]
    for a, b in zip(sizes[1:-1], sizes[2:]):
        levels.append(Level(a, _fft_len(a), a, b // a - 1))
    last = sizes[-1]
    levels.append(Level(last, _fft_len(last), last, -(-(span - last) // last)))
    return tuple(levels)


def _uses_matmul(ci, co):
    return min(ci, co) >= _MATMUL_MIN_CHANNELS


def _cost_per_sample(levels, groups, ci, co, is_complex, c):
    """Seconds per sample of ``levels`` with the cost model's constants ``c``: per frame of
    each level, python and two transform calls, the transforms and the product."""
    t_mac = c.T_CMAC_MATMUL if _uses_matmul(ci, co) else c.T_CMAC_ELEMENTWISE
    cx = 2 if is_complex else 1
    total = 0.0
    for lv in levels:
        L = lv.fft_len
        F = L if is_complex else L // 2 + 1
        transforms = groups * (ci + co) * L * (cx * c.T_FFT * math.log2(L) + c.T_COPY)
        product = groups * ci * co * F * lv.count * t_mac
        total += (c.T_FRAME + transforms + product) / lv.size
    return total


def plan_levels(
    span: int,
    block_size: int,
    groups: int,
    ci: int,
    co: int,
    is_complex: bool = False,
    itemsize: int | None = None,
) -> tuple[Level, ...]:
    """The cheapest partition levels for a kernel of ``span`` taps and a head of ``block_size``.

    Level ``l`` has partitions of ``block_size * r**l`` taps (``r`` in 2, 4, 8) and starts at
    tap ``block_size * r**l``, so its output for a frame is due one frame after its input is
    complete and can be computed then. The number of levels and ``r`` minimise a cost model per
    sample: transforms, per-frequency products and a fixed overhead per frame, priced with the
    conv cost model's constants for this machine (results of ``itemsize`` bytes; default
    double precision).

    Returns
    -------
    tuple of Level

    Examples
    --------
    >>> from specconv.stream import plan_levels
    >>> [(lv.size, lv.count) for lv in plan_levels(96000, 256, 1, 2, 2)]
    [(256, 8), (2048, 7), (16384, 5)]
    >>> plan_levels(100, 256, 1, 2, 2)
    (Level(size=256, fft_len=512, first_tap=0, count=1),)
    """
    itemsize = itemsize or (16 if is_complex else 8)
    c = _costmodel.machine(_costmodel.precision(itemsize, is_complex), fft.get_num_threads())
    best: tuple[float, tuple[Level, ...]] | None = None
    for r in _RATIOS:
        sizes = [block_size]
        while True:
            levels = _levels_for(span, sizes)
            cost = _cost_per_sample(levels, groups, ci, co, is_complex, c)
            if best is None or cost < best[0]:
                best = (cost, levels)
            nxt = sizes[-1] * r
            if nxt >= span or nxt > _MAX_PARTITION:
                break
            sizes.append(nxt)
    assert best is not None  # every ratio prices at least one partitioning
    return best[1]


def _ramp(u):
    """Raised-cosine fade from 0 (u <= 0) to 1 (u >= 1): continuous slope at both ends."""
    return 0.5 - 0.5 * np.cos(np.pi * np.clip(u, 0.0, 1.0))


class _Voice:
    """One kernel's spectra and kernel-dependent state; several exist during a crossfade."""

    def __init__(self, head, tails, bias):
        self.head, self.tails, self.bias = head, tails, bias
        self.S = None  # level-0 contribution of older frames to the current frame
        self.acc = None  # future output of the levels >= 1, a ring over absolute time
        self.fade = None  # (t_start, t_end, g_from, g_to) or None for a constant 1

    def gain(self, t0, t1):
        """None (gain 1), a scalar, or the gains of samples ``t0 .. t1 - 1``."""
        if self.fade is None:
            return None
        a, b, g0, g1 = self.fade
        if t1 <= a:
            return g0
        if t0 >= b:
            return g1
        u = (np.arange(t0, t1) - a) / (b - a)
        return g0 + (g1 - g0) * _ramp(u)

    def gain_at(self, t):
        g = self.gain(t, t + 1)
        return 1.0 if g is None else float(np.ravel(g)[0])


class StreamingConv:
    """Stream a 1-D conv layer block by block: causal, exact, latency of one block.

    The stream computes the causal (full) convolution of the input with the layer's kernels,
    ``y[n] = bias + sum_k weight[k] · x[n - (span - 1) + k·dilation]`` per channel pair
    (PyTorch cross-correlation taps, so the newest input meets the *last* tap): the
    concatenated outputs of :meth:`process` followed by :meth:`flush` equal ::

        specconv.conv(x, weight, bias, padding=span - 1, dilation=dilation,
                      groups=groups, stride=stride)

    where ``span = dilation·(K − 1) + 1``; equivalently (stride 1, no bias)
    ``specconv.convolve(x, h, mode="full")`` with ``h`` the flipped, dilated weight. The
    :meth:`process` outputs are the first ``n`` samples, the causal part. The layer's own
    ``padding`` does not change what is streamed; it only shifts where the layer's offline
    output sits in the stream (see :attr:`layer_delay`).

    Parameters
    ----------
    layer : SpectralConv or array_like [shape=(C_out, C_in/groups, K)]
        A 1-D layer (or its weight). Groups, dilation, stride and bias are streamed;
        ``padding_mode`` must be ``"zeros"`` (a stream starts from silence and cannot
        reflect samples that have not arrived yet).
    block_size : int, optional
        Partition size of the kernel head, default 256: the call size that costs least and
        the latency of a real-time loop (partitions stop at 131072 taps; larger blocks are
        computed as several frames). :meth:`process` accepts blocks of any size, also
        changing from call to call, and always returns exactly their outputs.
    dtype : dtype, optional
        Precision of the stream: float32, float64, complex64 or complex128. Default: the
        layer's (``result_dtype(weight, bias)``), so float32 weights stream in float32.
        Blocks are converted to it; complex blocks need a complex stream.

    Attributes
    ----------
    block_size, latency : int
        The partition size, and the latency in samples of a loop that calls
        ``process`` with blocks of that size (the time to collect one block).
    in_channels, out_channels, groups, kernel_span : int
    dtype : numpy.dtype
    levels : tuple of Level
        The partitioning of the kernel (see :func:`plan_levels`).

    See Also
    --------
    specconv.conv : the offline result the stream reproduces.
    specconv.outofcore.apply : a whole recording from disk to disk, when latency is no concern.

    Notes
    -----
    Partitioned convolution: the kernel head (``levels[0]``) is cut into partitions of
    ``block_size`` taps. For every block the newest input window (``fft_len`` samples) is
    transformed once and multiplied by the head partition; the products of older windows
    with the later partitions (a frequency-domain delay line) were summed when their frame
    completed. A call that ends mid-block is exact too: the window's missing future samples
    are zeros, which a causal output never reads. Later levels use larger partitions; the
    partitions of level ``l`` start at tap ``size_l``, so the output of a level-``l`` frame is
    needed one frame after its input is complete and is computed at that moment (the work of a
    large level is done every ``size_l`` samples, not spread over the calls in between).

    Swapping kernels (:meth:`set_kernel`) keeps the input history (the delay lines hold input
    spectra, independent of the kernel), so the new kernel's output is exact from the first
    sample; the two outputs are crossfaded with a raised-cosine over one block.

    Non-finite input is kept local as in :func:`specconv.conv`: NaN/Inf samples are zeroed
    before transforming and exactly the outputs whose taps cover them (per group) are NaN.

    Examples
    --------
    >>> import numpy as np
    >>> import specconv
    >>> from specconv.stream import StreamingConv
    >>> rng = np.random.default_rng(0)
    >>> w = rng.standard_normal((2, 2, 1000))           # a 2 x 2 "true-stereo" FIR
    >>> x = rng.standard_normal((2, 3000))
    >>> stream = StreamingConv(specconv.SpectralConv(w), block_size=128)
    >>> parts = [stream.process(x[:, i:i + 100]) for i in range(0, 3000, 100)]
    >>> y = np.concatenate(parts + [stream.flush()], axis=-1)
    >>> y.shape                                          # 3000 + 999 taps of tail
    (2, 3999)
    >>> bool(np.allclose(y, specconv.conv(x, w, padding=999)))
    True
    """

    def __init__(
        self,
        layer: SpectralConv | ArrayLike,
        block_size: int | None = None,
        *,
        dtype: DTypeLike | None = None,
    ) -> None:
        if not isinstance(layer, SpectralConv):
            if hasattr(layer, "weight") and hasattr(layer, "out_channels"):
                raise TypeError(
                    f"layer must be a SpectralConv (or a weight array), got "
                    f"{type(layer).__name__}; a transposed layer cannot be streamed."
                )
            layer = SpectralConv(layer)
        if layer.ndim != 1:
            raise ValueError(
                f"layer must be 1-D (weight of shape (C_out, C_in/groups, K)) to be streamed, "
                f"got a {layer.ndim}-D layer with kernel size {layer.kernel_size}."
            )
        if layer.padding_mode != "zeros":
            raise ValueError(
                f"A stream starts from silence: layer.padding_mode must be 'zeros', got "
                f"{layer.padding_mode!r}."
            )
        if block_size is None:
            block_size = 256
        self.block_size = self.latency = as_int("block_size", block_size, minimum=1)
        # the head partition: blocks beyond the largest partition are cut into several frames
        # (exact either way), so no call does work proportional to block_size alone
        self._head = min(self.block_size, _MAX_PARTITION)
        self.in_channels, self.out_channels = layer.in_channels, layer.out_channels
        self.groups = layer.groups
        self._K = layer.kernel_size[0]
        self._dilation = layer.dilation[0]
        self._stride = layer.stride[0]
        self.kernel_span = layer.kernel_span[0]
        self.layer_delay = self.kernel_span - 1 - layer.pads[0][0]
        self.nan_policy = layer.nan_policy
        natural = result_dtype(layer.weight, layer.bias)
        if dtype is None:
            self.dtype = natural
        else:
            self.dtype = as_dtype("dtype", dtype)
            if self.dtype not in COMPUTE_DTYPES:
                raise TypeError(
                    f"dtype must be float32, float64, complex64 or complex128, got {self.dtype}."
                )
            if natural.kind == "c" and self.dtype.kind != "c":
                raise TypeError(
                    f"The layer's weight or bias is complex; dtype must be complex, got "
                    f"{self.dtype}."
                )
        self._complex = self.dtype.kind == "c"
        self._cdtype = np.result_type(self.dtype, np.complex64)
        G = self.groups
        self._ci, self._co = self.in_channels // G, self.out_channels // G
        self._mm = _uses_matmul(self._ci, self._co)
        self.levels = plan_levels(
            self.kernel_span, self._head, G, self._ci, self._co, self._complex, self.dtype.itemsize
        )
        self._voices = [self._make_voice(layer.weight, layer.bias)]
        self._weight_shape = layer.weight.shape
        self._batch: tuple[int, bool] | None = None  # (B, batched) once the first block arrived
        logger.debug("StreamingConv levels: %s", self.levels)

    # ---------------------------------------------------------------------------- kernels
    def _spectra(self, weight):
        """Per level, the partitions' spectra ``(C_out, ci, count, F)``, scaled by 1/L."""
        E, d = self.kernel_span, self._dilation
        h = np.zeros(weight.shape[:2] + (E,), dtype=np.result_type(weight.dtype, self.dtype))
        h[..., ::d] = weight[..., ::-1]  # causal taps: the newest sample meets the last weight
        out = []
        for lv in self.levels:
            P, L, M = lv.size, lv.fft_len, lv.count
            parts = np.zeros(h.shape[:2] + (M, L), dtype=h.dtype)
            seg = h[..., lv.first_tap : lv.first_tap + M * P]
            full = np.zeros(h.shape[:2] + (M * P,), dtype=h.dtype)
            full[..., : seg.shape[-1]] = seg
            parts[..., :P] = full.reshape(h.shape[:2] + (M, P))
            transform = scipy.fft.fft if self._complex else scipy.fft.rfft
            with np.errstate(invalid="ignore"):  # a non-finite tap: its channel is NaN anyway
                spec = transform(parts, axis=-1) * (1.0 / L)
            out.append(spec.astype(self._cdtype, copy=False))
        return out

    def _layout(self, spec, reverse):
        """Kernel spectra ``(C_out, ci, M, F)`` in the product layout, partitions ``M`` outer."""
        C_out, ci, M, F = spec.shape
        G = self.groups
        s = spec.reshape(G, C_out // G, ci, M, F)
        if reverse:  # the delay line is stored oldest first
            s = s[:, :, :, ::-1]
        if self._mm:  # (F, G, M·ci, co)
            return np.ascontiguousarray(s.transpose(4, 0, 3, 2, 1)).reshape(F, G, M * ci, -1)
        return np.ascontiguousarray(s.transpose(0, 1, 3, 2, 4)).reshape(G, -1, M * ci, F)

    def _make_voice(self, weight, bias):
        spectra = self._spectra(weight)
        head = self._layout(spectra[0][:, :, :1], reverse=False)
        tails = [self._layout(spectra[0][:, :, 1:], True) if self.levels[0].count > 1 else None]
        tails += [self._layout(s, True) for s in spectra[1:]]
        if bias is not None:
            bias = np.asarray(bias).astype(self.dtype).reshape(-1, 1)
        return _Voice(head, tails, bias)

    def set_kernel(
        self, weight: ArrayLike, bias: ArrayLike | None = _KEEP, *, crossfade: int | None = None
    ) -> None:
        """Swap in new kernels mid-stream, crossfading from the old output to the new one.

        From the current sample on, the output is ``(1 − g)·y_old + g·y_new`` with ``g`` a
        raised-cosine ramp from 0 to 1 over ``crossfade`` samples (default one block); both are
        exact outputs of their kernels on the whole input history, so nothing clicks. A swap
        during a crossfade fades all current kernels out from their present gains.

        Parameters
        ----------
        weight : array_like [shape=(C_out, C_in/groups, K)]
            The same shape as the current weight.
        bias : array_like [shape=(C_out,)] or None, optional
            The new bias; default: keep the current one. ``None`` removes it.
        crossfade : int, optional
            Length of the crossfade in samples (``>= 0``; 0 switches at once).

        Examples
        --------
        >>> import numpy as np
        >>> from specconv.stream import StreamingConv
        >>> stream = StreamingConv(np.ones((1, 1, 8)) / 8, block_size=16)
        >>> y1 = stream.process(np.ones((1, 64)))
        >>> stream.set_kernel(np.ones((1, 1, 8)) / 4)          # twice the gain
        >>> y2 = stream.process(np.ones((1, 64)))
        >>> float(y1[0, -1]), float(y2[0, 0]), float(y2[0, 15]), float(y2[0, 16])
        (1.0, 1.0, 1.990..., 2.0)
        """
        weight = as_array("weight", weight)
        if weight.shape != self._weight_shape:
            raise ValueError(
                f"weight must keep the shape of the streamed kernel {self._weight_shape}, got "
                f"{weight.shape}."
            )
        if bias is _KEEP:
            bias = self._voices[-1].bias
            bias = None if bias is None else bias[:, 0]
        elif bias is not None:
            bias = as_array("bias", bias)
            if bias.shape != (self.out_channels,):
                raise ValueError(
                    f"bias must have shape (C_out,) = ({self.out_channels},), got {bias.shape}."
                )
        for name, arr in (("weight", weight), ("bias", bias)):
            if arr is not None and arr.dtype.kind == "c" and not self._complex:
                raise TypeError(f"{name} is complex but the stream is real ({self.dtype}).")
        if self.nan_policy == "raise":
            check_finite_weights(weight, bias)
        if crossfade is None:
            crossfade = self.block_size
        crossfade = as_int("crossfade", crossfade, minimum=0)
        voice = self._make_voice(weight, bias)
        if self._batch is None or crossfade == 0:
            if self._batch is not None:
                self._prime(voice)
            self._voices = [voice]
            return
        t = self._t
        self._prime(voice)
        for v in self._voices:
            v.fade = (t, t + crossfade, v.gain_at(t), 0.0)
        voice.fade = (t, t + crossfade, 0.0, 1.0)
        self._voices.append(voice)

    # ------------------------------------------------------------------------------ state
    def _start(self, B):
        """Allocate the input-side state for batch size ``B``."""
        C_in, C_out, G = self.in_channels, self.out_channels, self.groups
        ci, co = self._ci, self._co
        L_max = max(lv.fft_len for lv in self.levels)
        self._hist = np.zeros((B, C_in, 1 << (2 * L_max - 1).bit_length()), dtype=self.dtype)
        top = max(lv.size for lv in self.levels)
        self._acc_cap = 1 << (2 * (top + self._head) - 1).bit_length()
        self._t = 0
        self._buf, self._ring_len, self._pushes = [], [], []
        self._rings: list[np.ndarray | None] = []  # None for a level without older partitions
        for i, lv in enumerate(self.levels):
            L = lv.fft_len
            F = L if self._complex else L // 2 + 1
            self._buf.append(
                (
                    fft.aligned_empty((B, C_in, L), self.dtype),
                    fft.aligned_empty((B, C_in, F), self._cdtype),
                    fft.aligned_empty((B, C_out, F), self._cdtype),
                    fft.aligned_empty((B, C_out, L), self.dtype),
                    np.empty((F, G, B, co), self._cdtype) if self._mm else None,
                )
            )
            m = lv.count - 1 if i == 0 else lv.count
            self._ring_len.append(m)
            self._pushes.append(0)
            if m == 0:
                self._rings.append(None)
            elif self._mm:
                self._rings.append(np.zeros((F, G, B, 2 * m, ci), self._cdtype))
            else:
                self._rings.append(np.zeros((B, G, 2 * m, ci, F), self._cdtype))
        # plan every transform now: a level's first frame would otherwise stall one block
        for i, lv in enumerate(self.levels):
            xin, xspec, yspec, yout, _ = self._buf[i]
            xin[...] = 0
            yspec[...] = 0
            fft.execute(xin, xspec, (2,), threads=self._threads(lv))
            fft.execute(yspec, yout, (2,), inverse=True, threads=self._threads(lv))
        self._bad = {}
        self._scratch = {}
        self._batch = (B, self._batch_flag)
        for v in self._voices:
            self._prime(v)

    def _prime(self, voice):
        """Fill a voice's kernel-dependent state from the input history (exact at once)."""
        B = self._batch[0] if self._batch else self._hist.shape[0]
        F0 = self._buf[0][1].shape[-1]
        voice.S = np.zeros((B, self.groups, self._co, F0), self._cdtype)
        voice.acc = np.zeros((B, self.out_channels, self._acc_cap), self.dtype)
        if voice.tails[0] is not None:
            self._product(0, self._window(0), voice.tails[0], voice.S)
        t = self._t
        for i, lv in enumerate(self.levels[1:], start=1):
            T = t // lv.size * lv.size  # the newest complete frame ends here; its output
            if T == 0:  # covers [T, T + size), which includes the present sample
                continue
            y = self._level_output(i, voice)
            self._acc_add(voice.acc, t, y[..., t - T :])

    def reset(self) -> None:
        """Forget the input history: the next block starts a new stream (kernels kept).

        A crossfade in progress is completed at once (the newest kernel stays).

        Examples
        --------
        >>> import numpy as np
        >>> from specconv.stream import StreamingConv
        >>> stream = StreamingConv(np.ones((1, 1, 3)))
        >>> _ = stream.process(np.ones((1, 4)))
        >>> stream.reset()
        >>> stream.process(np.ones((1, 4)))
        array([[1., 2., 3., 3.]])
        """
        voice = self._voices[-1]
        voice.fade = None
        self._voices = [voice]
        self._batch = None

    # ------------------------------------------------------------------------ processing
    def _check_block(self, block):
        x = as_array("block", block, allow_empty=True)
        if x.ndim not in (2, 3):
            raise ValueError(
                f"block must have shape (C_in, n) or (B, C_in, n), got shape {x.shape}."
            )
        batched = x.ndim == 3
        xb = x if batched else x[np.newaxis]
        if xb.shape[1] != self.in_channels:
            raise ValueError(
                f"block has {xb.shape[1]} channels (axis {1 if batched else 0} of shape "
                f"{x.shape}) but the layer expects {self.in_channels} input channels."
            )
        if self._batch is not None and (xb.shape[0], batched) != self._batch:
            raise ValueError(
                f"block shape {x.shape} does not continue the stream, which carries "
                f"{'a batch of ' + str(self._batch[0]) if self._batch[1] else 'no batch axis'}; "
                f"call reset() or flush() to start a new stream."
            )
        if x.dtype.kind == "c" and not self._complex:
            raise TypeError(
                f"block is complex ({x.dtype}) but the stream is real ({self.dtype}); "
                f"create the stream with a complex dtype."
            )
        return xb, batched

    def process(self, block: ArrayLike) -> np.ndarray:
        """Filter the next block of the signal.

        Parameters
        ----------
        block : array_like [shape=(C_in, n) or (B, C_in, n)]
            The next ``n`` samples (any ``n >= 0``; it may change between calls). The batch
            layout of the first block is kept until :meth:`reset` or :meth:`flush`.

        Returns
        -------
        y : ndarray [shape=(C_out, m) or (B, C_out, m)]
            The outputs for these samples: ``m = n`` with stride 1, else the outputs whose
            index is a multiple of the stride. dtype: the stream's.

        Raises
        ------
        ValueError
            Wrong shape, or non-finite samples with the layer's ``nan_policy="raise"``.
        """
        xb, batched = self._check_block(block)
        if self._batch is None:
            self._batch_flag = batched
            self._start(xb.shape[0])
        # a non-finite tap makes its output channel NaN (see SpectralConv's nan_policy): no
        # warnings from numpy on the way
        with np.errstate(invalid="ignore"):
            return self._run(xb, batched)

    def _run(self, xb, batched):
        n = xb.shape[-1]
        x = xb.astype(self.dtype, copy=False)
        x = self._screen(x)
        B = x.shape[0]
        out = np.zeros((B, self.out_channels, n), dtype=self.dtype)
        P = self._head
        t = self._t
        pos = 0
        while pos < n:
            t0 = t + pos
            t1 = min(t + n, (t0 // P + 1) * P)
            self._hist_write(t0, x[..., pos : pos + t1 - t0])
            self._segment(t0, t1, out[..., pos : pos + t1 - t0])
            pos += t1 - t0
        self._t = t + n
        self._voices = [
            v
            for v in self._voices
            if not (v.fade is not None and v.fade[3] == 0.0 and self._t >= v.fade[1])
        ]
        if len(self._voices) == 1 and self._voices[0].fade and self._t >= self._voices[0].fade[1]:
            self._voices[0].fade = None
        if self._bad:
            self._mark_nonfinite(out, t)
        s = self._stride
        if s > 1:
            out = out[..., (-t) % s :: s]
        return out if batched else out[0]

    def flush(self) -> np.ndarray:
        """End the stream: return the tail (``kernel_span − 1`` samples) and reset.

        Returns
        -------
        y : ndarray [shape=(C_out, m) or (B, C_out, m)]
            The output after the last input sample, as if zeros followed (strided like
            :meth:`process`). Empty if nothing was processed.

        Examples
        --------
        >>> import numpy as np
        >>> from specconv.stream import StreamingConv
        >>> stream = StreamingConv(np.ones((1, 1, 3)))
        >>> stream.process(np.ones((1, 2)))
        array([[1., 2.]])
        >>> stream.flush()
        array([[2., 1.]])
        """
        if self._batch is None:
            return np.zeros((self.out_channels, 0), dtype=self.dtype)
        B, batched = self._batch
        zeros = np.zeros((B, self.in_channels, self.kernel_span - 1), dtype=self.dtype)
        with np.errstate(invalid="ignore"):
            y = self._run(zeros, batched)
        self.reset()
        return y

    def _segment(self, t0, t1, dst):
        """Output samples ``t0 .. t1 - 1``, all inside one level-0 frame, into ``dst``."""
        lv = self.levels[0]
        P, L = lv.size, lv.fft_len
        f_end = (t0 // P + 1) * P
        xin, xspec, yspec, yout, _ = self._buf[0]
        known = L - (f_end - t1)
        self._hist_read(f_end - L, t1, xin[..., :known])
        xin[..., known:] = 0  # samples not yet arrived; causal outputs never read them
        fft.execute(xin, xspec, (2,), threads=self._threads(lv))
        B, G, ci, co = xin.shape[0], self.groups, self._ci, self._co
        X = xspec.reshape(B, G, ci, -1)
        head_data = X.transpose(3, 1, 0, 2) if self._mm else X
        Y = yspec.reshape(B, G, co, -1)
        lo, hi = L - f_end + t0, L - f_end + t1
        for v in self._voices:
            self._product(0, head_data, v.head, Y)
            Y += v.S
            fft.execute(yspec, yout, (2,), inverse=True, threads=self._threads(lv))
            y = yout[..., lo:hi] + self._acc_take(v.acc, t0, t1)
            if v.bias is not None:
                y += v.bias
            g = v.gain(t0, t1)
            dst += y if g is None else g * y
        if t1 != f_end:
            return
        if self._rings[0] is not None:
            self._push(0, xspec)
            for v in self._voices:
                self._product(0, self._window(0), v.tails[0], v.S)
        for i, lvl in enumerate(self.levels[1:], start=1):
            if t1 % lvl.size == 0:
                self._fire(i, t1)

    def _fire(self, i, T):
        """A level-``i`` frame ended at ``T``: transform it, add its output at ``[T, T+size)``."""
        lv = self.levels[i]
        xin, xspec = self._buf[i][:2]
        self._hist_read(T - lv.fft_len, T, xin)
        fft.execute(xin, xspec, (2,), threads=self._threads(lv))
        self._push(i, xspec)
        for v in self._voices:
            self._acc_add(v.acc, T, self._level_output(i, v))

    def _level_output(self, i, voice):
        """The newest level-``i`` frame's output for ``voice``: ``size`` samples."""
        lv = self.levels[i]
        yspec, yout = self._buf[i][2:4]
        B = yspec.shape[0]
        self._product(
            i, self._window(i), voice.tails[i], yspec.reshape(B, self.groups, self._co, -1)
        )
        fft.execute(yspec, yout, (2,), inverse=True, threads=self._threads(lv))
        return yout[..., lv.fft_len - lv.size :]

    @staticmethod
    def _threads(lv):
        return fft.get_num_threads() if lv.fft_len >= 2**15 else 1

    # --------------------------------------------------------- products and delay lines
    def _product(self, i, data, K, out):
        """``out[b, g, o, f] = sum_q data[.., q, f] · K[.., q, o, f]`` (natural layout out)."""
        if self._mm:
            tmp = self._buf[i][4]
            np.matmul(data, K, out=tmp)
            np.copyto(out, tmp.transpose(2, 1, 3, 0))
            return
        # products into a scratch array, then a sum over q: about twice as fast as einsum
        # (which has no vectorised complex loop) for the few channels that take this path
        shape = out.shape[:3] + K.shape[2:]
        tmp = self._scratch.get(shape)
        if tmp is None:
            tmp = self._scratch[shape] = np.empty(shape, self._cdtype)
        np.multiply(data[:, :, np.newaxis], K, out=tmp)
        np.sum(tmp, axis=3, out=out)

    def _push(self, i, xspec):
        ring, m = self._rings[i], self._ring_len[i]
        s = self._pushes[i] % m
        B = xspec.shape[0]
        X = xspec.reshape(B, self.groups, self._ci, -1)
        if self._mm:
            X = X.transpose(3, 1, 0, 2)
            ring[:, :, :, s] = X
            ring[:, :, :, s + m] = X
        else:
            ring[:, :, s] = X
            ring[:, :, s + m] = X
        self._pushes[i] += 1

    def _window(self, i):
        """The level's delay line, oldest frame first, as one product operand (a view)."""
        ring, m = self._rings[i], self._ring_len[i]
        s = (self._pushes[i] - 1) % m + 1
        if self._mm:
            w = ring[:, :, :, s : s + m]
            return w.reshape(w.shape[:3] + (-1,))
        w = ring[:, :, s : s + m]
        return w.reshape(w.shape[:2] + (-1, w.shape[-1]))

    def _hist_write(self, t0, x):
        cap = self._hist.shape[-1]
        a = t0 % cap
        n = x.shape[-1]
        first = min(n, cap - a)
        self._hist[..., a : a + first] = x[..., :first]
        self._hist[..., : n - first] = x[..., first:]

    def _hist_read(self, a, b, out):
        """Input samples ``a .. b - 1`` (zeros before the stream began) into ``out``."""
        cap = self._hist.shape[-1]
        s = a % cap
        n = b - a
        first = min(n, cap - s)
        out[..., :first] = self._hist[..., s : s + first]
        out[..., first:] = self._hist[..., : n - first]

    def _acc_add(self, acc, t0, y):
        cap = acc.shape[-1]
        s = t0 % cap
        n = y.shape[-1]
        first = min(n, cap - s)
        acc[..., s : s + first] += y[..., :first]
        acc[..., : n - first] += y[..., first:]

    def _acc_take(self, acc, t0, t1):
        cap = acc.shape[-1]
        s = t0 % cap
        n = t1 - t0
        first = min(n, cap - s)
        if first == n:
            y = acc[..., s : s + n].copy()
            acc[..., s : s + n] = 0
            return y
        y = np.concatenate([acc[..., s:], acc[..., : n - first]], axis=-1)
        acc[..., s:] = 0
        acc[..., : n - first] = 0
        return y

    # ------------------------------------------------------------------ non-finite input
    def _screen(self, x):
        """Zero non-finite samples and remember where they were (or raise)."""
        bad = ~np.isfinite(x)
        if not bad.any():
            return x
        if self.nan_policy == "raise":
            raise ValueError(
                f"block contains {int(bad.sum())} non-finite value(s) (NaN or ±Inf) and the "
                f"layer's nan_policy is 'raise'."
            )
        B, n = x.shape[0], x.shape[-1]
        per_group = bad.reshape(B, self.groups, self._ci, n).any(axis=2)
        for b, g in zip(*np.nonzero(per_group.any(axis=-1))):
            idx = self._t + np.flatnonzero(per_group[b, g])
            old = self._bad.get((b, g))
            self._bad[(b, g)] = idx if old is None else np.concatenate([old, idx])
        return np.where(bad, 0, x)

    def _mark_nonfinite(self, out, t):
        """NaN where the taps of an output (dilated) cover a remembered non-finite input."""
        n = out.shape[-1]
        d, K, E = self._dilation, self._K, self.kernel_span
        co = self._co
        times = np.arange(t, t + n)
        for (b, g), idx in list(self._bad.items()):
            idx = idx[idx + E - 1 >= t]  # older samples no longer reach any output
            if idx.size == 0:
                del self._bad[(b, g)]
                continue
            self._bad[(b, g)] = idx
            # input i reaches output m iff i ≡ m (mod d) and 0 <= (m - i) / d <= K - 1
            big = np.int64(1) << 40
            keys = np.sort(idx % d * big + idx // d)
            km = times % d * big + times // d
            hits = np.searchsorted(keys, km, "right") - np.searchsorted(keys, km - (K - 1), "left")
            out[b, g * co : (g + 1) * co, hits > 0] = np.nan
