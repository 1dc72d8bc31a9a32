"""The "ideal" line: the transforms and the per-frequency product specconv's algorithm cannot avoid.

For a tile shape L (overlap-save blocks; the whole padded signal is the one-tile case) with T
tiles per signal and B signals (cols = B * T), the ideal is, each part planned and timed alone:

- forward: cols * C_in planned FFTW transforms of shape L (rfftn for real data, fftn for complex);
- product: per frequency, (C_out x C_in/groups) kernel matrices times (C_in/groups x cols)
  spectra, block-diagonal over groups: ``np.matmul`` over (F, G, m, cin_g) @ (F, G, cin_g, cols);
  depthwise (cin_g = 1) is an elementwise product, frequencies last;
- inverse: cols * C_out planned inverse transforms.

No padding, cropping, transposes, kernel transforms or scaling are counted. The tile shape is
specconv's own when it exposes one (see ``specconv_tile``), else chosen by the rough cost model
``model_tile`` below, among fast lengths from about twice the kernel up to the whole padded
signal (a whole-signal 64 x 64 layer on 300k samples would need 10 GB of kernel spectra). ``run`` is meant to execute in a fresh subprocess so that FFTW_MEASURE
wisdom gathered here never reaches specconv's plans or its wisdom file.
"""

from __future__ import annotations

import itertools
import math
import time

import numpy as np


def _smooth(limit):
    out = []
    for a in itertools.count():
        p2 = 2**a
        if p2 > limit:
            break
        for b in itertools.count():
            p3 = p2 * 3**b
            if p3 > limit:
                break
            for c in itertools.count():
                p5 = p3 * 5**c
                if p5 > limit:
                    break
                p7 = p5
                while p7 <= limit:
                    out.append(p7)
                    p7 *= 7
    return np.array(sorted(out))


_SMOOTH = _smooth(2**26)


def next_fast_len(n):
    """Smallest 2-3-5-7-smooth integer >= n (FFTW's fast sizes)."""
    return int(_SMOOTH[np.searchsorted(_SMOOTH, n)])


def padded_lengths(wl):
    return [n + lo + hi for n, (lo, hi) in zip(wl.spatial, wl.pads())]


def tiles_per_axis(wl, tile):
    """Overlap-save tiles along each axis: a tile of length L yields L - K + 1 outputs."""
    return [
        1 if L >= n else math.ceil(o / (L - k + 1))
        for L, n, o, k in zip(tile, padded_lengths(wl), wl.out_spatial(), wl.kernel)
    ]


def _n_freq(tile, is_complex):
    return math.prod(tile) if is_complex else math.prod(tile[:-1]) * (tile[-1] // 2 + 1)


def footprint(wl, tile, itemsize):
    """Bytes the ideal allocates: kernel spectra plus time and frequency arrays of every tile."""
    csize = itemsize if wl.is_complex else 2 * itemsize
    cols = wl.batch * math.prod(tiles_per_axis(wl, tile))
    F = _n_freq(tile, wl.is_complex)
    kernel = F * wl.c_out * wl.cin_per_group * csize
    per_channel = math.prod(tile) * itemsize + F * csize
    return kernel + 2 * cols * (wl.c_in + wl.c_out) * per_channel  # x2: the matmul-layout copies


def model_seconds(wl, tile, itemsize):
    """A deliberately rough time model (FFT flops, product flops, bytes moved) to pick a tile."""
    cols = wl.batch * math.prod(tiles_per_axis(wl, tile))
    N, F = math.prod(tile), _n_freq(tile, wl.is_complex)
    fft = (
        cols * (wl.c_in + wl.c_out) * 2.5 * N * math.log2(max(N, 2)) * (1 if wl.is_complex else 0.5)
    )
    product = cols * F * wl.c_out * wl.cin_per_group * 8
    moved = (
        F * wl.c_out * wl.cin_per_group * 2 * itemsize
        + 4 * cols * (wl.c_in + wl.c_out) * N * itemsize
    )
    return fft / 8e9 + product / 4e10 + moved / 8e9


def whole_tile(wl):
    return tuple(next_fast_len(n) for n in padded_lengths(wl))


def model_tile(wl, itemsize, budget_bytes):
    """The tile minimising ``model_seconds`` among fast lengths that fit ``budget_bytes``."""
    per_axis = []
    for n, k in zip(padded_lengths(wl), wl.kernel):
        hi = next_fast_len(n)
        lo = min(hi, next_fast_len(max(2 * k - 1, 8)))
        cands = [int(L) for L in _SMOOTH[(_SMOOTH >= lo) & (_SMOOTH <= hi)]]
        if len(cands) > 24:  # keep the search small: a geometric subset plus the whole length
            idx = np.unique(np.geomspace(1, len(cands), 24).astype(int) - 1)
            cands = sorted({cands[i] for i in idx} | {hi})
        per_axis.append(cands)
    best = None
    for tile in itertools.product(*per_axis):
        if footprint(wl, tile, itemsize) > budget_bytes:
            continue
        cost = model_seconds(wl, tile, itemsize)
        if best is None or cost < best[0]:
            best = (cost, tile)
    return None if best is None else best[1]


def specconv_tile(wl, x, w):
    """Ask specconv which FFT tile shape its "fft" method uses here: (tile or None, how we know).

    Uses the engine's private planning interface (``_geometry.Geometry`` and
    ``_costmodel.choose``), the same call ``SpectralConv`` makes; adapt this one function
    when that interface changes.
    """
    try:
        from specconv import _costmodel, _geometry, fft
    except ImportError as exc:
        return None, f"specconv planning not importable ({exc})"
    try:
        d = wl.ndim
        padded = tuple(n + lo + hi for n, (lo, hi) in zip(wl.spatial, wl.pads()))
        geom = _geometry.Geometry(
            wl.batch,
            wl.c_in,
            wl.c_out,
            wl.groups,
            wl.kernel,
            (1,) * d,
            (1,) * d,
            padded,
            wl.is_complex,
        )
        itemsize = np.result_type(x, w).itemsize
        choice = _costmodel.choose(geom, "fft", itemsize, fft.get_num_threads())
        tile = tuple(int(n) for n in choice.tiling.fft_shape)
    except Exception as exc:  # a changed private interface must not stop the benchmark
        return None, f"specconv planning interface changed ({type(exc).__name__}: {exc})"
    if list(choice.tiling.tiles) != tiles_per_axis(wl, tile):
        return (
            None,
            f"specconv tiles {choice.tiling.tiles} != harness count {tiles_per_axis(wl, tile)}",
        )
    return tile, "specconv's own tiling (_costmodel.choose)"


def choose_tile(wl, x, w, budget_bytes):
    """specconv's tile if it says; else ``model_tile`` (the whole signal is one candidate)."""
    tile, why = specconv_tile(wl, x, w)
    if tile is not None:
        return tile, why
    itemsize = np.dtype(np.result_type(x, w)).itemsize // (2 if wl.is_complex else 1)
    return model_tile(wl, itemsize, budget_bytes), f"harness cost model ({why})"


def _median_time(fn, repeat, before=None):
    times = []
    for _ in range(repeat + 1):  # the first run is a warm-up
        if before is not None:
            before()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times[1:]))


