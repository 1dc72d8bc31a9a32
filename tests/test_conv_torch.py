"""specconv.conv / conv_transpose / layers against torch.nn.functional (CPU), when torch imports.

torch is the oracle the PyTorch-semantics family promises to match: shapes and numbers of
conv1d/2d/3d, conv_transpose1d/2d/3d and the ``torch.nn.Conv`` padding modes. torch runs in
float64 / complex128 on inputs cast to the result dtype, so its own rounding stays far below
the tolerance table; the single-precision case is also checked torch-float32 against
specconv-float32.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import specconv

torch = pytest.importorskip("torch")
F = torch.nn.functional

import _reference as ref
from _tolerances import assert_close

_CONV = {1: torch.nn.Conv1d, 2: torch.nn.Conv2d, 3: torch.nn.Conv3d}
_CONV_T = {1: torch.nn.ConvTranspose1d, 2: torch.nn.ConvTranspose2d, 3: torch.nn.ConvTranspose3d}


def _wide(*arrays):
    kinds = [a.dtype.kind for a in arrays if a is not None]
    return np.complex128 if "c" in kinds else np.float64


def _t(a, dtype):
    return None if a is None else torch.from_numpy(np.ascontiguousarray(a, dtype=dtype))


def torch_conv(
    x, w, bias=None, *, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros", dtype=None
):
    """torch.nn.Conv{d}d with the given weight, on x cast to ``dtype`` (default: wide).

    (before, after) padding pairs, which torch's Conv does not take, go through F.pad first.
    """
    dtype = dtype or _wide(x, w, bias)
    d = w.ndim - 2
    if _is_pairs(padding):
        mode = "constant" if padding_mode == "zeros" else padding_mode
        flat = [v for a, b in reversed(padding) for v in (a, b)]  # F.pad: last axis first
        with torch.no_grad():
            x = F.pad(_t(x, dtype), flat, mode=mode).numpy()
        padding = 0
    layer = _CONV[d](
        w.shape[1] * groups,
        w.shape[0],
        w.shape[2:],
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        bias=bias is not None,
        padding_mode=padding_mode,
        dtype=_t(np.zeros(1), dtype).dtype,
    )
    with torch.no_grad():
        layer.weight.copy_(_t(w, dtype))
        if bias is not None:
            layer.bias.copy_(_t(bias, dtype))
        with warnings.catch_warnings():  # torch's note about copying for even "same" kernels
            warnings.simplefilter("ignore", UserWarning)
            return layer(_t(x, dtype)).numpy()


def _is_pairs(padding):
    return isinstance(padding, tuple) and all(isinstance(p, tuple) for p in padding)


def torch_conv_transpose(x, w, bias=None, *, dtype=None, output_size=None, **kwargs):
    """F.conv_transpose{d}d (or the module, for ``output_size``); pairs crop each end."""
    dtype = dtype or _wide(x, w, bias)
    d = w.ndim - 2
    if _is_pairs(kwargs.get("padding")):
        pairs = kwargs.pop("padding")
        full = torch_conv_transpose(x, w, bias, dtype=dtype, padding=0, **kwargs)
        return full[
            (Ellipsis,) + tuple(slice(a, n - b) for (a, b), n in zip(pairs, full.shape[-d:]))
        ]
    if output_size is None:
        fn = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[d]
        with torch.no_grad():
            return fn(_t(x, dtype), _t(w, dtype), _t(bias, dtype), **kwargs).numpy()
    groups = kwargs.get("groups", 1)
    layer = _CONV_T[d](
        w.shape[0],
        w.shape[1] * groups,
        w.shape[2:],
        bias=bias is not None,
        dtype=_t(np.zeros(1), dtype).dtype,
        **kwargs,
    )
    with torch.no_grad():
        layer.weight.copy_(_t(w, dtype))
        if bias is not None:
            layer.bias.copy_(_t(bias, dtype))
        return layer(_t(x, dtype), output_size=list(output_size)).numpy()


def _dtypes():
    return st.tuples(st.sampled_from(ref.FLOAT_DTYPES), st.sampled_from(ref.FLOAT_DTYPES))


@ref.hypothesis_settings(max_examples=100)
@given(cfg=ref.conv_configs(), method=st.sampled_from(ref.METHODS), dtypes=_dtypes())
def test_conv_matches_torch(cfg, method, dtypes):
    rng = np.random.default_rng(cfg["seed"])
    x = ref.random_array(rng, cfg["x_shape"], dtypes[0])
    w = ref.random_array(rng, cfg["w_shape"], dtypes[1])
    bias = None
    if cfg["bias"]:
        bias = ref.random_array(rng, cfg["w_shape"][:1], np.result_type(x, w))
    y = specconv.conv(x, w, bias, method=method, **cfg["kwargs"])
    expected = torch_conv(x, w, bias, **cfg["kwargs"])
    assert y.shape == expected.shape
    assert_close(y, expected)


@ref.hypothesis_settings(max_examples=80)
@given(cfg=ref.transpose_configs(), method=st.sampled_from(ref.METHODS), dtypes=_dtypes())
def test_conv_transpose_matches_torch(cfg, method, dtypes):
    rng = np.random.default_rng(cfg["seed"])
    x = ref.random_array(rng, cfg["x_shape"], dtypes[0])
    w = ref.random_array(rng, cfg["w_shape"], dtypes[1])
    bias = None
    if cfg["bias"]:
        out_channels = cfg["w_shape"][1] * cfg["kwargs"]["groups"]
        bias = ref.random_array(rng, (out_channels,), np.result_type(x, w))
    y = specconv.conv_transpose(x, w, bias, method=method, **cfg["kwargs"])
    expected = torch_conv_transpose(x, w, bias, **cfg["kwargs"])
    assert y.shape == expected.shape
    assert_close(y, expected)


@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("padding_mode", ref.PADDING_MODES)
@pytest.mark.parametrize("padding", [1, "same", "valid", "tuple", "pairs"])
@pytest.mark.parametrize("method", ref.METHODS)
def test_padding_modes_match_torch_modules(d, padding_mode, padding, method):
    rng = np.random.default_rng(20 + d)
    n = {1: (17,), 2: (9, 8), 3: (5, 6, 4)}[d]
    k = {1: (4,), 2: (3, 2), 3: (3, 2, 3)}[d]
    if padding == "tuple":
        padding = tuple(range(1, d + 1))
    elif padding == "pairs":
        padding = ((1, 0), (0, 2), (2, 1))[:d]
    x = rng.standard_normal((2, 4) + n)
    w = rng.standard_normal((6, 2) + k)
    b = rng.standard_normal(6)
    kw = dict(padding=padding, groups=2, padding_mode=padding_mode, dilation=(2,) + (1,) * (d - 1))
    assert_close(specconv.conv(x, w, b, method=method, **kw), torch_conv(x, w, b, **kw))


@pytest.mark.parametrize("method", ref.METHODS)
@pytest.mark.parametrize("d", [1, 2, 3])
def test_complex_conv_and_transpose_match_torch(method, d):
    rng = np.random.default_rng(30 + d)
    n = {1: (23,), 2: (9, 10), 3: (5, 6, 7)}[d]
    x = ref.random_array(rng, (2, 4) + n, np.complex128)
    w = ref.random_array(rng, (4, 2) + (3,) * d, np.complex128)
    b = ref.random_array(rng, (4,), np.complex128)
    kw = dict(stride=2, padding=1, groups=2)
    assert_close(specconv.conv(x, w, b, method=method, **kw), torch_conv(x, w, b, **kw))
    kwt = dict(stride=2, padding=1, output_padding=1, groups=2)
    assert_close(
        specconv.conv_transpose(x, w, b, method=method, **kwt), torch_conv_transpose(x, w, b, **kwt)
    )


@pytest.mark.parametrize("method", ref.METHODS)
@pytest.mark.parametrize("d", [1, 2, 3])
def test_float32_matches_torch_float32(method, d):
    rng = np.random.default_rng(40 + d)
    n = {1: (300,), 2: (30, 21), 3: (10, 9, 8)}[d]
    x = rng.standard_normal((2, 8) + n).astype(np.float32)
    w = rng.standard_normal((8, 8) + (5,) * d).astype(np.float32)
    y = specconv.conv(x, w, padding="same", method=method)
    assert y.dtype == np.float32
    expected = torch_conv(x, w, padding="same", dtype=np.float32)
    assert_close(y, expected)
    yt = specconv.conv_transpose(x, w, stride=2, method=method)
    assert yt.dtype == np.float32
    assert_close(yt, torch_conv_transpose(x, w, stride=2, dtype=np.float32))


@pytest.mark.parametrize("method", ref.METHODS)
@pytest.mark.parametrize(
    "n, kw",
    [
        ((10,), dict(stride=3, padding=1)),
        ((7, 6), dict(stride=(2, 3), padding=(1, 0), dilation=(1, 2))),
        ((4, 3, 5), dict(stride=2, padding=1, dilation=(3, 1, 1))),
    ],
)
def test_output_size_matches_torch(method, n, kw):
    d = len(n)
    rng = np.random.default_rng(50 + d)
    x = rng.standard_normal((2, 4) + n)
    w = rng.standard_normal((4, 3) + (3,) * d)
    stride, dilation = ref._tuple(kw["stride"], d), ref._tuple(kw.get("dilation", 1), d)
    padding = ref._tuple(kw["padding"], d)
    base = tuple(
        (m - 1) * s - 2 * p + dl * 2 + 1 for m, s, p, dl in zip(n, stride, padding, dilation)
    )
    layer = specconv.SpectralConvTranspose(w, method=method, **kw)
    for extra in range(max(max(stride), max(dilation))):
        size = tuple(b + min(extra, max(s, dl) - 1) for b, s, dl in zip(base, stride, dilation))
        y = layer(x, output_size=size)
        assert y.shape[2:] == size
        if all(b + s > m for b, s, m in zip(base, stride, size)):  # torch's range
            expected = torch_conv_transpose(x, w, output_size=size, **kw)
        else:  # torch only takes output_size up to stride − 1 extra; output_padding further
            extra_pad = tuple(m - b for m, b in zip(size, base))
            expected = torch_conv_transpose(x, w, output_padding=extra_pad, **kw)
        assert_close(y, expected)


@pytest.mark.parametrize("method", ref.METHODS)
def test_strided_conv_inverted_in_shape_by_output_size(method):
    """The U-Net pattern: conv with stride 2, then the transposed layer back to the input size."""
    rng = np.random.default_rng(60)
    w = rng.standard_normal((8, 4, 3, 3))
    down = specconv.SpectralConv(w, stride=2, padding=1, method=method)
    x = rng.standard_normal((1, 4, 15, 16))
    z = down(x)
    up = down.T
    y = up(z, output_size=x.shape[2:])
    assert y.shape == x.shape
    layer = torch.nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, bias=False, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(w))
        expected = layer(torch.from_numpy(z), output_size=list(x.shape[2:])).numpy()
    assert_close(y, expected)


def test_reference_itself_matches_torch():
    """The numpy reference of the other test files is right: checked against torch once."""
    rng = np.random.default_rng(70)
    x = rng.standard_normal((2, 4, 13, 11))
    w = rng.standard_normal((6, 2, 3, 4))
    b = rng.standard_normal(6)
    for mode in ref.PADDING_MODES:
        kw = dict(stride=(2, 1), padding=(1, 2), dilation=(2, 1), groups=2, padding_mode=mode)
        assert_close(ref.conv(x, w, b, **kw), torch_conv(x, w, b, **kw))
    kw = dict(padding="same", dilation=(1, 3), groups=2)
    assert_close(ref.conv(x, w, **kw), torch_conv(x, w, **kw))
    wt = rng.standard_normal((4, 3, 3, 2))
    kwt = dict(stride=(3, 2), padding=(1, 1), output_padding=(2, 1), groups=2, dilation=(1, 2))
    assert_close(ref.conv_transpose(x, wt, b, **kwt), torch_conv_transpose(x, wt, b, **kwt))
