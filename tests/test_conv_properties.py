"""Algebraic properties of the conv layers: adjoint, groups, linearity, shift, the frequency
response, the layer objects (transpose, spectra cache, read-only weight) and input safety."""

from __future__ import annotations

import _reference as ref
import numpy as np
import pytest
from _tolerances import assert_close, rtol
from hypothesis import assume, given
from hypothesis import strategies as st

import specconv
from specconv import SpectralConv, SpectralConvTranspose, _engine


def _pads(cfg):
    """The conv padding of a drawn configuration as (before, after) pairs per axis."""
    w_shape, kw = cfg["w_shape"], cfg["kwargs"]
    d = len(w_shape) - 2
    return ref.conv_pads(w_shape[2:], ref._tuple(kw["dilation"], d), kw["padding"])


# --------------------------------------------------------------------------------------------
# adjoint


@ref.hypothesis_settings(max_examples=80)
@given(
    cfg=ref.conv_configs(modes=("zeros",)),
    method=st.sampled_from(ref.METHODS),
    is_complex=st.booleans(),
)
def test_adjoint_dot_product(cfg, method, is_complex):
    """<conv(x), y> = <x, conv_transpose(y)>; for complex weights with weight.conj().

    Any padding, also asymmetric ("same" with even spans, pairs): the transpose crops the same
    (before, after) samples.
    """
    kw = dict(cfg["kwargs"], padding=_pads(cfg))
    del kw["padding_mode"]
    dtype = np.complex128 if is_complex else np.float64
    rng = np.random.default_rng(cfg["seed"])
    x = ref.random_array(rng, cfg["x_shape"], dtype)
    w = ref.random_array(rng, cfg["w_shape"], dtype)
    layer = SpectralConv(w, method=method, **kw)
    y_x = layer(x)
    y = ref.random_array(rng, y_x.shape, dtype)
    adjoint = SpectralConvTranspose(w.conj(), method=method, **kw)
    x_y = adjoint(y, output_size=x.shape[x.ndim - (len(cfg["w_shape"]) - 2) :])
    assert x_y.shape == x.shape
    lhs, rhs = np.vdot(y_x, y), np.vdot(x, x_y)
    # |<conv(x), y>| <= ||w||_1 ||x|| ||y||: the scale of the rounding in either product, also
    # when both are exactly zero in exact arithmetic (outputs that only see padding)
    scale = np.abs(w).sum() * np.linalg.norm(x) * np.linalg.norm(y)
    assert abs(lhs - rhs) <= rtol(dtype) * scale


@pytest.mark.parametrize("method", ref.METHODS)
def test_layer_T_is_the_adjoint_for_real_weights(method):
    rng = np.random.default_rng(1)
    w = rng.standard_normal((6, 2, 3, 4))
    layer = SpectralConv(w, stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2, method=method)
    x = rng.standard_normal((2, 4, 11, 10))
    y = rng.standard_normal(layer(x).shape)
    lhs = np.vdot(layer(x), y)
    rhs = np.vdot(x, layer.T(y, output_size=x.shape[2:]))
    assert lhs == pytest.approx(rhs, rel=1e-12)


# --------------------------------------------------------------------------------------------
# groups, linearity, shift, batch


@ref.hypothesis_settings(max_examples=60)
@given(cfg=ref.conv_configs(), method=st.sampled_from(ref.METHODS))
def test_groups_are_split_convolve_concatenate(cfg, method):
    kw = cfg["kwargs"]
    G = kw["groups"]
    assume(G > 1)
    rng = np.random.default_rng(cfg["seed"])
    x = rng.standard_normal(cfg["x_shape"])
    w = rng.standard_normal(cfg["w_shape"])
    axis = x.ndim - len(cfg["w_shape"]) + 1  # the channel axis of x
    ci, co = x.shape[axis] // G, w.shape[0] // G
    single = dict(kw, groups=1)
    parts = [
        specconv.conv(
            np.take(x, range(g * ci, (g + 1) * ci), axis=axis),
            w[g * co : (g + 1) * co],
            method=method,
            **single,
        )
        for g in range(G)
    ]
    assert_close(specconv.conv(x, w, method=method, **kw), np.concatenate(parts, axis=axis))


