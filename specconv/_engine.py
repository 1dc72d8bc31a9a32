"""The spectral engine: a conv layer as a C_out × C_in complex matrix at every frequency.

One operation does all the work, a *valid* cross-correlation of a zero-padded input::

    y[b, o, n] = sum_{c in group(o)} sum_k w[o, c, k] · xpad[b, c, n·stride + k·dilation]

computed by overlap-save over tiles of the padded input (the whole-signal FFT is the one-tile
case). Per chunk of tiles:

1. gather: copy the tiles of every input channel into one buffer;
2. forward: every input channel and tile is transformed once (r2c for real data);
3. product: at every frequency, the C_out × C_in kernel matrix (block-diagonal for groups)
   times the C_in × (batch · tiles) spectra -- compiled loops in FFTW's natural layout
   (``_simd.c``; without them, a batched BLAS matmul on blocks of frequencies transposed
   while in cache), or elementwise products for depthwise and small kernel matrices;
4. inverse: every output channel and tile is transformed back once (with a stride, the
   spectrum is folded first, which makes that transform stride times smaller);
5. scatter: the valid part of every tile is written to the output.

A chunk is a run of tiles along the first spatial axis for a block of signals and a block of
groups (groups share nothing). Chunks are independent, so they run on ``get_num_threads()``
worker threads (FFTW and numpy release the GIL), each with its own buffers and plans; memory
stays bounded by the chunk size, whatever the signal length, and small chunks stay in cache
through all five steps. Where a chunk would give the product only a few columns (long
kernels, big tiles) -- BLAS, or the compiled loops with a kernel matrix larger than the
chunk's spectra -- the workers share each chunk as a team instead: each gathers and
transforms its run of tiles, computes the product at its share of the frequencies for all the
chunk's tiles, and transforms its tiles back, with a barrier between the steps.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import math
import threading
from typing import Literal

import numpy as np
import scipy.fft

from . import _blas, _compiled, fft
from ._workers import run_parallel


class NonFiniteInput(Exception):
    """A transformed tile held NaN or ±Inf (raised where ``correlate_fft`` checks)."""


@dataclasses.dataclass(frozen=True)
class Tiling:
    """How the engine cuts the padded input into overlap-save tiles."""

    fft_shape: tuple  # transform length per axis
    step: tuple  # full-rate valid outputs per tile per axis (a multiple of the stride)
    tiles: tuple  # number of tiles per axis
    chunk: int  # tiles per chunk along the first spatial axis
    batch_block: int  # signals per chunk
    group_block: int  # groups per chunk
    n_blocks: int  # (batch block, group block) pairs
    team: int = 1  # worker threads sharing each chunk, chunk // team tiles each

    @staticmethod
    def make(geom, fft_shape, chunk=None, batch_block=None, group_block=None, team=1):
        """Tiles of ``fft_shape``; chunks of ``chunk`` tiles (first axis), ``batch_block``
        signals and ``group_block`` groups (defaults: everything in one chunk), each shared
        by ``team`` workers (``chunk`` is rounded up to a multiple)."""
        step = tuple((n - e + 1) // s * s for n, e, s in zip(fft_shape, geom.span, geom.stride))
        if min(step) < 1:
            raise ValueError(f"fft_shape {fft_shape} is too short for the kernel span {geom.span}.")
        tiles = tuple(-(-n // (st // s)) for n, st, s in zip(geom.out_shape, step, geom.stride))
        if chunk is None:
            chunk = tiles[0]
        n_chunks = -(-tiles[0] // chunk)
        batch_block = batch_block or geom.batch
        group_block = group_block or geom.groups
        # blocks divide evenly, so every chunk has the same shape (one plan per worker)
        if geom.batch % batch_block or geom.groups % group_block:
            raise ValueError(
                f"batch_block {batch_block} and group_block {group_block} must divide the "
                f"batch {geom.batch} and groups {geom.groups}."
            )
        n_blocks = geom.batch // batch_block * (geom.groups // group_block)
        share = -(-tiles[0] // (n_chunks * team))
        return Tiling(
            tuple(fft_shape),
            step,
            tiles,
            share * team,
            batch_block,
            group_block,
            n_blocks,
            team,
        )

    @property
    def n_chunks(self):
        """Number of independent chunks: tile runs × batch blocks × group blocks."""
        return -(-self.tiles[0] // self.chunk) * self.n_blocks

    def block_geometry(self, geom):
        """The geometry of one chunk's (batch block, group block)."""
        G = geom.groups
        return dataclasses.replace(
            geom,
            batch=self.batch_block,
            groups=self.group_block,
            in_channels=geom.in_channels // G * self.group_block,
            out_channels=geom.out_channels // G * self.group_block,
        )


