"""Audio applications on real recordings: true-stereo reverb, BRIRs, crosstalk cancelling."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.io.wavfile
import scipy.signal

from specconv.apps.audio import (
    binaural_plant,
    channel_separation,
    crosstalk_canceller,
    k_weighting,
    loudness,
    normalize,
    peak_dbfs,
    read_brir_mat,
    true_stereo_reverb,
)
from specconv.kernels import compose

from ._tolerances import assert_close

BAND = (200.0, 4000.0)


def _wav(path):
    """(channels, samples) float64 in [-1, 1) and the rate, read by scipy directly."""
    if not path.is_file():
        pytest.skip(f"{path} not available")
    with warnings.catch_warnings():  # the Web Audio file carries a chunk scipy skips
        warnings.simplefilter("ignore", scipy.io.wavfile.WavFileWarning)
        fs, data = scipy.io.wavfile.read(path)
    scale = {np.dtype(np.int16): 2.0**15, np.dtype(np.int32): 2.0**31}.get(data.dtype, 1.0)
    data = np.asarray(data, dtype=np.float64) / scale
    return (data.T if data.ndim == 2 else data[None]), float(fs)


@pytest.fixture(scope="module")
def audio(shared_data):
    return shared_data / "audio"


@pytest.fixture(scope="module")
def brirs(audio):
    """(2 loudspeakers, 2 ears, N): left loudspeaker at +40°, right at −40° (apparent)."""
    base = audio / "communication_acoustics"
    paths = [base / "brir_sweep-40.mat", base / "brir_sweep+40.mat"]
    if not all(p.is_file() for p in paths):
        pytest.skip("BRIR files not available")
    # the "-40" file turns the head by -40°: the source appears at +40°, on the left
    (left, fs), (right, fs2) = (read_brir_mat(p) for p in paths)
    assert fs == fs2 == 44100.0 and left.shape == (2, 66150)
    return np.stack([left, right]), fs


@pytest.fixture(scope="module")
def castanets(audio):
    x, fs = _wav(audio / "communication_acoustics" / "castanets_dry.wav")
    return x[0], fs


def test_brir_geometry(brirs):
    h, _ = brirs
    # each loudspeaker is louder at the ear on its side
    peak = np.abs(h).max(axis=-1)
    assert peak[0, 0] > peak[0, 1] and peak[1, 1] > peak[1, 0]


def test_true_stereo_reverb_matches_web_audio_formula(audio):
    ir, fs_ir = _wav(audio / "web_audio_samples" / "kitchen-true-stereo.wav")
    x, fs = _wav(audio / "web_audio_samples" / "penny-spinning.wav")
    assert ir.shape[0] == 4 and fs == fs_ir
    # the file's order is not documented by its source: report the first arrivals (samples)
    onsets = [int(np.argmax(np.abs(c) > 0.03)) for c in ir]
    print(f"\nkitchen IR first arrivals (inL->outL, inL->outR, inR->outL, inR->outR): {onsets}")
    x = x[:, : int(0.5 * fs)]
    y = true_stereo_reverb(ir)(x)
    conv = scipy.signal.fftconvolve
    ref = np.stack([conv(x[0], ir[0]) + conv(x[1], ir[2]), conv(x[0], ir[1]) + conv(x[1], ir[3])])
    assert_close(y, ref)
    assert_close(true_stereo_reverb(ir, mode="causal")(x), ref[:, : x.shape[1]])


def test_binaural_rendering_equals_scipy(brirs, castanets):
    h, fs = brirs
    x, fs_x = castanets
    assert fs == fs_x
    program = np.stack([x[:22050], x[22050:44100]])  # two different 0.5 s feeds
    ears = binaural_plant(h)(program)
    conv = scipy.signal.fftconvolve
    ref = np.stack([conv(program[0], h[0, e]) + conv(program[1], h[1, e]) for e in range(2)])
    assert_close(ears, ref)


def _band_stats(f, sep):
    band = (f >= BAND[0]) & (f <= BAND[1])
    return float(np.median(sep[band])), float(np.percentile(sep[band], 10))


def test_crosstalk_cancellation_of_real_brirs(brirs):
    h, fs = brirs
    plant = binaural_plant(h)
    f, natural = channel_separation(plant, fs=fs)
    nat_med, _ = _band_stats(f, natural)
    ctc = crosstalk_canceller(plant, 65536, fs=fs, reg=0.01)
    f, sep = channel_separation(plant, ctc, fs=fs)
    med, p10 = _band_stats(f, sep)
    print(
        f"\nchannel separation 200 Hz-4 kHz, 66150-tap BRIRs, 65536-tap canceller: "
        f"natural median {nat_med:.1f} dB; cancelled median {med:.1f} dB, "
        f"10th percentile {p10:.1f} dB"
    )
    for lo, hi in [(200, 500), (500, 1000), (1000, 2000), (2000, 4000)]:
        sel = (f >= lo) & (f < hi)
        print(f"  {lo:>4}-{hi:<4} Hz: median {np.median(sep[sel]):5.1f} dB")
    # measured: natural 2.6 dB (a reverberant room at 6.3 m); cancelled median 32.9 dB,
    # 10th percentile 16.0 dB (the worst bins: deep notches of the room's responses)
    assert nat_med < 6
    assert med >= 25 and p10 >= 10


def test_crosstalk_cancellation_in_time_domain(brirs, castanets):
    """Left program only: the right ear gets the crosstalk residue, measured in the band."""
    h, fs = brirs
    x, _ = castanets
    x = x[: int(1.0 * fs)]
    plant = binaural_plant(h)
    ctc = crosstalk_canceller(plant, 65536, fs=fs, reg=0.01)
    system = compose(plant, ctc)  # both full-padded: exactly plant(ctc(.))
    ears = system(np.stack([x, np.zeros_like(x)]))
    sos = scipy.signal.butter(4, BAND, btype="bandpass", fs=fs, output="sos")
    band_ears = scipy.signal.sosfiltfilt(sos, ears)
    ratio = 10 * np.log10(np.sum(band_ears[0] ** 2) / np.sum(band_ears[1] ** 2))
    naked = scipy.signal.sosfiltfilt(sos, plant(np.stack([x, np.zeros_like(x)])))
    nat = 10 * np.log10(np.sum(naked[0] ** 2) / np.sum(naked[1] ** 2))
    print(
        f"\ncastanets, left program only, 200 Hz-4 kHz energy: left/right ear {ratio:.1f} dB "
        f"with the canceller, {nat:.1f} dB without"
    )
    # measured 19.1 dB with, 2.1 dB without (energy-weighted, so the worst bins dominate)
    assert ratio >= 15 and ratio > nat + 10
    # the left ear hears the program, delayed by the modelling delay
    delay = 65536 // 2
    left = band_ears[0, delay : delay + x.size]
    ref = scipy.signal.sosfiltfilt(sos, x)
    err = np.linalg.norm(left - ref) / np.linalg.norm(ref)
    print(f"  left ear vs program (band-passed): relative error {err:.3f}")  # measured 0.130
    assert err < 0.2


def test_refusals(brirs):
    h, fs = brirs
    plant = binaural_plant(h[:, :, :64])
    with pytest.raises(ValueError, match="band must satisfy 0 <= low < high"):
        crosstalk_canceller(plant, 128, fs=fs, band=(200, 30000))
    with pytest.raises(ValueError, match="reg must be a positive number"):
        crosstalk_canceller(plant, 128, fs=fs, reg=0)
    with pytest.raises(ValueError, match="plant must map L >= 2 loudspeakers to 2 ears"):
        crosstalk_canceller(binaural_plant(h[:1, :, :64]), 128, fs=fs)
    with pytest.raises(ValueError, match="brirs must have shape \\(L, 2, N\\)"):
        binaural_plant(h[0])
    with pytest.raises(ValueError, match="Invalid value for the 'mode' parameter"):
        true_stereo_reverb(np.ones((4, 3)), mode="same")


# -- levels ------------------------------------------------------------------------------------
# Oracles: ITU-R BS.1770-4 itself: its K-weighting coefficients tabulated at 48 kHz, and its
# calibration (a 0 dBFS 997 Hz sine in one channel reads -3.01 LKFS).
def test_k_weighting_matches_the_standard_table_at_48k():
    (b1, a1), (b2, a2) = k_weighting(48000.0)
    np.testing.assert_allclose(
        b1, [1.53512485958697, -2.69169618940638, 1.19839281085285], rtol=0, atol=1e-12
    )
    np.testing.assert_allclose(a1, [1.0, -1.69065929318241, 0.73248077421585], rtol=0, atol=1e-12)
    np.testing.assert_allclose(b2, [1.0, -2.0, 1.0], rtol=0, atol=0)
    np.testing.assert_allclose(a2, [1.0, -1.99004745483398, 0.99007225036621], rtol=0, atol=1e-12)


@pytest.mark.parametrize(("fs", "tol"), [(48000.0, 0.001), (44100.0, 0.05), (96000.0, 0.05)])
def test_loudness_calibration_sine(fs, tol):
    # other rates: the analogue prototype differs from the 48 kHz table by up to 0.02 LU at
    # 997 Hz (EBU Tech 3341 allows 0.1)
    t = np.arange(int(3 * fs)) / fs
    sine = np.sin(2 * np.pi * 997 * t)
    level = loudness(np.stack([sine, np.zeros_like(t)]), fs)
    assert level == pytest.approx(-3.01, abs=tol)
    # both channels: twice the power, +3.01 LU; -20 dB in amplitude: -20 LU
    assert loudness(np.stack([sine, sine]), fs) == pytest.approx(level + 3.0103, abs=1e-3)
    assert loudness(0.1 * sine[np.newaxis], fs) == pytest.approx(level - 20.0, abs=1e-3)


def test_loudness_gates():
    fs = 48000.0
    t = np.arange(int(4 * fs)) / fs
    sine = 0.5 * np.sin(2 * np.pi * 997 * t)
    full = loudness(sine[np.newaxis], fs)
    # 2 s of silence, then 2 s of sine: blocks (400 ms, every 100 ms) from 2.0 s are full,
    # those from 1.7, 1.8, 1.9 s hold 1/4, 1/2, 3/4 of it, the rest is silent (absolute gate)
    gap = np.where(t < 2.0, 0.0, sine)
    assert loudness(gap[np.newaxis], fs) == pytest.approx(full + 10 * np.log10(18.5 / 20), abs=1e-3)
    # 30 dB quieter instead of silent: above -70 LUFS, but removed by the relative gate
    quiet = np.where(t < 2.0, sine * 10 ** (-30 / 20), sine)
    kept = 17 + (0.25 + 0.75e-3) + (0.5 + 0.5e-3) + (0.75 + 0.25e-3)
    assert loudness(quiet[np.newaxis], fs) == pytest.approx(
        full + 10 * np.log10(kept / 20), abs=1e-3
    )
    assert loudness(np.zeros((2, int(fs))), fs) == float("-inf")
    with pytest.raises(ValueError, match="at least 400 ms"):
        loudness(np.zeros((1, 100)), fs)


def test_normalize_peak_and_loudness():
    x = np.random.default_rng(0).standard_normal((2, 48000)) * 3.0
    before = x.copy()
    y = normalize(x, peak=-1.0)
    assert peak_dbfs(y) == pytest.approx(-1.0)
    assert_close(y, x * (y[0, 0] / x[0, 0]))  # one gain for all channels: the image stays
    z = normalize(x, lufs=-23.0, fs=48000.0)
    assert loudness(z, 48000.0) == pytest.approx(-23.0, abs=1e-9)
    np.testing.assert_array_equal(x, before)  # the input is never changed


def test_normalize_keeps_a_signal_a_signal():
    from specconv import datasets

    dry = datasets.load("audio-pcm16")
    out = normalize(dry, lufs=-14.0)
    assert type(out) is type(dry) and out.ch_names == dry.ch_names and out.sfreq == dry.sfreq
    assert loudness(out) == pytest.approx(-14.0, abs=1e-9)


def test_normalize_refusals():
    with pytest.raises(ValueError, match="exactly one of peak= and lufs="):
        normalize(np.ones((1, 10)))
    with pytest.raises(ValueError, match="exactly one of peak= and lufs="):
        normalize(np.ones((1, 10)), peak=0.0, lufs=-23.0)
    with pytest.raises(TypeError, match="finite number, got 'loud'"):
        normalize(np.ones((1, 10)), peak="loud")
    with pytest.raises(ValueError, match="silent"):
        normalize(np.zeros((1, 10)), peak=0.0)
    with pytest.raises(ValueError, match="fs must be a positive number"):
        normalize(np.ones((1, 48000)), lufs=-23.0)
