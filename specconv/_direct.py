"""The direct method: the same valid correlation as the engine, without any FFT.

A padded image stored flat reads the tap at kernel offset ``k`` from its samples a fixed
distance further on, for every output position at once, so each tap is an operation on a
contiguous run of samples:

- layers with channels to mix (stride 1) are a few GEMMs on cache-sized slabs of the flat
  padded images (:func:`_slabs`);
- depthwise layers (one input channel per group) have no matmul to make: compiled loops
  (``_simd.c``) keep a block of outputs in registers across all taps; without them each tap
  is one scaled multiply-add on blocks of flat images (:func:`_depthwise`);
- strided layers are the sum of their stride-1 phases (:func:`_polyphase`), or, with
  channels to mix, GEMMs on their windows gathered into columns (:func:`_columns`, where the
  cost model prices that cheaper); a depthwise one (decimation, strided depthwise CNN
  layers) is one pass of the compiled loop over its input's phases
  (:func:`_depthwise_compiled`), and the output phases of a depthwise transposed 1-D layer
  (interpolation) one call too, interleaved as they are written (:func:`transposed_depthwise`);
- a 1 × 1 kernel is exactly one GEMM (:func:`_pointwise`).

This is the method ``"auto"`` picks for small kernels, and an independent path the tests
compare against.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Callable

import numpy as np

from . import _blas, _compiled
from ._workers import run_parallel

#: Multiply-adds below which a 1 × 1 kernel's matmul runs on one thread.
SMALL_PRODUCT = 2**22

#: Bytes of one depthwise block (padded images and two accumulators). Larger blocks spread
#: numpy's per-call overhead (held under the GIL, so it also serialises the threads) over
#: more samples; beyond 2 MiB nothing more was gained (measurements: ``benchmarks/RESULTS.md``, "Measurements behind the code's constants").
DEPTHWISE_BLOCK = 2**21

#: Bytes of one unit of :func:`_slabs` (its padded input and output slabs), and columns per
#: GEMM: the unit stays in cache (measurements: ``benchmarks/RESULTS.md``, "Measurements behind the code's constants").
SLAB_BYTES = 2**22
SLAB_COLUMNS = 4096

#: Bytes of one unit's columns in :func:`_columns` (they stay in cache for the GEMM).
COLUMN_BYTES = 2**21

#: Up to this many output channels per group, the slabs' GEMMs are stacked into one (see
#: :func:`_slabs`): fewer, larger GEMMs win until the stacked halo costs more (measurements: ``benchmarks/RESULTS.md``, "Measurements behind the code's constants").
STACK_MAX_CHANNELS = 16


def _split_pads(x, pads):
    """``x`` cropped where a pad is negative, and the remaining (non-negative) pads."""
    crop = tuple(slice(max(-a, 0), n - max(-b, 0)) for (a, b), n in zip(pads, x.shape[2:]))
    return x[(Ellipsis,) + crop], tuple((max(a, 0), max(b, 0)) for a, b in pads)


def _tap_offsets(kernel, dilation, shape):
    """Flat offset of every tap of ``kernel`` (in C order; its axes are the leading axes of
    ``shape``) within a C-contiguous image of ``shape``."""
    row = [math.prod(shape[a + 1 :]) for a in range(len(shape))]
    return [sum(k * dl * r for k, dl, r in zip(tap, dilation, row)) for tap in np.ndindex(*kernel)]


def zero_pad(x, pads):
    """``x`` (B, C, *spatial) with ``(before, after)`` zeros per spatial axis (negative crops)."""
    x, pads = _split_pads(x, pads)
    if any(p != (0, 0) for p in pads):
        x = np.pad(x, ((0, 0), (0, 0)) + pads)
    return x


def correlate_direct(x, pads, weight, geom, dtype, workers=1, columns=False):
    """Valid correlation of the zero-padded ``x`` with ``weight``; see ``_geometry.Geometry``.

    ``workers`` threads share the work, each running single-threaded BLAS (a multithreaded
    BLAS keeps its threads spinning after a call: the next phase or layer then ran 2x slower).
    ``columns``: a strided layer with channels to mix gathers its windows into columns for
    GEMMs (:func:`_columns`) rather than summing its phases (the cost model says which).
    """
    if any(s > 1 for s in geom.stride) and math.prod(geom.kernel) > 1:
        if strided_depthwise(geom, dtype):
            return _depthwise_compiled(x, pads, weight, geom, dtype, workers)
        if columns:
            return _columns(x, pads, weight, geom, dtype, workers)
        return _polyphase(x, pads, weight, geom, dtype, workers)
    if geom.in_channels == geom.groups:
        return _depthwise(x, pads, weight, geom, dtype, workers)
    if uses_slabs(geom):
        return _slabs(x, pads, weight, geom, dtype, workers)
    return _pointwise(x, pads, weight, geom, dtype, workers)


def compiled_depthwise(geom, dtype=None):
    """Whether the compiled loops compute the depthwise layer ``geom`` (real, stride 1) in
    ``dtype`` (None: whether they can at all, whatever the calibration measured)."""
    if dtype is None:
        usable = _compiled.loops is not None
    else:  # not where the calibration measured the numpy loops faster
        usable = _compiled.use("depthwise", dtype)
    return usable and not geom.is_complex and all(s == 1 for s in geom.stride)


def strided_depthwise(geom, dtype):
    """Whether the compiled loops compute the strided depthwise layer ``geom`` (real) in one
    pass over its input phases (see :func:`_phase_layout`)."""
    return (
        any(s > 1 for s in geom.stride)
        and geom.in_channels == geom.groups
        and not geom.is_complex
        and _compiled.use("depthwise", dtype)
    )


def uses_slabs(geom):
    """Whether a layer with channels to mix runs on slabs: stride 1 and more than one tap
    (a 1 × 1 kernel is one GEMM as it stands)."""
    return all(s == 1 for s in geom.stride) and math.prod(geom.kernel) > 1


def residue_taps(K, dilation, stride, residue):
    """The taps ``k`` of a K-tap kernel whose offset ``k·dilation ≡ residue (mod stride)``, and
    the distance between their offsets in strides (the same for every residue)."""
    taps = [k for k in range(K) if (k * dilation - residue) % stride == 0]
    return taps, dilation // math.gcd(dilation, stride)


def phases(geom):
    """The stride-1 layers whose sum is the strided layer ``geom`` (its polyphase parts).

    Output ``n`` reads padded sample ``n·s + k·d`` (stride s, dilation d, tap k). The taps
    whose ``k·d`` leave the same remainder modulo s read one phase of the input, every s-th
    sample from an offset ``o``: ``xpad[o + (n + q)·s]``, with the phase's own taps ``q``
    evenly spaced. So the layer is a sum of stride-1 layers on s^d times smaller inputs,
    with exactly the direct method's multiply-adds and none computed to be dropped.

    Returns a list of ``(offsets, taps, phase_geometry)``: the first padded sample of the
    phase per axis, the indices of its taps per axis, and its stride-1 geometry (its padded
    length is just what ``geom.out_shape`` needs).
    """
    per_axis = []
    for K, dl, s, n in zip(geom.kernel, geom.dilation, geom.stride, geom.out_shape):
        axis = []
        for rest in range(s):
            taps, spacing = residue_taps(K, dl, s, rest)
            if taps:
                axis.append((taps[0] * dl, taps, spacing, n + (len(taps) - 1) * spacing))
        per_axis.append(axis)
    layers = []
    for combo in itertools.product(*per_axis):
        offsets, taps, spacing, padded = zip(*combo)
        part = dataclasses.replace(
            geom,
            kernel=tuple(map(len, taps)),
            dilation=spacing,
            stride=(1,) * geom.ndim,
            padded=padded,
        )
        layers.append((offsets, taps, part))
    return layers


@functools.lru_cache(maxsize=64)
def _phase_layout(spatial, pads, geom):
    """How :func:`_depthwise_compiled` lays images of shape ``spatial`` (their non-negative
    ``pads``) out for the compiled loop: ``(shape, windows, taps, rows, lines, padded)``.

    Per axis, output n reads padded sample ``n·s + k·d`` (stride s, dilation d, tap k):
    sample ``n + (k·d) // s`` of the phase ``(k·d) mod s``. With an image's phases laid out in
    the loop's scratch image as an array (s_0, L_0, s_1, L_1, ...), L samples per phase and
    axis, every tap is one fixed offset and every output line one contiguous run: the loop's
    stride-1 kind. The loop's input per image is an array ``shape`` (s_0, M_0, s_1, M_1, ...)
    of the phases' samples (``windows``: where each phase's go, and the view of the image
    they come from); ``rows`` place its rows (last axis) in the scratch image, ``taps`` and
    ``lines`` are the offsets of the taps and of the output lines, ``padded`` its size.
    """
    strides = geom.stride
    # per axis and phase: its first input sample, how many it has, its index in the phase
    first = [[(r - a) % s for r in range(s)] for (a, _), s in zip(pads, strides)]
    counts = [[len(range(f, n, s)) for f in fs] for fs, n, s in zip(first, spatial, strides)]
    starts = [
        [(a + f - r) // s for r, f in enumerate(fs)] for fs, (a, _), s in zip(first, pads, strides)
    ]
    most = [max(1, *c) for c in counts]  # every phase array this long: short ones end in zeros
    length = [
        max(-(-p // s), *(j + n for j in js))
        for js, n, p, s in zip(starts, most, geom.padded, strides)
    ]
    blocks = [s * n for s, n in zip(strides, length)]  # the scratch image's shape per axis
    step = [math.prod(blocks[a + 1 :]) for a in range(geom.ndim)]

    def offset(phase, index):  # of sample ``index`` of phase ``phase`` (per axis)
        return sum((r * n + i) * t for r, i, n, t in zip(phase, index, length, step))

    taps = []
    for tap in np.ndindex(*geom.kernel):
        o = [k * d for k, d in zip(tap, geom.dilation)]
        taps.append(
            offset([o % s for o, s in zip(o, strides)], [o // s for o, s in zip(o, strides)])
        )
    shape = tuple(n for s, M in zip(strides, most) for n in (s, M))
    rows = []
    for index in np.ndindex(*shape[:-1]):
        phase, within = index[0::2], index[1::2] + (0,)
        rows.append(offset(phase, [js[r] + j for js, r, j in zip(starts, phase, within)]))
    windows = [
        (
            sum(((r, slice(0, c[r])) for r, c in zip(combo, counts)), (slice(None),)),
            tuple(slice(fs[r], None, s) for r, fs, s in zip(combo, first, strides)),
        )
        for combo in itertools.product(*map(range, strides))
    ]
    lines = _line_starts(geom.out_shape, [0] * geom.ndim, blocks)
    taps, rows = np.array(taps, np.int64), np.array(rows, np.int64)
    return shape, windows, taps, rows, lines, math.prod(blocks)


def _polyphase(x, pads, weight, geom, dtype, workers):
    """Strided layers: the sum of their stride-1 phases (see :func:`phases`), each computed
    by the slabs, the depthwise blocks or one matmul.

    No multiply-add is spent on a sample the stride drops; small layers pay the phases' extra
    calls (measurements: ``benchmarks/RESULTS.md``, "Measurements behind the code's constants").
    """
    x, pads = _split_pads(x, pads)
    out = np.zeros((geom.batch, geom.out_channels) + geom.out_shape, dtype)
    for offsets, taps, part in phases(geom):
        window, part_pads = [], []
        for o, s, need, (a, _), n in zip(offsets, geom.stride, part.padded, pads, x.shape[2:]):
            # the phase's sample j is padded sample o + j·s, input sample o + j·s - a
            before = min(need, max(0, -(-(a - o) // s)))
            first = o + before * s - a
            count = max(0, min(need - before, -(-(n - first) // s)))
            window.append(slice(first, first + (count - 1) * s + 1, s))
            part_pads.append((before, need - before - count))
        if all(a + b < need for (a, b), need in zip(part_pads, part.padded)):  # reads x
            out += correlate_direct(
                x[(Ellipsis,) + tuple(window)],
                tuple(part_pads),
                weight[(slice(None), slice(None)) + tuple(map(evenly_spaced, taps))],
                part,
                dtype,
                workers,
            )
    return out


def column_units(geom, itemsize):
    """``(images, rows)`` of one unit of :func:`_columns`: images of a group gathered
    together, or rows of outputs (first spatial axis) of one image, so that a unit's columns
    fill at most ``COLUMN_BYTES``."""
    depth = geom.in_channels // geom.groups * math.prod(geom.kernel) * itemsize
    per_image = depth * math.prod(geom.out_shape)
    if per_image <= COLUMN_BYTES:
        return min(geom.batch, COLUMN_BYTES // per_image), geom.out_shape[0]
    return 1, max(1, COLUMN_BYTES // (depth * math.prod(geom.out_shape[1:])))


def _columns(x, pads, weight, geom, dtype, workers):
    """Strided layers with channels to mix: every output's window of the padded input gathered
    into a column (im2col), one GEMM per unit of columns.

    This copies each input sample about ``K / prod(stride)`` times, where the phases
    (:func:`_polyphase`) copy it less but make a GEMM of every phase's slabs: on small images
    their calls and halos cost more than the copies (measurements: ``benchmarks/RESULTS.md``,
    session 18). Units are one group's images, or rows of one image, shared among
    ``workers`` threads each running single-threaded BLAS.
    """
    xp = zero_pad(x, pads).astype(dtype, copy=False)
    B, G, d = xp.shape[0], geom.groups, geom.ndim
    ci, co = geom.in_channels // G, geom.out_channels // G
    n_out = geom.out_shape
    depth = ci * math.prod(geom.kernel)
    step = xp.strides[2:]
    windows = np.lib.stride_tricks.as_strided(
        xp,
        xp.shape[:2] + n_out + geom.kernel,
        xp.strides[:2]
        + tuple(t * s for t, s in zip(step, geom.stride))
        + tuple(t * s for t, s in zip(step, geom.dilation)),
        writeable=False,
    )
    # (channel, taps..., image, outputs...): a unit's columns, row by row
    order = (1, *range(2 + d, 2 + 2 * d), 0, *range(2, 2 + d))
    w = weight.astype(dtype, copy=False).reshape(G, co, depth)
    out = np.empty((B, geom.out_channels) + n_out, dtype)
    images, rows = column_units(geom, np.dtype(dtype).itemsize)
    units = [
        (g, b, min(b + images, B), r, min(r + rows, n_out[0]))
        for g in range(G)
        for b in range(0, B, images)
        for r in range(0, n_out[0], rows)
    ]

    def share(k):
        # one buffer for every unit: fresh megabytes per unit were fresh pages (3x slower)
        columns = images * rows * math.prod(n_out[1:])
        buf = np.empty(depth * columns, dtype)
        product = np.empty(co * columns, dtype) if images > 1 else None
        for g, b0, b1, r0, r1 in units[k::workers]:
            window = windows[b0:b1, g * ci : (g + 1) * ci, r0:r1].transpose(order)
            cols = buf[: window.size].reshape(window.shape)
            np.copyto(cols, window)
            cols = cols.reshape(depth, -1)
            target = out[b0:b1, g * co : (g + 1) * co, r0:r1]
            if product is None:  # one image: the outputs' rows are the GEMM's
                np.matmul(w[g], cols, out=target.reshape(co, -1))
            else:
                y = np.matmul(w[g], cols, out=product[: co * cols.shape[1]].reshape(co, -1))
                target[...] = y.reshape((co, b1 - b0) + target.shape[2:]).swapaxes(0, 1)

    with _blas.limit(1):
        run_parallel([lambda k=k: share(k) for k in range(min(workers, len(units)))])
    return out


def evenly_spaced(taps):
    """The evenly spaced ``taps`` as a slice: a view of the weight, where an index list made
    a slow copy (measurements: ``benchmarks/RESULTS.md``, "The whole grid again, session 13")."""
    step = taps[1] - taps[0] if len(taps) > 1 else 1
    return slice(taps[0], taps[-1] + 1, step)


def _pointwise(x, pads, weight, geom, dtype, workers):
    """1 × 1 kernels (any stride): one channel matmul, written straight into the output.

    ``workers`` threads (each running single-threaded BLAS) take runs of output rows (first
    spatial axis), each gathering its strided input samples itself.
    """
    # multiply in the result dtype, never in the inputs' own (int overflow, float16 rounding)
    xp = zero_pad(x, pads).astype(dtype, copy=False)
    B, G = xp.shape[0], geom.groups
    ci, co = geom.in_channels // G, geom.out_channels // G
    n, stride = geom.out_shape, geom.stride
    wg = weight.astype(dtype, copy=False).reshape(G, co, ci)
    out = np.empty((B, geom.out_channels) + n, dtype)
    flat = out.reshape(B, G, co, -1)
    if flat.size * ci < SMALL_PRODUCT:
        workers = 1
    workers = min(workers, n[0])
    bounds = [n[0] * k // workers for k in range(workers + 1)]
    row = math.prod(n[1:])

    def share(k):
        r0, r1 = bounds[k], bounds[k + 1]
        window = (slice(r0 * stride[0], (r1 - 1) * stride[0] + 1, stride[0]),) + tuple(
            slice(0, (m - 1) * s + 1, s) for m, s in zip(n[1:], stride[1:])
        )
        xs = xp[(Ellipsis,) + window].reshape(B, G, ci, -1)
        np.matmul(wg, xs, out=flat[..., r0 * row : r1 * row])

    with _blas.limit(1):
        run_parallel([lambda k=k: share(k) for k in range(workers)])
    return out


def slab_plan(geom, itemsize, workers):
    """``(rows, per_unit, columns)`` of :func:`_slabs`: output rows (first spatial axis) per
    slab, slabs per unit and columns per GEMM, with a unit for each of ``workers`` threads
    where the layer has enough rows."""
    G = geom.groups
    channels = (geom.in_channels + geom.out_channels) // G
    row = math.prod(geom.padded[1:])
    n_out, span = geom.out_shape[0], geom.span[0]
    rows = max(1, min(n_out, SLAB_BYTES // (channels * row * itemsize) - span))
    # groups are units of their own; small images need shorter slabs to make one per worker
    wanted = -(-workers // G)
    rows = min(rows, -(-n_out // min(n_out, -(-wanted // geom.batch))))
    rows = -(-n_out // -(-n_out // rows))  # the same rows in every slab: none mostly empty
    slab = (rows + span) * row
    slabs = geom.batch * -(-n_out // rows)
    per_unit = max(1, min(SLAB_BYTES // (channels * slab * itemsize), -(-slabs // wanted)))
    # long last-axis kernels make tall buffers: fewer columns keep them within the budget
    tall = geom.kernel[-1] * (geom.in_channels // G) * itemsize
    columns = min(SLAB_COLUMNS, (per_unit - 1) * slab + rows * row, max(64, SLAB_BYTES // tall))
    return rows, per_unit, columns


def _slabs(x, pads, weight, geom, dtype, workers):
    """Stride-1 correlation of mixed channels: a few GEMMs on flat slabs of padded images.

    A slab is a run of output rows of one image and group, with the input rows they need,
    padded and stored flat (see the module docstring). The taps along the last axis are copied
    into a buffer of ``kw · C_in/G`` rows; every other tap is then a column offset into that
    buffer, so the layer is ``prod(kernel[:-1])`` GEMMs of depth ``kw · C_in/G`` over the
    stride-1 grid, in cache-sized runs of columns. This copies the input ``kw`` times where
    the classic im2col copies it ``prod(kernel)`` times. With few output channels per group the
    GEMMs are stacked into one, of all outer taps at every column (a few halo columns more),
    and its row blocks are summed at their offsets. Units of slabs are shared among
    ``workers`` threads, each running single-threaded BLAS (measurements: ``benchmarks/RESULTS.md``, "Measurements behind the code's constants").
    """
    x, pads = _split_pads(x, pads)  # copying into the slabs casts to ``dtype``
    B, G = x.shape[0], geom.groups
    ci, co = geom.in_channels // G, geom.out_channels // G
    span, n_out = geom.span, geom.out_shape
    rows, per_unit, columns = slab_plan(geom, np.dtype(dtype).itemsize, workers)
    slab_shape = (rows + span[0],) + geom.padded[1:]  # one spare row: the last taps overrun
    row, slab = math.prod(slab_shape[1:]), math.prod(slab_shape)
    kw, dw = geom.kernel[-1], geom.dilation[-1]
    outer = _tap_offsets(geom.kernel[:-1], geom.dilation, slab_shape)
    # (G, outer taps, co, kw · ci), columns in the order the buffer's rows are copied
    w = weight.astype(dtype, copy=False).reshape((G, co, ci, len(outer), kw))
    w = np.ascontiguousarray(w.transpose(0, 3, 1, 4, 2)).reshape(G, len(outer), co, kw * ci)
    slabs = [(b, r) for b in range(B) for r in range(0, n_out[0], rows)]
    units = [(g, slabs[i : i + per_unit]) for g in range(G) for i in range(0, len(slabs), per_unit)]
    halo = max(outer)
    # few output channels make short GEMMs, slow per multiply-add: one GEMM of all outer taps
    # is faster, where it computes few extra (halo) columns
    stack = len(outer) > 1 and co <= STACK_MAX_CHANNELS and 4 * halo <= columns
    stacked = w.reshape(G, len(outer) * co, kw * ci)
    out = np.empty((B, geom.out_channels) + n_out, dtype)
    spatial = x.shape[2:]
    inner = tuple(slice(a, a + n) for (a, _), n in zip(pads[1:], spatial[1:]))
    crop = tuple(slice(0, n) for n in n_out[1:])

    def share(k):
        buf = np.zeros((ci, per_unit) + slab_shape, dtype)
        flat = buf.reshape(ci, -1)
        cols = np.empty((kw * ci, columns + halo), dtype)
        acc = np.empty((co, per_unit * slab), dtype)
        taps = np.empty((len(outer) * co, columns + halo) if stack else (co, columns), dtype)
        for g, members in units[k::workers]:
            for j, (b, r) in enumerate(members):
                # padded rows r .. r + rows + span - 1 hold input rows shifted by the pad
                lo = r - pads[0][0]
                first, stop = max(lo, 0), min(lo + rows + span[0] - 1, spatial[0])
                target = buf[:, j]
                if stop <= first:  # all padding
                    target[...] = 0
                    continue
                target[:, : first - lo] = 0
                target[:, stop - lo :] = 0
                target[(slice(None), slice(first - lo, stop - lo)) + inner] = x[
                    b, g * ci : (g + 1) * ci, first:stop
                ]
            last_rows = min(rows, n_out[0] - members[-1][1])
            used = (len(members) - 1) * slab + last_rows * row
            for s in range(0, used, columns):
                m = min(columns, used - s)
                for i in range(kw):
                    start = s + i * dw
                    cols[i * ci : (i + 1) * ci, : m + halo] = flat[:, start : start + m + halo]
                if stack:  # every outer tap's outputs at every column, then shifted sums
                    np.matmul(stacked[g], cols[:, : m + halo], out=taps[:, : m + halo])
                    np.copyto(acc[:, s : s + m], taps[:co, :m])  # outer[0] is 0
                    for t, off in enumerate(outer[1:], 1):
                        acc[:, s : s + m] += taps[t * co : (t + 1) * co, off : off + m]
                else:
                    np.matmul(w[g, 0], cols[:, :m], out=acc[:, s : s + m])
                    for t, off in enumerate(outer[1:], 1):
                        np.matmul(w[g, t], cols[:, off : off + m], out=taps[:, :m])
                        acc[:, s : s + m] += taps[:, :m]
            grid = acc.reshape((co, per_unit) + slab_shape)
            for j, (b, r) in enumerate(members):
                valid = min(rows, n_out[0] - r)
                out[(b, slice(g * co, (g + 1) * co), slice(r, r + valid)) + crop] = grid[
                    (slice(None), j, slice(0, valid)) + crop
                ]

    with _blas.limit(1):
        run_parallel([lambda k=k: share(k) for k in range(min(workers, len(units)))])
    return out


def _depthwise(x, pads, weight, geom, dtype, workers):
    """Depthwise correlation (``C_in == groups``, any multiplier): every tap one vector op.

    On the flat padded image (see the module docstring) each tap is one contiguous
    multiply-add, computed on the stride-1 grid with the padded row length; the padding
    columns and the samples between strides are dropped when the block is copied out (only
    1-tap kernels come here with a stride: the others are split into phases). Blocks of
    images (padded into a zeroed buffer, all taps, copy out) stay in cache and are shared
    among ``workers`` threads.
    """
    if compiled_depthwise(geom, dtype):
        return _depthwise_compiled(x, pads, weight, geom, dtype, workers)
    return _depthwise_numpy(x, pads, weight, geom, dtype, workers)


def _depthwise_numpy(x, pads, weight, geom, dtype, workers):
    """:func:`_depthwise` in numpy (complex data; the compiled loops absent or slower)."""
    x, pads = _split_pads(x, pads)
    B, G = x.shape[:2]
    m = geom.out_channels // G
    spatial, n_out = x.shape[2:], geom.out_shape
    grid = tuple((n - 1) * s + 1 for n, s in zip(n_out, geom.stride))  # stride-1 outputs
    # one spare row: the last taps read up to a row beyond the padded image
    padded = (geom.padded[0] + 1,) + geom.padded[1:]
    offsets = _tap_offsets(geom.kernel, geom.dilation, padded)
    length = grid[0] * math.prod(padded[1:])  # flat outputs computed per image
    images = x.reshape((B * G,) + spatial)
    taps = weight.reshape(G, m, -1).astype(dtype, copy=False)
    out = np.empty((B, geom.out_channels) + n_out, dtype)
    out_images = out.reshape((B * G, m) + n_out)
    per_image = (math.prod(padded) + 2 * length) * np.dtype(dtype).itemsize
    rows = max(1, min(DEPTHWISE_BLOCK // per_image, -(-B * G // workers)))
    blocks = [(r, min(r + rows, B * G)) for r in range(0, B * G, rows)]
    inside = (slice(None),) + tuple(slice(a, a + n) for (a, _), n in zip(pads, spatial))
    keep = (slice(None),) + tuple(slice(0, n, s) for n, s in zip(grid, geom.stride))

    def share(k):
        buf = np.zeros((rows,) + padded, dtype)  # the pads stay zero: only the inside is copied
        acc, tmp = np.empty((2, rows, length), dtype)
        for r0, r1 in blocks[k::workers]:
            n = r1 - r0
            buf[:n][inside] = images[r0:r1]
            flat, a, t = buf[:n].reshape(n, -1), acc[:n], tmp[:n]
            scale = taps[np.arange(r0, r1) % G]  # (n, m, taps)
            for j in range(m):
                np.multiply(flat[:, :length], scale[:, j, 0, np.newaxis], out=a)
                for i, off in enumerate(offsets[1:], 1):
                    np.multiply(flat[:, off : off + length], scale[:, j, i, np.newaxis], out=t)
                    a += t
                out_images[r0:r1, j] = a.reshape((n, grid[0]) + padded[1:])[keep]

    run_parallel([lambda k=k: share(k) for k in range(min(workers, len(blocks)))])
    return out


def _line_starts(shape, first, padded):
    """Flat offset, in a C-contiguous image of shape ``padded``, of the first sample of every
    line (last axis) of a ``shape`` block placed at ``first``."""
    row = [math.prod(padded[a + 1 :]) for a in range(len(padded))]
    starts = first[-1] + sum(
        (np.arange(n) + f).reshape((-1,) + (1,) * (len(shape) - 2 - a)) * r
        for a, (n, f, r) in enumerate(zip(shape[:-1], first[:-1], row[:-1]))
    )
    return np.ascontiguousarray(np.broadcast_to(starts, shape[:-1]), np.int64).reshape(-1)


def _depthwise_compiled(x, pads, weight, geom, dtype, workers):
    """Depthwise correlation of real images through the compiled loops, any stride.

    Each image is copied into a zeroed padded scratch image (a strided layer's split into its
    phases first, see :func:`_phase_layout`: each worker splits its block of images in cache);
    every output line (or pair of lines, where their taps share most samples) then keeps a
    block of samples in registers across all taps, so memory sees the image once and the
    output once, and only the outputs the stride keeps are computed. The images are shared
    among ``workers`` threads (the loops release the GIL); ``benchmarks/bench_levels.py``
    times them against the numpy loops at every instruction-set level.
    """
    x, pads = _split_pads(x, pads)
    B, G = x.shape[:2]
    m = geom.out_channels // G
    if x.size == 0:  # a negative pad cropped all of it: only padding is read
        return np.zeros((B, geom.out_channels) + geom.out_shape, dtype)
    images = x.reshape((B * G,) + x.shape[2:])
    split: Callable[[int, int], np.ndarray] | None = None
    if any(s > 1 for s in geom.stride):
        shape, windows, taps, rows, lines, padded = _phase_layout(x.shape[2:], pads, geom)

        def split(a: int, b: int) -> np.ndarray:  # images a..b as the loop reads them
            phases = np.zeros((b - a,) + shape, dtype)
            for target, window in windows:
                phases[target] = images[(slice(a, b),) + window]
            return phases

    else:
        taps, rows, lines, padded = _flat_layout(x.shape[2:], pads, geom)
    w = np.ascontiguousarray(weight.reshape(G, m, -1), dtype)
    out = np.empty((B, geom.out_channels) + geom.out_shape, dtype)
    length = geom.out_shape[-1]
    _run_depthwise(images, out, w, taps, rows, lines, padded, length, workers, split=split)
    return out


@functools.lru_cache(maxsize=64)
def _flat_layout(spatial, pads, geom):
    """``(taps, rows, lines, padded)`` of :func:`_depthwise_compiled` at stride 1 for images
    of shape ``spatial`` and their non-negative ``pads``: tap offsets, input rows and output
    lines in the flat padded image, and its size."""
    padded = geom.padded
    taps = np.array(_tap_offsets(geom.kernel, geom.dilation, padded), np.int64)
    rows = _line_starts(spatial, [a for a, _ in pads], padded)
    lines = _line_starts(geom.out_shape, [0] * geom.ndim, padded)
    return taps, rows, lines, math.prod(padded)


def _run_depthwise(images, out, w, taps, rows, lines, padded, length, workers, *phases, split=None):
    """The compiled depthwise loop on ``images`` (B·G, *spatial) shared among ``workers``
    threads (the loop releases the GIL); ``phases``: its optional interleaving arguments;
    ``split``: a function of ``(a, b)`` laying images ``a..b`` out as the loop reads them.

    ``images`` may be any view of any real dtype (a strided layer's input phase): each
    worker then copies (or splits) blocks of them into the loop's dtype, which stay in cache
    for the loop (one copy of the whole view before the loop ran single-threaded and from
    memory: the phases of a stride-2 depthwise 7 × 7 layer ran 2.6x slower than on a
    contiguous copy; ``benchmarks/RESULTS.md``)."""
    out_images = out.reshape((images.shape[0], -1))
    workers = min(workers, images.shape[0])
    bounds = [images.shape[0] * k // workers for k in range(workers + 1)]
    ready = split is None and images.flags.c_contiguous and images.dtype == out.dtype
    block = images.shape[0] if ready else max(1, DEPTHWISE_BLOCK // (images[0].size * out.itemsize))
    if split is None:
        split = (
            (lambda a, b: images[a:b])
            if ready
            else (lambda a, b: np.ascontiguousarray(images[a:b], out.dtype))
        )

    def share(k):
        for a in range(bounds[k], bounds[k + 1], block):
            b = min(a + block, bounds[k + 1])
            _compiled.loops.depthwise(
                split(a, b),
                out_images[a:b],
                w,
                taps,
                rows,
                lines,
                out.itemsize,
                a,
                w.shape[0],
                padded,
                length,
                *phases,
            )

    run_parallel([lambda k=k: share(k) for k in range(workers)])


def interleaved_taps(parts, dtype):
    """``(geometry, shift, offsets, union)`` of :func:`transposed_depthwise` for these output
    phases: a phase's geometry, where the input sits in the scratch image, each phase's tap
    offsets and their union. None where that loop does not apply."""
    geom = next((g for *_, g in parts if g is not None), None)
    if (
        geom is None
        or geom.ndim != 1
        or geom.in_channels != geom.groups
        or geom.is_complex
        or not _compiled.use("depthwise", dtype)
    ):
        return None
    shift = max(0, *(pads[0][0] for *_, pads, g in parts if g is not None))
    offsets = [  # of each phase's taps, from the scratch image's start (x placed at `shift`)
        [shift - pads[0][0] + q * g.dilation[0] for q in range(len(taps[0]))] if g else []
        for _, taps, pads, g in parts
    ]
    union = sorted(set().union(*offsets))
    if len(union) * len(parts) > 1.5 * sum(map(len, offsets)):
        return None
    return geom, shift, offsets, union


def transposed_depthwise(x, weight, parts, out_length, dtype, workers):
    """A depthwise transposed 1-D layer by all its output phases in one pass of the compiled
    loop, written interleaved (see ``_simd.c``), or None where that does not apply.

    Phase r of output channel o is channel ``o·P + r`` of one depthwise layer whose taps are
    the union of the P phases' taps (a zero weight where a phase has no such tap). Then the
    output is written once, in order, instead of once per phase by strided copies.
    ``parts``: ``(phase, taps, pads, geometry)`` per phase, as
    ``SpectralConvTranspose._output_phases`` makes them; ``weight`` (C_out, 1, K) the
    forward taps. None for complex data, without the compiled loops, or where the union holds
    more than 1.5 times the phases' own taps (a dilation that shares no offsets).
    """
    interleaved = interleaved_taps(parts, dtype)
    if interleaved is None:
        return None
    geom, shift, offsets, union = interleaved
    B, G = x.shape[:2]
    P, m = len(parts), geom.out_channels // G
    w = np.zeros((G, m, P, len(union)), dtype)
    column = {o: u for u, o in enumerate(union)}
    for r, ((_, taps, _, _), where) in enumerate(zip(parts, offsets)):
        w[:, :, r, [column[o] for o in where]] = weight[:, 0, evenly_spaced(taps[0])].reshape(
            G, m, -1
        )
    length = -(-out_length // P)  # samples of phase 0, the longest
    padded = max(shift + x.shape[2], union[-1] + length)
    out = np.empty((B, G * m, out_length), dtype)
    images = x.reshape(B * G, -1)
    rows, lines = np.array([shift], np.int64), np.zeros(1, np.int64)
    taps = np.array(union, np.int64)
    _run_depthwise(
        images,
        out,
        w.reshape(G, m * P, -1),
        taps,
        rows,
        lines,
        padded,
        length,
        workers,
        P,
        out_length,
    )
    return out
