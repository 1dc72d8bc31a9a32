"""Measure the per-operation times of specconv's cost model on this machine.

    python benchmarks/calibrate.py

Prints each constant of ``specconv/_costmodel.py`` as measured here next to the value in the
code. Each is a median over repeats of a kernel shaped like the engine's own work, with the
thread count specconv uses (``SPECCONV_NUM_THREADS``). Paste them into ``_costmodel.py`` when
moving to a different kind of machine; only their ratios steer the choice.
"""

from __future__ import annotations

import math
import time
from types import SimpleNamespace

import numpy as np

import specconv
from specconv import _compiled, _costmodel, _engine, fft
from specconv._blas import limit as _blas_limit
from specconv._direct import _depthwise, _pointwise, _slabs
from specconv._geometry import Geometry


def median_seconds(fn, repeat=7):
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def compiled_over_blas(rng, B=4, T=13, c=64, fft_shape=(12, 36)):
    """Time of the engine's compiled product on one chunk (complex128, FFTW's layout) over
    that of its BLAS matmul with the transposes around it (``_ChunkWorker.matmul``, either
    way, with the kernel spectra ``kernel_spectra`` lays out for each)."""
    geom = Geometry(B, c, c, 1, (3, 3), (1, 1), (1, 1), fft_shape, False)
    tiling = _engine.Tiling.make(geom, fft_shape)
    weight = rng.standard_normal((c, c, 3, 3))
    F = math.prod(_engine.spectral_shape(fft_shape, False))
    x = rng.standard_normal((B, 1, c, T, F)) + 1j * rng.standard_normal((B, 1, c, T, F))
    block = min(_engine.FREQ_BLOCK, F)
    chunk = SimpleNamespace(xflat=x, yflat=np.empty_like(x), compiled=True,
                            xblock=np.empty((block, 1, B, T, c), complex),
                            yblock=np.empty((block, 1, B, T, c), complex))
    laid_out = _engine.kernel_spectra(weight, geom, tiling, np.float64)
    compiled = median_seconds(
        lambda: _engine._ChunkWorker.matmul(chunk, laid_out, (chunk,), 0, F))
    loops, _compiled.loops = _compiled.loops, None
    try:
        by_frequency = _engine.kernel_spectra(weight, geom, tiling, np.float64)
    finally:
        _compiled.loops = loops
    chunk.compiled = False
    with _blas_limit(1):
        return compiled / median_seconds(
            lambda: _engine._ChunkWorker.matmul(chunk, by_frequency, (chunk,), 0, F))


