"""Non-finite input stays local (issue 2 §4), on every method.

Contract: an output is non-finite exactly where a direct convolution's receptive field covers a
non-finite input; every other output is as exact as without it. The oracle is the numpy direct
reference run twice: on the NaN-carrying input (it is NaN / ±Inf exactly on the receptive
fields, since 0 · NaN = NaN) and on the input with the non-finite samples replaced by 0 (which
equals the first run everywhere else).
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

BAD_VALUES = (np.nan, np.inf, -np.inf)


def _poison(rng, x, count, values=BAD_VALUES):
    """A copy of ``x`` with ``count`` random samples set to non-finite values."""
    x = x.copy()
    flat = x.reshape(-1)
    for i in rng.choice(flat.size, size=min(count, flat.size), replace=False):
        flat[i] = values[rng.integers(len(values))]
    return x


def _check_local(y, reference, x, **kwargs):
    """y's non-finite outputs are the reference's; all others match the zeroed input's."""
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf in the reference
        expected_bad = ~np.isfinite(reference(x, **kwargs))
    np.testing.assert_array_equal(~np.isfinite(y), expected_bad)
    clean = reference(np.where(np.isfinite(x), x, 0), **kwargs)
    assert_close(y, clean, where=~expected_bad)


@ref.hypothesis_settings(max_examples=120)
@given(
    cfg=ref.conv_configs(),
    method=st.sampled_from(ref.METHODS),
    dtype=st.sampled_from(ref.FLOAT_DTYPES),
    count=st.integers(1, 4),
)
def test_conv_nonfinite_stays_local(cfg, method, dtype, count):
    rng = np.random.default_rng(cfg["seed"])
    x = _poison(rng, ref.random_array(rng, cfg["x_shape"], dtype), count)
    w = ref.random_array(rng, cfg["w_shape"], dtype)
    b = ref.random_array(rng, cfg["w_shape"][:1], dtype) if cfg["bias"] else None
    y = specconv.conv(x, w, b, method=method, **cfg["kwargs"])
    _check_local(y, lambda x, **kw: ref.conv(x, w, b, **kw), x, **cfg["kwargs"])


@ref.hypothesis_settings(max_examples=60)
@given(
    cfg=ref.transpose_configs(),
    method=st.sampled_from(ref.METHODS),
    dtype=st.sampled_from(ref.FLOAT_DTYPES),
    count=st.integers(1, 3),
)
def test_conv_transpose_nonfinite_stays_local(cfg, method, dtype, count):
    rng = np.random.default_rng(cfg["seed"])
    x = _poison(rng, ref.random_array(rng, cfg["x_shape"], dtype), count)
    w = ref.random_array(rng, cfg["w_shape"], dtype)
    y = specconv.conv_transpose(x, w, method=method, **cfg["kwargs"])
    _check_local(y, lambda x, **kw: ref.conv_transpose(x, w, **kw), x, **cfg["kwargs"])


def _scipy_sum(name, mode):
    def oracle(x, h):
        fn = getattr(scipy.signal, name)
        return np.array(
            [
                sum(fn(x[j], h[i, j], mode=mode, method="direct") for j in range(x.shape[0]))
                for i in range(h.shape[0])
            ]
        )

    return oracle


@pytest.mark.parametrize("method", ref.METHODS)
@pytest.mark.parametrize("mode", ["full", "same", "valid"])
@pytest.mark.parametrize("name", ["convolve", "correlate"])
def test_scipy_family_nonfinite_stays_local(name, mode, method):
    rng = np.random.default_rng(1)
    x = _poison(rng, rng.standard_normal((3, 40, 7)), 3)
    h = rng.standard_normal((2, 3, 5, 3))
    y = getattr(specconv, name)(x, h, mode=mode, method=method)
    _check_local(y, lambda x: _scipy_sum(name, mode)(x, h), x)


