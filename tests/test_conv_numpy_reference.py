"""specconv.conv / conv_transpose against a plain numpy direct reference (tests/_reference.py).

Hypothesis draws layer geometries (dims 1-3, groups incl. depthwise and depthwise multiplier,
stride, dilation, every padding form and mode, batch or not) and dtypes (all four float types
in any mix, ints); every method must agree with the reference within the one tolerance table.
The overlap-save engine is also driven directly with tiles of many lengths, so tile
boundaries fall at many positions of the output.
"""

from __future__ import annotations

import _reference as ref
import numpy as np
import pytest
from _tolerances import assert_close
from hypothesis import given
from hypothesis import strategies as st

import specconv
from specconv import _costmodel, _engine, _geometry

X_DTYPES = ref.FLOAT_DTYPES + (np.int64,)
W_DTYPES = ref.FLOAT_DTYPES + (np.int32,)


def _bias_dtype(draw, x_dtype, w_dtype):
    """A bias dtype that does not widen the result (widening is tested on its own below)."""
    target = specconv.result_dtype(np.empty(0, x_dtype), np.empty(0, w_dtype))
    options = [t for t in ref.FLOAT_DTYPES if np.result_type(target, t) == target]
    return draw(st.sampled_from(options))


def _expected_dtype(*arrays):
    dtype = np.result_type(*[a.dtype for a in arrays if a is not None])
    return np.dtype(np.float64) if dtype.kind in "biu" else dtype


@ref.hypothesis_settings(max_examples=200)
@given(cfg=ref.conv_configs(), method=st.sampled_from(ref.METHODS), data=st.data())
def test_conv_matches_reference(cfg, method, data):
    x_dtype = data.draw(st.sampled_from(X_DTYPES), label="x dtype")
    w_dtype = data.draw(st.sampled_from(W_DTYPES), label="w dtype")
    rng = np.random.default_rng(cfg["seed"])
    x = ref.random_array(rng, cfg["x_shape"], x_dtype)
    w = ref.random_array(rng, cfg["w_shape"], w_dtype)
    bias = None
    if cfg["bias"]:
        bias = ref.random_array(rng, cfg["w_shape"][:1], _bias_dtype(data.draw, x_dtype, w_dtype))
    y = specconv.conv(x, w, bias, method=method, **cfg["kwargs"])
    expected = ref.conv(x, w, bias, **cfg["kwargs"])
    assert y.dtype == _expected_dtype(x, w, bias)
    assert_close(y, expected)


@ref.hypothesis_settings(max_examples=120)
@given(
    cfg=ref.transpose_configs(),
    method=st.sampled_from(ref.METHODS),
    dtypes=st.tuples(st.sampled_from(X_DTYPES), st.sampled_from(W_DTYPES)),
)
def test_conv_transpose_matches_reference(cfg, method, dtypes):
    rng = np.random.default_rng(cfg["seed"])
    x = ref.random_array(rng, cfg["x_shape"], dtypes[0])
    w = ref.random_array(rng, cfg["w_shape"], dtypes[1])
    out_channels = cfg["w_shape"][1] * cfg["kwargs"]["groups"]
    bias = None
    if cfg["bias"]:  # real, in the precision of x and w (widening is tested on its own)
        bias = rng.standard_normal(out_channels).astype(np.finfo(_expected_dtype(x, w)).dtype)
    y = specconv.conv_transpose(x, w, bias, method=method, **cfg["kwargs"])
    expected = ref.conv_transpose(x, w, bias, **cfg["kwargs"])
    assert y.dtype == _expected_dtype(x, w, bias)
    assert_close(y, expected)


@pytest.mark.parametrize("method", ref.METHODS)
@pytest.mark.parametrize("batch", [(), (2,)])
def test_four_spatial_dims(method, batch):
    rng = np.random.default_rng(4)
    x = rng.standard_normal(batch + (4, 5, 4, 6, 5))
    w = rng.standard_normal((6, 2, 2, 3, 2, 3))
    kw = dict(stride=(1, 2, 1, 2), padding=(1, 0, 2, 1), dilation=(2, 1, 1, 1), groups=2)
    b = rng.standard_normal(6)
    assert_close(specconv.conv(x, w, b, method=method, **kw), ref.conv(x, w, b, **kw))
    wt = rng.standard_normal((4, 3, 2, 2, 3, 2))
    kwt = dict(stride=(2, 1, 1, 2), padding=(1, 0, 1, 0), output_padding=(1, 0, 0, 1), groups=2)
    assert_close(
        specconv.conv_transpose(x, wt, method=method, **kwt), ref.conv_transpose(x, wt, **kwt)
    )


@pytest.mark.parametrize("padding_mode", ref.PADDING_MODES)
@pytest.mark.parametrize("method", ref.METHODS)
def test_four_spatial_dims_padding_modes(padding_mode, method):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 4, 5, 3, 4))
    w = rng.standard_normal((3, 1, 3, 2, 3, 2))
    kw = dict(padding="same", groups=3, padding_mode=padding_mode)
    assert_close(specconv.conv(x, w, method=method, **kw), ref.conv(x, w, **kw))


