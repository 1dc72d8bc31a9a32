"""Strided layers by polyphase decomposition (specconv._polyphase) against independent oracles.

Transposed layers with a stride run, in the FFT path, as one stride-1 layer of their output
phases at the input rate; strided layers as one stride-1 layer of their input phases at the
output rate. Both must equal the numpy reference (tests/_reference.py), the direct method and,
when it imports, torch (float64 / complex128 on inputs cast to the result dtype), for random
strides (1-5), kernels, groups, dilations (coprime with the stride or not), paddings,
output paddings, 1-3 spatial axes, real and complex data in single and double precision.
"""

from __future__ import annotations

import importlib.util

import _reference as ref
import numpy as np
import pytest
from _tolerances import assert_close
from hypothesis import given
from hypothesis import strategies as st

import specconv
from specconv import _correlate, _costmodel, _polyphase, fft
from specconv._geometry import Geometry

HAS_TORCH = importlib.util.find_spec("torch") is not None


def _torch_transpose(x, w, bias, *, output_size=None, **kwargs):
    """torch's conv_transpose{d}d in double precision (its module for ``output_size``)."""
    import torch

    wide = np.complex128 if "c" in (x.dtype.kind, w.dtype.kind) else np.float64
    d = w.ndim - 2
    t = [
        None if a is None else torch.from_numpy(np.ascontiguousarray(a, wide)) for a in (x, w, bias)
    ]
    with torch.no_grad():
        if output_size is None:
            fn = getattr(torch.nn.functional, f"conv_transpose{d}d")
            return fn(*t, **kwargs).numpy()
        layer = getattr(torch.nn, f"ConvTranspose{d}d")(
            w.shape[0],
            w.shape[1] * kwargs.get("groups", 1),
            w.shape[2:],
            bias=bias is not None,
            dtype=t[1].dtype,
            **kwargs,
        )
        layer.weight.copy_(t[1])
        if bias is not None:
            layer.bias.copy_(t[2])
        return layer(t[0], output_size=list(output_size)).numpy()


def _torch_conv(x, w, **kwargs):
    import torch

    wide = np.complex128 if "c" in (x.dtype.kind, w.dtype.kind) else np.float64
    fn = getattr(torch.nn.functional, f"conv{w.ndim - 2}d")
    with torch.no_grad():
        return fn(
            torch.from_numpy(x.astype(wide)), torch.from_numpy(w.astype(wide)), **kwargs
        ).numpy()


def _layout(draw, d):
    """Groups, channels per group in and out, kernel, stride (one axis > 1), dilation."""
    groups, ci, co = draw(ref.channel_layouts())
    max_k = {1: 7, 2: 4}.get(d, 3)
    kernel = tuple(draw(st.integers(1, max_k)) for _ in range(d))
    stride = [draw(st.integers(1, 5)) for _ in range(d)]
    if max(stride) == 1:
        stride[draw(st.integers(0, d - 1))] = draw(st.integers(2, 5))
    dilation = tuple(draw(st.integers(1, 4 if d == 1 else 2)) for _ in range(d))
    return groups, ci, co, kernel, tuple(stride), dilation