@ref.hypothesis_settings(max_examples=40)
@given(
    cfg=ref.conv_configs(),
    method=st.sampled_from(ref.METHODS),
    a=st.floats(-3, 3),
    b=st.floats(-3, 3),
)
def test_linear_in_x_and_in_weight(cfg, method, a, b):
    rng = np.random.default_rng(cfg["seed"])
    x1, x2 = rng.standard_normal(cfg["x_shape"]), rng.standard_normal(cfg["x_shape"])
    w1, w2 = rng.standard_normal(cfg["w_shape"]), rng.standard_normal(cfg["w_shape"])
    kw = dict(cfg["kwargs"], method=method)
    y1, y2 = specconv.conv(x1, w1, **kw), specconv.conv(x2, w1, **kw)
    y3 = specconv.conv(x1, w2, **kw)
    # each side carries the rounding of up to three outputs, weighted by |a| and |b|
    tol = rtol(np.float64) * (1 + abs(a) + abs(b)) * max(np.abs(y).max() for y in (y1, y2, y3))
    combined = specconv.conv(a * x1 + b * x2, w1, **kw)
    assert np.abs(combined - (a * y1 + b * y2)).max() <= tol
    combined = specconv.conv(x1, a * w1 + b * w2, **kw)
    assert np.abs(combined - (a * y1 + b * y3)).max() <= tol


@pytest.mark.parametrize("method", ref.METHODS)
@pytest.mark.parametrize("shift", [(1, 0), (3, -2), (-5, 4)])
def test_circular_same_layer_commutes_with_shifts(method, shift):
    rng = np.random.default_rng(2)
    layer = SpectralConv(
        rng.standard_normal((3, 2, 5, 3)), padding="same", padding_mode="circular", method=method
    )
    x = rng.standard_normal((2, 12, 9))
    assert_close(layer(np.roll(x, shift, axis=(1, 2))), np.roll(layer(x), shift, axis=(1, 2)))


@pytest.mark.parametrize("method", ref.METHODS)
def test_batch_is_a_stack_of_single_signals(method):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 4, 50))
    w = rng.standard_normal((2, 4, 7))
    y = specconv.conv(x, w, padding=3, stride=2, method=method)
    for b in range(3):
        assert_close(y[b], specconv.conv(x[b], w, padding=3, stride=2, method=method))


@pytest.mark.parametrize("method", ref.METHODS)
def test_non_contiguous_inputs(method):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 40, 30))[:, :, ::2, ::-1]
    w = np.asfortranarray(rng.standard_normal((4, 3, 5, 3)))[..., ::-1]
    b = rng.standard_normal(8)[::2]
    y = specconv.conv(x, w, b, padding=1, method=method)
    assert_close(y, ref.conv(np.ascontiguousarray(x), np.ascontiguousarray(w), b, padding=1))


# --------------------------------------------------------------------------------------------
# the layer objects


@pytest.mark.parametrize("method", ref.METHODS)
def test_T_round_trip(method):
    rng = np.random.default_rng(5)
    w = rng.standard_normal((6, 2, 3, 5))
    kw = dict(stride=(2, 1), padding=(1, 2), dilation=(2, 1), groups=3)
    layer = SpectralConv(w, rng.standard_normal(6), method=method, **kw)
    T = layer.T
    assert isinstance(T, SpectralConvTranspose)
    assert (T.in_channels, T.out_channels) == (layer.out_channels, layer.in_channels)
    assert (T.stride, T.padding, T.dilation, T.groups) == (
        layer.stride,
        layer.padding,
        layer.dilation,
        layer.groups,
    )
    assert T.bias is None
    np.testing.assert_array_equal(T.weight, layer.weight)
    x = rng.standard_normal((2, 6, 9, 8))
    y = rng.standard_normal(layer(x).shape)
    assert_close(T(y), specconv.conv_transpose(y, w, **kw, method=method))
    TT = T.T
    assert isinstance(TT, SpectralConv)
    assert_close(TT(x), specconv.conv(x, w, **kw))


def test_T_of_same_padding():
    w = np.random.default_rng(6).standard_normal((2, 2, 5))
    assert SpectralConv(w, padding="same").T.padding == (2,)
    assert SpectralConv(w, padding="valid").T.padding == (0,)
    assert SpectralConv(w, padding="same", dilation=2).T.padding == (4,)
    assert SpectralConv(w[..., :4], padding="same").T.padding == ((1, 2),)  # even: extra right


@pytest.mark.parametrize("method", ref.METHODS)
@pytest.mark.parametrize("padding", ["same", ((2, 0), (1, 3))])
def test_T_of_asymmetric_padding_is_the_adjoint(method, padding):
    rng = np.random.default_rng(16)
    layer = SpectralConv(rng.standard_normal((3, 2, 4, 2)), padding=padding, method=method)
    x = rng.standard_normal((2, 2, 9, 7))
    y = rng.standard_normal(layer(x).shape)
    assert layer.T(y).shape == x.shape
    assert np.vdot(layer(x), y) == pytest.approx(np.vdot(x, layer.T(y)), rel=1e-12)
    assert_close(
        layer.T(y),
        ref.conv_transpose(y, layer.weight, padding=ref.conv_pads((4, 2), (1, 1), padding)),
    )


