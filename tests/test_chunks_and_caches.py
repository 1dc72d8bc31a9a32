"""How work is cut into chunks, and how kernel spectra are reused between calls."""

from __future__ import annotations

import math
import pickle
import warnings

import _reference as ref
import numpy as np
import pytest
from _tolerances import assert_close

import specconv
from specconv import (
    _calibration,
    _compiled,
    _correlate,
    _costmodel,
    _direct,
    _engine,
    _geometry,
)


def _cnn_geometry(groups, kernel=15, batch=8, channels=64, size=128):
    return _geometry.Geometry(
        batch,
        channels,
        channels,
        groups,
        (kernel, kernel),
        (1, 1),
        (1, 1),
        (size + kernel - 1,) * 2,
        False,
    )


def _chunk_bytes(geom, tiling, itemsize):
    tiles = tiling.chunk * math.prod(tiling.tiles[1:])
    per_tile = _costmodel.tile_bytes(geom, tiling.fft_shape, itemsize)
    return tiling.batch_block * tiling.group_block * tiles * per_tile


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_depthwise_chunks_fit_the_cache_budget_and_feed_every_worker(workers):
    geom = _cnn_geometry(groups=64)
    tiling = _costmodel.choose(geom, "fft", 8, workers).tiling
    assert tiling.n_chunks >= 2 * workers or workers == 1
    assert 64 % tiling.group_block == 0 and 8 % tiling.batch_block == 0
    assert _chunk_bytes(geom, tiling, 8) <= _costmodel.ELEMENTWISE_CHUNK_BUDGET
    assert tiling.group_block < 64  # groups are split before the batch


def test_matmul_chunks_keep_enough_columns_for_blas(monkeypatch):
    """A dense 1-D layer on one long signal: chunks are runs of tiles, not single tiles;
    with few columns per worker, the two workers share chunks of twice the columns (its
    spectra cached: the long tiles of a layer applied again) where BLAS computes the product."""
    monkeypatch.setattr(_compiled, "loops", None)  # the BLAS product: a call per frequency
    geom = _geometry.Geometry(1, 16, 16, 1, (257,), (1,), (1,), (400_000,), False)
    tiling = _costmodel.choose(geom, "fft", 8, 2, spectra_cached=True).tiling
    assert tiling.tiles[0] > 4 * _costmodel.MIN_COLUMNS  # the premise
    assert tiling.chunk // tiling.team >= _costmodel.MIN_COLUMNS
    assert tiling.team == 2 and tiling.chunk >= _costmodel.TEAM_COLUMNS
    assert tiling.n_chunks >= 2
    # the same memory as two chunks of half the tiles, one per worker
    solo = _costmodel.chunking(geom, tiling.fft_shape, tiling.tiles, 8, 1)
    assert tiling.chunk <= 2 * solo[0]
    # plenty of columns already (a batch, on tiles whose chunks fit the cache): no team
    batched = _geometry.Geometry(8, 16, 16, 1, (257,), (1,), (1,), (400_000,), False)
    tiles = _engine.Tiling.make(batched, (2048,)).tiles
    assert _costmodel.chunking(batched, (2048,), tiles, 8, 2)[3] == 1


@pytest.mark.skipif(_compiled.loops is None, reason="no compiled loops in this install")
def test_the_compiled_product_shares_chunks_only_for_large_kernel_matrices(monkeypatch):
    """Without a call per frequency, a team saves only reads of the kernel spectra, and costs
    reads of the other members' tiles: worth it where the kernel matrix has more entries
    than the spectra of a chunk's columns."""
    monkeypatch.setattr(_compiled, "losing", set())  # whatever the calibration measured
    for channels, team in ((16, False), (128, True)):
        geom = _geometry.Geometry(1, channels, channels, 1, (257,), (1,), (1,), (400_000,), False)
        assert _engine.compiled_product(geom, np.float64)
        tiles = _engine.Tiling.make(geom, (4096,)).tiles
        chunk, _, _, members = _costmodel.chunking(geom, (4096,), tiles, 8, 2)
        columns = chunk // members
        assert columns < _costmodel.TEAM_COLUMNS  # few: a team, where BLAS multiplies
        assert (members == 2) == team == (channels * channels > 2 * channels * columns)


def test_tiles_are_never_shorter_than_min_tile():
    """A 1 x 1 kernel (W3b's coil compression) once went to the FFT path in 1 x 1 tiles,
    priced far below their cost; no candidate is shorter than MIN_TILE on any axis."""
    for span, stride in [(1, 1), (3, 1), (2, 4)]:
        assert _costmodel._axis_candidates(span, stride, 320, 2)[0] >= _costmodel.MIN_TILE
    w3b = _geometry.Geometry(1, 32, 8, 1, (1, 1), (1, 1), (1, 1), (320, 320), True)
    assert _costmodel.choose(w3b, "auto", 8, 2).method == "direct"