@st.composite
def transposed_layers(draw):
    d = draw(st.sampled_from([1, 1, 2, 3]))
    groups, ci, co, kernel, stride, dilation = _layout(draw, d)
    output_padding = tuple(draw(st.integers(0, max(s, dl) - 1)) for s, dl in zip(stride, dilation))
    n = tuple(draw(st.integers(1, {1: 12, 2: 5}.get(d, 3))) for _ in range(d))
    room = [
        (m - 1) * s + dl * (k - 1) + op
        for m, s, dl, k, op in zip(n, stride, dilation, kernel, output_padding)
    ]
    padding = tuple(draw(st.integers(0, r // 2)) for r in room)
    return {
        "x_shape": draw(st.sampled_from([(), (2,)])) + (groups * ci,) + n,
        "w_shape": (groups * ci, co) + kernel,
        "bias": draw(st.booleans()),
        # torch's output_size reaches output_padding below the stride only (ours: below
        # max(stride, dilation), as for output_padding itself)
        "use_output_size": draw(st.booleans())
        and all(op < s for op, s in zip(output_padding, stride)),
        "kwargs": dict(
            stride=stride,
            padding=padding,
            output_padding=output_padding,
            dilation=dilation,
            groups=groups,
        ),
        "dtype": draw(st.sampled_from(ref.FLOAT_DTYPES)),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


@st.composite
def strided_layers(draw):
    d = draw(st.sampled_from([1, 1, 2, 3]))
    groups, ci, co, kernel, stride, dilation = _layout(draw, d)
    padding = tuple(draw(st.integers(0, 3)) for _ in range(d))
    span = [dl * (k - 1) + 1 for k, dl in zip(kernel, dilation)]
    n = tuple(
        max(1, e - 2 * p) + draw(st.integers(0, {1: 30, 2: 8}.get(d, 4)))
        for e, p in zip(span, padding)
    )
    return {
        "x_shape": draw(st.sampled_from([(), (2,)])) + (groups * ci,) + n,
        "w_shape": (groups * co, ci) + kernel,
        "kwargs": dict(stride=stride, padding=padding, dilation=dilation, groups=groups),
        "dtype": draw(st.sampled_from(ref.FLOAT_DTYPES)),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


@ref.hypothesis_settings(max_examples=60)
@given(cfg=transposed_layers())
def test_transposed_phases_equal_the_reference_direct_method_and_torch(cfg):
    rng = np.random.default_rng(cfg["seed"])
    x = ref.random_array(rng, cfg["x_shape"], cfg["dtype"])
    w = ref.random_array(rng, cfg["w_shape"], cfg["dtype"])
    c_out = cfg["w_shape"][1] * cfg["kwargs"]["groups"]
    bias = ref.random_array(rng, (c_out,), cfg["dtype"]) if cfg["bias"] else None
    expected = ref.conv_transpose(x, w, bias, **cfg["kwargs"])
    kwargs = dict(cfg["kwargs"])
    output_size = None
    if cfg["use_output_size"]:  # the same output through output_size instead
        output_size = expected.shape[-(w.ndim - 2) :]
        kwargs.pop("output_padding")
    layer = specconv.SpectralConvTranspose(w, bias, method="fft", **kwargs)
    y = layer(x, output_size=output_size)
    assert y.dtype == np.dtype(cfg["dtype"])
    assert_close(y, expected)
    direct = specconv.SpectralConvTranspose(w, bias, method="direct", **kwargs)
    assert_close(y, direct(x, output_size=output_size), floor=1.0)
    if HAS_TORCH:
        xb = x if x.ndim == w.ndim else x[None]
        t = _torch_transpose(xb, w, bias, output_size=output_size, **kwargs)
        assert_close(y if x.ndim == w.ndim else y[None], t)


def _strided_plan(x, w, stride, padding, dilation, groups):
    """The input-phase plan of the layer, and its geometry and pads (forced, whatever the
    cost model would pick)."""
    xb = x if x.ndim == w.ndim else x[None]
    d = w.ndim - 2
    pads = tuple((p, p) for p in padding)
    geom = Geometry(
        xb.shape[0],
        xb.shape[1],
        w.shape[0],
        groups,
        w.shape[2:],
        dilation,
        stride,
        tuple(n + 2 * p for n, p in zip(xb.shape[2:], padding)),
        "c" in (x.dtype.kind, w.dtype.kind),
    )
    plan = _polyphase.strided_plan(geom, pads, "fft", np.result_type(x, w).itemsize, 2)
    assert plan.geom.stride == (1,) * d and plan.geom.out_shape == geom.out_shape
    return xb, geom, pads, plan


@ref.hypothesis_settings(max_examples=60)
@given(cfg=strided_layers())
def test_strided_phases_equal_the_reference_direct_method_and_torch(cfg):
    rng = np.random.default_rng(cfg["seed"])
    x = ref.random_array(rng, cfg["x_shape"], cfg["dtype"])
    w = ref.random_array(rng, cfg["w_shape"], cfg["dtype"])
    kw = cfg["kwargs"]
    expected = ref.conv(x, w, **kw)
    xb, geom, pads, plan = _strided_plan(x, w, **kw)
    y = _correlate.correlate(
        xb, w, geom, pads, np.dtype(cfg["dtype"]), method="fft", nan_policy="propagate", choice=plan
    )
    assert y.dtype == np.dtype(cfg["dtype"])
    assert_close(y if x.ndim == w.ndim else y[0], expected)
    assert_close(y if x.ndim == w.ndim else y[0], specconv.conv(x, w, method="direct", **kw))
    # and whichever path the cost model picks
    assert_close(specconv.conv(x, w, method="fft", **kw), expected)
    if HAS_TORCH:
        assert_close(y, _torch_conv(xb, w, **kw))


def test_transposed_phase_layer_runs_at_the_input_rate_with_stacked_rows():
    """Upsampling x4 of 32 depthwise channels by 48 taps: 4 · 32 output rows in 32 groups,
    the input transformed at its own length, never zero-stuffed."""
    n, s, K, C = 1000, 4, 48, 32
    geom = Geometry(1, C, C, C, (K,), (1,), (1,), ((n - 1) * s + 1 + 2 * (K - 1),), False)
    plan = _polyphase.transposed_plan(geom, (s,), ((K - 1, K - 1),), (n,), "fft", 8, 2)
    assert plan.geom.out_channels == s * C and plan.geom.in_channels == C
    assert plan.geom.groups == C and plan.geom.kernel == (K // s,)
    assert plan.geom.padded[0] < n + K  # the input rate, not s·n
    assert plan.lengths == geom.out_shape == ((n - 1) * s + K,)


@pytest.mark.parametrize(
    ("stride", "dilation", "phases"), [(4, 2, 2), (6, 4, 3), (3, 3, 1), (4, 1, 4), (5, 3, 5)]
)
def test_phases_no_tap_reaches_are_left_out(stride, dilation, phases):
    """A dilation sharing a factor g with the stride reaches s / g phases only (evenly
    spaced by g)."""
    axis = _polyphase.transposed_axis(6, dilation, stride, before=0)
    assert len(axis.phases) == phases
    assert sorted(k for _, k, _ in axis.taps) == list(range(6))
    assert set(np.diff(axis.phases)) <= {stride // phases}
    axis = _polyphase.strided_axis(6, dilation, stride, before=0)
    assert len(axis.phases) == phases


@pytest.mark.parametrize("d", [1, 2])
def test_transposed_output_phases_no_tap_reaches_are_the_bias(d):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3) + (5,) * d)
    w = rng.standard_normal((3, 2) + (2,) * d)
    b = np.array([0.5, -2.0])
    kw = dict(stride=4, dilation=2, padding=1)
    y = specconv.conv_transpose(x, w, b, method="fft", **kw)
    assert_close(y, ref.conv_transpose(x, w, b, **kw))
    odd = y[(Ellipsis,) + (slice(0, None, 2),) * d]  # padding 1: the even outputs
    np.testing.assert_array_equal(odd, np.broadcast_to(b.reshape((2,) + (1,) * d), odd.shape))


@pytest.mark.parametrize("transposed", [False, True])
def test_nonfinite_input_stays_in_the_taps_receptive_field(transposed):
    """NaN and Inf mark exactly the outputs a direct computation makes non-finite, even where
    the phase kernels hold zeros between taps (stride 2, dilation 3)."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 4, 40))
    x[0, 1, 7], x[1, 3, 22] = np.nan, np.inf
    kw = dict(stride=(2,), dilation=(3,), padding=(2,), groups=2)
    if transposed:
        w = rng.standard_normal((4, 3, 5))
        y = specconv.conv_transpose(x, w, method="fft", **kw)
        expected = ref.conv_transpose(x, w, **kw)
    else:
        w = rng.standard_normal((6, 2, 5))
        _, geom, pads, plan = _strided_plan(x, w, **kw)
        y = _correlate.correlate(
            x,
            w,
            geom,
            pads,
            np.dtype(np.float64),
            method="fft",
            nan_policy="propagate",
            choice=plan,
        )
        expected = ref.conv(x, w, **kw)
    np.testing.assert_array_equal(np.isfinite(y), np.isfinite(expected))
    assert_close(y, expected, where=np.isfinite(expected))


def test_spectra_cache_tells_phase_layouts_apart():
    """One weight in two transposed layers whose phase kernels have the same shape and differ
    only in where the taps sit (7 taps, stride 2, paddings 0 and 1): each gets its own
    cached spectra."""
    rng = np.random.default_rng(11)
    x, w = rng.standard_normal((3, 50)), rng.standard_normal((3, 3, 7))
    for padding in (0, 1, 0):
        y = specconv.conv_transpose(x, w, stride=2, padding=padding, method="fft")
        assert_close(y, ref.conv_transpose(x, w, stride=2, padding=padding))


@pytest.mark.parametrize("method", ["auto", "fft"])
def test_choice_is_the_cheaper_of_folding_and_the_phases(method):
    """For a strided layer the choice is the model's cheapest of its candidates: folding the
    spectrum, the input phases (and, for "auto", the direct method)."""
    geom = Geometry(1, 64, 64, 64, (1001,), (1,), (4,), (300_000,), False)
    pads = ((0, 0),)
    workers = fft.get_num_threads()
    choice = _correlate.choose(geom, pads, method, 4, workers)
    folding = _costmodel.choose(geom, method, 4, workers)
    phases = _polyphase.strided_plan(geom, pads, "fft", 4, workers)
    assert choice.seconds == min(folding.seconds, phases.seconds)
    assert isinstance(choice, _polyphase.Plan) == (phases.seconds < folding.seconds)
    assert _correlate.choose(geom, pads, "direct", 4, workers).method == "direct"


def test_layer_objects_run_the_phases_where_the_model_prices_them_lower(monkeypatch):
    """A layer object (default planning, as conv() makes) weighs the input phases too: the
    same choice as the bare model, and the phases are what runs."""
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((1, 8, 4000)), rng.standard_normal((8, 1, 201))
    geom = Geometry(1, 8, 8, 8, (201,), (1,), (4,), (4000,), False)
    workers = fft.get_num_threads()
    assert isinstance(_correlate.choose(geom, ((0, 0),), "fft", 8, workers), _polyphase.Plan)
    ran = []
    run_plan = _correlate.run_plan
    monkeypatch.setattr(
        _correlate, "run_plan", lambda plan, *a, **k: ran.append(plan) or run_plan(plan, *a, **k)
    )
    y = specconv.SpectralConv(w, stride=4, groups=8, method="fft")(x)
    assert ran and isinstance(ran[0], _polyphase.Plan)
    assert_close(y, ref.conv(x, w, stride=4, groups=8))


@pytest.mark.parametrize("n", [(24, 18), (25, 19)])
@pytest.mark.parametrize(
    ("stride", "dilation", "padding"), [((2, 3), (1, 1), (1, 2)), ((4, 2), (2, 4), (3, 0))]
)
def test_strided_phases_read_in_place_or_copied(n, stride, dilation, padding):
    """Input lengths that are multiples of the stride are read in place (a view of x, no
    copy); others are copied with zeros past each phase's end. Both equal the reference."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 4) + n)
    w = rng.standard_normal((6, 2, 3, 2))
    kw = {"stride": stride, "padding": padding, "dilation": dilation, "groups": 2}
    xb, geom, pads, plan = _strided_plan(x, w, **kw)
    in_place = all(m % s == 0 for m, s in zip(n, stride))
    assert np.shares_memory(plan.phase_input(xb), xb) == in_place
    y = _correlate.correlate(
        xb, w, geom, pads, np.dtype(np.float64), method="fft", nan_policy="propagate", choice=plan
    )
    assert_close(y, ref.conv(x, w, **kw))
