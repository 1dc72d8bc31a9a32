"""Per-side padding pairs, and the transpose of asymmetrically padded layers."""

import numpy as np
import pytest
from _reference import conv as conv_reference

import specconv


def _pad_then_valid(x, w, pairs, **kw):
    xp = np.pad(x, ((0, 0),) * (x.ndim - len(pairs)) + tuple(pairs))
    return conv_reference(xp, w, padding=0, **kw)


@pytest.mark.parametrize("method", ["direct", "fft"])
def test_pairs_equal_explicit_zero_padding(method):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 23, 17))
    w = rng.standard_normal((6, 2, 4, 3))
    pairs = ((3, 0), (1, 2))
    y = specconv.conv(x, w, padding=pairs, groups=2, method=method)
    ref = _pad_then_valid(x, w, pairs, groups=2)
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-12 * np.abs(ref).max())


@pytest.mark.parametrize("kernel", [4, 6])
def test_transpose_of_asymmetric_same_is_the_adjoint(kernel):
    rng = np.random.default_rng(1)
    layer = specconv.SpectralConv(rng.standard_normal((3, 2, kernel)), padding="same")
    x = rng.standard_normal((2, 40))
    y = rng.standard_normal((3, 40))
    lhs = np.vdot(layer(x), y)
    rhs = np.vdot(x, layer.T(y))
    assert layer.T(y).shape == x.shape
    np.testing.assert_allclose(lhs, rhs, rtol=1e-12)


def test_transpose_of_reflect_padding_is_refused():
    layer = specconv.SpectralConv(np.ones((1, 1, 3)), padding=1, padding_mode="reflect")
    with pytest.raises(ValueError, match="padding_mode='reflect' is not a ConvTranspose"):
        _ = layer.T


def test_bad_pairs_are_refused():
    with pytest.raises(ValueError, match="padding must be >= 0"):
        specconv.SpectralConv(np.ones((1, 1, 3)), padding=((1, -1),))