def _held_bytes(geom, fft_shape, blocks, itemsize, workers=2):
    """Bytes of tile buffers ``workers`` hold at once in chunks of ``blocks``."""
    return workers * _chunk_bytes(geom, _engine.Tiling.make(geom, fft_shape, *blocks), itemsize)


def test_product_chunks_fit_the_cache_where_the_product_would_wait_for_memory(monkeypatch):
    """W3b (1 x 1, complex, 32 -> 8 coils on 320 x 320) in 1280 tiles of 8 x 10: its product
    does 8 multiply-adds per spectrum it reads, so chunks larger than the cache leave it
    waiting for memory; its chunks are cut until the two workers' chunks fit half the cache,
    and the price of the chunks that do not fit includes the wait. A dense 64-channel CNN
    layer multiplies far more than it reads: its chunks stay as they are whatever the cache."""
    c = _costmodel.SHIPPED["double"]
    w3b = _geometry.Geometry(1, 32, 8, 1, (1, 1), (1, 1), (1, 1), (320, 320), True)
    cnn = _cnn_geometry(groups=1, kernel=7)

    def chunks(geom, shape, cache):
        monkeypatch.setattr(_calibration, "last_level_cache", lambda: cache)
        tiles = _engine.Tiling.make(geom, shape).tiles
        return tiles, _costmodel.chunking(geom, shape, tiles, 16, 2, None, c)

    tiles, roomy = chunks(w3b, (8, 10), 2**50)
    _, small = chunks(w3b, (8, 10), 32 * 2**20)
    assert _held_bytes(w3b, (8, 10), roomy, 16) > 16 * 2**20  # the premise
    assert small[0] < roomy[0] and small[1:] == roomy[1:]
    assert _held_bytes(w3b, (8, 10), small, 16) <= 16 * 2**20
    spilled = _costmodel.chunk_overheads(w3b, (8, 10), tiles, roomy, 16, 2, c)
    monkeypatch.setattr(_calibration, "last_level_cache", lambda: 2**50)
    assert spilled > _costmodel.chunk_overheads(w3b, (8, 10), tiles, roomy, 16, 2, c)
    assert chunks(cnn, (32, 32), 2**50) == chunks(cnn, (32, 32), 2**20)


def test_the_last_level_cache_is_read_from_sysfs(tmp_path):
    """The highest level of data or unified cache, whatever the suffix; 0 where none parses."""
    for name, (level, kind, size) in {
        "index0": (1, "Data", "48K"),
        "index1": (1, "Instruction", "32K"),
        "index2": (2, "Unified", "2048K"),
        "index3": (3, "Unified", "36M"),
    }.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "level").write_text(f"{level}\n")
        (tmp_path / name / "type").write_text(f"{kind}\n")
        (tmp_path / name / "size").write_text(f"{size}\n")
    assert _calibration._sysfs_cache(tmp_path) == 36 * 2**20
    (tmp_path / "index3" / "size").write_text("big\n")
    assert _calibration._sysfs_cache(tmp_path) == 0
    assert _calibration._sysfs_cache(tmp_path / "absent") == 0
    assert _calibration.last_level_cache() > 0


def test_small_layers_run_as_one_chunk():
    """Splitting a layer for the threads costs T_CHUNK per chunk: a 2-channel layer of 48 000
    samples (well under a millisecond of work) stays one chunk, priced as its work on one of
    the two threads, one pass over its spectra, one chunk's overhead and the call's; a
    hundred times more work is split again."""
    c = _costmodel.SHIPPED["single"]
    tiny = _geometry.Geometry(1, 2, 2, 1, (15,), (1,), (1,), (48_000,), False)
    tiling = _costmodel.choose(tiny, "fft", 4, 2).tiling
    assert tiling.n_chunks == 1 and tiling.team == 1
    work = _costmodel._fft_work(tiny, tiling.fft_shape, False, 4, None, c)
    passes = _costmodel.spectra_bytes(tiny, tiling.fft_shape, 4) * c.T_SPECTRA_PASS
    assert _costmodel.fft_cost(tiny, tiling.fft_shape, itemsize=4, workers=2) == pytest.approx(
        2 * work + passes + c.T_CHUNK + c.T_FFT_CALL
    )
    # the same tiles, the work a hundred times larger: split for the two threads
    assert (
        _costmodel.chunking(tiny, tiling.fft_shape, tiling.tiles, 4, 2, work, c)[0]
        == (tiling.tiles[0])
    )
    assert (
        _costmodel.chunking(tiny, tiling.fft_shape, tiling.tiles, 4, 2, 100 * work, c)[0]
        < tiling.tiles[0]
    )