def run(wl, real_name, tile, repeat, threads, plan_limit):
    """Plan and time the ideal's three parts; returns a dict of seconds and sizes."""
    import pyfftw

    real = np.dtype(real_name)
    cplx = np.result_type(real, np.complex64)
    tile = tuple(tile)
    d = wl.ndim
    axes = tuple(range(1, d + 1))
    cols = wl.batch * math.prod(tiles_per_axis(wl, tile))
    G, m, cg = wl.groups, wl.out_per_group, wl.cin_per_group
    F = _n_freq(tile, wl.is_complex)
    rng = np.random.default_rng(0)
    # pyfftw.FFTW rather than pyfftw.builders: only the former takes a planning time limit.
    # Whole-signal FFTW_MEASURE planning can take minutes (PERFORMANCE_NOTES.md).
    effort = (
        dict(flags=("FFTW_MEASURE",), threads=threads, planning_timelimit=plan_limit)
        if plan_limit > 0
        else dict(flags=("FFTW_ESTIMATE",), threads=threads)
    )
    freq_tile = tile if wl.is_complex else (*tile[:-1], tile[-1] // 2 + 1)
    time_dtype = cplx if wl.is_complex else real

    t0 = time.perf_counter()
    src = pyfftw.empty_aligned((cols * wl.c_in, *tile), dtype=time_dtype)
    src_spec = pyfftw.empty_aligned((cols * wl.c_in, *freq_tile), dtype=cplx)
    fwd = pyfftw.FFTW(src, src_spec, axes=axes, direction="FFTW_FORWARD", **effort)
    spec = pyfftw.empty_aligned((cols * wl.c_out, *freq_tile), dtype=cplx)
    dst = pyfftw.empty_aligned((cols * wl.c_out, *tile), dtype=time_dtype)
    inv = pyfftw.FFTW(spec, dst, axes=axes, direction="FFTW_BACKWARD", **effort)
    plan_seconds = time.perf_counter() - t0

    # FFTW_MEASURE scribbled over the arrays: fill them after planning. c2r transforms destroy
    # their input, so the inverse input is restored (untimed) before every run.
    src[...] = rng.standard_normal(src.shape)
    saved = np.empty(spec.shape, dtype=cplx)
    saved.real = rng.standard_normal(saved.shape)
    saved.imag = rng.standard_normal(saved.shape)
    t_fwd = _median_time(fwd.execute, repeat)

    def restore(spec=spec, saved=saved):  # bound now: the names are deleted below
        np.copyto(spec, saved)

    t_inv = _median_time(inv.execute, repeat, before=restore)
    del fwd, inv, src, src_spec, spec, dst, saved

    if cg == 1:  # depthwise: elementwise, frequencies last (FFTW's native layout)
        K = np.full((G, m, 1, F), 0.5 + 0.25j, dtype=cplx)
        X = np.full((G, 1, cols, F), 1.0 - 0.5j, dtype=cplx)
        Y = np.empty((G, m, cols, F), dtype=cplx)
        t_mm = _median_time(lambda: np.multiply(K, X, out=Y), repeat)
    else:
        K = np.full((F, G, m, cg), 0.5 + 0.25j, dtype=cplx)
        X = np.full((F, G, cg, cols), 1.0 - 0.5j, dtype=cplx)
        Y = np.empty((F, G, m, cols), dtype=cplx)
        t_mm = _median_time(lambda: np.matmul(K, X, out=Y), repeat)
    return dict(
        fwd=t_fwd,
        mm=t_mm,
        inv=t_inv,
        total=t_fwd + t_mm + t_inv,
        tile=list(tile),
        cols=cols,
        n_freq=F,
        plan_seconds=plan_seconds,
        planner=effort["flags"][0],
    )