@pytest.mark.parametrize("method", ref.METHODS)
@pytest.mark.parametrize("x_dtype", [np.int64, np.int8, np.uint16, bool])
def test_integer_and_bool_input_gives_float64(method, x_dtype):
    rng = np.random.default_rng(6)
    x = ref.random_array(rng, (3, 20), x_dtype)
    w = rng.integers(-3, 4, size=(2, 3, 4))
    y = specconv.conv(x, w, method=method, padding=1)
    assert y.dtype == np.float64
    assert_close(y, ref.conv(x, w, padding=1))


@pytest.mark.parametrize("method", ref.METHODS)
@pytest.mark.parametrize(
    "dtypes",
    [
        (np.float16, np.float16, None),
        (np.int8, np.int8, None),
        (np.uint8, np.int8, None),
        (np.float32, np.float32, np.float64),
        (np.complex64, np.float32, np.complex128),
        (np.float32, np.complex64, np.float64),
    ],
    ids=lambda t: "-".join(np.dtype(d).name for d in t if d is not None),
)
def test_computed_in_the_result_dtype(method, dtypes):
    """Narrow inputs are promoted before multiplying: float16 -> float32, ints -> float64, and a
    float64 bias makes float32 x and weight a float64-exact result.

    Regression: the direct method used to multiply in the inputs' own dtype (int8 products
    wrapped around, float16 and float32 rounded).
    """
    rng = np.random.default_rng(8)
    x_dtype, w_dtype, b_dtype = dtypes
    if np.dtype(x_dtype).kind in "iu":  # large enough that narrow integer products overflow
        x = rng.integers(50, 120, size=(2, 3, 40)).astype(x_dtype)
        w = rng.integers(50, 120, size=(4, 3, 3)).astype(w_dtype)
    else:
        x = ref.random_array(rng, (2, 3, 40), x_dtype)
        w = ref.random_array(rng, (4, 3, 3), w_dtype)
    b = None if b_dtype is None else ref.random_array(rng, (4,), b_dtype)
    y = specconv.conv(x, w, b, method=method)
    assert y.dtype == specconv.result_dtype(*[a for a in (x, w, b) if a is not None])
    assert_close(y, ref.conv(x, w, b))


# --------------------------------------------------------------------------------------------
# overlap-save: many tiles, tile boundaries at many positions


@st.composite
def _engine_cases(draw):
    d = draw(st.sampled_from([1, 1, 2, 3]))
    groups, ci, co = draw(ref.channel_layouts())
    kernel = tuple(draw(st.integers(1, 4 if d < 3 else 2)) for _ in range(d))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(d))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(d))
    span = tuple(dl * (k - 1) + 1 for k, dl in zip(kernel, dilation))
    pads = tuple((draw(st.integers(0, 3)), draw(st.integers(0, 3))) for _ in range(d))
    extra = {1: 40, 2: 9}.get(d, 4)
    n = tuple(max(1, e - a - b) + draw(st.integers(0, extra)) for e, (a, b) in zip(span, pads))
    # tile lengths from the shortest possible (one full-rate output) upwards
    fft_shape = tuple(e + s - 1 + draw(st.integers(0, 6)) for e, s in zip(span, stride))
    batch = draw(st.integers(1, 4))

    def divisor_of(n):
        return st.sampled_from([m for m in range(1, n + 1) if n % m == 0])

    return dict(
        d=d,
        groups=groups,
        ci=ci,
        co=co,
        kernel=kernel,
        dilation=dilation,
        stride=stride,
        pads=pads,
        n=n,
        fft_shape=fft_shape,
        batch=batch,
        chunk=draw(st.integers(1, 4)),
        batch_block=draw(divisor_of(batch)),
        group_block=draw(divisor_of(groups)),
        workers=draw(st.integers(1, 3)),
        team=draw(st.integers(1, 3)),
        dtype=draw(st.sampled_from(ref.FLOAT_DTYPES)),
        seed=draw(st.integers(0, 2**32 - 1)),
        # matmul products for every kernel matrix, or elementwise ones for every small one
        elementwise_max=draw(st.sampled_from([0, _engine.ELEMENTWISE_MAX_ENTRIES])),
    )


@ref.hypothesis_settings(max_examples=120)
@given(case=_engine_cases())
def test_overlap_save_tiles_match_reference(case):
    rng = np.random.default_rng(case["seed"])
    G = case["groups"]
    x = ref.random_array(rng, (case["batch"], G * case["ci"]) + case["n"], case["dtype"])
    w = ref.random_array(rng, (G * case["co"], case["ci"]) + case["kernel"], case["dtype"])
    padded = tuple(m + a + b for m, (a, b) in zip(case["n"], case["pads"]))
    geom = _geometry.Geometry(
        case["batch"],
        G * case["ci"],
        G * case["co"],
        G,
        case["kernel"],
        case["dilation"],
        case["stride"],
        padded,
        np.dtype(case["dtype"]).kind == "c",
    )
    tiling = _engine.Tiling.make(
        geom,
        case["fft_shape"],
        case["chunk"],
        case["batch_block"],
        case["group_block"],
        case["team"],
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_engine, "ELEMENTWISE_MAX_ENTRIES", case["elementwise_max"])
        spectra = _engine.kernel_spectra(w, geom, tiling, case["dtype"])
        y = _engine.correlate_fft(
            x, case["pads"], spectra, geom, tiling, case["dtype"], case["workers"]
        )
    xpad = np.pad(x, ((0, 0), (0, 0)) + case["pads"])
    expected = ref.conv(xpad, w, stride=case["stride"], dilation=case["dilation"], groups=G)
    assert y.dtype == case["dtype"]
    assert_close(y, expected)


