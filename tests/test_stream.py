"""StreamingConv: block-by-block output equals the offline causal convolution.

Oracles: ``specconv.conv(x, w, b, padding=span - 1, ...)`` (the documented contract) and an
independent float64 reference written here with ``numpy.convolve`` per channel pair.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import specconv
from specconv.stream import Level, StreamingConv, plan_levels

# max|y - ref| / max|ref| by the stream's dtype (partitioned sums round like the offline FFT)
RTOL = {
    np.dtype(np.float64): 1e-11,
    np.dtype(np.float32): 2e-5,
    np.dtype(np.complex128): 1e-11,
    np.dtype(np.complex64): 2e-5,
}


def assert_close(y, ref):
    ref = np.asarray(ref)
    assert y.shape == ref.shape, (y.shape, ref.shape)
    finite = np.isfinite(ref)
    scale = np.abs(ref[finite]).max() if finite.any() else 1.0
    err = np.abs(y[finite] - ref[finite]).max() if finite.any() else 0.0
    assert err <= RTOL[y.dtype] * max(scale, 1e-30), f"error {err:.3g} vs scale {scale:.3g}"


def causal_reference(x, w, bias=None, *, groups=1, dilation=1, stride=1):
    """Full convolution, taps flipped (PyTorch cross-correlation weights), in float64."""
    xb = np.asarray(x)[None] if np.ndim(x) == 2 else np.asarray(x)
    B, C_in, n = xb.shape
    C_out, ci, K = w.shape
    co = C_out // groups
    span = dilation * (K - 1) + 1
    h = np.zeros((C_out, ci, span), dtype=np.result_type(w, np.float64))
    h[..., ::dilation] = w[..., ::-1]
    y = np.zeros((B, C_out, n + span - 1), dtype=np.result_type(xb, h, np.float64))
    for b in range(B):
        for o in range(C_out):
            g = o // co
            for c in range(ci):
                y[b, o] += np.convolve(xb[b, g * ci + c], h[o, c])
    if bias is not None:
        y += np.asarray(bias)[None, :, None]
    y = y[..., ::stride]
    return y if np.ndim(x) == 3 else y[0]


def run_stream(stream, x, sizes):
    """Feed ``x`` in blocks of ``sizes`` (cycled), then flush; concatenate the outputs."""
    outs, i, k = [], 0, 0
    n = x.shape[-1]
    while i < n:
        m = sizes[k % len(sizes)]
        outs.append(stream.process(x[..., i : i + m]))
        i += m
        k += 1
    outs.append(stream.flush())
    return np.concatenate(outs, axis=-1)


@st.composite
def stream_cases(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    ci = draw(st.integers(1, 3))
    co = draw(st.integers(1, 3))
    K = draw(st.sampled_from([1, 2, 5, 17, 64, 200, 700]))
    dilation = draw(st.sampled_from([1, 1, 2, 3]))
    stride = draw(st.sampled_from([1, 1, 1, 2, 3]))
    block = draw(st.sampled_from([1, 3, 16, 32, 50, 64]))
    n = draw(st.integers(1, 900))
    sizes = draw(st.lists(st.integers(0, 150), min_size=1, max_size=8).filter(any))
    dtype = draw(st.sampled_from(["float64", "float32", "complex128"]))
    batch = draw(st.sampled_from([None, 1, 2]))
    bias = draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))
    return dict(
        groups=groups,
        ci=ci,
        co=co,
        K=K,
        dilation=dilation,
        stride=stride,
        block=block,
        n=n,
        sizes=sizes,
        dtype=np.dtype(dtype),
        batch=batch,
        bias=bias,
        seed=seed,
    )


@settings(max_examples=60, deadline=None)
@given(stream_cases())
def test_stream_equals_offline_for_any_block_sizes(case):
    rng = np.random.default_rng(case["seed"])
    G, dtype = case["groups"], case["dtype"]
    C_in, C_out = G * case["ci"], G * case["co"]
    shape = (C_in, case["n"]) if case["batch"] is None else (case["batch"], C_in, case["n"])
    x = rng.standard_normal(shape)
    w = rng.standard_normal((C_out, case["ci"], case["K"]))
    if dtype.kind == "c":
        x = x + 1j * rng.standard_normal(shape)
        w = w + 1j * rng.standard_normal(w.shape)
    x, w = x.astype(dtype), w.astype(dtype)
    b = rng.standard_normal(C_out).astype(dtype) if case["bias"] else None
    layer = specconv.SpectralConv(w, b, groups=G, dilation=case["dilation"], stride=case["stride"])
    stream = StreamingConv(layer, case["block"])
    y = run_stream(stream, x, case["sizes"])
    assert y.dtype == dtype
    span = case["dilation"] * (case["K"] - 1) + 1
    offline = specconv.conv(
        x, w, b, padding=span - 1, dilation=case["dilation"], groups=G, stride=case["stride"]
    )
    assert_close(y, offline)
    assert_close(
        y, causal_reference(x, w, b, groups=G, dilation=case["dilation"], stride=case["stride"])
    )


def test_process_returns_the_causal_part_at_once():
    rng = np.random.default_rng(1)
    w, x = rng.standard_normal((2, 2, 300)), rng.standard_normal((2, 1000))
    stream = StreamingConv(w, block_size=64)
    ref = causal_reference(x, w)
    y = np.concatenate([stream.process(x[:, i : i + 37]) for i in range(0, 1000, 37)], -1)
    assert_close(y, ref[:, :1000])  # no delay: output n only needs input up to n
    assert_close(stream.flush(), ref[:, 1000:])


@pytest.mark.parametrize("K, block", [(20_000, 64), (50_000, 128), (5_000, 7)])
def test_long_kernels_use_several_partition_levels(K, block):
    rng = np.random.default_rng(K)
    w = rng.standard_normal((2, 2, K)) * np.exp(-np.arange(K) / (K / 4))
    x = rng.standard_normal((2, 3 * K // 2))
    b = rng.standard_normal(2)
    stream = StreamingConv(specconv.SpectralConv(w, b), block)
    assert len(stream.levels) >= 2
    y = run_stream(stream, x, [block, 1, 3 * block + 5, 0, block])
    assert_close(y, specconv.conv(x, w, b, padding=K - 1))


@pytest.mark.parametrize("span", [1, 7, 256, 257, 1000, 96_000, 10**6])
@pytest.mark.parametrize("block", [1, 64, 256, 1000])
def test_plan_levels_cover_the_kernel_and_are_computable_in_time(span, block):
    levels = plan_levels(span, block, 1, 2, 2)
    assert levels[0].first_tap == 0 and levels[0].size == block
    for a, b in zip(levels, levels[1:]):
        assert b.first_tap == a.first_tap + a.count * a.size  # contiguous, no gap or overlap
        assert b.first_tap >= b.size  # a frame's output is due one frame after its input
        assert b.size % a.size == 0
    last = levels[-1]
    assert last.first_tap + last.count * last.size >= span > last.first_tap
    assert all(lv.fft_len >= 2 * lv.size - 1 for lv in levels)
    assert isinstance(levels[0], Level)


def test_batched_stream_matches_each_item():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((4, 1, 33))
    x = rng.standard_normal((3, 2, 500))
    stream = StreamingConv(specconv.SpectralConv(w, groups=2), 16)
    y = run_stream(stream, x, [40, 9])
    for b in range(3):
        assert_close(y[b], causal_reference(x[b], w, groups=2))


def test_layer_delay_relates_the_stream_to_the_layers_padding():
    rng = np.random.default_rng(3)
    w, x = rng.standard_normal((3, 2, 10)), rng.standard_normal((2, 400))
    layer = specconv.SpectralConv(w, padding="same")
    stream = StreamingConv(layer, 32)
    y = run_stream(stream, x, [32])
    d = stream.layer_delay
    assert d == 9 - 4  # span - 1 - left padding ("same" puts the extra sample right)
    assert_close(y[:, d : d + 400], layer(x))


def test_integer_and_empty_blocks():
    stream = StreamingConv(np.ones((1, 1, 3)))
    assert stream.process(np.zeros((1, 0))).shape == (1, 0)
    np.testing.assert_allclose(stream.process(np.array([[1, 2, 3]])), [[1.0, 3.0, 6.0]])
    assert stream.process(np.zeros((1, 0))).shape == (1, 0)
    np.testing.assert_allclose(stream.flush(), [[5.0, 3.0]])
    assert stream.flush().shape == (1, 0)  # nothing processed since


def test_float32_layer_streams_in_float32_and_dtype_can_be_chosen():
    w = np.ones((1, 1, 4), np.float32)
    assert StreamingConv(w).process(np.ones((1, 8))).dtype == np.float32
    s = StreamingConv(w, dtype=np.complex128)
    assert s.process(np.ones((1, 8)) * 1j).dtype == np.complex128


def test_nonfinite_input_stays_local():
    rng = np.random.default_rng(4)
    w = rng.standard_normal((4, 2, 40))
    x = rng.standard_normal((4, 2000))
    x[0, 500] = np.nan
    x[3, 1200:1210] = np.inf
    layer = specconv.SpectralConv(w, groups=2, dilation=3)
    y = run_stream(StreamingConv(layer, 64), x, [64, 100, 13])
    ref = specconv.conv(x, w, padding=3 * 39, groups=2, dilation=3)
    np.testing.assert_array_equal(np.isnan(y), ~np.isfinite(ref))
    assert_close(y, ref)


def test_nan_policy_raise_rejects_the_block_and_keeps_the_state():
    layer = specconv.SpectralConv(np.ones((1, 1, 3)), nan_policy="raise")
    stream = StreamingConv(layer)
    stream.process(np.ones((1, 2)))
    with pytest.raises(ValueError, match="non-finite.*'raise'"):
        stream.process(np.array([[1.0, np.nan]]))
    np.testing.assert_allclose(stream.process(np.ones((1, 2))), [[3.0, 3.0]])


# ------------------------------------------------------------------------------ crossfade
def lowpass_noise(rng, shape, width=20):
    kernel = np.hanning(width) / np.hanning(width).sum()
    white = rng.standard_normal(shape[:-1] + (shape[-1] + width - 1,))
    return np.apply_along_axis(lambda v: np.convolve(v, kernel, "valid"), -1, white)


@pytest.mark.parametrize("swap_at, block", [(1000, 64), (1013, 64), (3000, 256)])
def test_set_kernel_crossfades_exactly_between_the_two_outputs(swap_at, block):
    rng = np.random.default_rng(swap_at)
    K = 2000
    decay = np.exp(-np.arange(K) / 300)
    w_old = rng.standard_normal((2, 2, K)) * decay
    w_new = rng.standard_normal((2, 2, K)) * decay
    x = lowpass_noise(rng, (2, 5000))
    stream = StreamingConv(w_old, block)
    sizes = [block // 2, block, 3]
    head = run_stream_until(stream, x[:, :swap_at], sizes)
    stream.set_kernel(w_new)
    tail = run_stream(stream, x[:, swap_at:], sizes)
    y = np.concatenate([head, tail], -1)
    y_old, y_new = causal_reference(x, w_old), causal_reference(x, w_new)
    g = np.zeros(y.shape[-1])
    u = (np.arange(y.shape[-1]) - swap_at) / block
    g[swap_at:] = 0.5 - 0.5 * np.cos(np.pi * np.clip(u[swap_at:], 0, 1))
    assert_close(y, (1 - g) * y_old + g * y_new)
    # continuity: no step larger than the signals' own sample-to-sample change
    window = slice(swap_at - block, swap_at + 2 * block)
    own = max(np.abs(np.diff(y_old[:, window])).max(), np.abs(np.diff(y_new[:, window])).max())
    assert np.abs(np.diff(y[:, window])).max() <= own * (1 + 1e-9)


def run_stream_until(stream, x, sizes):
    outs, i, k = [], 0, 0
    while i < x.shape[-1]:
        m = sizes[k % len(sizes)]
        outs.append(stream.process(x[..., i : i + m]))
        i, k = i + m, k + 1
    return np.concatenate(outs, axis=-1)


def test_hard_switch_would_jump_where_the_crossfade_does_not():
    rng = np.random.default_rng(5)
    x = lowpass_noise(rng, (1, 3000))
    w_old = np.ones((1, 1, 50)) / 50
    w_new = -np.ones((1, 1, 50)) / 50  # inverted polarity: the worst case for a click
    smooth, hard = StreamingConv(w_old, 128), StreamingConv(w_old, 128)
    a = [smooth.process(x[:, :1500]), hard.process(x[:, :1500])]
    smooth.set_kernel(w_new)
    hard.set_kernel(w_new, crossfade=0)
    y_s = np.concatenate([a[0], smooth.process(x[:, 1500:])], -1)
    y_h = np.concatenate([a[1], hard.process(x[:, 1500:])], -1)
    own = np.abs(np.diff(causal_reference(x, w_old)[:, :3000])).max()
    assert np.abs(np.diff(y_s)).max() <= own * (1 + 1e-9)
    assert np.abs(np.diff(y_h)).max() > 5 * own


def test_swap_during_a_crossfade_and_bias_change_stay_continuous():
    rng = np.random.default_rng(6)
    x = lowpass_noise(rng, (1, 4000))
    ws = [rng.standard_normal((1, 1, 64)) * 0.1 for _ in range(3)]
    stream = StreamingConv(specconv.SpectralConv(ws[0], np.array([0.0])), 128)
    y = [stream.process(x[:, :1000])]
    stream.set_kernel(ws[1], np.array([0.5]))
    y.append(stream.process(x[:, 1000:1050]))
    stream.set_kernel(ws[2])  # halfway through the first crossfade; keeps bias 0.5
    y.append(stream.process(x[:, 1050:]))
    y = np.concatenate(y, -1)
    refs = [causal_reference(x, w, [b])[:, :4000] for w, b in zip(ws, [0.0, 0.5, 0.5])]
    t = np.arange(4000)
    ramp1 = 0.5 - 0.5 * np.cos(np.pi * np.clip((t - 1000) / 128, 0, 1))
    ramp2 = 0.5 - 0.5 * np.cos(np.pi * np.clip((t - 1050) / 128, 0, 1))
    g0_at, g1_at = 1 - ramp1[1050], ramp1[1050]  # the first fade's gains when the second starts
    g0 = np.where(t < 1050, 1 - ramp1, g0_at * (1 - ramp2))
    g1 = np.where(t < 1050, ramp1, g1_at * (1 - ramp2))
    assert_close(y, g0 * refs[0] + g1 * refs[1] + ramp2 * refs[2])
    own = max(np.abs(np.diff(r)).max() for r in refs)
    assert np.abs(np.diff(y)).max() <= 2 * own
    assert len(stream._voices) == 1  # the faded-out kernels are dropped


# -------------------------------------------------------------------------------- errors
def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="must be 1-D"):
        StreamingConv(np.ones((1, 1, 3, 3)))
    with pytest.raises(ValueError, match="padding_mode must be 'zeros'.*'reflect'"):
        StreamingConv(specconv.SpectralConv(np.ones((1, 1, 3)), padding=1, padding_mode="reflect"))
    with pytest.raises(TypeError, match="SpectralConv.*SpectralConvTranspose"):
        StreamingConv(specconv.SpectralConvTranspose(np.ones((1, 1, 3))))
    with pytest.raises(ValueError, match="block_size must be >= 1, got 0"):
        StreamingConv(np.ones((1, 1, 3)), 0)
    with pytest.raises(TypeError, match="block_size must be an int, got float 2.5"):
        StreamingConv(np.ones((1, 1, 3)), 2.5)
    with pytest.raises(TypeError, match="dtype must be complex"):
        StreamingConv(np.ones((1, 1, 3)) * 1j, dtype=np.float64)
    stream = StreamingConv(np.ones((2, 2, 3)))
    with pytest.raises(ValueError, match="block has 3 channels.*expects 2"):
        stream.process(np.ones((3, 5)))
    with pytest.raises(ValueError, match=r"shape \(C_in, n\) or \(B, C_in, n\), got shape \(5,\)"):
        stream.process(np.ones(5))
    with pytest.raises(TypeError, match="block is complex"):
        stream.process(np.ones((2, 5)) * 1j)
    stream.process(np.ones((2, 5)))
    with pytest.raises(ValueError, match="does not continue the stream.*no batch axis"):
        stream.process(np.ones((1, 2, 5)))
    with pytest.raises(ValueError, match=r"keep the shape of the streamed kernel \(2, 2, 3\)"):
        stream.set_kernel(np.ones((2, 2, 4)))
    with pytest.raises(ValueError, match="crossfade must be >= 0, got -1"):
        stream.set_kernel(np.ones((2, 2, 3)), crossfade=-1)
    with pytest.raises(TypeError, match="weight is complex but the stream is real"):
        stream.set_kernel(np.ones((2, 2, 3)) * 1j)
    with pytest.raises(ValueError, match=r"bias must have shape \(C_out,\) = \(2,\)"):
        stream.set_kernel(np.ones((2, 2, 3)), np.ones(3))