def test_a_team_is_chosen_where_solo_chunks_would_be_uneven_too(monkeypatch):
    """W5's 5 rows of tiles: solo chunks of 3 + 2 rows leave a worker idle for a row, as
    long as a team of 3 + 3 rows whose last is empty; the team wins on BLAS columns. With
    a batch, solo chunks are even and a team's empty rows would be a loss: solo."""
    monkeypatch.setattr(_compiled, "loops", None)  # BLAS: a call per frequency
    geom = _geometry.Geometry(1, 16, 16, 1, (9, 9, 9), (1,) * 3, (1,) * 3, (64,) * 3, False)
    assert _costmodel.chunking(geom, (20, 20, 64), (5, 5, 1), 4, 2) == (6, 1, 1, 2)
    cnn = _geometry.Geometry(8, 64, 64, 1, (7, 7), (1, 1), (1, 1), (134, 134), False)
    assert _costmodel.chunking(cnn, (32, 32), (5, 5), 4, 2)[3] == 1


@pytest.mark.parametrize("fail_at", [1, 2, 3, 4])
def test_a_failing_team_member_stops_the_others(monkeypatch, fail_at):
    """A member's error breaks the barrier: the call raises instead of hanging."""
    monkeypatch.setattr(_engine, "ELEMENTWISE_MAX_ENTRIES", 0)  # teams share matmul products
    geom = _geometry.Geometry(1, 4, 4, 1, (9,), (1,), (1,), (4000,), False)
    tiling = _engine.Tiling.make(geom, (64,), 8, 1, 1, 2)
    w = np.ones((4, 4, 9))
    spectra = _engine.kernel_spectra(w, geom, tiling, np.float64)
    calls = []

    def failing(self, x, t0, keep=None):
        calls.append(t0)
        if len(calls) == fail_at:
            raise MemoryError("member failed")
        original(self, x, t0, keep)

    original = _engine._ChunkWorker.transform_in
    monkeypatch.setattr(_engine._ChunkWorker, "transform_in", failing)
    with pytest.raises(MemoryError, match="member failed"):
        _engine.correlate_fft(
            np.ones((1, 4, 4000)), ((0, 0),), spectra, geom, tiling, np.float64, 2
        )


@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.complex128])
@pytest.mark.parametrize("block_bytes", [1, 2**40])
def test_depthwise_direct_blocks_cover_every_image_once(monkeypatch, workers, dtype, block_bytes):
    # 1 byte: one image per block; 2**40: a worker's share per block (7 + 6, 5 + 5 + 3)
    monkeypatch.setattr(_direct, "DEPTHWISE_BLOCK", block_bytes)
    monkeypatch.setattr(_compiled, "loops", None)  # the numpy loops (test_compiled_depthwise.py)
    rng = np.random.default_rng(4)
    x = ref.random_array(rng, (1, 13, 11, 12), dtype)
    w = ref.random_array(rng, (26, 1, 3, 2), dtype)  # depthwise multiplier 2
    geom = _geometry.Geometry(1, 13, 26, 13, (3, 2), (2, 1), (2, 3), (13, 13), np.iscomplexobj(x))
    pads = ((1, 1), (0, 1))
    y = _direct.correlate_direct(x, pads, w, geom, np.dtype(dtype), workers)
    assert y.shape == (1, 26) + geom.out_shape and y.dtype == dtype
    assert_close(
        y, ref.conv(x, w, stride=(2, 3), padding=((1, 1), (0, 1)), dilation=(2, 1), groups=13)
    )


# (x shape, weight shape, groups, dilation, pads): the first pad rows make whole slabs of
# padding, the negative pad crops x
_SLAB_CASES = [
    ((3, 6, 9, 8), (4, 3, 3, 2), 2, (2, 1), ((6, 1), (-1, 2))),
    ((2, 4, 50), (6, 2, 5), 2, (3,), ((2, 7),)),
    ((1, 4, 5, 6, 7), (2, 4, 2, 3, 2), 1, (1, 2, 1), ((1, 0), (1, 1), (0, 1))),
]