@pytest.mark.parametrize("method", ["auto", "fft"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.complex128])
def test_long_signal_uses_several_tiles_and_matches(method, dtype):
    rng = np.random.default_rng(9)
    x = ref.random_array(rng, (2, 4, 6000), dtype)
    w = ref.random_array(rng, (4, 4, 65), dtype)
    geom = _geometry.Geometry(
        2, 4, 4, 1, (65,), (1,), (1,), (6000 + 2 * 32,), np.dtype(dtype).kind == "c"
    )
    choice = _costmodel.choose(geom, method, np.dtype(dtype).itemsize, 2)
    assert choice.method == "fft" and choice.tiling.tiles[0] > 1  # the premise of this test
    y = specconv.conv(x, w, padding=32, method=method)
    assert_close(y, ref.conv(x, w, padding=32))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("elementwise_max", [0, 64])  # matmul and elementwise products
def test_tiny_budgets_force_many_tiles_and_chunks(monkeypatch, threads, elementwise_max):
    """Squeezed memory budgets: smallest tiles, one tile per chunk, chunks on worker threads."""
    monkeypatch.setattr(_engine, "ELEMENTWISE_MAX_ENTRIES", elementwise_max)
    monkeypatch.setattr(_costmodel, "CHUNK_BUDGET", 1)
    monkeypatch.setattr(_costmodel, "ELEMENTWISE_CHUNK_BUDGET", 1)
    monkeypatch.setattr(_costmodel, "SPECTRA_BUDGET", 16 * 6 * 3 * 40)
    old = specconv.set_num_threads(threads)
    try:
        rng = np.random.default_rng(10)
        x = rng.standard_normal((2, 3, 57, 23))
        w = rng.standard_normal((6, 3, 5, 4))
        kw = dict(stride=(2, 1), dilation=(1, 2), padding=(3, 1))
        y = specconv.conv(x, w, method="fft", **kw)
        assert_close(y, ref.conv(x, w, **kw))
        layer = specconv.SpectralConv(w, method="fft", **kw)
        geom = _geometry.Geometry(2, 3, 6, 1, (5, 4), (1, 2), (2, 1), (63, 25), False)
        tiling = _costmodel.choose(geom, "fft", 8, threads).tiling
        assert tiling.n_chunks > 1 and tiling.fft_shape[0] < 63  # the premise
        assert_close(layer(x), ref.conv(x, w, **kw))
    finally:
        specconv.set_num_threads(old)


@pytest.mark.parametrize("fft_len", list(range(9, 40)))
def test_whole_signal_and_overlap_save_agree_around_block_boundaries(fft_len):
    """Same geometry, every tile length: the block boundary sweeps the whole output."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((1, 2, 70))
    w = rng.standard_normal((3, 2, 9))
    geom = _geometry.Geometry(1, 2, 3, 1, (9,), (1,), (1,), (74,), False)
    pads = ((2, 2),)
    whole = _engine.Tiling.make(geom, (80,))
    assert whole.tiles == (1,)
    y_whole = _engine.correlate_fft(
        x, pads, _engine.kernel_spectra(w, geom, whole, np.float64), geom, whole, np.float64, 1
    )
    tiled = _engine.Tiling.make(geom, (fft_len,), chunk=2)
    assert tiled.tiles[0] > 1
    y_tiled = _engine.correlate_fft(
        x, pads, _engine.kernel_spectra(w, geom, tiled, np.float64), geom, tiled, np.float64, 2
    )
    assert_close(y_tiled, y_whole)
    assert_close(y_whole, ref.conv(np.pad(x, ((0, 0), (0, 0), (2, 2))), w))


@pytest.mark.parametrize("method", ref.METHODS)
def test_strided_transpose_phases_no_tap_reaches(method):
    """A 2-tap kernel with stride 3: every third output is reached by no tap, only the bias
    (the direct method computes the output phase by phase)."""
    rng = np.random.default_rng(12)
    x = rng.standard_normal((2, 4, 9, 5))
    w = rng.standard_normal((4, 3, 2, 1))
    b = rng.standard_normal(6)
    kw = dict(stride=(3, 2), padding=(0, 1), output_padding=(2, 1), groups=2)
    y = specconv.conv_transpose(x, w, b, method=method, **kw)
    assert_close(y, ref.conv_transpose(x, w, b, **kw))
    assert_close(y[:, :, 2::3], np.broadcast_to(b[:, None, None], y[:, :, 2::3].shape))
