"""Weight and bias gradients, and the layers' vector-Jacobian products.

Oracles: a plain numpy weight gradient written here from the definition (one tap at a time,
always), the directional-derivative identity ``<g, conv(x, v)> = <dw, v>`` (linear in the
weight, so exact for every option), and torch -- ``torch.nn.grad.conv{1,2,3}d_weight`` and
autograd, complex and padding modes included -- when it imports.
"""

from __future__ import annotations

import itertools

import _reference as ref
import numpy as np
import pytest
from _tolerances import assert_close, rtol
from hypothesis import given
from hypothesis import strategies as st

import specconv
from specconv import SpectralConv, SpectralConvTranspose
from specconv.gradients import bias_grad, conv_transpose_weight_grad, conv_weight_grad

GRAD_METHODS = ("auto", "fft", "direct")


def _ref_weight_grad(x, g, w_shape, *, stride, padding, dilation, groups, padding_mode):
    """``dw[o, c, k] = sum_b sum_n g[b, o, n] conj(xpad[b, c', n·s + k·d])``, tap by tap."""
    d = len(w_shape) - 2
    xb = np.asarray(x)[None] if np.ndim(x) == d + 1 else np.asarray(x)
    gb = np.asarray(g)[None] if np.ndim(g) == d + 1 else np.asarray(g)
    dtype = np.complex128 if "c" in (xb.dtype.kind, gb.dtype.kind) else np.float64
    xb, gb = xb.astype(dtype), gb.astype(dtype)
    stride, dilation = ref._tuple(stride, d), ref._tuple(dilation, d)
    pads = ref.conv_pads(w_shape[2:], dilation, padding)
    xp = np.pad(xb, ((0, 0), (0, 0)) + pads, mode=ref._NUMPY_PAD[padding_mode])
    C_out, ci = w_shape[:2]
    co = C_out // groups
    out = gb.shape[2:]
    dw = np.zeros(w_shape, dtype=dtype)
    for k in itertools.product(*(range(m) for m in w_shape[2:])):
        window = tuple(
            slice(kk * dl, kk * dl + (m - 1) * s + 1, s)
            for kk, dl, m, s in zip(k, dilation, out, stride)
        )
        for o in range(C_out):
            first = (o // co) * ci
            xs = xp[(slice(None), slice(first, first + ci)) + window]  # (B, ci, *out)
            dw[(o, slice(None)) + k] = (gb[:, o, None] * np.conj(xs)).sum(
                axis=(0,) + tuple(range(2, xs.ndim))
            )
    return dw


def _random_case(cfg, dtype):
    rng = np.random.default_rng(cfg["seed"])
    x = ref.random_array(rng, cfg["x_shape"], dtype)
    y = ref.conv(x, np.zeros(cfg["w_shape"]), **cfg["kwargs"])
    g = ref.random_array(rng, y.shape, dtype)
    v = ref.random_array(rng, cfg["w_shape"], dtype)
    return x, g, v


# --------------------------------------------------------------------------------------------
# against the numpy reference and the directional derivative (always)


@ref.hypothesis_settings(max_examples=150)
@given(
    cfg=ref.conv_configs(),
    method=st.sampled_from(GRAD_METHODS),
    dtype=st.sampled_from(ref.FLOAT_DTYPES),
)
def test_conv_weight_grad_matches_the_numpy_reference(cfg, method, dtype):
    """Every stride, padding (ints, pairs, "same", "valid"), dilation, groups, padding mode,
    batch, 1-3 dims, dtype and method."""
    x, g, v = _random_case(cfg, dtype)
    dw = conv_weight_grad(x, cfg["w_shape"], g, method=method, **cfg["kwargs"])
    assert dw.shape == cfg["w_shape"] and dw.dtype == specconv.result_dtype(x, g)
    expected = _ref_weight_grad(x, g, cfg["w_shape"], **cfg["kwargs"])
    # the gradient sums B·prod(out) products per entry: rounding grows with that count
    terms = g.size // cfg["w_shape"][0]
    assert_close(dw, expected, floor=np.sqrt(terms))
    # and the directional derivative of <g, conv(x, w)> along v
    lhs = np.vdot(g, ref.conv(x, v, **cfg["kwargs"]))
    scale = np.linalg.norm(g) * np.abs(v).sum() * np.abs(x).max() * 3 ** len(cfg["w_shape"])
    assert abs(lhs - np.vdot(dw, v)) <= rtol(dw.dtype) * scale


@ref.hypothesis_settings(max_examples=100)
@given(
    cfg=ref.transpose_configs(),
    method=st.sampled_from(GRAD_METHODS),
    dtype=st.sampled_from(ref.FLOAT_DTYPES),
)
def test_conv_transpose_weight_grad_is_the_directional_derivative(cfg, method, dtype):
    """<g, conv_transpose(x, v)> = <dw, v> for every v: the gradient is linear in the weight,
    so checking the derivative along random directions is checking it entry by entry too
    (below, with the unit directions)."""
    rng = np.random.default_rng(cfg["seed"])
    x = ref.random_array(rng, cfg["x_shape"], dtype)
    y = ref.conv_transpose(x, np.zeros(cfg["w_shape"]), **cfg["kwargs"])
    g = ref.random_array(rng, y.shape, dtype)
    dw = conv_transpose_weight_grad(x, cfg["w_shape"], g, method=method, **cfg["kwargs"])
    assert dw.shape == cfg["w_shape"]
    # entry by entry: <g, conv_transpose(x, e_j)> for every unit weight e_j
    expected = np.zeros(cfg["w_shape"], dtype=np.complex128)
    for j in np.ndindex(*cfg["w_shape"]):
        e = np.zeros(cfg["w_shape"])
        e[j] = 1.0
        expected[j] = np.vdot(ref.conv_transpose(x, e, **cfg["kwargs"]), g)
    if dw.dtype.kind != "c":
        expected = expected.real
    assert_close(dw, expected, floor=np.sqrt(g.size))


@pytest.mark.parametrize("method", GRAD_METHODS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
def test_long_signal_over_many_tiles(method, dtype):
    """A long 1-D signal the FFT method cuts into tiles, with a stride and dilation."""
    rng = np.random.default_rng(1)
    x = ref.random_array(rng, (2, 4, 3000), dtype)
    kw = {"stride": 3, "padding": (5,), "dilation": 2, "groups": 2}
    w_shape = (6, 2, 41)
    g = ref.random_array(rng, ref.conv(x, np.zeros(w_shape), **kw).shape, dtype)
    dw = conv_weight_grad(x, w_shape, g, method=method, **kw)
    expected = _ref_weight_grad(x, g, w_shape, padding_mode="zeros", **kw)
    assert_close(dw, expected)


def test_the_fft_method_tiles_within_its_memory_bound(monkeypatch):
    """Tiny budgets force many tiles and chunks; the result stays exact."""
    from specconv import gradients

    monkeypatch.setattr(gradients, "ACCUMULATOR_BUDGET", 1)
    monkeypatch.setattr(gradients, "CHUNK_BUDGET", 1)
    rng = np.random.default_rng(2)
    x, w_shape = rng.standard_normal((3, 2, 40, 30)), (3, 2, 5, 4)
    g = rng.standard_normal(ref.conv(x, np.zeros(w_shape), stride=(2, 1)).shape)
    dw = conv_weight_grad(x, w_shape, g, stride=(2, 1), method="fft")
    assert_close(
        dw,
        _ref_weight_grad(
            x, g, w_shape, stride=(2, 1), padding=0, dilation=1, groups=1, padding_mode="zeros"
        ),
    )


def test_bias_grad():
    g = np.arange(24.0).reshape(2, 3, 4)
    np.testing.assert_array_equal(bias_grad(g, 1), g.sum(axis=(0, 2)))
    np.testing.assert_array_equal(bias_grad(g[0], 1), g[0].sum(axis=1))
    np.testing.assert_array_equal(bias_grad(g, 2), g.sum(axis=(1, 2)))
    with pytest.raises(ValueError, match="ndim=3"):
        bias_grad(g, 3)


@pytest.mark.parametrize("padding_mode", ref.PADDING_MODES)
def test_vjp_of_a_layer_is_its_derivative(padding_mode):
    """The three gradients against the numpy reference and the adjoint."""
    rng = np.random.default_rng(4)
    w, b = rng.standard_normal((4, 1, 3, 3)), rng.standard_normal(4)
    kw = {
        "stride": (1, 2),
        "padding": ((2, 1), (1, 1)),
        "dilation": (2, 1),
        "groups": 2,
        "padding_mode": padding_mode,
    }
    layer = SpectralConv(w, b, **kw)
    x = rng.standard_normal((2, 2, 9, 11))
    g = rng.standard_normal(layer(x).shape)
    gx, gw, gb = specconv.vjp(layer, x, g)
    assert_close(gw, _ref_weight_grad(x, g, w.shape, **kw))
    np.testing.assert_allclose(gb, g.sum(axis=(0, 2, 3)))
    # grad_x: <g, A dx> = <gx, dx>
    dx = rng.standard_normal(x.shape)
    assert np.vdot(g, ref.conv(dx, w, **kw)) == pytest.approx(np.vdot(gx, dx), rel=1e-12)
    assert specconv.vjp(SpectralConv(w, **kw), x, g)[2] is None


def test_vjp_of_a_transposed_layer():
    rng = np.random.default_rng(6)
    w, b = rng.standard_normal((3, 2, 4)), rng.standard_normal(2)
    kw = {"stride": 2, "padding": 1, "output_padding": 1, "dilation": 1, "groups": 1}
    layer = SpectralConvTranspose(w, b, **kw)
    x = rng.standard_normal((3, 12))
    g = rng.standard_normal(layer(x).shape)
    gx, gw, gb = specconv.vjp(layer, x, g)
    dx, v = rng.standard_normal(x.shape), rng.standard_normal(w.shape)
    assert np.vdot(g, ref.conv_transpose(dx, w, **kw)) == pytest.approx(np.vdot(gx, dx))
    assert np.vdot(g, ref.conv_transpose(x, v, **kw)) == pytest.approx(np.vdot(gw, v))
    np.testing.assert_allclose(gb, g.sum(axis=1))


# --------------------------------------------------------------------------------------------
# vjp(layer, x): the pullback reuses the forward pass's input spectra


@ref.hypothesis_settings(max_examples=120)
@given(cfg=ref.conv_configs(), dtype=st.sampled_from(ref.FLOAT_DTYPES), bias=st.booleans())
def test_pullback_equals_the_recompute_path_and_the_reference(cfg, dtype, bias):
    """``y, pullback = vjp(layer, x)``: ``y`` is ``layer(x)`` and ``pullback(g)`` the three
    gradients of ``vjp(layer, x, g)`` for every stride, padding, dilation, groups, padding
    mode, batch, 1-3 dims and dtype; the weight gradient from the kept spectra also against
    the numpy reference."""
    rng = np.random.default_rng(cfg["seed"])
    x = ref.random_array(rng, cfg["x_shape"], dtype)
    w = ref.random_array(rng, cfg["w_shape"], dtype)
    b = ref.random_array(rng, cfg["w_shape"][0], dtype) if bias else None
    layer = SpectralConv(w, b, method="fft", **cfg["kwargs"])
    y, pullback = specconv.vjp(layer, x)
    np.testing.assert_array_equal(y, layer(x))
    g = ref.random_array(rng, y.shape, dtype)
    gx, gw, gb = pullback(g)
    rx, rw, rb = specconv.vjp(layer, x, g)
    assert gw.dtype == rw.dtype and gw.shape == rw.shape
    np.testing.assert_array_equal(gx, rx)  # the same adjoint call
    assert_close(gw, rw, floor=np.sqrt(g.size))
    assert_close(gw, _ref_weight_grad(x, g, cfg["w_shape"], **cfg["kwargs"]), floor=np.sqrt(g.size))
    if bias:
        np.testing.assert_array_equal(gb, rb)
    else:
        assert gb is None


KEPT_CASES = {
    "1-D long, many tiles": ((2, 6, 5000), (4, 6, 301), {}),
    "1-D stride, dilation, pairs": (
        (1, 4, 3000),
        (6, 4, 31),
        {"stride": 3, "padding": ((5, 2),), "dilation": 2},
    ),
    "1-D depthwise, stride": ((2, 4, 4000), (4, 1, 41), {"groups": 4, "stride": 2}),
    "2-D groups, reflect": (
        (2, 4, 60, 50),
        (6, 2, 5, 7),
        {"groups": 2, "padding": "same", "padding_mode": "reflect"},
    ),
    "3-D stride, dilation": (
        (2, 3, 20, 21, 22),
        (4, 3, 3, 4, 5),
        {"stride": (1, 2, 1), "dilation": (2, 1, 1)},
    ),
}


@pytest.fixture
def folding(monkeypatch):
    """Strided layers on the FFT engine at the full rate (folding the spectrum), not on their
    input phases: the one strided path whose input spectra the pullback can keep."""
    from specconv import _costmodel, _polyphase

    monkeypatch.setattr(
        _polyphase,
        "choose_strided",
        lambda geom, pads, method, itemsize, workers, **planning: _costmodel.choose(
            geom, method, itemsize, workers, **planning
        ),
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
@pytest.mark.parametrize("case", list(KEPT_CASES))
def test_pullback_keeps_the_spectra_of_fft_layers(case, dtype, folding):
    """Layers that run the FFT engine on their input keep its spectra, and the weight gradient
    from them equals the one recomputed from x (the tolerance of the dtype)."""
    x_shape, w_shape, kw = KEPT_CASES[case]
    rng = np.random.default_rng(8)
    x = ref.random_array(rng, x_shape, dtype)
    layer = SpectralConv(ref.random_array(rng, w_shape, dtype), method="fft", **kw)
    y, pullback = specconv.vjp(layer, x)
    assert pullback.saved_bytes > 0
    g = ref.random_array(rng, y.shape, dtype)
    expected = conv_weight_grad(x, w_shape, g, method="direct", **kw)
    assert_close(pullback.weight_grad(g), expected)
    # unbatched input: the same gradients
    y1, pullback1 = specconv.vjp(layer, x[0])
    assert pullback1.saved_bytes > 0
    assert_close(pullback1.weight_grad(g[0]), conv_weight_grad(x[0], w_shape, g[0], **kw))


def test_pullback_of_a_layer_run_by_its_phases_recomputes():
    """A strided layer that runs on its input phases keeps no spectra (they are the phases',
    at the lower rate): the weight gradient is recomputed from x, and equal."""
    rng = np.random.default_rng(12)
    x, w = rng.standard_normal((2, 4, 4000)), rng.standard_normal((4, 1, 41))
    layer = SpectralConv(w, groups=4, stride=2, method="fft")
    y, pullback = specconv.vjp(layer, x)
    assert pullback.saved_bytes == 0
    g = rng.standard_normal(y.shape)
    assert_close(pullback.weight_grad(g), conv_weight_grad(x, w.shape, g, groups=4, stride=2))


def test_pullback_in_chunks_of_one_tile(monkeypatch, folding):
    """A tiny chunk budget: the kept spectra are read one tile at a time; the result stays
    exact (2-D, strided, two signals)."""
    from specconv import gradients

    rng = np.random.default_rng(11)
    x, w = rng.standard_normal((2, 3, 70, 60)), rng.standard_normal((4, 3, 9, 7))
    layer = SpectralConv(w, stride=(2, 1), padding=3, method="fft")
    y, pullback = specconv.vjp(layer, x)
    assert pullback.saved_bytes > 0
    g = rng.standard_normal(y.shape)
    monkeypatch.setattr(gradients, "CHUNK_BUDGET", 1)
    assert_close(
        pullback.weight_grad(g),
        _ref_weight_grad(
            x, g, w.shape, stride=(2, 1), padding=3, dilation=1, groups=1, padding_mode="zeros"
        ),
    )


def _count_forward_transforms(monkeypatch):
    """Record the channel count of every forward transform the gradients module runs."""
    from specconv import gradients

    channels = []
    execute = gradients.fft.execute

    def spy(a, out, axes, inverse=False, **kw):
        if not inverse:
            channels.append(a.shape[1])
        return execute(a, out, axes, inverse=inverse, **kw)

    monkeypatch.setattr(gradients.fft, "execute", spy)
    return channels


def test_the_pullback_transforms_no_input_again(monkeypatch):
    """The weight gradient from kept spectra transforms only the upstream gradient (C_out = 3
    channels), never the input (C_in = 5); recomputing transforms both."""
    rng = np.random.default_rng(9)
    x, w = rng.standard_normal((2, 5, 4000)), rng.standard_normal((3, 5, 201))
    layer = SpectralConv(w, method="fft")
    y, pullback = specconv.vjp(layer, x)
    g = rng.standard_normal(y.shape)
    channels = _count_forward_transforms(monkeypatch)
    kept = pullback.weight_grad(g)
    assert channels and set(channels) == {3}
    channels.clear()
    recomputed = conv_weight_grad(x, w.shape, g, method="fft")
    assert set(channels) == {3, 5}
    assert_close(kept, recomputed)


def test_pullback_memory_bound_and_fallbacks():
    """Over ``max_saved_bytes``, for non-finite input, the direct method, a transposed layer
    or a gradient of higher precision, nothing is kept or used: the gradients are recomputed,
    and equal."""
    rng = np.random.default_rng(10)
    x, w = rng.standard_normal((2, 3, 900)), rng.standard_normal((4, 3, 51))
    layer = SpectralConv(w, rng.standard_normal(4), method="fft")
    g = rng.standard_normal(layer(x).shape)
    expected = specconv.vjp(layer, x, g)
    _, full = specconv.vjp(layer, x)
    _, bounded = specconv.vjp(layer, x, max_saved_bytes=full.saved_bytes - 1)
    assert full.saved_bytes > 0 and bounded.saved_bytes == 0
    for got in (full(g), bounded(g)):
        for a, e in zip(got, expected):
            assert_close(a, e)
    assert specconv.vjp(SpectralConv(w, method="direct"), x)[1].saved_bytes == 0
    bad = x.copy()
    bad[0, 1, 300] = np.nan
    _, pb = specconv.vjp(layer, bad)
    assert pb.saved_bytes == 0
    np.testing.assert_array_equal(
        np.isnan(pb.weight_grad(g)), np.isnan(conv_weight_grad(bad, w.shape, g))
    )
    # float32 layer, float64 gradient: the result's precision is float64's, from x
    layer32 = SpectralConv(w.astype(np.float32), method="fft")
    _, pb32 = specconv.vjp(layer32, x.astype(np.float32))
    assert pb32.saved_bytes > 0
    gw = pb32.weight_grad(g)
    assert gw.dtype == np.float64
    assert_close(gw, conv_weight_grad(x.astype(np.float32), w.shape, g))
    tlayer = SpectralConvTranspose(rng.standard_normal((3, 2, 5)), stride=2)
    yt, pbt = specconv.vjp(tlayer, x)
    gt = rng.standard_normal(yt.shape)
    assert pbt.saved_bytes == 0
    for a, e in zip(pbt(gt), specconv.vjp(tlayer, x, gt)):
        if e is None:
            assert a is None
        else:
            assert_close(a, e)


def test_pullback_errors():
    layer = SpectralConv(np.ones((2, 3, 5)), method="fft")
    x = np.ones((3, 40))
    with pytest.raises(ValueError, match="max_saved_bytes must be a non-negative int, got -1"):
        specconv.vjp(layer, x, max_saved_bytes=-1)
    _, pullback = specconv.vjp(layer, x)
    with pytest.raises(
        ValueError, match=r"grad_output must have the layer's output shape \(2, 36\)"
    ):
        pullback(np.ones((2, 35)))
    with pytest.raises(ValueError, match="Invalid value for the 'method' parameter"):
        specconv.vjp(layer, x, method="fast")


# --------------------------------------------------------------------------------------------
# errors


@pytest.mark.parametrize(
    "weight_shape, match",
    [
        ((2, 3), "weight_shape must be a tuple of at least 3 positive ints"),
        ((2, 3, 0), "weight_shape must be"),
        ("abc", "weight_shape must be"),
        ((2, 2, 3), "x has 3 channels"),
    ],
)
def test_bad_weight_shape(weight_shape, match):
    with pytest.raises(ValueError, match=match):
        conv_weight_grad(np.ones((3, 10)), weight_shape, np.ones((2, 8)))


def test_bad_grad_output_and_options():
    x = np.ones((2, 3, 10))
    with pytest.raises(
        ValueError,
        match=r"grad_output must have the layer's output shape "
        r"\(2, 4, 8\) for this x, got \(4, 8\)",
    ):
        conv_weight_grad(x, (4, 3, 3), np.ones((4, 8)))
    with pytest.raises(ValueError, match="Invalid value for the 'method' parameter"):
        conv_weight_grad(x, (4, 3, 3), np.ones((2, 4, 8)), method="fast")
    with pytest.raises(ValueError, match="Invalid value for the 'padding_mode' parameter"):
        conv_weight_grad(x, (4, 3, 3), np.ones((2, 4, 8)), padding_mode="mirror")
    with pytest.raises(ValueError, match="padding_mode='reflect' needs padding smaller"):
        conv_weight_grad(
            np.ones((3, 2)), (4, 3, 3), np.ones((4, 6)), padding=2, padding_mode="reflect"
        )
    with pytest.raises(ValueError, match="output_padding must be smaller"):
        conv_transpose_weight_grad(np.ones((3, 5)), (3, 2, 3), np.ones((2, 7)), output_padding=1)


# --------------------------------------------------------------------------------------------
# against torch (skipped without it)


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def _torch_pad(t, pads, padding_mode, torch):
    """torch's own padding of nn.Conv for padding modes, pairs for zeros."""
    flat = [p for pair in reversed(pads) for p in pair]
    mode = "constant" if padding_mode == "zeros" else padding_mode
    return torch.nn.functional.pad(t, flat, mode=mode)


@ref.hypothesis_settings(max_examples=100)
@given(cfg=ref.conv_configs(), is_complex=st.booleans(), bias=st.booleans())
def test_vjp_matches_torch_autograd(torch, cfg, is_complex, bias):
    """The input, weight and bias gradients of torch's autograd, complex tensors included."""
    dtype = np.complex128 if is_complex else np.float64
    rng = np.random.default_rng(cfg["seed"])
    x = ref.random_array(rng, cfg["x_shape"], dtype)
    w = ref.random_array(rng, cfg["w_shape"], dtype)
    b = ref.random_array(rng, cfg["w_shape"][0], dtype) if bias else None
    kw = cfg["kwargs"]
    layer = SpectralConv(w, b, **kw)
    g = ref.random_array(rng, layer(x).shape, dtype)
    gx, gw, gb = specconv.vjp(layer, x, g)

    d = len(cfg["w_shape"]) - 2
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    bt = None if b is None else torch.tensor(b, requires_grad=True)
    pads = ref.conv_pads(cfg["w_shape"][2:], ref._tuple(kw["dilation"], d), kw["padding"])
    conv = getattr(torch.nn.functional, f"conv{d}d")
    batched = x.ndim == d + 2
    xin = xt if batched else xt[None]
    y = conv(
        _torch_pad(xin, pads, kw["padding_mode"], torch),
        wt,
        bt,
        stride=kw["stride"],
        dilation=kw["dilation"],
        groups=kw["groups"],
    )
    y.backward(torch.tensor(g if batched else g[None]))
    assert_close(gx, xt.grad.numpy(), floor=np.sqrt(g.size))
    assert_close(gw, wt.grad.numpy(), floor=np.sqrt(g.size))
    if bias:
        assert_close(gb, bt.grad.numpy(), floor=np.sqrt(g.size))


@ref.hypothesis_settings(max_examples=80)
@given(
    cfg=ref.conv_configs(modes=("zeros",)),
    method=st.sampled_from(GRAD_METHODS),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_conv_weight_grad_matches_torch_nn_grad(torch, cfg, method, dtype):
    """``torch.nn.grad.conv{1,2,3}d_weight`` (symmetric padding, "same", "valid"; torch's
    function takes no pairs), in the result's own precision."""
    kw = cfg["kwargs"]
    if isinstance(kw["padding"], tuple) and isinstance(kw["padding"][0], tuple):
        kw = dict(kw, padding=tuple(a for a, _ in kw["padding"]))
    x, g, _ = _random_case(dict(cfg, kwargs=kw), dtype)
    d = len(cfg["w_shape"]) - 2
    fn = getattr(torch.nn.grad, f"conv{d}d_weight")
    batched = x.ndim == d + 2
    pads = ref.conv_pads(cfg["w_shape"][2:], ref._tuple(kw["dilation"], d), kw["padding"])
    xt = torch.tensor(x if batched else x[None])
    if kw["padding"] == "same":  # torch.nn.grad takes int paddings: pad "same" by hand
        xt, padding = _torch_pad(xt, pads, "zeros", torch), 0
    else:
        padding = tuple(a for a, _ in pads)
    expected = fn(
        xt,
        cfg["w_shape"],
        torch.tensor(g if batched else g[None]),
        stride=kw["stride"],
        padding=padding,
        dilation=kw["dilation"],
        groups=kw["groups"],
    ).numpy()
    dw = conv_weight_grad(x, cfg["w_shape"], g, method=method, **kw)
    assert dw.dtype == dtype
    assert_close(dw, expected.astype(np.float64), floor=np.sqrt(g.size))


@ref.hypothesis_settings(max_examples=60)
@given(cfg=ref.transpose_configs(), is_complex=st.booleans())
def test_transposed_vjp_matches_torch_autograd(torch, cfg, is_complex):
    """Symmetric padding (torch's ConvTranspose takes no pairs)."""
    kw = cfg["kwargs"]
    if isinstance(kw["padding"][0], tuple):
        kw = dict(kw, padding=tuple(min(a, b) for a, b in kw["padding"]))
    dtype = np.complex128 if is_complex else np.float64
    rng = np.random.default_rng(cfg["seed"])
    x = ref.random_array(rng, cfg["x_shape"], dtype)
    w = ref.random_array(rng, cfg["w_shape"], dtype)
    layer = SpectralConvTranspose(w, **kw)
    g = ref.random_array(rng, layer(x).shape, dtype)
    gx, gw, _ = specconv.vjp(layer, x, g)
    d = len(cfg["w_shape"]) - 2
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    y = getattr(torch.nn.functional, f"conv_transpose{d}d")(
        xt if x.ndim == d + 2 else xt[None], wt, **kw
    )
    y.backward(torch.tensor(g if x.ndim == d + 2 else g[None]))
    assert_close(gx, xt.grad.numpy(), floor=np.sqrt(g.size))
    assert_close(gw, wt.grad.numpy(), floor=np.sqrt(g.size))