@pytest.mark.parametrize("workers", [1, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.complex128])
@pytest.mark.parametrize("slab_bytes, columns", [(1, 7), (3000, 5), (3000, 90), (2**40, 4096)])
@pytest.mark.parametrize("stack_max", [0, 64])
@pytest.mark.parametrize("case", range(len(_SLAB_CASES)))
def test_direct_slabs_cover_every_output_once(
    monkeypatch, workers, dtype, slab_bytes, columns, stack_max, case
):
    # 1 byte: one output row per slab and unit; 3000: a few rows, a few slabs per unit;
    # 2**40: whole images, all in one unit. Few columns: many GEMMs per unit. stack_max 64:
    # stacked GEMMs wherever the columns allow
    monkeypatch.setattr(_direct, "SLAB_BYTES", slab_bytes)
    monkeypatch.setattr(_direct, "SLAB_COLUMNS", columns)
    monkeypatch.setattr(_direct, "STACK_MAX_CHANNELS", stack_max)
    x_shape, w_shape, groups, dilation, pads = _SLAB_CASES[case]
    _check_direct(x_shape, w_shape, groups, dilation, (1,) * len(pads), pads, dtype, workers)


def _check_direct(x_shape, w_shape, groups, dilation, stride, pads, dtype, workers, columns=False):
    """The direct method on random data against the numpy reference (pads may crop;
    ``columns``: a strided layer's windows gathered into columns)."""
    rng = np.random.default_rng(5)
    x = ref.random_array(rng, x_shape, dtype)
    w = ref.random_array(rng, w_shape, dtype)
    padded = tuple(n + a + b for n, (a, b) in zip(x_shape[2:], pads))
    geom = _geometry.Geometry(
        x_shape[0],
        x_shape[1],
        w_shape[0],
        groups,
        w_shape[2:],
        dilation,
        stride,
        padded,
        np.iscomplexobj(x),
    )
    y = _direct.correlate_direct(x, pads, w, geom, np.dtype(dtype), workers, columns)
    assert y.shape == (x_shape[0], w_shape[0]) + geom.out_shape and y.dtype == dtype
    crop = (Ellipsis,) + tuple(
        slice(max(-a, 0), n - max(-b, 0)) for (a, b), n in zip(pads, x_shape[2:])
    )
    positive = tuple((max(a, 0), max(b, 0)) for a, b in pads)
    assert_close(
        y, ref.conv(x[crop], w, stride=stride, padding=positive, dilation=dilation, groups=groups)
    )


def test_direct_slabs_of_a_long_kernel_take_fewer_columns(monkeypatch):
    monkeypatch.setattr(_direct, "SLAB_BYTES", 2**14)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((1, 2, 700))
    w = rng.standard_normal((3, 2, 101))
    geom = _geometry.Geometry(1, 2, 3, 1, (101,), (1,), (1,), (700,), False)
    assert _direct.slab_plan(geom, 8, 2)[2] == 64  # 2**14 bytes of buffer: 101 x 2 rows
    y = _direct.correlate_direct(x, ((0, 0),), w, geom, np.dtype(np.float64), 2)
    assert_close(y, ref.conv(x, w))


@pytest.mark.parametrize(
    ("kernel", "itemsize", "method"), [(3, 4, "direct"), (7, 4, "fft"), (7, 8, "fft")]
)
def test_auto_takes_the_slabs_only_for_small_kernels(kernel, itemsize, method):
    # measured on 8 x 64 x 128^2, groups 4: 3 x 3 float32 slabs ~20 ms, fft 36-42 ms;
    # 7 x 7 slabs 82 ms, fft 33 ms
    geom = _cnn_geometry(groups=4, kernel=kernel)
    assert _costmodel.choose(geom, "auto", itemsize, 2).method == method


def test_auto_counts_the_folding_of_strided_spectra():
    # 8 x 64 x 128^2 depthwise, 3 x 3, stride 2, float64: direct 17-22 ms, fft 29-33 ms (the
    # model said 17 ms for the fft before it counted the folding)
    geom = _geometry.Geometry(8, 64, 64, 64, (3, 3), (1, 1), (2, 2), (130, 130), False)
    assert _costmodel.choose(geom, "auto", 8, 2).method == "direct"
    assert _costmodel._fold_passes(geom, (18, 48)) == 1 + 2 + 2


def test_tiles_avoid_strided_lengths_that_take_fftw_two_passes():
    # W3a, complex64: tiles of 28 x 72 took 28.6 ms, 20 x 72 23.3 ms (28 = 4 x 7 takes FFTW a
    # twiddle pass on the strided axis; 20 is one codelet); 72 is the contiguous axis
    geom = _geometry.Geometry(1, 32, 32, 1, (7, 7), (1, 1), (1, 1), (320, 320), True)
    assert _costmodel.fft_cost(geom, (20, 72)) < _costmodel.fft_cost(geom, (28, 72))
    assert _costmodel.one_codelet(_costmodel.choose(geom, "auto", 4, 2).tiling.fft_shape[0])