def main():
    rng = np.random.default_rng(0)
    threads = specconv.get_num_threads()
    measured = {}

    L, howmany = 4096, 1024
    x = fft.aligned_empty((howmany, L), np.float64)
    x[:] = rng.standard_normal(x.shape)
    X = fft.aligned_empty((howmany, L // 2 + 1), np.complex128)
    measured["T_FFT"] = median_seconds(lambda: fft.execute(x, X, (1,), threads=threads)) / (
        howmany * L * math.log2(L)
    )

    # batches of 2-D complex tiles: strided lengths of two passes (28, 40) against one codelet (32)
    def rate(n, m=72, batch=128):
        tiles = fft.aligned_empty((batch, n, m), np.complex128)
        tiles[:] = rng.standard_normal(tiles.shape)
        spectra = fft.aligned_empty(tiles.shape, np.complex128)
        seconds = median_seconds(lambda: fft.execute(tiles, spectra, (1, 2), threads=threads))
        return seconds / (batch * n * m * math.log2(n * m))

    one_codelet = rate(32)
    measured["STRIDED_PASS"] = float(np.mean(
        [(rate(n) / one_codelet - 1) * math.log2(n * 72) for n in (28, 40)]))

    src = rng.standard_normal((64, 300_000))
    dst = np.empty((64, 40, 4096))
    windows = np.lib.stride_tricks.sliding_window_view(src, 4096, axis=-1)[:, : 40 * 3000 : 3000]
    measured["T_COPY"] = median_seconds(lambda: np.copyto(dst, windows)) / dst.size

    F, cols, c = 256, 32, 64
    a = rng.standard_normal((F, 1, cols, c)) + 0j
    h = rng.standard_normal((F, 1, c, c)) + 0j
    out = np.empty((F, 1, cols, c), complex)
    with _blas_limit(1):
        t = median_seconds(lambda: np.matmul(a, h, out=out))
    measured["T_CMAC_MATMUL"] = t / (F * cols * c * c) / threads
    if _compiled.loops is not None:
        measured["T_CMAC_COMPILED"] = measured["T_CMAC_MATMUL"] * compiled_over_blas(rng)

    hx = rng.standard_normal((64, 1, 2049)) + 0j
    xs = rng.standard_normal((1, 64, 30, 2049)) + 0j
    ys = np.empty((64, 64, 30, 2049)[1:], complex)
    measured["T_CMAC_ELEMENTWISE"] = median_seconds(
        lambda: np.multiply(hx[:, :, None], xs[0][:, None], out=ys[:, None])
    ) / ys.size / threads

    # a 1 x 1 kernel through the direct method itself (one GEMM, rows shared by the workers)
    w = rng.standard_normal((64, 64, 1))
    xt = rng.standard_normal((1, 64, 50_000))
    geom = Geometry(1, 64, 64, 1, (1,), (1,), (1,), (50_000,), False)
    measured["T_MAC_DIRECT"] = median_seconds(
        lambda: _pointwise(xt, ((0, 0),), w, geom, np.float64, threads)
    ) / (64 * 64 * 50_000)

    # depthwise layers on 8 x 64 images of 128^2 through the direct method itself: the numpy
    # loops with 7 x 7 taps; the compiled loops with 1 x 1 taps (copies) and 15 x 15 (taps)
    def depthwise_seconds(k):
        images = rng.standard_normal((8, 64, 128, 128))
        geom = Geometry(8, 64, 64, 64, (k, k), (1, 1), (1, 1), (128 + k - 1,) * 2, False)
        taps = rng.standard_normal((64, 1, k, k))
        pads = ((k // 2, k // 2),) * 2
        return median_seconds(lambda: _depthwise(images, pads, taps, geom, np.float64, threads))

    outputs = 8 * 64 * 128 * 128
    if _compiled.loops is not None:
        measured["T_COMPILED_SAMPLE"] = depthwise_seconds(1) / outputs
        measured["T_COMPILED_TAP"] = (
            depthwise_seconds(15) / outputs - measured["T_COMPILED_SAMPLE"]) / 15**2
    compiled, _compiled.loops = _compiled.loops, None
    try:
        grid = outputs // 128 * (128 + 6)  # on the padded row length
        measured["T_DEPTHWISE_TAP"] = depthwise_seconds(7) / (grid * 7 * 7)
    finally:
        _compiled.loops = compiled

    # the direct method's slabs, each constant from a layer its term dominates, the others
    # taken as measured (GEMMs), or as in the code
    def slab_seconds(batch, channels, groups, size):
        geom = Geometry(batch, channels, channels, groups, (3, 3), (1, 1), (1, 1),
                        (size + 2,) * 2, False)
        x = rng.standard_normal((batch, channels, size, size))
        w = rng.standard_normal((channels, channels // groups, 3, 3))
        seconds = median_seconds(lambda: _slabs(x, ((1, 1),) * 2, w, geom, np.float64, threads))
        return seconds, _costmodel.slab_work(geom, 8, threads)[:3]

    seconds, (macs, samples, calls) = slab_seconds(4, 64, 1, 128)
    measured["T_MAC_SLAB"] = (seconds - samples * _costmodel.T_SLAB_SAMPLE
                              - calls * _costmodel.T_CALL) / macs
    seconds, (macs, samples, calls) = slab_seconds(4, 64, 16, 128)
    measured["T_SLAB_SAMPLE"] = (seconds - macs * measured["T_MAC_SLAB"]
                                 - calls * _costmodel.T_CALL) / samples
    seconds, (macs, samples, calls) = slab_seconds(256, 8, 1, 6)
    measured["T_CALL"] = (seconds - macs * measured["T_MAC_SLAB"]
                          - samples * measured["T_SLAB_SAMPLE"]) / calls

    print(f"threads: {threads}")
    print(f"{'constant':20s} {'measured':>10s} {'in code':>10s}")
    for name, value in measured.items():
        print(f"{name:20s} {value:10.2e} {getattr(_costmodel, name):10.2e}")


if __name__ == "__main__":
    main()