def spectral_shape(fft_shape, is_complex):
    """Shape of the spectrum of an ``fft_shape`` tile (last axis halved for real data)."""
    if is_complex:
        return tuple(fft_shape)
    return tuple(fft_shape[:-1]) + (fft_shape[-1] // 2 + 1,)


#: Frequencies per block of the matmul product: a block of spectra is transposed into matmul
#: layout while it is in cache (measured: 16-64 all within 5 %; FFTW writing that layout
#: directly through strides was 3x slower than its natural layout).
FREQ_BLOCK = 32

#: Kernel spectra are computed in blocks of kernels of about this size (the padded kernels
#: and their transforms; freed memory may stay resident, so this adds to the peak).
#: 64 x 64 x 1001 taps: 8 MB blocks took 5-25 % longer than 32 MB ones, once per layer.
SPECTRA_BLOCK_BYTES = 8 * 2**20

#: Below this many samples per chunk, FFTW runs single-threaded (thread start-up dominates).
SMALL_TRANSFORM = 2**16

#: Up to this many kernel-matrix entries per group, the product is a sum of elementwise
#: products in FFTW's natural layout; above it, a batched BLAS matmul: a BLAS call per
#: frequency costs microseconds whatever its size (measurements: ``benchmarks/RESULTS.md``, "Measurements behind the code's constants").
ELEMENTWISE_MAX_ENTRIES = 64


def uses_matmul(geom):
    """Whether the per-frequency product is a matrix product (else elementwise products):
    BLAS's, or the compiled loops' (see :func:`compiled_product`)."""
    G = geom.groups
    return (geom.in_channels // G) * (geom.out_channels // G) > ELEMENTWISE_MAX_ENTRIES


def compiled_product(geom, dtype):
    """Whether the compiled loops compute the matrix product, in FFTW's natural layout
    (spectra of the precision of ``dtype``; not where the calibration measured BLAS faster).

    The BLAS matmul needs both spectra transposed per block of frequencies, and back; those
    copies take about as long as BLAS itself, which the compiled loops avoid (measurements: ``benchmarks/RESULTS.md``, "Measurements behind the code's constants").
    """
    return _compiled.use("product", np.result_type(dtype, np.complex64)) and uses_matmul(geom)


def product_lanes(itemsize):
    """Frequencies per vector of the compiled product (64-byte vectors of complex numbers
    of ``itemsize`` bytes)."""
    return 64 // itemsize


def spectra_block(geom, fft_shape, csize):
    """``(output, input)`` channels per block of kernels transformed together.

    The padded kernels of one block and their spectra take about ``SPECTRA_BLOCK_BYTES``, so
    they never all exist at once. Blocks take every output channel and a run of input
    channels where they can: in the matmul layout ``(F, G, C_in, C_out)`` such a block is one
    contiguous run at every frequency (blocks of output channels wrote a few elements per
    frequency and input channel into the whole array, once per block: 2x slower).
    """
    G = geom.groups
    co, ci = geom.out_channels // G, geom.in_channels // G
    per_kernel = math.prod(fft_shape) * csize
    if co * per_kernel <= SPECTRA_BLOCK_BYTES:
        return co, max(1, min(ci, SPECTRA_BLOCK_BYTES // (co * per_kernel)))
    return max(1, SPECTRA_BLOCK_BYTES // per_kernel), 1


def _wrapped_taps(k, dilation, n):
    """``(destination, source)`` slices that put taps ``0 .. k-1`` at ``-tap · dilation``
    modulo ``n``: tap 0 at 0, the others backwards from the end (slices: fancy indexing of
    large weights was several times slower)."""
    first = (slice(0, 1), slice(0, 1))
    if k == 1:
        return [first]
    return [first, (slice(n - (k - 1) * dilation, n, dilation), slice(k - 1, 0, -1))]


def kernel_spectra(weight, geom, tiling, dtype):
    """The kernel matrix at every frequency of one tile, laid out for the product.

    ``weight`` is ``(C_out, C_in/groups, *kernel)`` (cross-correlation taps). Returns, scaled by
    ``1/prod(fft_shape)`` so that the inverse transform needs no normalisation, an array of
    shape ``(groups, blocks, C_out/groups, C_in/groups, lanes)`` for the compiled product
    (``lanes`` frequencies per block, see :func:`product_lanes`; the last block zero-padded),
    ``(F, groups, C_in/groups, C_out/groups)`` for the BLAS matmul or
    ``(groups, C_out/groups, C_in/groups, F)`` for the elementwise product (F = number of
    frequencies).
    """
    d = geom.ndim
    L = tiling.fft_shape
    cdtype = np.result_type(dtype, np.complex64)
    G = geom.groups
    co, ci = geom.out_channels // G, geom.in_channels // G
    n_freq = math.prod(spectral_shape(L, geom.is_complex))
    matmul, compiled = uses_matmul(geom), compiled_product(geom, dtype)
    lanes = product_lanes(np.dtype(cdtype).itemsize)
    blocks = -(-n_freq // lanes)
    if compiled:
        spectra = np.empty((G, blocks, co, ci, lanes), cdtype)
        spectra[:, -1] = 0  # the last block's padding
    elif matmul:
        spectra = np.empty((n_freq, G, ci, co), cdtype)
    else:
        spectra = np.empty((G, co, ci, n_freq), cdtype)
    # Correlation with w is convolution with the flipped, dilated kernel, placed so that the
    # valid outputs of a tile start at its first sample (subsampling by the stride then starts
    # in phase, as spectral folding needs): tap k lands at -k·dilation modulo the tile.
    pieces = list(
        itertools.product(
            *[_wrapped_taps(k, dl, n) for k, dl, n in zip(geom.kernel, geom.dilation, L)]
        )
    )
    axes = tuple(range(2, 2 + d))
    transform = scipy.fft.fftn if geom.is_complex else scipy.fft.rfftn
    threads = fft.get_num_threads()
    co_rows, ci_rows = spectra_block(geom, L, np.dtype(cdtype).itemsize)
    if G * -(-co // co_rows) < threads:  # a block for each thread where there are channels
        ci_rows = min(ci_rows, -(-ci // threads))
    wg = weight.reshape((G, co) + weight.shape[1:])
    scale = 1.0 / math.prod(L)
    blocks_of = list(itertools.product(range(G), range(0, co, co_rows), range(0, ci, ci_rows)))
    # blocks go to the threads (their padding and layout copies are numpy's, one thread per
    # call); a single block transforms on all of them
    per_block = threads if len(blocks_of) == 1 else 1

    def block(g, j0, i0):
        j1, i1 = min(co, j0 + co_rows), min(ci, i0 + ci_rows)
        eff = np.zeros((j1 - j0, i1 - i0) + tuple(L), np.result_type(weight.dtype, dtype))
        taps = np.multiply(wg[g, j0:j1, i0:i1], scale, dtype=eff.dtype)  # result precision
        for piece in pieces:
            eff[(Ellipsis,) + tuple(dst for dst, _ in piece)] = taps[
                (Ellipsis,) + tuple(src for _, src in piece)
            ]
        # once per layer and tile shape: pocketfft needs no planning for it
        spec = transform(eff, axes=axes, workers=per_block)
        spec = spec.reshape(j1 - j0, i1 - i0, n_freq)
        if compiled:  # whole blocks, then what the last one holds
            whole = (blocks - 1) * lanes
            by_block = spec[..., :whole].reshape(j1 - j0, i1 - i0, blocks - 1, lanes)
            spectra[g, :-1, j0:j1, i0:i1] = by_block.transpose(2, 0, 1, 3)
            spectra[g, -1, j0:j1, i0:i1, : n_freq - whole] = spec[..., whole:]
        elif matmul:  # a run of whole (C_in block x C_out) rows at every frequency
            spectra[:, g, i0:i1, j0:j1] = spec.transpose(2, 1, 0)
        else:
            spectra[g, j0:j1, i0:i1] = spec

    shares = [blocks_of[k::threads] for k in range(min(threads, len(blocks_of)))]
    run_parallel([lambda share=share: [block(*b) for b in share] for share in shares])
    return spectra


class _ChunkWorker:
    """Buffers for one chunk of tiles, reused for every chunk a worker thread runs.

    The buffers are the arrays of two borrowed FFTW plans (forward and inverse), so they are
    held while the worker lives and return to the plan pool with the plans.
    """

    def __init__(self, geom, pads, tiling, dtype, threads, plans, team=1, check_finite=False):
        d = geom.ndim
        G = geom.groups
        ci, co = geom.in_channels // G, geom.out_channels // G
        tiles = (tiling.chunk,) + tiling.tiles[1:]
        freq = spectral_shape(tiling.fft_shape, geom.is_complex)
        cdtype = np.result_type(dtype, np.complex64)
        B = geom.batch
        samples = B * geom.in_channels * math.prod(tiles) * math.prod(tiling.fft_shape)
        if samples < SMALL_TRANSFORM:  # threads cost more than they save on small transforms
            threads = 1
        self.geom, self.pads, self.tiling = geom, pads, tiling
        self.folded = folded_axes(geom, tiling)
        out_len = tuple(
            n // s if f else n for n, s, f in zip(tiling.fft_shape, geom.stride, self.folded)
        )
        axes = tuple(range(3 + d, 3 + 2 * d))
        lead_in, lead_out = (B, G, ci) + tiles, (B, G, co) + tiles
        self.forward = plans.enter_context(
            fft.borrow(
                lead_in + tiling.fft_shape,
                dtype,
                lead_in + freq,
                cdtype,
                axes,
                threads=threads,
                spread=True,
            )
        )
        zfreq = spectral_shape(out_len, geom.is_complex)
        self.inverse = plans.enter_context(
            fft.borrow(
                lead_out + zfreq,
                cdtype,
                lead_out + out_len,
                dtype,
                axes,
                inverse=True,
                threads=threads,
                spread=True,
            )
        )
        self.xin, self.xspec = self.forward.input_array, self.forward.output_array
        # every sample of a tile reaches its DC bin, and arithmetic keeps NaN and ±Inf
        # non-finite: the DC bins tell whether the tiles held any, for a few reads
        self.dc = self.xspec[(Ellipsis,) + (0,) * d] if check_finite else None
        self.zspec, self.yout = self.inverse.input_array, self.inverse.output_array
        # without folding, the product writes straight into the inverse transform's input
        self.yspec = (
            fft.spread_empty(lead_out + freq, cdtype, d) if any(self.folded) else self.zspec
        )
        n_tiles, n_freq = math.prod(tiles), math.prod(freq)
        # flat views (B, G, C, tiles, F); the spectra's rows may be padded apart (fft.spread_empty)
        self.xflat = fft.reshaped_view(self.xspec, (B, G, ci, n_tiles, n_freq))
        self.yflat = fft.reshaped_view(self.yspec, (B, G, co, n_tiles, n_freq))
        self.compiled = compiled_product(geom, dtype)
        if uses_matmul(geom) and not self.compiled:  # room for the tiles of a team
            fb = min(FREQ_BLOCK, n_freq)
            self.xblock = np.empty((fb, G, B, team * n_tiles, ci), cdtype)
            self.yblock = np.empty((fb, G, B, team * n_tiles, co), cdtype)

    def run(self, x, spectra, out, t0, keep=None):
        """Tiles ``t0 .. t0 + chunk`` of the block ``x`` (its spectra, its ``out`` slice;
        ``keep``: see :meth:`transform_in`)."""
        self.transform_in(x, t0, keep)
        if uses_matmul(self.geom):
            self.matmul(spectra, (self,), 0, self.xflat.shape[-1])
        else:
            self._elementwise(spectra)
        self.transform_out(out, t0)

    def transform_in(self, x, t0, keep=None):
        """Gather this worker's tiles from ``t0`` and transform them; copy their spectra to
        ``keep`` (the block's ``(B, G, C_in/G, *tiles, *freq)``), if given."""
        _gather(x, self.pads, self.geom, self.tiling, t0, self.xin)
        self.forward.execute()
        if self.dc is not None and not np.isfinite(self.dc).all():
            raise NonFiniteInput
        if keep is not None:
            n = min(self.tiling.chunk, keep.shape[3] - t0)  # the last chunk may end early
            np.copyto(keep[:, :, :, t0 : t0 + n], self.xspec[:, :, :, :n])

    def transform_out(self, out, t0):
        """Transform the product back and scatter the valid samples of the tiles from ``t0``."""
        geom, tiling = self.geom, self.tiling
        if any(self.folded):
            np.copyto(self.zspec, _fold(self.yspec, geom, tiling, self.folded))
        self.inverse.execute()
        valid = self.yout[
            (Ellipsis,)
            + tuple(
                slice(0, st // s) if f else slice(0, st, s)
                for st, s, f in zip(tiling.step, geom.stride, self.folded)
            )
        ]
        _scatter(valid, out, t0, geom, tiling)

    def matmul(self, spectra, members, f_lo, f_hi):
        """The product at frequencies ``f_lo .. f_hi`` for the tiles of all ``members``.

        A team's members each take a range of frequencies for the tiles of every member, so
        each BLAS call gets the whole chunk's tiles as columns and the kernel spectra are
        read once per chunk; so do the compiled loops, in FFTW's layout.
        """
        if self.compiled:  # every member's tiles are columns of one call
            B, G, ci, T, F = self.xflat.shape
            _compiled.loops.product(
                [m.xflat for m in members],
                [m.yflat for m in members],
                spectra,
                self.xflat.itemsize // 2,
                B,
                G,
                ci,
                self.yflat.shape[2],
                T,
                F,
                f_lo,
                f_hi,
            )
            return
        fb, G, B, T, ci = self.xblock.shape
        co = self.yblock.shape[-1]
        t = T // len(members)  # tiles per member
        for f0 in range(f_lo, f_hi, fb):
            n = min(fb, f_hi - f0)
            xb, yb = self.xblock[:n], self.yblock[:n]
            for j, m in enumerate(members):
                np.copyto(
                    xb[:, :, :, j * t : (j + 1) * t],
                    m.xflat[..., f0 : f0 + n].transpose(4, 1, 0, 3, 2),
                )
            np.matmul(
                xb.reshape(n, G, B * T, ci),
                spectra[f0 : f0 + n],
                out=yb.reshape(n, G, B * T, co),
            )
            for j, m in enumerate(members):
                np.copyto(
                    m.yflat[..., f0 : f0 + n],
                    yb[:, :, :, j * t : (j + 1) * t].transpose(2, 1, 4, 3, 0),
                )

    def _elementwise(self, spectra):
        G, co, ci, F = spectra.shape
        h = spectra[np.newaxis, :, :, :, np.newaxis, :]  # (1, G, co, ci, 1, F)
        x = self.xflat
        y = self.yflat
        np.multiply(h[:, :, :, 0], x[:, :, 0:1], out=y)
        if ci > 1:
            tmp = np.empty_like(y)
            for i in range(1, ci):
                np.multiply(h[:, :, :, i], x[:, :, i : i + 1], out=tmp)
                y += tmp


def folded_axes(geom, tiling):
    """Axes whose stride is applied by folding the spectrum (the tile length is a multiple).

    Subsampling ``y[::s]`` of a length-L signal is, in frequency, the sum of the s
    length-L/s pieces of its spectrum: the inverse transform becomes s times smaller.
    """
    return tuple(s > 1 and n % s == 0 for n, s in zip(tiling.fft_shape, geom.stride))


def _fold(spec, geom, tiling, folded):
    """Fold the spectra ``(B, G, C, *tiles, *freq)`` along the ``folded`` axes."""
    d = geom.ndim
    half_last = not geom.is_complex
    for a in range(d):
        if folded[a] and not (half_last and a == d - 1):
            ax = 3 + d + a
            s = geom.stride[a]
            shape = spec.shape[:ax] + (s, spec.shape[ax] // s) + spec.shape[ax + 1 :]
            spec = spec.reshape(shape).sum(axis=ax)
    if half_last and folded[-1]:
        # Only the non-negative half of the last axis is stored: the pieces that fall in the
        # negative half are the conjugates of their mirror images (all other axes negated).
        L, s = tiling.fft_shape[-1], geom.stride[-1]
        M, half = L // s, L // 2
        mirror = spec
        for ax in range(3 + d, 2 + 2 * d):
            mirror = np.roll(np.flip(mirror, axis=ax), 1, axis=ax)
        folded_spec = np.zeros(spec.shape[:-1] + (M // 2 + 1,), spec.dtype)
        for j in range(s):  # piece j covers frequencies j·M .. j·M + M//2
            lo, hi = j * M, j * M + M // 2
            if lo <= half:
                top = min(hi, half)
                folded_spec[..., : top - lo + 1] += spec[..., lo : top + 1]
            if hi > half:
                first = max(lo, half + 1)
                folded_spec[..., first - lo :] += mirror[..., L - hi : L - first + 1][
                    ..., ::-1
                ].conj()
        spec = folded_spec
    return spec


def _gather(x, pads, geom, tiling, t0, xin):
    """Copy the tiles ``t0 .. t0 + chunk`` (first axis) of the zero-padded ``x`` into ``xin``.

    ``x`` is (B, C_in, *spatial), or (B, G, *channels, *spatial) with the channels of a group
    split over several axes (any strides: a strided layer's input phases are read in place).
    The tiles inside the signal are copied from it directly; per axis, the few at each end
    that reach into the padding go through zero-padded copies of their regions.
    """
    d = geom.ndim
    L, S = tiling.fft_shape, tiling.step
    lead = x.ndim - d  # batch and channel axes
    target = xin.reshape(x.shape[:lead] + xin.shape[3:])
    casting: Literal["unsafe", "same_kind"] = "unsafe" if xin.dtype.kind == "c" else "same_kind"
    runs = []  # per axis: (first tile in the chunk, tiles, its window's start in x) of each run
    for a in range(d):
        p, n, s, count = pads[a][0], x.shape[lead + a], S[a], target.shape[lead + a]
        g0 = t0 if a == 0 else 0  # the chunk's first tile on this axis
        # tile g lies inside where 0 <= g * s - p and g * s - p + L <= n
        lo = min(max(-(-p // s) - g0, 0), count)
        hi = min(max((n + p - L[a]) // s + 1 - g0, lo), count)
        bounds = ((0, lo), (lo, hi), (hi, count))
        runs.append([(i, j - i, (g0 + i) * s - p) for i, j in bounds if j > i])
    for combo in itertools.product(*runs):
        tiles = tuple(slice(i, i + k) for i, k, _ in combo)
        block = target[(Ellipsis,) + tiles + (slice(None),) * d]
        counts, starts = [k for _, k, _ in combo], [a for *_, a in combo]
        _gather_block(x, starts, counts, L, S, block, casting)


def _gather_block(x, starts, counts, L, S, block, casting):
    """Copy ``counts`` tiles per axis, windows of ``L`` every ``S`` samples from ``starts``
    (``x``'s coordinates, the padding outside it zero), into ``block``."""
    d = len(L)
    lead = x.ndim - d
    spatial = x.shape[lead:]
    stops = [a + (k - 1) * s + ln for a, k, s, ln in zip(starts, counts, S, L)]
    src = tuple(slice(max(a, 0), min(b, n)) for a, b, n in zip(starts, stops, spatial))
    dst = tuple(slice(s.start - a, s.stop - a) for s, a in zip(src, starts))
    inside = all(a >= 0 and b <= n for a, b, n in zip(starts, stops, spatial))
    if not inside and all(k == 1 for k in counts):
        # one window: copy straight into the transform's input and zero only its borders
        window = block[(Ellipsis,) + (0,) * d + (slice(None),) * d]
        for a, s in enumerate(dst):
            before = (slice(None),) * (lead + a)
            window[before + (slice(0, s.start),)] = 0
            window[before + (slice(max(s.stop, s.start), None),)] = 0
        if all(s.stop > s.start for s in src):
            np.copyto(window[(Ellipsis,) + dst], x[(Ellipsis,) + src], casting=casting)
        return
    if inside:
        region = x[(Ellipsis,) + src]
    else:
        region = np.zeros(x.shape[:lead] + tuple(b - a for a, b in zip(starts, stops)), block.dtype)
        if all(s.stop > s.start for s in src):
            region[(Ellipsis,) + dst] = x[(Ellipsis,) + src]
    steps = region.strides[lead:]
    windows = np.lib.stride_tricks.as_strided(
        region,
        region.shape[:lead] + tuple(counts) + tuple(L),
        region.strides[:lead] + tuple(st * s for st, s in zip(steps, S)) + steps,
        writeable=False,
    )
    np.copyto(block, windows, casting=casting)


def _scatter(valid, out, t0, geom, tiling):
    """Write the valid samples of a chunk's tiles into ``out``: shape (B, C_out, *n), or
    (B, G, *channels, *n) with the channels of a group split over several axes (any strides:
    the phases of a transposed layer write straight into their interleaved output)."""
    d = geom.ndim
    n = geom.out_shape
    step = tuple(st // s for st, s in zip(tiling.step, geom.stride))  # outputs per tile
    B = out.shape[0]
    G = geom.groups
    if out.ndim == 2 + d:
        out = out.reshape((B, G, geom.out_channels // G) + n)
    lead = out.ndim - d  # batch, group and channel axes
    valid = valid.reshape(out.shape[:lead] + valid.shape[3:])
    chunk_tiles = valid.shape[lead : lead + d]
    first = (t0,) + (0,) * (d - 1)
    # per axis: the run of whole tiles, then at most one cut tile at the end of the signal
    parts = []
    for a in range(d):
        full_end = min(first[a] + chunk_tiles[a], n[a] // step[a])
        axis_parts = []
        if full_end > first[a]:
            axis_parts.append(
                (slice(0, full_end - first[a]), step[a], first[a] * step[a], full_end - first[a])
            )
        cut = n[a] - full_end * step[a]
        if full_end < first[a] + chunk_tiles[a] and cut > 0:
            i = full_end - first[a]
            axis_parts.append((slice(i, i + 1), cut, full_end * step[a], 1))
        parts.append(axis_parts)
    for combo in itertools.product(*parts):
        src = valid[(Ellipsis,) + tuple(p[0] for p in combo) + tuple(slice(0, p[1]) for p in combo)]
        # interleave (tiles_a, samples_a) so it matches the output's axis order
        perm = tuple(range(lead)) + tuple(i for a in range(d) for i in (lead + a, lead + d + a))
        src = src.transpose(perm)
        dst = out[(Ellipsis,) + tuple(slice(p[2], p[2] + p[3] * p[1]) for p in combo)]
        shape = dst.shape[:lead] + tuple(v for p in combo for v in (p[3], p[1]))
        strides = dst.strides[:lead] + tuple(
            v
            for a, p in enumerate(combo)
            for v in (p[1] * dst.strides[lead + a], dst.strides[lead + a])
        )
        np.copyto(np.lib.stride_tricks.as_strided(dst, shape, strides), src, casting="same_kind")


def correlate_fft(
    x, pads, spectra, geom, tiling, dtype, workers, out=None, keep=None, check_finite=False
):
    """Valid correlation of the zero-padded ``x`` by overlap-save (see the module docstring).

    Parameters
    ----------
    x : ndarray, (B, C_in, *spatial), any dtype castable to ``dtype``, finite; or any view of
        shape (B, G, *channels, *spatial) (the channels of a group split over several axes).
    pads : tuple of (before, after) zero padding per spatial axis (negative crops).
    spectra : output of :func:`kernel_spectra` for this geometry and tiling.
    dtype : compute dtype of the tiles (complex when ``geom.is_complex``).
    workers : number of threads.
    out : ndarray of ``dtype``, (B, C_out, *geom.out_shape), C-contiguous, or None (allocated);
        or any view of shape (B, G, *channels, *geom.out_shape) (the channels of a group split
        over several axes).
    keep : complex ndarray (B, G, C_in/G, *tiling.tiles, *freq), or None
        Where to copy the input tiles' spectra, for a gradient to reuse.
    check_finite : bool
        Raise :class:`NonFiniteInput` (``out`` then partly written) if a tile holds NaN or
        ±Inf, or its spectrum overflows; without the check, ``x`` must be finite.

    Returns
    -------
    y : ndarray, (B, C_out, *geom.out_shape) (``out`` if given)
    """
    if out is None:
        out = np.empty((geom.batch, geom.out_channels) + geom.out_shape, dtype=dtype)
    split = out.ndim > 2 + geom.ndim  # (B, G, *channels, *out_shape): see _scatter
    split_in = x.ndim > 2 + geom.ndim  # (B, G, *channels, *spatial): see _gather
    block = tiling.block_geometry(geom)
    bb, gb = tiling.batch_block, tiling.group_block
    ci, co = geom.in_channels // geom.groups, geom.out_channels // geom.groups
    matmul = uses_matmul(geom)
    layout_by_frequency = matmul and not compiled_product(geom, dtype)
    # a block's groups: one axis of a split view, a run of channels otherwise
    x_groups = (
        (lambda g0: slice(g0, g0 + gb)) if split_in else (lambda g0: slice(g0 * ci, (g0 + gb) * ci))
    )
    out_groups = (
        (lambda g0: slice(g0, g0 + gb)) if split else (lambda g0: slice(g0 * co, (g0 + gb) * co))
    )
    units = [
        (
            x[b0 : b0 + bb, x_groups(g0)],
            spectra[:, g0 : g0 + gb] if layout_by_frequency else spectra[g0 : g0 + gb],
            out[b0 : b0 + bb, out_groups(g0)],
            t0,
            None if keep is None else keep[b0 : b0 + bb, g0 : g0 + gb],
        )
        for b0 in range(0, geom.batch, bb)
        for g0 in range(0, geom.groups, gb)
        for t0 in range(0, tiling.tiles[0], tiling.chunk)
    ]
    team = tiling.team if matmul and tiling.team <= workers else 1
    if team > 1:
        shares = _team_shares(units, block, pads, tiling, dtype, team, check_finite)
    else:
        shares = _solo_shares(units, block, pads, tiling, dtype, workers, check_finite)
    # the per-frequency matmuls are small: single-threaded BLAS, parallel chunks (see _blas)
    with contextlib.ExitStack() as plans, _blas.limit(1):
        run_parallel(shares(plans))  # returns when all are done: they use the plans
    return out


def _solo_shares(units, block, pads, tiling, dtype, workers, check_finite):
    """Work of up to ``workers`` threads that take whole chunks in turn (a callable of the
    plans' stack)."""
    n_workers = min(workers, len(units))
    # few chunks: let FFTW use the threads inside each transform instead
    threads = max(1, workers // n_workers)

    def shares(plans):
        pool = [
            _ChunkWorker(block, pads, tiling, dtype, threads, plans, check_finite=check_finite)
            for _ in range(n_workers)
        ]

        def run_share(k):
            for unit in units[k::n_workers]:
                pool[k].run(*unit)

        return [functools.partial(run_share, k) for k in range(n_workers)]

    return shares


def _team_shares(units, block, pads, tiling, dtype, team, check_finite):
    """Work of ``team`` threads that share every chunk (a callable of the plans' stack).

    Each member transforms its run of ``chunk // team`` tiles, then computes the product at
    its range of frequencies for all the chunk's tiles, then transforms its tiles back;
    barriers separate the three steps. A failing member breaks the barrier for the others.
    """
    member = dataclasses.replace(tiling, chunk=tiling.chunk // team, team=1)
    n_freq = math.prod(spectral_shape(tiling.fft_shape, block.is_complex))
    bounds = [n_freq * k // team for k in range(team + 1)]

    def shares(plans):
        members = [
            _ChunkWorker(block, pads, member, dtype, 1, plans, team, check_finite)
            for _ in range(team)
        ]
        barrier = threading.Barrier(team)

        def run_member(k):
            me = members[k]
            try:
                for x, spectra, out, t0, keep in units:
                    start = t0 + k * member.chunk
                    active = start < tiling.tiles[0]  # the last chunk may end early
                    if active:
                        me.transform_in(x, start, keep)
                    else:  # its columns of the product are computed, then unused
                        me.xspec.fill(0)
                    barrier.wait()
                    me.matmul(spectra, members, bounds[k], bounds[k + 1])
                    barrier.wait()
                    if active:
                        me.transform_out(out, start)
            except BaseException:
                barrier.abort()
                raise

        return [functools.partial(run_member, k) for k in range(team)]

    return shares
