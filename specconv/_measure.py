"""Measuring the cost model's constants on the machine at hand (:mod:`specconv._calibration`
stores them).

Small kernels shaped like the engine's own work are timed -- a batch of real FFTs, a chunk's
own overhead, small tiles, the tile copies, the per-frequency product (BLAS, elementwise and
compiled), the kernel spectra, the direct method's 1 × 1 GEMM, depthwise loops and slabs, a
tiny call of each method -- and the model's constants fitted to them through its own cost
functions. This module sits above the methods it times; importing it registers
:func:`measure` with the store.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import time
from types import SimpleNamespace
from typing import Any

import numpy as np

from . import _calibration, _compiled, _correlate, _costmodel, _direct, _engine, fft
from ._blas import limit as blas_limit
from ._geometry import Geometry

logger = logging.getLogger("specconv")


#: ``T_ROW`` is a residual (a layer's time less the model's price of the rest of it): that
#: layer's time varies between processes on one machine by as much as the residual itself, so
#: unbounded it can land anywhere in ``MAX_FACTOR``'s range (at its floor small tiles look free;
#: ``benchmarks/RESULTS.md``, session 17). It stays within this factor of the shipped value.
RESIDUAL_FACTOR = 4.0


def _seconds(fn, repeat=5):
    """The least seconds of ``repeat`` calls of ``fn()`` after a warm-up call (which plans,
    allocates, caches): other processes on the machine only ever add time, and every constant
    is measured alike, so their ratios, which steer the choice, hold."""
    t0 = time.perf_counter()
    fn()
    if time.perf_counter() - t0 > 0.05:  # long enough to be steady: keep the budget
        repeat = 2
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _coefficients(cost, names, zero):
    """The coefficients of ``cost(constants)`` (linear) in the constants ``names``."""
    return [cost(dataclasses.replace(zero, **{n: 1.0})) for n in names]


def measure(prec, threads):
    """Measure the constants of precision ``prec`` ("single" or "double") on ``threads``
    threads, and which compiled loops lose to numpy/BLAS.

    Returns ``{"constants": {name: seconds}, "losing": [[loop, dtype name], ...], "timings":
    {kernel: seconds}, "seconds": total}``. Constants it does not time are the shipped ones
    scaled like the nearest measured one (spectrum passes like copies) or kept (the
    out-of-core and streaming overheads, the strided-pass factor). Its transforms run on
    estimated plans (:func:`specconv.fft.estimating`): measuring them would spend the budget
    (0.1 s a plan on an empty cache) on plans that depend on how far the time-limited
    measuring got, and that would then serve the user's calls.
    """
    with fft.estimating():
        return _timed(prec, threads)


def _timed(prec, threads):
    start = time.perf_counter()
    real = np.dtype(np.float32 if prec == "single" else np.float64)
    cplx = np.result_type(real, np.complex64)
    shipped = _costmodel.SHIPPED[prec]
    zero = dataclasses.replace(shipped, **{f.name: 0.0 for f in dataclasses.fields(shipped)})
    rng = np.random.default_rng(0)
    got, timings, losing = {}, {}, []

    def over_budget():
        return time.perf_counter() - start > _calibration.BUDGET

    # a batch of real transforms, as the engine's tiles (a chunk larger than the caches)
    L, howmany = 2048, 1024
    with fft.borrow((howmany, L), real, (howmany, L // 2 + 1), cplx, (1,), threads=threads) as plan:
        plan.input_array[:] = rng.standard_normal(plan.input_array.shape)
        t = timings["fft"] = _seconds(plan.execute)
    got["T_FFT"] = t / (howmany * L * math.log2(L))

    # gathering overlapping tiles from a signal larger than the caches (any values do)
    src = np.full((32, 150_000), 0.5, real)
    dst = np.empty((32, 40, 2048), real)
    windows = np.lib.stride_tricks.sliding_window_view(src, 2048, axis=-1)[:, : 40 * 3600 : 3600]
    t = timings["copy"] = _seconds(lambda: np.copyto(dst, windows))
    got["T_COPY"] = t / dst.size

    # the per-frequency product: BLAS matmul (one thread per worker), elementwise
    F, cols, c = 128, 32, 64
    a = (rng.standard_normal((F, 1, cols, c)) + 0j).astype(cplx)
    h = (rng.standard_normal((F, 1, c, c)) + 0j).astype(cplx)
    out = np.empty((F, 1, cols, c), cplx)
    with blas_limit(1):
        t = timings["matmul"] = _seconds(lambda: np.matmul(a, h, out=out))
    got["T_CMAC_MATMUL"] = t / (F * cols * c * c) / threads
    hx = (rng.standard_normal((32, 1, 1025)) + 0j).astype(cplx)
    xs = (rng.standard_normal((32, 16, 1025)) + 0j).astype(cplx)
    ys = np.empty((32, 16, 1025), cplx)
    t = timings["elementwise"] = _seconds(lambda: np.multiply(hx, xs, out=ys))
    got["T_CMAC_ELEMENTWISE"] = t / ys.size / threads

    if _compiled.loops is not None:
        ratio = _compiled_over_blas(rng, cplx, timings)
        got["T_CMAC_COMPILED"] = got["T_CMAC_MATMUL"] * ratio
        if ratio > 1:
            losing.append(["product", cplx.name])

    overheads = _call_overheads(rng, real, threads, timings)
    got["T_CHUNK"], got["T_FFT_CALL"], got["T_DIRECT_CALL"] = overheads
    row = _row_overhead(rng, real, threads, timings, dataclasses.replace(shipped, **got))
    got["T_ROW"] = min(max(row, shipped.T_ROW / RESIDUAL_FACTOR), shipped.T_ROW * RESIDUAL_FACTOR)

    # the direct method: a 1 x 1 kernel (one GEMM)
    w = rng.standard_normal((32, 32, 1)).astype(real)
    xt = rng.standard_normal((1, 32, 20_000)).astype(real)
    geom = Geometry(1, 32, 32, 1, (1,), (1,), (1,), (20_000,), False)
    t = timings["pointwise"] = _seconds(
        lambda: _direct._pointwise(xt, ((0, 0),), w, geom, real, threads)
    )
    got["T_MAC_DIRECT"] = t / (32 * 32 * 20_000)

    # depthwise layers: the numpy loops (7 x 7), the compiled ones (1 x 1 and 7 x 7)
    images = rng.standard_normal((4, 32, 96, 96)).astype(real)

    def depthwise(k, fn):
        geom = Geometry(4, 32, 32, 32, (k, k), (1, 1), (1, 1), (96 + k - 1,) * 2, False)
        taps = rng.standard_normal((32, 1, k, k)).astype(real)
        pads = ((k // 2, k // 2),) * 2
        return geom, _seconds(lambda: fn(images, pads, taps, geom, real, threads))

    with_copies = dataclasses.replace(zero, T_COPY=got["T_COPY"])
    geom, t = depthwise(7, _direct._depthwise_numpy)
    timings["depthwise numpy 7x7"] = t
    tap = _costmodel.numpy_depthwise_cost(geom, dataclasses.replace(zero, T_DEPTHWISE_TAP=1.0))
    got["T_DEPTHWISE_TAP"] = (
        max(t - _costmodel.numpy_depthwise_cost(geom, with_copies), t / 2) / tap
    )
    if _compiled.loops is not None:
        geom1, t1 = depthwise(1, _direct._depthwise_compiled)
        geom7, t7 = depthwise(7, _direct._depthwise_compiled)
        timings["depthwise compiled 1x1"], timings["depthwise compiled 7x7"] = t1, t7
        names = ("T_COMPILED_TAP", "T_COMPILED_SAMPLE")
        a1 = _coefficients(
            lambda c: _costmodel.compiled_depthwise_cost(geom1, threads, c), names, zero
        )
        a7 = _coefficients(
            lambda c: _costmodel.compiled_depthwise_cost(geom7, threads, c), names, zero
        )
        got["T_COMPILED_SAMPLE"] = t1 / (a1[1] + a1[0])
        got["T_COMPILED_TAP"] = max(t7 - a7[1] * got["T_COMPILED_SAMPLE"], t7 / 4) / a7[0]
        if t7 > t:
            losing.append(["depthwise", real.name])

    if not over_budget():
        _fit_slabs(rng, real, threads, zero, got, timings)

    # the kernel spectra of a 64 x 64 x 3 x 3 layer on 16 x 16 tiles
    geom = Geometry(1, 64, 64, 1, (3, 3), (1, 1), (1, 1), (18, 18), False)
    tiling = _engine.Tiling.make(geom, (16, 16))
    w = rng.standard_normal((64, 64, 3, 3)).astype(real)
    t = timings["kernel spectra"] = _seconds(lambda: _engine.kernel_spectra(w, geom, tiling, real))
    got["T_SPECTRA"] = t / (64 * 64 * 16 * 16)

    # not timed: passes over spectra go as copies do; the out-of-core and streaming overheads
    # and FFTW's strided passes are kept
    scale = got["T_COPY"] / shipped.T_COPY
    got["T_FOLD"] = shipped.T_FOLD * scale
    got["T_SPECTRA_PASS"] = shipped.T_SPECTRA_PASS * scale
    for name, value in got.items():
        ref = getattr(shipped, name)
        bound = _calibration.MAX_FACTOR
        got[name] = float(min(max(value, ref / bound), ref * bound))
    seconds = time.perf_counter() - start
    logger.info("calibrated %s precision on %d threads in %.2f s", prec, threads, seconds)
    return {"constants": got, "losing": losing, "timings": timings, "seconds": seconds}


def _compiled_over_blas(rng, cplx, timings, B=4, T=8, c=64, fft_shape=(12, 36)):
    """Time of the engine's compiled product on one chunk (FFTW's layout) over that of its
    BLAS matmul with the transposes around it (``_ChunkWorker.matmul`` either way, with
    kernel spectra laid out for each), one thread."""

    F = math.prod(_engine.spectral_shape(fft_shape, False))
    x = rng.standard_normal((B, 1, c, T, F)) + 1j * rng.standard_normal((B, 1, c, T, F))
    x = x.astype(cplx)
    block = min(_engine.FREQ_BLOCK, F)
    # Any: a stand-in for an _engine._ChunkWorker, with the attributes its matmul reads
    chunk: Any = SimpleNamespace(
        xflat=x,
        yflat=np.empty_like(x),
        compiled=True,
        xblock=np.empty((block, 1, B, T, c), cplx),
        yblock=np.empty((block, 1, B, T, c), cplx),
    )
    lanes = _engine.product_lanes(cplx.itemsize)
    blocks = -(-F // lanes)
    laid_out = rng.standard_normal((1, blocks, c, c, lanes)).astype(cplx)
    by_frequency = rng.standard_normal((F, 1, c, c)).astype(cplx)
    compiled = _seconds(lambda: _engine._ChunkWorker.matmul(chunk, laid_out, (chunk,), 0, F))
    chunk.compiled = False
    with blas_limit(1):
        blas = _seconds(lambda: _engine._ChunkWorker.matmul(chunk, by_frequency, (chunk,), 0, F))
    timings["product compiled"], timings["product blas"] = compiled, blas
    return compiled / blas


def _call_overheads(rng, real, threads, timings, tiles=64):
    """``(T_CHUNK, T_FFT_CALL, T_DIRECT_CALL)``: what the engine spends per chunk beyond its
    work (a tiny layer's ``tiles`` tiles of 64 samples as that many chunks and as one), and
    what a call of each method costs whatever its size (a 2-channel depthwise layer of 64
    samples through the whole correlation, choice given)."""
    geom = Geometry(1, 1, 1, 1, (3,), (1,), (1,), (62 * tiles + 2,), False)
    x = rng.standard_normal((1, 1, geom.padded[0])).astype(real)
    spectra_of = functools.partial(_engine.kernel_spectra, rng.standard_normal((1, 1, 3)), geom)
    times = []
    for chunk in (1, tiles):
        tiling = _engine.Tiling.make(geom, (64,), chunk)
        spectra = spectra_of(tiling, real)
        times.append(
            _seconds(
                lambda t=tiling, h=spectra: _engine.correlate_fft(
                    x, ((0, 0),), h, geom, t, real, threads
                )
            )
        )
    timings[f"{tiles} chunks"], timings["1 chunk"] = times
    per_chunk = max(times[0] - times[1], 0.0) / (tiles - 1)

    tiny = Geometry(1, 2, 2, 2, (3,), (1,), (1,), (66,), False)
    x = rng.standard_normal((1, 2, 64)).astype(real)
    w = rng.standard_normal((2, 1, 3)).astype(real)
    calls = {}
    for choice in (
        _costmodel.Choice("fft", 0.0, _engine.Tiling.make(tiny, (66,))),
        _costmodel.Choice("direct", 0.0),
    ):
        cache = _correlate.SpectraCache()
        calls[choice.method] = timings[f"{choice.method} call"] = _seconds(
            lambda choice=choice, cache=cache: _correlate.correlate(
                x,
                w,
                tiny,
                ((1, 1),),
                real,
                method=choice.method,
                nan_policy="propagate",
                cache=cache,
                choice=choice,
            ),
            repeat=7,
        )
    return per_chunk, max(calls["fft"] - per_chunk, 0.0), calls["direct"]


def _row_overhead(rng, real, threads, timings, measured):
    """``T_ROW``: what a row of a tile costs beyond its points (a transform's and a strided
    copy's own overhead), from a 2-D dense layer on tiles of 10 x 18 against the model's price
    of it with the other ``measured`` constants. Rows of 2-D tiles are where it counts (a 1-D
    tile is one row, copied with all the others in one call): there it is a third of the
    layer's time, where on 1-D tiles it was within the layer's noise (benchmarks/RESULTS.md,
    session 18)."""
    geom = Geometry(1, 16, 16, 1, (3, 3), (1, 1), (1, 1), (130, 130), False)
    x = rng.standard_normal((1, 16) + geom.padded).astype(real)
    without = dataclasses.replace(measured, T_ROW=0.0)
    shape = (10, 18)
    seconds, tiling = _costmodel._fft_plan(geom, shape, True, real.itemsize, None, threads, without)
    spectra = _engine.kernel_spectra(rng.standard_normal((16, 16, 3, 3)), geom, tiling, real)
    t = timings["128 tiles of 10 x 18"] = _seconds(
        lambda: _engine.correlate_fft(x, ((0, 0), (0, 0)), spectra, geom, tiling, real, threads)
    )
    rows = math.prod(tiling.tiles) * shape[0] * (geom.in_channels + geom.out_channels)
    return max(t - seconds + measured.T_FFT_CALL, 0.0) / rows


def _fit_slabs(rng, real, threads, zero, got, timings):
    """``T_MAC_SLAB``, ``T_SLAB_SAMPLE`` and ``T_CALL`` from three layers on slabs, each
    dominated by one term (multiply-adds, copies, calls), fitted through the model itself."""
    import scipy.optimize

    names = ("T_MAC_SLAB", "T_SLAB_SAMPLE", "T_CALL")
    rows, seconds = [], []
    for batch, channels, groups, size in ((2, 64, 1, 64), (2, 64, 16, 64), (64, 8, 1, 6)):
        geom = Geometry(
            batch, channels, channels, groups, (3, 3), (1, 1), (1, 1), (size + 2,) * 2, False
        )
        x = rng.standard_normal((batch, channels, size, size)).astype(real)
        w = rng.standard_normal((channels, channels // groups, 3, 3)).astype(real)
        t = _seconds(
            lambda x=x, w=w, geom=geom: _direct._slabs(x, ((1, 1),) * 2, w, geom, real, threads)
        )
        timings[f"slabs {batch}x{channels}x{size}^2 groups {groups}"] = t
        rows.append(
            _coefficients(
                lambda c, geom=geom: _costmodel.slab_cost(geom, real.itemsize, threads, c),
                names,
                zero,
            )
        )
        seconds.append(t)
    # relative errors count alike: each row scaled by its time
    A = np.array(rows) / np.array(seconds)[:, None]
    scale = A.max(axis=0)
    fit, _ = scipy.optimize.nnls(A / scale, np.ones(len(seconds)))
    for name, value in zip(names, fit / scale):
        if value > 0:  # a term the fit could not see keeps its shipped value
            got[name] = float(value)


_calibration.measurer = measure
