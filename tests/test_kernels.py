"""Kernel-matrix algebra: every operation against sequential application or plain numpy."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
from hypothesis import given, settings
from hypothesis import strategies as st

from specconv import SpectralConv, SpectralConvTranspose
from specconv.kernels import (
    add,
    as_conv,
    block_diag,
    compose,
    composition_is_exact,
    eig,
    estimate_transfer,
    fir_layer,
    from_response,
    inverse,
    pointwise,
    scale,
    side_pads,
    split_groups,
    svd,
    to_dense_groups,
    without_padding,
)

from ._tolerances import assert_close


def _rng(seed=0):
    return np.random.default_rng(seed)


def _layer(rng, c_out, c_in, k, *, groups=1, complex_=False, bias=False, **kw):
    shape = (c_out, c_in // groups) + ((k,) if np.isscalar(k) else tuple(k))
    w = rng.standard_normal(shape)
    if complex_:
        w = w + 1j * rng.standard_normal(shape)
    b = rng.standard_normal(c_out) if bias else None
    return SpectralConv(w, b, groups=groups, **kw)


# -- compose: the exact cases of the documented rule -----------------------------------------

EXACT_PAIRS = {
    # name: (layer2 kwargs, layer1 kwargs) -- C: 4 -> 6 -> 2, kernel sizes 5 then 4
    "full-full": (dict(padding=3), dict(padding=4)),
    "full-more-than-full": (dict(padding=3), dict(padding=6)),
    "valid-after-same": (dict(padding=0), dict(padding="same", bias=True)),
    "valid-after-reflect": (
        dict(padding=0, bias=True),
        dict(padding=2, padding_mode="reflect", bias=True),
    ),
    "strided-valid-last": (dict(padding=0, stride=3), dict(padding=2, padding_mode="replicate")),
    "full-after-valid-then-valid": (dict(padding=0), dict(padding=0)),
    "circular-same-twice": (
        dict(padding="same", padding_mode="circular", bias=True),
        dict(padding="same", padding_mode="circular", bias=True),
    ),
    "groups-gcd": (dict(padding=3, groups=2), dict(padding=4, groups=3)),
    "dilation-shared": (dict(padding=9, dilation=3), dict(padding=8, dilation=2)),
    "dilation-equal": (dict(padding=6, dilation=2), dict(padding=8, dilation=2)),
}


@pytest.mark.parametrize("case", sorted(EXACT_PAIRS))
def test_compose_equals_sequential(case):
    rng = _rng(1)
    kw2, kw1 = (dict(v) for v in EXACT_PAIRS[case])
    g2, g1 = kw2.pop("groups", 1), kw1.pop("groups", 1)
    b2, b1 = kw2.pop("bias", False), kw1.pop("bias", False)
    l1 = _layer(rng, 6, 4 if g1 == 1 else 6, 5, groups=g1, bias=b1, **kw1)
    l2 = _layer(rng, 2, 6, 4, groups=g2, bias=b2, **kw2)
    x = rng.standard_normal((2, l1.in_channels, 40))
    assert composition_is_exact(l2, l1) == (True, "")
    both = compose(l2, l1)
    assert both.groups == np.gcd(g1, g2)
    assert_close(both(x), l2(l1(x)))


def test_compose_pointwise_first_any_mode():
    rng = _rng(2)
    p = pointwise(rng.standard_normal((5, 3)), bias=rng.standard_normal(5))
    for mode in ("reflect", "replicate", "circular"):
        t = _layer(rng, 5, 5, 7, groups=5, padding="same", padding_mode=mode)
        x = rng.standard_normal((3, 30))
        assert_close(compose(t, p)(x), t(p(x)))


def test_compose_two_dimensional_and_complex():
    rng = _rng(3)
    l1 = _layer(rng, 3, 2, (3, 4), complex_=True, padding=(2, 3))
    l2 = _layer(rng, 2, 3, (5, 2), padding=(4, 1))
    x = rng.standard_normal((2, 12, 9)) + 1j * rng.standard_normal((2, 12, 9))
    assert_close(compose(l2, l1)(x), l2(l1(x)))


def test_compose_three_layers_and_transposed():
    rng = _rng(4)
    a = _layer(rng, 3, 2, 4, padding=3)
    b = _layer(rng, 3, 3, 3, padding=2)
    c = _layer(rng, 1, 3, 6, padding=0)
    x = rng.standard_normal((2, 25))
    assert_close(compose(c, b, a)(x), c(b(a(x))))
    # the normal operator A^T A: A full-padded, A^T with the matching transposed padding
    t = _layer(rng, 4, 2, 5, padding=4)
    normal = compose(t.T, t)
    assert_close(normal(x), t.T(t(x)))
    H = normal.frequency_response(64)
    assert_close(H, np.conj(np.swapaxes(H, -1, -2)))  # Hermitian at every frequency


def test_compose_frequency_response_is_matrix_product():
    rng = _rng(5)
    l1 = _layer(rng, 4, 4, 5, groups=2, padding="same")
    l2 = _layer(rng, 3, 4, 3, padding=1, dilation=2)
    both = compose(l2, l1, exact=False)
    H = both.frequency_response(32)
    assert_close(H, l2.frequency_response(32) @ l1.frequency_response(32))


def test_compose_inexact_is_refused_and_agrees_inside():
    rng = _rng(6)
    l1 = _layer(rng, 2, 2, 5, padding="same")
    l2 = _layer(rng, 2, 2, 7, padding="same")
    exact, reason = composition_is_exact(l2, l1)
    assert not exact and "whole convolution" in reason
    with pytest.raises(ValueError, match="would not equal applying them in turn.*exact=False"):
        compose(l2, l1)
    x = rng.standard_normal((2, 50))
    y, ref = compose(l2, l1, exact=False)(x), l2(l1(x))
    edge = 3 + 2  # the second layer's padding plus the first's
    assert_close(y[:, edge:-edge], ref[:, edge:-edge])
    assert not np.allclose(y[:, :2], ref[:, :2])


def test_compose_refusals():
    rng = _rng(7)
    a = _layer(rng, 3, 2, 3, padding=2)
    with pytest.raises(ValueError, match="expects 2 input channels but layers\\[1\\] produces 3"):
        compose(a, a)
    with pytest.raises(ValueError, match="only the last-applied layer"):
        compose(_layer(rng, 2, 3, 1), _layer(rng, 3, 2, 3, stride=2))
    with pytest.raises(ValueError, match="at least two layers"):
        compose(a)
    with pytest.raises(TypeError, match="must be a SpectralConv"):
        compose(a, np.ones((3, 2, 3)))
    with pytest.raises(ValueError, match="bias is not zero"):
        compose(_layer(rng, 2, 3, 3, padding=2), _layer(rng, 3, 2, 3, padding=2, bias=True))
    with pytest.raises(ValueError, match="stride-1 transposed"):
        as_conv(SpectralConvTranspose(np.ones((2, 2, 3)), stride=2))


@pytest.mark.parametrize("pads", [((0, 2),), ((2, 1),), ((3, 0),)])
def test_algebra_takes_asymmetric_padding_pairs(pads):
    # (before, after) pairs were read as one int per axis: the algebra raised TypeError
    rng = _rng(21)
    w = rng.standard_normal((3, 2, 4))
    x = rng.standard_normal((2, 20))
    a = SpectralConv(w, padding=pads, padding_mode="reflect")
    b = _layer(rng, 2, 3, 3)
    assert_close(compose(b, a)(x), b(a(x)))
    assert_close(add(a, a)(x), 2 * a(x))
    t = SpectralConvTranspose(w.transpose(1, 0, 2), padding=pads)  # stride 1: a convolution
    assert_close(compose(b, t)(x), b(t(x)))
    assert_close(add(t, scale(t, -2))(x), -t(x))


# -- sums, scalars, pointwise -----------------------------------------------------------------


def test_add_and_scale():
    rng = _rng(8)
    a = _layer(rng, 4, 4, 3, padding=2, dilation=2, bias=True, padding_mode="reflect")
    b = _layer(rng, 4, 4, 4, groups=2, padding="same", padding_mode="reflect")
    c = _layer(rng, 4, 4, 1, groups=4)  # no padding: fits any mode
    x = rng.standard_normal((4, 33))
    assert_close(add(a, b, c)(x), a(x) + b(x) + c(x))
    assert_close(add(a, scale(b, -0.5j))(x), a(x) - 0.5j * b(x))
    assert add(b, b).groups == 2 and add(a, b).groups == 1


def test_add_refusals():
    rng = _rng(9)
    a = _layer(rng, 2, 2, 3, padding=1)
    with pytest.raises(ValueError, match="changes the signal length"):
        add(a, _layer(rng, 2, 2, 3, padding=2))
    with pytest.raises(ValueError, match="different padding modes"):
        add(a, _layer(rng, 2, 2, 3, padding=1, padding_mode="circular"))
    with pytest.raises(ValueError, match="maps 2 -> 3 channels"):
        add(a, _layer(rng, 3, 2, 3, padding=1))
    with pytest.raises(TypeError, match="alpha must be a real or complex scalar"):
        scale(a, np.ones(2))


def test_pointwise_is_matrix_product():
    rng = _rng(10)
    m = rng.standard_normal((3, 5))
    x = rng.standard_normal((5, 7, 6))
    assert_close(pointwise(m, ndim=2)(x), np.einsum("oc,cij->oij", m, x))
    with pytest.raises(ValueError, match="matrix must have shape"):
        pointwise(np.ones(3))


# -- groups -----------------------------------------------------------------------------------


def test_dense_split_block_diag_roundtrip():
    rng = _rng(11)
    layer = _layer(rng, 6, 4, 5, groups=2, padding="same", bias=True)
    x = rng.standard_normal((4, 20))
    dense = to_dense_groups(layer)
    assert dense.groups == 1
    assert_close(dense(x), layer(x))
    blocks = split_groups(layer)
    assert [(b.in_channels, b.out_channels) for b in blocks] == [(2, 3), (2, 3)]
    assert_close(np.concatenate([blocks[0](x[:2]), blocks[1](x[2:])]), layer(x))
    again = block_diag(blocks)
    assert again.groups == 2
    assert_close(again(x), layer(x))
    # unequal blocks: a dense layer with zeros off the blocks
    odd = block_diag([blocks[0], _layer(rng, 1, 3, 5, padding="same")])
    assert odd.groups == 1 and odd.weight.shape == (4, 5, 5)
    z = rng.standard_normal((5, 20))
    second = SpectralConv(odd.weight[3:, 2:], padding="same")
    ref = np.concatenate([blocks[0](z[:2]), second(z[2:])])
    assert_close(odd(z), ref)


def test_as_conv_of_transposed_layer():
    rng = _rng(12)
    t = SpectralConvTranspose(
        rng.standard_normal((4, 3, 4)), groups=1, padding=1, dilation=2, output_padding=1
    )
    y = rng.standard_normal((4, 15))
    assert_close(as_conv(t)(y), t(y))


# -- per-frequency analysis -------------------------------------------------------------------


def test_svd_reconstructs_and_per_group():
    rng = _rng(13)
    layer = _layer(rng, 4, 6, 5, groups=2, padding=2)
    U, s, Vh = svd(layer, 16)
    H = layer.frequency_response(16)
    assert_close((U * s[..., None, :]) @ Vh, H)
    Ug, sg, Vhg = svd(layer, 16, per_group=True)
    assert sg.shape == (2, 9, 2)
    assert_close(np.sort(np.concatenate(sg, axis=-1), axis=-1)[..., ::-1], s)


def test_eig_general_and_hermitian():
    rng = _rng(14)
    layer = _layer(rng, 3, 3, 4, padding=1)
    w, v = eig(layer, 8, whole=True)
    H = layer.frequency_response(8, whole=True)
    assert_close(H @ v, v * w[..., None, :])
    normal = compose(layer.T, _layer(rng, 3, 3, 4, padding=3), exact=True)
    wh, _ = eig(normal, 8, hermitian=True)
    assert wh.dtype.kind == "f"
    with pytest.raises(ValueError, match="needs a square layer"):
        eig(_layer(rng, 2, 3, 1), 4)


# -- FIR design and inversion -----------------------------------------------------------------


def test_from_response_roundtrip_1d_2d_groups():
    rng = _rng(15)
    h = rng.standard_normal((4, 2, 6))  # causal FIRs, 2 groups of 2 x 2
    H = np.moveaxis(np.fft.rfft(h, 16), -1, 0)
    Hdense = np.zeros((9, 4, 4), dtype=complex)
    Hdense[:, :2, :2], Hdense[:, 2:, 2:] = H[:, :2], H[:, 2:]
    layer = from_response(Hdense, 6, delay=0, groups=2)
    assert layer.groups == 2
    assert_close(layer.weight[..., ::-1], h)
    x = rng.standard_normal((4, 30))
    assert_close(layer(x), SpectralConv(h[..., ::-1], groups=2, padding=5)(x))
    h2 = rng.standard_normal((1, 1, 3, 4))
    H2 = np.moveaxis(np.fft.rfft2(h2, (8, 8)), (-2, -1), (0, 1))
    layer2 = from_response(H2, (3, 4), shape=(8, 8), delay=0)
    assert_close(layer2.weight[..., ::-1, ::-1], h2)


def test_from_response_same_mode_is_delay_compensated():
    # the response of a symmetric FIR centred on lag 0 comes back as a "same" layer
    h = np.array([0.25, 0.5, 1.0, 0.5, 0.25])
    H = np.fft.rfft(np.roll(np.pad(h, (0, 27)), -2))[:, None, None]
    layer = from_response(H, 5, mode="same")
    assert layer.padding == (2,)  # symmetric: "same" for an odd length
    x = _rng(16).standard_normal((1, 40))
    assert_close(layer(x)[0], np.convolve(x[0], h, mode="same"))


@pytest.mark.parametrize("groups", [1, 2])
def test_fir_layer_modes_equal_scipy(groups):
    rng = _rng(25)
    h = rng.standard_normal((4, 4 // groups, 7))
    x = rng.standard_normal((4, 40))

    def ref(mode):
        out = []
        for o in range(4):
            g = o // (4 // groups)
            cols = range(g * (4 // groups), (g + 1) * (4 // groups))
            out.append(
                sum(scipy.signal.convolve(x[c], h[o, j], mode=mode) for j, c in enumerate(cols))
            )
        return np.array(out)

    full = ref("full")
    assert_close(fir_layer(h, groups=groups)(x), full)
    assert_close(fir_layer(h, mode="causal", groups=groups)(x), full[:, :40])
    assert_close(fir_layer(h, mode="same", delay=3, groups=groups)(x), ref("same"))
    assert_close(fir_layer(h, mode="same", delay=1, groups=groups)(x), full[:, 1:41])


def test_side_pads_and_without_padding():
    rng = _rng(26)
    layer = fir_layer(rng.standard_normal((2, 2, 6)), mode="same", delay=1, padding_mode="reflect")
    # pads (4, 1) are stored as padding 4 and three zero taps appended to the kernel
    assert side_pads(layer) == ((4, 4),) and layer.kernel_size == (9,)
    x = rng.standard_normal((2, 30))
    padded = np.pad(x, ((0, 0), (4, 4)), mode="reflect")
    assert_close(without_padding(layer)(padded), layer(x))


def test_from_response_refusals():
    H = np.ones((5, 1, 1), dtype=complex)
    with pytest.raises(ValueError, match="n_taps .* must be at most the DFT shape"):
        from_response(H, 9)
    with pytest.raises(ValueError, match="delay .* must be smaller than n_taps"):
        from_response(H, 4, delay=4)
    with pytest.raises(ValueError, match="Invalid value for the 'mode' parameter"):
        from_response(H, 4, mode="valid")
    with pytest.raises(ValueError, match="do not match shape"):
        from_response(H, 4, shape=16)


def _crosstalk_plant():
    """A causal 2 x 2 low-pass plant with crosstalk, full padding (30 taps)."""
    rng = _rng(17)
    lp = scipy.signal.firwin(31, 0.6)  # cut-off 0.3 cycles/sample
    w = np.zeros((2, 2, 31))
    w[0, 0] = w[1, 1] = lp
    w[0, 1] = w[1, 0] = 0.45 * np.roll(lp, 3)
    w += 0.02 * rng.standard_normal(w.shape)
    return SpectralConv(w[..., ::-1], padding=30)


@pytest.mark.parametrize("mode", ["full", "same"])
def test_inverse_times_layer_is_delayed_identity_in_band(mode):
    plant = _crosstalk_plant()
    beta_in, T = 1e-6, 512
    inv = inverse(plant, T, reg=lambda f: np.where(np.abs(f) < 0.25, beta_in, 1.0), mode=mode)
    L = 4096
    H, G = plant.frequency_response(L), inv.frequency_response(L)
    f = np.fft.rfftfreq(L)
    delay = T // 2 if mode == "full" else 0
    P = G @ H * np.exp(2j * np.pi * f * delay)[:, None, None]
    err = np.abs(P - np.eye(2)).max(axis=(1, 2))
    s_min = np.linalg.svd(H, compute_uv=False)[:, -1]
    bound = beta_in / (s_min**2 + beta_in)  # the regularization's own error
    band = f < 0.2
    # measured 1.3e-5 over the band (the bound itself is <= 8.6e-6); the Tukey-windowed
    # truncation to 512 taps adds at most 1e-4
    assert np.all(err[band] <= bound[band] + 1e-4), err[band].max()
    # outside the band beta = 1 holds the inverse back: |G| stays below 1 / (2·sqrt(beta))
    assert np.abs(G[f > 0.3]).max() < 0.5 + 1e-3


def test_inverse_applied_to_signal_recovers_it():
    plant = _crosstalk_plant()
    inv = inverse(plant, 512, reg=lambda f: np.where(np.abs(f) < 0.25, 1e-6, 1.0), mode="same")
    rng = _rng(18)
    b, a = scipy.signal.butter(6, 0.3)  # keep x inside the inverted band
    x = scipy.signal.filtfilt(b, a, rng.standard_normal((2, 3000)))
    both = compose(inv, plant)  # plant full-padded: exact
    assert_close(both(x), inv(plant(x)))
    # "same": aligned with the plant's full output, whose sample n is the response to x[n];
    # near the edges the zero-extended x has out-of-band content, so compare inside
    z = both(x)[:, :3000]
    rel = np.abs(z - x)[:, 300:-300].max() / np.abs(x).max()
    assert rel < 1e-3, rel


def test_pseudo_inverse_of_tall_layer():
    rng = _rng(19)
    m = rng.standard_normal((3, 2))
    inv = inverse(pointwise(m), 1, delay=0, window=None, nfft=4)
    assert_close(inv.weight[..., 0], np.linalg.pinv(m))


def test_inverse_refusals():
    layer = _layer(_rng(20), 2, 2, 3)
    with pytest.raises(ValueError, match="reg must be finite and >= 0"):
        inverse(layer, 8, reg=-1.0)
    with pytest.raises(ValueError, match="reg must be a scalar, an array broadcastable"):
        inverse(layer, 8, reg=np.ones(3))
    with pytest.raises(ValueError, match="stride-1 layer"):
        inverse(_layer(_rng(20), 2, 2, 3, stride=2), 8)


# -- estimation from data ---------------------------------------------------------------------


def test_estimate_recovers_known_layer():
    rng = _rng(21)
    w = rng.standard_normal((2, 3, 9))
    true = SpectralConv(w, padding="same")
    x = rng.standard_normal((3, 2**15))
    y = true(x) + 0.01 * rng.standard_normal((2, 2**15))
    est = estimate_transfer(x, y, nperseg=512)
    layer = est.to_layer(9, mode="same")
    err = np.abs(layer.weight - w).max() / np.abs(w).max()
    # measured 3.0e-4: the segment-edge bias (~ taps/nperseg of leakage) and the noise
    assert err < 2e-3, err
    assert est.coherence.shape == (257, 2) and est.coherence.min() > 0.99


def test_estimate_coherence_tracks_snr_and_batches():
    rng = _rng(22)
    gain = np.array([[[2.0]], [[1.0]]])  # 1 input -> 2 outputs, no memory
    x = rng.standard_normal((4, 1, 2**13))  # a batch of 4 recordings
    noise = rng.standard_normal((4, 2, 2**13))
    y = SpectralConv(gain)(x) + noise
    est = estimate_transfer(x, y, nperseg=128)
    # gamma^2 = |H|^2 S_x / (|H|^2 S_x + S_n) = 4/5 and 1/2
    # ~500 segments: the estimate's scatter is about 0.01
    assert np.allclose(np.median(est.coherence, axis=0), [0.8, 0.5], atol=0.03)
    assert abs(np.median(est.H[:, 0, 0].real) - 2.0) < 0.05


def test_estimate_complex_signals():
    rng = _rng(23)
    w = rng.standard_normal((1, 2, 5)) + 1j * rng.standard_normal((1, 2, 5))
    x = rng.standard_normal((2, 2**13)) + 1j * rng.standard_normal((2, 2**13))
    est = estimate_transfer(x, SpectralConv(w, padding="same")(x), nperseg=256)
    assert est.whole and est.H.shape == (256, 1, 2)
    err = np.abs(est.to_layer(5, mode="same").weight - w).max() / np.abs(w).max()
    assert err < 5e-3, err  # measured ~1e-3: the segment-edge bias


def test_inverse_two_dimensional():
    rng = _rng(24)
    w = np.zeros((2, 2, 3, 3))
    w[:, :, 1, 1] = np.eye(2)
    w += 0.1 * rng.standard_normal(w.shape)  # well conditioned: near the identity
    layer = SpectralConv(w, padding=1)
    inv = inverse(layer, (32, 32), mode="same", window=None)
    P = inv.frequency_response((64, 64)) @ layer.frequency_response((64, 64))
    err = np.abs(P - np.eye(2)).max()
    # the inverse decays geometrically: error 8e-2, 4e-3, 2e-4, 1.3e-5 for 8, 16, 24, 32 taps
    assert err < 1e-4, err


def test_estimate_refusals():
    x = np.ones((2, 100))
    with pytest.raises(ValueError, match="same length and batch"):
        estimate_transfer(x, np.ones((1, 99)))
    with pytest.raises(ValueError, match="nperseg must be an int between 2"):
        estimate_transfer(x, x, nperseg=1000)
    with pytest.raises(ValueError, match="noverlap must be an int"):
        estimate_transfer(x, x, nperseg=50, noverlap=50)
    with pytest.raises(ValueError, match="S_xx is singular"):
        estimate_transfer(np.ones((3, 100)), x, nperseg=100)


# -- properties -------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    k1=st.integers(1, 5),
    k2=st.integers(1, 5),
    d1=st.integers(1, 2),
    d2=st.integers(1, 2),
    extra=st.integers(0, 2),
    g=st.sampled_from([1, 2]),
    n=st.integers(12, 20),
    seed=st.integers(0, 2**16),
)
def test_compose_full_padding_property(k1, k2, d1, d2, extra, g, n, seed):
    """Full (or more) zero padding composes exactly for any kernels, dilations and groups."""
    rng = _rng(seed)
    l1 = _layer(rng, 2, 2, k1, groups=g, dilation=d1, padding=d1 * (k1 - 1) + extra)
    l2 = _layer(rng, 2, 2, k2, dilation=d2, padding=d2 * (k2 - 1))
    x = rng.standard_normal((2, n))
    assert_close(compose(l2, l1)(x), l2(l1(x)))