def test_slabs_take_every_stride_1_kernel_but_one_tap():
    assert _direct.uses_slabs(_cnn_geometry(groups=4, kernel=3))
    assert not _direct.uses_slabs(_cnn_geometry(groups=4, kernel=1))


def _phase_kernels(kernel, dilation, stride, out=10):
    geom = _geometry.Geometry(
        1,
        2,
        2,
        1,
        kernel,
        dilation,
        stride,
        tuple((out - 1) * s + d * (k - 1) + 1 for k, d, s in zip(kernel, dilation, stride)),
        False,
    )
    assert geom.out_shape == (out,) * len(kernel)
    parts = _direct.phases(geom)
    for _, _, part in parts:
        assert part.stride == (1,) * len(kernel) and part.out_shape == geom.out_shape
    return [(offsets, taps, part.kernel, part.dilation) for offsets, taps, part in parts]


def test_a_strided_layer_is_the_sum_of_its_phases():
    # 3 x 3, stride 2: taps 0 and 2 read the even samples, tap 1 the odd ones
    assert _phase_kernels((3, 3), (1, 1), (2, 2)) == [
        ((0, 0), ([0, 2], [0, 2]), (2, 2), (1, 1)),
        ((0, 1), ([0, 2], [1]), (2, 1), (1, 1)),
        ((1, 0), ([1], [0, 2]), (1, 2), (1, 1)),
        ((1, 1), ([1], [1]), (1, 1), (1, 1)),
    ]
    # dilation 2, stride 2: every tap reads the even samples, one phase, adjacent taps
    assert _phase_kernels((3,), (2,), (2,)) == [((0,), ([0, 1, 2],), (3,), (1,))]
    # dilation 3, stride 2: taps 0, 2 (offsets 0, 6) and 1, 3 (3, 9) are 3 phase samples apart
    assert _phase_kernels((4,), (3,), (2,)) == [
        ((0,), ([0, 2],), (2,), (3,)),
        ((3,), ([1, 3],), (2,), (3,)),
    ]
    # stride 3 beyond a 2-tap kernel: the third phase has no taps
    assert _phase_kernels((2,), (1,), (3,)) == [
        ((0,), ([0],), (1,), (1,)),
        ((1,), ([1],), (1,), (1,)),
    ]


# (x shape, weight shape, groups, dilation, stride, pads): phases of mixed layers, depthwise
# ones and 1 x 1 ones; pads wider than the stride (phases starting in the padding, one made
# only of padding), and negative pads
_PHASE_CASES = [
    ((2, 6, 11, 9), (4, 3, 3, 2), 2, (1, 1), (2, 3), ((1, 1), (-1, 2))),
    ((1, 4, 13, 12), (8, 1, 3, 3), 4, (2, 1), (2, 2), ((5, 0), (1, 1))),
    ((2, 4, 40), (6, 2, 5), 2, (3,), (2,), ((2, 7),)),
    ((1, 4, 30), (4, 4, 3), 1, (1,), (4,), ((-2, 0),)),
    ((1, 2, 6, 7, 5), (2, 2, 3, 2, 2), 1, (1, 2, 1), (2, 1, 2), ((1, 0), (1, 1), (0, 1))),
    ((1, 2, 1), (2, 2, 3), 1, (1,), (2,), ((2, 2),)),  # the odd phase reads only padding
    ((1, 2, 1), (2, 2, 2), 1, (2,), (2,), ((1, 1),)),  # every phase reads only padding
]


@pytest.mark.parametrize("workers", [1, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.complex128])
@pytest.mark.parametrize("case", range(len(_PHASE_CASES)))
def test_direct_phases_sum_to_the_strided_layer(workers, dtype, case):
    _check_direct(*_PHASE_CASES[case], dtype, workers)


@pytest.mark.parametrize("unit_bytes", [1, 2**21])  # rows of one image, or whole images
@pytest.mark.parametrize("workers", [1, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.complex128])
@pytest.mark.parametrize("case", range(len(_PHASE_CASES)))
def test_direct_columns_give_the_strided_layer(monkeypatch, unit_bytes, workers, dtype, case):
    monkeypatch.setattr(_direct, "COLUMN_BYTES", unit_bytes)
    _check_direct(*_PHASE_CASES[case], dtype, workers, columns=True)