def _spectrum(x, d, whole):
    axes = tuple(range(-d, 0))
    return np.fft.fftn(x, axes=axes) if whole else np.fft.rfftn(x, axes=axes)


def _apply_response(H, x, d, whole):
    """irfftn(H @ rfftn(x)) per frequency; x (C_in, *n), H (*freq, C_out, C_in)."""
    X = np.moveaxis(_spectrum(x, d, whole), 0, -1)[..., None]  # (*freq, C_in, 1)
    Y = np.moveaxis((H @ X)[..., 0], -1, 0)
    axes = tuple(range(-d, 0))
    n = x.shape[1:]
    return np.fft.ifftn(Y, axes=axes) if whole else np.fft.irfftn(Y, s=n, axes=axes)


@pytest.mark.parametrize("is_complex", [False, True])
@pytest.mark.parametrize(
    "n, k, dilation, groups",
    [
        ((32,), (5,), (1,), 1),
        ((31,), (3,), (4,), 2),
        ((8, 10), (3, 5), (1, 1), 1),
        ((9, 7), (3, 3), (2, 1), 2),
        ((6, 5, 8), (3, 1, 3), (1, 1, 2), 1),
    ],
)
def test_frequency_response_is_the_layer(n, k, dilation, groups, is_complex):
    """Circular "same" padding, stride 1: layer(x) = ifft(H[f] @ X[f]) at every frequency."""
    d = len(n)
    rng = np.random.default_rng(7)
    dtype = np.complex128 if is_complex else np.float64
    w = ref.random_array(rng, (4, 4 // groups) + k, dtype)
    layer = SpectralConv(
        w, padding="same", padding_mode="circular", dilation=dilation, groups=groups
    )
    H = layer.frequency_response(n)
    whole = is_complex
    freq = n if whole else n[:-1] + (n[-1] // 2 + 1,)
    assert H.shape == freq + (4, 4)
    x = rng.standard_normal((4,) + n)
    assert_close(layer(x), _apply_response(H, x, d, whole))
    if not is_complex:  # the two-sided response of real weights says the same
        assert_close(
            layer(x), _apply_response(layer.frequency_response(n, whole=True), x, d, True).real
        )


@pytest.mark.parametrize("groups", [2, 4])
def test_frequency_response_block_diagonal_for_groups(groups):
    rng = np.random.default_rng(8)
    layer = SpectralConv(rng.standard_normal((8, 4 // groups, 5)), groups=groups)
    H = layer.frequency_response(16)
    co, ci = 8 // groups, 4 // groups
    for g in range(groups):
        for h in range(groups):
            block = H[:, g * co : (g + 1) * co, h * ci : (h + 1) * ci]
            if g == h:
                assert np.all(np.abs(block).max(axis=0) > 0)
            else:
                assert np.all(block == 0)


def test_frequency_response_of_transpose_is_conjugate_transpose():
    rng = np.random.default_rng(9)
    layer = SpectralConv(rng.standard_normal((6, 2, 3, 4)), padding=(1, 2), groups=2)
    H, HT = layer.frequency_response((12, 10)), layer.T.frequency_response((12, 10))
    assert_close(HT, H.conj().swapaxes(-1, -2))


def _count_spectra(monkeypatch):
    calls = []
    original = _engine.kernel_spectra

    def counting(*args, **kwargs):
        calls.append(args[2].fft_shape)
        return original(*args, **kwargs)

    monkeypatch.setattr(_engine, "kernel_spectra", counting)
    return calls


@pytest.mark.parametrize("transposed", [False, True])
def test_layer_caches_kernel_spectra(monkeypatch, transposed):
    calls = _count_spectra(monkeypatch)
    rng = np.random.default_rng(10)
    w = rng.standard_normal((4, 4, 9))
    layer = (SpectralConvTranspose if transposed else SpectralConv)(w, method="fft")
    x1, x2 = rng.standard_normal((4, 500)), rng.standard_normal((4, 500))
    y1 = layer(x1)
    assert len(calls) == 1
    y2 = layer(x2)
    assert len(calls) == 1  # same shape: spectra reused
    assert_close(y1, ref.conv_transpose(x1, w) if transposed else ref.conv(x1, w))
    assert_close(y2, ref.conv_transpose(x2, w) if transposed else ref.conv(x2, w))
    layer(rng.standard_normal((4, 37)))  # another shape: its own tiles
    n_after_other = len(calls)
    layer(x1)  # back to the first shape: still cached
    assert len(calls) == n_after_other
    assert len(set(calls)) == len(calls)  # never the same tile shape twice


def test_function_calls_do_not_share_a_cache(monkeypatch):
    """conv() builds its layer per call: a different weight must never reuse old spectra."""
    calls = _count_spectra(monkeypatch)
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 200))
    w1, w2 = rng.standard_normal((2, 2, 9)), rng.standard_normal((2, 2, 9))
    assert_close(specconv.conv(x, w1, method="fft"), ref.conv(x, w1))
    assert_close(specconv.conv(x, w2, method="fft"), ref.conv(x, w2))
    assert len(calls) == 2


def test_weight_is_a_read_only_copy():
    rng = np.random.default_rng(12)
    w = rng.standard_normal((2, 3, 5))
    b = rng.standard_normal(2)
    layer = SpectralConv(w, b)
    assert not layer.weight.flags.writeable and not layer.bias.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        layer.weight[0, 0, 0] = 1.0
    assert w.flags.writeable and b.flags.writeable  # the user's arrays are untouched
    x = rng.standard_normal((3, 30))
    y = layer(x)
    w[...] = 0  # changing the user's array afterwards does not change the layer
    b[...] = 0
    np.testing.assert_array_equal(layer(x), y)
    assert layer.T.weight.flags.writeable is False


_NAN_X = np.array(
    [
        [1.0, np.nan, 2.0, 3.0, -np.inf, 4.0, 5.0, 6.0],
        [0.5, 1.5, np.inf, 2.5, 3.5, 4.5, np.nan, 5.5],
    ]
)


@pytest.mark.parametrize("method", ref.METHODS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.complex128])
@pytest.mark.parametrize(
    "call",
    [
        lambda x, w, b, m: specconv.conv(x, w, b, padding=1, method=m),
        lambda x, w, b, m: specconv.conv(x, w, b, padding=2, padding_mode="reflect", method=m),
        lambda x, w, b, m: specconv.conv_transpose(x, w, b, stride=2, method=m),
        lambda x, w, b, m: specconv.convolve(x, w, mode="same", method=m),
        lambda x, w, b, m: specconv.correlate(x, w, method=m),
        lambda x, w, b, m: SpectralConv(w, b, method=m)(x),
        lambda x, w, b, m: SpectralConv(w, b, method=m).T(x),
    ],
    ids=["conv", "conv-reflect", "conv_transpose", "convolve", "correlate", "layer", "layer.T"],
)
def test_inputs_never_modified(call, dtype, method):
    """Also with NaN and ±Inf present (they are zeroed internally: on a copy)."""
    rng = np.random.default_rng(13)
    x = (_NAN_X * (1 + 1j) if np.dtype(dtype).kind == "c" else _NAN_X).astype(dtype)
    w = ref.random_array(rng, (2, 2, 3), dtype)
    b = ref.random_array(rng, (2,), dtype)
    copies = [a.copy() for a in (x, w, b)]
    for _ in range(2):  # second call: cached paths too
        call(x, w, b, method)
    for a, c in zip((x, w, b), copies):
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("method", ref.METHODS)
@pytest.mark.parametrize(
    "convert",
    [
        lambda a: a.astype(a.dtype.newbyteorder(">")),  # big-endian, e.g. from a file
        lambda a: a.tolist(),
        lambda a: np.frombuffer(a.tobytes(), dtype=a.dtype).reshape(a.shape),  # read-only
    ],
    ids=["big-endian", "nested-lists", "read-only"],
)
def test_array_like_inputs(convert, method):
    rng = np.random.default_rng(14)
    x = rng.standard_normal((2, 3, 30))
    w = rng.standard_normal((4, 3, 5))
    b = rng.standard_normal(4)
    y = specconv.conv(convert(x), convert(w), convert(b), padding=2, method=method)
    assert y.dtype == np.float64 and y.dtype.isnative
    assert_close(y, ref.conv(x, w, b, padding=2))
    yt = specconv.conv_transpose(convert(x), convert(w[:3]), stride=2, method=method)
    assert_close(yt, ref.conv_transpose(x, w[:3], stride=2))
    yc = specconv.convolve(convert(x), convert(w), mode="same", method=method)
    assert_close(yc, specconv.convolve(x, w, mode="same", method=method))


def test_output_size_may_include_batch_and_channels():
    """As in torch, output_size may be the full output shape; only its spatial tail counts."""
    rng = np.random.default_rng(15)
    layer = SpectralConvTranspose(rng.standard_normal((3, 2, 4)), stride=3)
    x = rng.standard_normal((5, 3, 7))
    spatial = layer(x, output_size=(23,))
    np.testing.assert_array_equal(layer(x, output_size=(5, 2, 23)), spatial)
    assert spatial.shape == (5, 2, 23)