@pytest.mark.parametrize("method", ref.METHODS)
def test_long_signal_nan_segment_many_tiles(method):
    """An EEG-style bad segment in a long signal: local, across overlap-save tiles."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 4, 6000))
    x[0, 1, 2500:2600] = np.nan
    x[1, :, 10] = np.inf
    w = rng.standard_normal((4, 4, 65))
    y = specconv.conv(x, w, padding="same", method=method)
    _check_local(y, lambda x, **kw: ref.conv(x, w, **kw), x, padding="same")
    assert np.isfinite(y).mean() > 0.9


@pytest.mark.parametrize("method", ref.METHODS)
def test_dilation_gaps_are_not_covered(method):
    """Only the dilated taps see the NaN: outputs whose taps straddle it stay finite."""
    x = np.ones((1, 30))
    x[0, 15] = np.nan
    w = np.ones((1, 1, 3))
    y = specconv.conv(x, w, dilation=4, method=method)  # taps at n, n+4, n+8
    bad = np.flatnonzero(~np.isfinite(y[0]))
    np.testing.assert_array_equal(bad, [7, 11, 15])
    np.testing.assert_allclose(y[0, 8:11], 3.0)


@pytest.mark.parametrize("method", ref.METHODS)
def test_groups_keep_nan_in_its_group(method):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 20))
    x[1, 5] = np.nan  # channel 1: group 0 of 2
    w = rng.standard_normal((6, 2, 3))
    y = specconv.conv(x, w, groups=2, method=method)
    assert not np.isfinite(y[:3]).all()
    assert np.isfinite(y[3:]).all()
    assert_close(y[3:], ref.conv(x, w, groups=2)[3:])


@pytest.mark.parametrize("method", ref.METHODS)
def test_all_nan_input(method):
    x = np.full((2, 10), np.nan)
    y = specconv.conv(x, np.ones((3, 2, 4)), method=method)
    assert np.isnan(y).all()


@pytest.mark.parametrize("method", ref.METHODS)
def test_finite_input_whose_sum_overflows_is_not_marked(method):
    """The cheap "any non-finite?" check (a sum) must not flag huge but finite inputs."""
    x = np.full((64, 4), 1e307)  # the sum over all channels overflows, no channel's does
    w = np.full((64, 1, 2), 1e-10)
    y = specconv.conv(x, w, groups=64, method=method)
    assert np.isfinite(y).all()
    np.testing.assert_allclose(y, 2e297, rtol=1e-12)


@pytest.mark.parametrize("method", ref.METHODS)
def test_result_dtype_kept_with_nans(method):
    x = np.ones((2, 16), dtype=np.float32)
    x[0, 3] = np.nan
    y = specconv.conv(x, np.ones((1, 2, 3), dtype=np.float32), method=method)
    assert y.dtype == np.float32
    assert np.isnan(y[0, 1:4]).all() and np.isfinite(np.delete(y[0], [1, 2, 3])).all()


_RAISING = [
    lambda x: specconv.conv(x, np.ones((2, 3, 3)), nan_policy="raise"),
    lambda x: specconv.conv_transpose(x, np.ones((3, 2, 3)), nan_policy="raise"),
    lambda x: specconv.convolve(x, np.ones((2, 3, 3)), nan_policy="raise"),
    lambda x: specconv.correlate(x, np.ones((2, 3, 3)), nan_policy="raise"),
    lambda x: specconv.SpectralConv(np.ones((2, 3, 3)), nan_policy="raise")(x),
    lambda x: specconv.SpectralConvTranspose(np.ones((3, 2, 3)), nan_policy="raise")(x),
]


@pytest.mark.parametrize("bad", BAD_VALUES)
@pytest.mark.parametrize(
    "call",
    _RAISING,
    ids=["conv", "conv_transpose", "convolve", "correlate", "layer", "layer_T"],
)
def test_nan_policy_raise(call, bad):
    x = np.ones((3, 10))
    x[2, 4] = bad
    x[0, 0] = bad
    with pytest.raises(ValueError, match=r"x contains 2 non-finite value\(s\).*nan_policy='raise'"):
        call(x)
    x[2, 4] = x[0, 0] = 1.0
    assert np.isfinite(call(x)).all()  # finite input: no error


_UNCHECKED_CALLS = {
    "conv": lambda x, w: specconv.conv(x, w, padding=2, method="fft"),
    "strided": lambda x, w: specconv.conv(x, w, stride=3, method="fft"),
    "transposed": lambda x, w: specconv.conv_transpose(x, w.swapaxes(0, 1), stride=2, method="fft"),
    "direct": lambda x, w: specconv.conv(x, w[:2], method="direct"),  # fewer outputs than inputs
}


@pytest.mark.parametrize("call", _UNCHECKED_CALLS.values(), ids=_UNCHECKED_CALLS.keys())
def test_finite_input_is_not_scanned_first(monkeypatch, call):
    """Under "propagate" the FFT methods find non-finite input in their tiles' DC bins, the
    direct method in its fewer outputs: a finite x is never scanned; a NaN anywhere still
    gives the checked result."""
    from specconv import _correlate

    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 300))
    w = rng.standard_normal((4, 3, 5))
    expected = call(x, w)
    scanned = []
    with monkeypatch.context() as m:
        m.setattr(_correlate, "has_nonfinite", lambda a: scanned.append(a is x) or False)
        np.testing.assert_array_equal(call(x, w), expected)
    assert not any(scanned)
    for i in (0, 150, 296):  # in the first tile, in the middle, in the last one
        poisoned = x.copy()
        poisoned[1, 2, i] = np.nan
        y = call(poisoned, w)
        assert np.isnan(y).any() and np.isfinite(y[0]).all()
        assert_close(y, call(np.where(np.isfinite(poisoned), poisoned, 0), w), where=~np.isnan(y))
    np.testing.assert_array_equal(call(x, w), expected)  # buffers that held NaN are reused


@pytest.mark.parametrize("team", [False, True])
def test_the_engine_stops_at_a_non_finite_tile(team):
    from specconv import _costmodel, _engine, _geometry

    c = 9  # channels enough for a matrix product, which teams share
    geom = _geometry.Geometry(1, c, c, 1, (9,), (1,), (1,), (4000,), False)
    assert _engine.uses_matmul(geom)
    tiling = _costmodel.choose(geom, "fft", 8, 2).tiling
    tiling = _engine.Tiling.make(geom, tiling.fft_shape, 4, 1, 1, 2 if team else 1)
    spectra = _engine.kernel_spectra(np.ones((c, c, 9)), geom, tiling, np.float64)
    x = np.ones((1, c, 4000))
    x[0, 1, 3990] = np.inf
    args = (x, ((0, 0),), spectra, geom, tiling, np.float64, 2)
    with np.errstate(invalid="ignore"):  # unchecked: the tile goes NaN
        assert np.isnan(_engine.correlate_fft(*args)).any()
    with pytest.raises(_engine.NonFiniteInput):
        _engine.correlate_fft(*args, check_finite=True)