@pytest.mark.parametrize("cheaper", [True, False])
def test_the_direct_method_gathers_columns_where_the_model_prices_them_cheaper(
    monkeypatch, cheaper
):
    ran = []
    for name in ("_columns", "_polyphase"):
        real = getattr(_direct, name)
        spy = lambda *a, name=name, real=real: ran.append(name) or real(*a)  # noqa: E731
        monkeypatch.setattr(_direct, name, spy)
    monkeypatch.setattr(_costmodel, "columns_cost", lambda *a: 0.0 if cheaper else math.inf)
    monkeypatch.setattr(_costmodel, "_choose", _costmodel._choose.__wrapped__)  # no memo
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((2, 8, 20, 20)), rng.standard_normal((8, 4, 3, 3))
    y = specconv.conv(x, w, groups=2, stride=2, padding=1, method="direct")
    assert_close(y, ref.conv(x, w, groups=2, stride=2, padding=1))
    assert ran == ["_columns" if cheaper else "_polyphase"]


def test_a_pointwise_layer_shares_its_rows_among_the_workers(monkeypatch):
    monkeypatch.setattr(_direct, "SMALL_PRODUCT", 1)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 6, 7, 5))
    w = rng.standard_normal((4, 3, 1, 1))
    geom = _geometry.Geometry(2, 6, 4, 2, (1, 1), (1, 1), (2, 1), (9, 5), False)
    for workers in (1, 2, 3, 8):  # 8: more workers than the 5 output rows
        y = _direct.correlate_direct(x, ((1, 1), (0, 0)), w, geom, np.dtype(np.float64), workers)
        assert_close(y, ref.conv(x, w, stride=(2, 1), padding=((1, 1), (0, 0)), groups=2))


def test_slabs_give_every_worker_a_unit():
    # one 16 x 16 image with 256 channels: one unit would leave a worker idle
    geom = _geometry.Geometry(1, 256, 256, 1, (3, 3), (1, 1), (1, 1), (18, 18), False)
    rows, per_unit, _ = _direct.slab_plan(geom, 4, 2)
    assert -(-geom.out_shape[0] // rows) // per_unit >= 2
    assert _direct.slab_plan(geom, 4, 1)[0] == 16  # one worker: the whole image


def test_blocks_must_divide_batch_and_groups():
    geom = _cnn_geometry(groups=4, batch=6)
    with pytest.raises(ValueError, match="batch_block 4 and group_block 1 must divide"):
        _engine.Tiling.make(geom, (144, 144), 1, 4, 1)


@pytest.mark.parametrize("groups", [1, 4, 16])
def test_batch_and_group_chunks_match_torch_semantics(groups):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 16, 30, 29))
    w = rng.standard_normal((16, 16 // groups, 5, 5))
    y = specconv.conv(x, w, padding="same", groups=groups, method="fft")
    assert_close(y, ref.conv(x, w, padding=(2, 2), groups=groups))


class _Count:
    """Counts the calls of ``owner.name`` (still calling it)."""

    def __init__(self, monkeypatch, owner, name):
        self.calls = 0
        original = getattr(owner, name)

        def counting(*args, **kwargs):
            self.calls += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, counting)


def test_conv_reuses_spectra_for_the_same_weights_and_sees_in_place_changes(monkeypatch):
    count = _Count(monkeypatch, _engine, "kernel_spectra")
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 2000))
    w = rng.standard_normal((5, 3, 101))
    y1 = specconv.conv(x, w, method="fft")
    y2 = specconv.conv(x, w.copy(), method="fft")  # equal contents: a hit
    assert count.calls == 1
    assert np.array_equal(y1, y2)
    w[2, 1, 50] += 1.0  # in place: a new digest, never a stale hit
    y3 = specconv.conv(x, w, method="fft")
    assert count.calls == 2
    assert_close(y3, ref.conv(x[None], w)[0])
    assert not np.allclose(y3, y1)


