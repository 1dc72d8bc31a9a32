"""specconv.convolve / correlate against scipy.signal (method="direct"), one channel pair at a time.

The oracle is ``y[i] = sum_j scipy.signal.convolve(x[j], h[i, j], mode, method="direct")`` (and
likewise ``correlate``, which conjugates complex kernels), computed in float64 / complex128.
"""

from __future__ import annotations

import _reference as ref
import numpy as np
import pytest
import scipy.signal
from _tolerances import assert_close
from hypothesis import given
from hypothesis import strategies as st

import specconv

FUNCTIONS = ("convolve", "correlate")


def scipy_oracle(name, x, h, mode, groups=1):
    """Sum over the input channels of a group of scipy's direct convolution / correlation."""
    wide = np.complex128 if x.dtype.kind == "c" or h.dtype.kind == "c" else np.float64
    x, h = x.astype(wide), h.astype(wide)
    batched = x.ndim == h.ndim
    xb = x if batched else x[None]
    ci, co = h.shape[1], h.shape[0] // groups
    fn = getattr(scipy.signal, name)
    y = np.array(
        [
            [
                sum(
                    fn(xb[b, (o // co) * ci + j], h[o, j], mode=mode, method="direct")
                    for j in range(ci)
                )
                for o in range(h.shape[0])
            ]
            for b in range(xb.shape[0])
        ]
    )
    return y if batched else y[0]


@st.composite
def scipy_cases(draw):
    d = draw(st.sampled_from([1, 1, 2, 3]))
    groups, ci, co = draw(ref.channel_layouts())
    max_n = {1: 12, 2: 6}.get(d, 4)
    n = tuple(draw(st.integers(1, max_n)) for _ in range(d))
    mode = draw(st.sampled_from(["full", "same", "valid"]))
    if mode == "valid":
        if draw(st.booleans()):  # kernel no larger than x in every axis
            k = tuple(draw(st.integers(1, m)) for m in n)
        else:  # at least as large in every axis: scipy swaps the roles
            k = tuple(m + draw(st.integers(0, 3)) for m in n)
    else:  # any kernel, also even and longer than the signal
        k = tuple(draw(st.integers(1, max_n + 3)) for _ in range(d))
    batch = draw(st.sampled_from([(), (2,)]))
    return dict(
        x_shape=batch + (groups * ci,) + n,
        h_shape=(groups * co, ci) + k,
        groups=groups,
        mode=mode,
        x_dtype=draw(st.sampled_from(ref.FLOAT_DTYPES + (np.int64,))),
        h_dtype=draw(st.sampled_from(ref.FLOAT_DTYPES)),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


@ref.hypothesis_settings(max_examples=150)
@given(case=scipy_cases(), name=st.sampled_from(FUNCTIONS), method=st.sampled_from(ref.METHODS))
def test_matches_scipy_per_channel_pair(case, name, method):
    rng = np.random.default_rng(case["seed"])
    x = ref.random_array(rng, case["x_shape"], case["x_dtype"])
    h = ref.random_array(rng, case["h_shape"], case["h_dtype"])
    y = getattr(specconv, name)(x, h, mode=case["mode"], groups=case["groups"], method=method)
    assert y.dtype == specconv.result_dtype(x, h)
    assert_close(y, scipy_oracle(name, x, h, case["mode"], case["groups"]))


@pytest.mark.parametrize("method", ref.METHODS)
@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("mode", ["full", "same", "valid"])
@pytest.mark.parametrize(
    "n, k",
    [
        (20, 4),  # even kernel
        (20, 5),
        (7, 12),  # kernel longer than the signal ("valid" then swaps)
        (6, 6),
        (1, 3),
        (9, 1),
    ],
)
def test_kernel_lengths_1d(method, name, mode, n, k):
    rng = np.random.default_rng(n * 100 + k)
    x = rng.standard_normal((2, 3, n))
    h = rng.standard_normal((4, 3, k))
    y = getattr(specconv, name)(x, h, mode=mode, method=method)
    expected = scipy_oracle(name, x, h, mode)
    assert y.shape == expected.shape
    assert_close(y, expected)


@pytest.mark.parametrize("method", ref.METHODS)
@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("mode", ["full", "same", "valid"])
@pytest.mark.parametrize("n, k", [((9, 8), (4, 3)), ((4, 5), (6, 7)), ((5, 6), (2, 9))])
def test_kernel_shapes_2d_complex(method, name, mode, n, k):
    """Complex x and h: correlate conjugates h, convolve does not."""
    smaller, larger = all(a <= b for a, b in zip(k, n)), all(a >= b for a, b in zip(k, n))
    if mode == "valid" and not (smaller or larger):
        pytest.skip("mixed kernel/signal sizes are an error for 'valid' (see test_errors)")
    rng = np.random.default_rng(12)
    x = ref.random_array(rng, (2,) + n, np.complex128)
    h = ref.random_array(rng, (3, 2) + k, np.complex128)
    y = getattr(specconv, name)(x, h, mode=mode, method=method)
    assert_close(y, scipy_oracle(name, x, h, mode))


@pytest.mark.parametrize("method", ref.METHODS)
def test_correlate_is_convolve_with_flipped_conjugate(method):
    rng = np.random.default_rng(13)
    x = ref.random_array(rng, (3, 7, 6), np.complex128)
    h = ref.random_array(rng, (2, 3, 3, 4), np.complex128)
    flipped = np.conj(h[:, :, ::-1, ::-1])
    for mode in ("full", "valid"):
        assert_close(
            specconv.correlate(x, h, mode=mode, method=method),
            specconv.convolve(x, flipped, mode=mode, method=method),
        )


@pytest.mark.parametrize("method", ref.METHODS)
@pytest.mark.parametrize("mode", ["full", "same", "valid"])
def test_groups_block_diagonal(method, mode):
    """groups=G equals G separate calls on the channel blocks."""
    rng = np.random.default_rng(14)
    G, ci, co = 3, 2, 2
    x = rng.standard_normal((2, G * ci, 30))
    h = rng.standard_normal((G * co, ci, 7))
    y = specconv.convolve(x, h, mode=mode, groups=G, method=method)
    parts = [
        specconv.convolve(
            x[:, g * ci : (g + 1) * ci], h[g * co : (g + 1) * co], mode=mode, method=method
        )
        for g in range(G)
    ]
    assert_close(y, np.concatenate(parts, axis=1))
    assert_close(y, scipy_oracle("convolve", x, h, mode, G))


@pytest.mark.parametrize("method", ref.METHODS)
def test_long_stereo_reverb(method):
    """A 2 x 2 true-stereo reverb on a signal long enough for several overlap-save tiles."""
    rng = np.random.default_rng(15)
    x = rng.standard_normal((2, 5000))
    h = rng.standard_normal((2, 2, 300)) * np.exp(-np.arange(300) / 60)
    for mode in ("full", "same", "valid"):
        assert_close(
            specconv.convolve(x, h, mode=mode, method=method), scipy_oracle("convolve", x, h, mode)
        )


@pytest.mark.parametrize("dtype", [np.float32, np.complex64])
def test_single_precision_stays_single(dtype):
    rng = np.random.default_rng(16)
    x = ref.random_array(rng, (2, 50), dtype)
    h = ref.random_array(rng, (1, 2, 9), dtype)
    for name in FUNCTIONS:
        y = getattr(specconv, name)(x, h)
        assert y.dtype == dtype
        assert_close(y, scipy_oracle(name, x, h, "full"))


def test_inputs_not_modified():
    rng = np.random.default_rng(17)
    x = rng.standard_normal((2, 40)) + 1j * rng.standard_normal((2, 40))
    h = rng.standard_normal((3, 2, 5)) + 1j * rng.standard_normal((3, 2, 5))
    x0, h0 = x.copy(), h.copy()
    for name in FUNCTIONS:
        for method in ref.METHODS:
            getattr(specconv, name)(x, h, mode="same", method=method)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(h, h0)
