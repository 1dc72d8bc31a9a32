"""How long a chunk is: the fastest chunk length whose working memory fits the budget.

The engine's own cost model and tiling, asked for one chunk with the kernel spectra cached,
give each candidate's bytes and modelled seconds (:func:`engine_plan`); :func:`plan_chunk`
picks among them.
"""

from __future__ import annotations

import math

import numpy as np

from .. import fft


def engine_plan(chunker, m, spectra_budget):
    """Bytes and modelled seconds of the engine on a chunk of ``m`` outputs.

    Uses the engine's own plan (cost model and tiling) for this geometry, as the chunker's
    layer will run it: kernel spectra computed once (so longer tiles than a one-off call
    would pick) within ``spectra_budget`` bytes. Counts the kernel spectra, what computing
    them takes (one block of kernels), the tile buffers and the zero-padded input a worker
    gathers its last tiles from. The seconds are those of a chunk whose kernel spectra are
    already cached, as every chunk but the first, with the engine's chunks shared out among
    the workers.
    """
    from .. import _costmodel, _engine
    from .._geometry import Geometry

    layer, src = chunker.layer, chunker.src
    d = layer.ndim
    spatial = list(src.shape[-d:])
    spatial[0] = (m - 1) * chunker.stride + chunker.span
    for a in range(1, d):
        spatial[a] += sum(chunker.pads[a])
    B = src.shape[0] if chunker.batched else 1
    dtype = chunker.dtype
    geom = Geometry(
        B,
        layer.in_channels,
        layer.out_channels,
        layer.groups,
        layer.kernel_size,
        layer.dilation,
        layer.stride,
        tuple(spatial),
        dtype.kind == "c",
    )
    workers = fft.get_num_threads()
    isz = dtype.itemsize
    choice = _costmodel.choose(
        geom, layer.method, isz, workers, spectra_cached=True, spectra_budget=spectra_budget
    )
    if choice.method == "direct":  # a zero-padded copy and the per-tap shifted inputs
        return 2 * B * layer.in_channels * math.prod(spatial) * isz, choice.seconds
    t = choice.tiling
    L = math.prod(t.fft_shape)
    F = math.prod(_engine.spectral_shape(t.fft_shape, geom.is_complex))
    # while the spectra are computed, one block of kernels at a time: the zero-padded
    # kernels and their transform in the kernels' precision
    esz = np.result_type(layer.weight.dtype, dtype).itemsize
    csz = np.result_type(dtype, np.complex64).itemsize
    computing = math.prod(_engine.spectra_block(geom, t.fft_shape, csz)) * (L + 2 * F) * esz
    tiles = t.chunk * math.prod(t.tiles[1:])
    per_tile = _costmodel.tile_bytes(geom, t.fft_shape, isz)
    per_chunk = t.batch_block * t.group_block * tiles * per_tile
    # the tile buffers are the pooled FFT plans' arrays: every chunk reuses the same ones;
    # a team's members hold one chunk between them, solo workers one chunk each
    buffers = per_chunk if t.team > 1 else min(workers, t.n_chunks) * per_chunk
    # a worker whose tiles run past the input's end gathers them from a zero-padded copy
    run = t.chunk // t.team
    gathered = (
        t.batch_block
        * geom.in_channels
        // layer.groups
        * t.group_block
        * ((run - 1) * t.step[0] + t.fft_shape[0])
        * math.prod(spatial[1:])
        * isz
    )
    buffers += min(workers, t.n_chunks * t.team) * gathered
    seconds = _costmodel.chunked_cost(geom, t, choice.seconds, workers)
    # freed memory may stay resident: what computing the spectra took counts until the end
    spectra = _costmodel.spectra_bytes(geom, t.fft_shape, isz)
    # python, reading and hand-over per chunk: the same model's constant, as all of it
    per_chunk = _costmodel.machine(_costmodel.precision(isz, geom.is_complex), workers).T_IO_CHUNK
    return spectra + computing + buffers, seconds + per_chunk


#: Chunk lengths tried between the kernel span and the whole signal (geometrically spaced).
_CHUNK_CANDIDATES = 40
#: Shares of the memory budget the kernel spectra may take (longer tiles need more).
_SPECTRA_SHARES = (1 / 8, 1 / 4, 3 / 8, 1 / 2)


def plan_chunk(chunker, budget):
    """The chunk length (outputs along the axis) and the spectra budget that fit ``budget``
    and run fastest.

    Candidates are chunk lengths spaced geometrically from the kernel span to the whole signal
    (then more finely up to the next one above the best), times a few shares of the budget
    for the kernel spectra (longer tiles waste less of each transform on the kernel's
    overlap, but their spectra take more memory). Among those whose working memory fits, the
    one with the least modelled time per output sample wins (the memory needed does not grow
    monotonically with the chunk, hence no bisection).
    """
    src, layer = chunker.src, chunker.layer
    B = src.shape[0] if chunker.batched else 1
    other_in = math.prod(src.shape[chunker.axis + 1 :])
    other_out = math.prod(chunker.out_shape[chunker.axis + 1 :])
    read = B * layer.in_channels * other_in * np.dtype(src.dtype).itemsize
    isz = chunker.dtype.itemsize
    out = B * layer.out_channels * other_out * isz

    def plan(m, spectra_budget):
        n_in = (m - 1) * chunker.stride + chunker.span
        engine, seconds = engine_plan(chunker, m, spectra_budget)
        # the chunk, a copy of it if it holds NaNs, the next chunk being read, the output
        # and the previous one being written
        return 3 * n_in * read + 2 * m * out + engine, seconds / m

    def best_of(sizes, best=None):
        for share in _SPECTRA_SHARES:
            spectra_budget = int(share * budget)
            for m in sizes:
                need, per_sample = plan(m, spectra_budget)
                if need <= budget and (best is None or per_sample <= best[3] * 1.001):
                    best = (m, spectra_budget, need, per_sample)
        return best

    n = chunker.n_out
    floor = max(1, min(n, chunker.span))
    sizes = np.unique(np.append(np.geomspace(floor, n, _CHUNK_CANDIDATES).astype(np.int64), n))
    best = best_of(sizes.tolist())
    if best is not None and best[0] < n:  # refine up to the next length tried
        above = int(sizes[np.searchsorted(sizes, best[0], side="right")])
        best = best_of(np.linspace(best[0], above, 10).astype(np.int64)[1:-1].tolist(), best)
    if best is None:
        need = plan(floor, int(_SPECTRA_SHARES[0] * budget))[0]
        raise ValueError(
            f"memory_budget={budget} bytes is too small for this layer: one chunk of {floor} "
            f"output samples needs about {need} bytes."
        )
    return best[:3]