def test_a_weight_applied_again_pays_its_spectra_once_where_the_fft_then_wins(monkeypatch):
    """A layer whose kernel spectra cost more than one call of the direct method, but whose
    FFT wins without them: the first call runs direct, the same weight again the FFT (its
    spectra computed once, then cached), a new weight starts over. All equal the reference."""
    # the strided layer below sums its phases, whose calls the test counts
    monkeypatch.setattr(_costmodel, "columns_cost", lambda *a: math.inf)
    monkeypatch.setattr(_costmodel, "_choose", _costmodel._choose.__wrapped__)  # no memo
    geom = _geometry.Geometry(1, 32, 32, 1, (7, 7), (1, 1), (1, 1), (22, 22), False)
    pads = ((3, 3),) * 2
    assert _correlate.choose(geom, pads, "auto", 8, 2).method == "direct"  # the premise
    assert _correlate.choose(geom, pads, "auto", 8, 2, spectra_cached=True).method == "fft"
    spectra, direct = (
        _Count(monkeypatch, _engine, "kernel_spectra"),
        _Count(monkeypatch, _direct, "correlate_direct"),
    )
    rng = np.random.default_rng(71)
    x = rng.standard_normal((1, 32, 16, 16))
    w = rng.standard_normal((32, 32, 7, 7))
    expected = ref.conv(x, w, padding=3)
    old = specconv.set_num_threads(2)
    try:
        for calls in [(1, 0), (1, 1), (1, 1)]:  # (direct, spectra) calls so far
            assert_close(specconv.conv(x, w, padding=3), expected)
            assert (direct.calls, spectra.calls) == calls
        specconv.conv(x, w + 1.0, padding=3)  # a weight not seen before
        assert (direct.calls, spectra.calls) == (2, 1)
        # a strided layer: its direct phases, then its input phases by the FFT (a plan)
        plans = _Count(monkeypatch, _correlate, "run_plan")
        x2 = rng.standard_normal((4, 32, 16, 16))
        w = rng.standard_normal((32, 32, 5, 5))
        expected = ref.conv(x2, w, stride=2, padding=2)
        counts = []  # (direct, spectra) calls after each call (the phases call it again)
        for _ in range(3):
            assert_close(specconv.conv(x2, w, stride=2, padding=2), expected)
            counts.append((direct.calls, spectra.calls))
        assert counts[0][0] > 2 and counts[0][1] == 1  # direct, no spectra
        assert counts[1] == counts[2] == (counts[0][0], 2)  # the FFT, its spectra once
        assert plans.calls == 2
        # the same for a strided transposed layer: output phases direct, then the FFT
        phases = _Count(monkeypatch, specconv.SpectralConvTranspose, "_apply_phases")
        w = rng.standard_normal((32, 32, 7, 7))
        expected = ref.conv_transpose(x, w, stride=2)
        for calls in [(1, 2), (1, 3), (1, 3)]:  # (phases, spectra)
            assert_close(specconv.conv_transpose(x, w, stride=2), expected)
            assert (phases.calls, spectra.calls) == calls
    finally:
        specconv.set_num_threads(old)


def test_the_cache_remembers_a_bounded_number_of_weights_seen():
    cache = _correlate.SpectraCache()
    assert not cache.seen(b"a") and cache.seen(b"a")
    for k in range(cache.SEEN):
        cache.seen(bytes([k, 1]))
    assert not cache.seen(b"a")  # forgotten: only the last SEEN are kept
    assert len(cache._seen) == cache.SEEN
    assert not pickle.loads(pickle.dumps(cache)).seen(bytes([1, 1]))  # travels light


def test_the_shared_cache_is_bounded_in_bytes():
    rng = np.random.default_rng(5)
    cache = _correlate.SpectraCache(max_entries=8, max_bytes=2**20)
    geom = _geometry.Geometry(1, 4, 4, 1, (9,), (1,), (1,), (1000,), False)
    small = _engine.Tiling.make(geom, (64,))
    big = _engine.Tiling.make(geom, (2**15,))  # 4·4·16385 complex128: 4 MB
    w = rng.standard_normal((4, 4, 9))
    a = cache.get(w, geom, small, np.float64)
    assert cache.get(w, geom, small, np.float64) is a
    b = cache.get(w, geom, big, np.float64)
    assert b.nbytes > 2**20
    assert cache.get(w, geom, big, np.float64) is not b  # used once, not kept
    assert cache.get(w, geom, small, np.float64) is not a  # pushed out by the big entry


def test_a_pickled_layer_leaves_its_spectra_behind_and_still_works():
    rng = np.random.default_rng(6)
    layer = specconv.SpectralConv(rng.standard_normal((2, 2, 5)), method="fft")
    x = rng.standard_normal((2, 50_000))
    y = layer(x)
    spectra = sum(a.nbytes for a in layer._cache._entries.values())
    assert spectra > 8 * layer.weight.nbytes  # the premise: spectra outweigh the weight
    data = pickle.dumps(layer)
    assert len(data) < layer.weight.nbytes + 8192
    assert_close(pickle.loads(data)(x), y)


def _conv_in_child(queue, x, w):
    queue.put(specconv.conv(x, w, padding=2, method="fft"))


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_worker_threads_are_shared_across_calls_and_renewed_in_a_forked_child():
    import multiprocessing
    import threading

    rng = np.random.default_rng(11)
    x = rng.standard_normal((4, 8, 300))
    w = rng.standard_normal((8, 8, 5))
    old = specconv.set_num_threads(2)
    try:
        y = specconv.conv(x, w, padding=2, method="fft")
        threads = {t.ident for t in threading.enumerate() if t.name.startswith("specconv")}
        assert threads  # the engine ran chunks on its pool
        specconv.conv(x, w, padding=2, method="fft")
        assert threads == {
            t.ident for t in threading.enumerate() if t.name.startswith("specconv")
        }  # the same threads, not new ones per call
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        child = ctx.Process(target=_conv_in_child, args=(queue, x, w))
        child.start()
        y_child = queue.get(timeout=60)  # a stale pool would hang here
        child.join(timeout=60)
        assert child.exitcode == 0
        assert_close(y_child, y)
    finally:
        specconv.set_num_threads(old)


def test_the_worker_threads_take_the_callers_numpy_error_state():
    from specconv import _workers

    def invalid():
        return np.zeros(1) / np.zeros(1)

    with np.errstate(invalid="raise"):
        with pytest.raises(FloatingPointError):
            _workers.run_parallel([lambda: None, invalid])
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(_workers.run_parallel([invalid, invalid])).all()


def test_large_weights_are_digested_in_parts_and_every_byte_counts():
    w = np.random.default_rng(12).standard_normal((64, 64, 300))  # 9.8 MB: hashed in parts
    old = specconv.set_num_threads(2)
    try:
        digest = _correlate.weight_digest(w)
        assert _correlate.weight_digest(w.copy()) == digest
        for index in [(0, 0, 0), (31, 63, 299), (32, 0, 0), (63, 63, 299)]:
            changed = w.copy()
            changed[index] = np.nextafter(changed[index], np.inf)  # one bit
            assert _correlate.weight_digest(changed) != digest
        specconv.set_num_threads(1)  # one part: plain SHA-256, equally sensitive
        assert _correlate.weight_digest(w) == _correlate.weight_digest(w.copy())
        assert _correlate.weight_digest(changed) != _correlate.weight_digest(w)
    finally:
        specconv.set_num_threads(old)


@pytest.mark.parametrize(
    "pads, chunk",
    [
        (((3, 2), (0, 4)), 2),
        (((0, 0), (5, 5)), 1),  # every tile row reaches into the padding on both sides
        (((7, 9), (7, 7)), 3),  # tiles wholly in the padding, a last chunk past the end
        (((0, 0), (0, 0)), 2),
    ],
)
def test_tiles_are_gathered_from_the_zero_padded_signal(pads, chunk):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 3, 23, 19)).astype(np.float32)
    L = (12, 10)
    padded = tuple(n + lo + hi for n, (lo, hi) in zip(x.shape[2:], pads))
    geom = _geometry.Geometry(2, 3, 3, 1, (5, 4), (1, 1), (1, 1), padded, False)
    tiling = _engine.Tiling.make(geom, L, chunk)
    # the padded signal, and zeros past its end for the last tiles
    reach = [
        t * s + n for t, s, n in zip((tiling.tiles[0] + chunk, tiling.tiles[1]), tiling.step, L)
    ]
    big = np.zeros((2, 3, *reach), x.dtype)
    big[:, :, : padded[0], : padded[1]] = np.pad(x, ((0, 0), (0, 0), *pads))
    for t0 in range(0, tiling.tiles[0], tiling.chunk):
        xin = np.full((2, 1, 3, tiling.chunk, tiling.tiles[1], *L), np.nan, x.dtype)
        _engine._gather(x, pads, geom, tiling, t0, xin)
        for i in range(tiling.chunk):
            for j in range(tiling.tiles[1]):
                a, b = (t0 + i) * tiling.step[0], j * tiling.step[1]
                np.testing.assert_array_equal(
                    xin[:, 0, :, i, j], big[:, :, a : a + L[0], b : b + L[1]]
                )


def test_the_busiest_worker_prices_the_padded_chunks():
    """13 rows of tiles in team chunks of 2 x 2 rows are 16 rows of work, 8 per worker; 7
    solo chunks of 2 rows, 4 on one worker; even chunks, none wasted; one chunk, one worker."""
    geom = _geometry.Geometry(1, 32, 32, 1, (7, 7), (1, 1), (1, 1), (320, 320), True)
    tiles = (13, 13)
    assert _costmodel.imbalance(geom, tiles, (4, 1, 1, 2), 2) == pytest.approx(16 / 13)
    assert _costmodel.imbalance(geom, tiles, (2, 1, 1, 1), 2) == pytest.approx(16 / 13)
    assert _costmodel.imbalance(geom, (12, 13), (3, 1, 1, 1), 2) == 1
    assert _costmodel.imbalance(geom, tiles, (13, 1, 1, 1), 2) == 2
    assert _costmodel.imbalance(geom, tiles, (5, 1, 1, 1), 1) == pytest.approx(15 / 13)
