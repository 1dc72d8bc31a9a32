# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 5. Stereo audio: reverb, binaural rendering and crosstalk cancellation as 2 × 2 matrices
#
# Every multichannel acoustic path is a matrix of impulse responses — a conv layer:
#
# * a **true-stereo reverb** sends each input channel to each output channel through its own
#   impulse response: a `2 × 2` kernel matrix;
# * two loudspeakers heard at two ears through binaural room impulse responses (BRIRs) are a
#   `2 × 2` matrix, the *plant*; playing a stereo signal through it over headphones is
#   **binaural rendering** ("virtual loudspeakers");
# * a **crosstalk canceller** is a regularized inverse of that plant, so that over real
#   loudspeakers each ear hears only its own channel.
#
# The notebook writes WAV files to listen to (in the current folder). Impulse responses are
# applied by true convolution, as in acoustics (`specconv.convolve`, or the layers of
# `specconv.apps.audio`, built with `specconv.kernels.fir_layer`).
#
# **Your own sounds:** set `AUDIO_FILE` (any stereo WAV/FLAC), `IR_FILE` (a 4-channel
# true-stereo impulse response in Web Audio order, e.g. `kitchen-true-stereo.wav` from
# GoogleChromeLabs/web-audio-samples) and `BRIR_DIR` (a folder with `brir_sweep-40.mat` and
# `brir_sweep+40.mat` from spatialaudio/communication-acoustics-exercises: KEMAR BRIRs for
# loudspeakers at ±40°). Impulse responses at another sampling rate are resampled to the
# sound's. By default the notebook uses specconv's bundled samples and a toy head model.

# %%
AUDIO_FILE = None  # e.g. "data/audio/web_audio_samples/penny-spinning.wav"
IR_FILE = None  # e.g. "data/audio/web_audio_samples/kitchen-true-stereo.wav"
BRIR_DIR = None  # e.g. "data/audio/communication_acoustics"

# %%
import sys
from fractions import Fraction
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import scipy.signal

import specconv
from specconv import datasets, io
from specconv.apps import audio as audioapps
from specconv.plot import plot_frequency_response, plot_layer
from specconv.signal import VectorSignal

sound = datasets.load("audio-pcm16") if AUDIO_FILE is None else io.read(AUDIO_FILE)
ir = datasets.load("ir-true-stereo") if IR_FILE is None else io.read(IR_FILE)
fs = sound.sfreq
x = sound.data[:2].astype(np.float64)  # (2, N): channels first, always
print(sound)
print(ir)


def at_rate(h, rate):
    """Resample impulse responses (last axis) from `rate` to the sound's rate `fs`."""
    if rate == fs:
        return np.asarray(h, dtype=np.float64)
    ratio = Fraction(fs / rate).limit_denominator(1000)
    return scipy.signal.resample_poly(h, ratio.numerator, ratio.denominator, axis=-1)


def write_wav(name, data):
    """Normalize to a peak of 0.9 and write 16-bit PCM (io.write never clips silently)."""
    data = 0.9 * data / np.abs(data).max()
    io.write(
        VectorSignal(data, ("left", "right"), sfreq=fs), name, subtype="PCM_16", overwrite=True
    )
    # in Jupyter, a player under the cell; as a plain script (no IPython needed), the file name
    ipython = sys.modules.get("IPython")
    if ipython is not None and ipython.get_ipython() is not None:
        from IPython.display import Audio, display

        display(Audio(name))
    else:
        print(f"wrote {name}")


# %% [markdown]
# ## True-stereo reverb: one 2 × 2 layer
#
# A 4-channel true-stereo impulse response holds the paths in L → out L, in L → out R,
# in R → out L, in R → out R (the Web Audio `ConvolverNode` order). As a kernel matrix
# `h[out, in]` it is `2 × 2`, and the reverberated sound is
#
# $$ y_L = h_{LL} * x_L + h_{LR} * x_R ,\qquad y_R = h_{RL} * x_L + h_{RR} * x_R .$$
#
# `apps.audio.true_stereo_reverb` builds that layer (full output: the sound plus its tail).

# %%
ir4 = at_rate(ir.data, ir.sfreq)  # (4, taps) at the sound's rate
reverb = audioapps.true_stereo_reverb(ir4)
h = io.true_stereo_kernel(ir4)  # the (2, 2, taps) kernel matrix h[out, in]
print(reverb)
y = reverb(x)
print(f"{x.shape} -> {y.shape}: {h.shape[-1] / fs:.2f} s of tail")

# the same with scipy, pair by pair: y_o = sum_i h[o, i] * x_i
ref = np.stack([sum(scipy.signal.fftconvolve(x[i], h[o, i]) for i in range(2)) for o in range(2)])
assert np.allclose(y, ref, atol=1e-9 * np.abs(ref).max())
assert np.allclose(specconv.convolve(x, h), ref, atol=1e-9 * np.abs(ref).max())
print("true-stereo reverb == scipy.signal.fftconvolve summed over the inputs")

write_wav("reverb.wav", y)

# %% [markdown]
# The kernel matrix (the four impulse responses) beside the input and output channels, and
# its magnitude and phase at every frequency. `plot_layer` draws the layer's `weight`, and a
# layer stores PyTorch's cross-correlation taps: the impulse responses appear time-reversed.

# %%
fig = plot_layer(reverb, sound.replace(data=x), title="true-stereo reverb: a 2 × 2 layer")
plt.show()
fig = plot_frequency_response(reverb, 1 << int(np.ceil(np.log2(h.shape[-1]))), sfreq=fs)
plt.show()

# %% [markdown]
# ## Binaural rendering: virtual loudspeakers over headphones
#
# Put two loudspeakers at ±40° in front of a listener. Loudspeaker `s` reaches ear `e`
# through a BRIR `b_es`; the ear signals are the plant applied to the loudspeaker signals,
# `ears = B ⋆ speakers`, `B` a `2 × 2` matrix of BRIRs. Playing `ears` over headphones
# renders the loudspeakers binaurally.
#
# Without measured BRIRs we use a toy head: the near ear hears the loudspeaker directly, the
# far ear later (the interaural time difference of a sphere, Woodworth's formula) and duller
# (a first-order low-pass, the head's shadow), both followed by a little room: a short,
# exponentially decaying noise tail.


# %%
def toy_brir(azimuth_deg, seconds=0.05, seed=0):
    """(left ear, right ear) impulse responses of a loudspeaker at the azimuth (left > 0)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * fs)
    k = np.arange(n)
    theta = np.deg2rad(abs(azimuth_deg))
    itd = 0.0875 / 343.0 * (theta + np.sin(theta)) * fs  # head radius 8.75 cm, c = 343 m/s

    def delayed_impulse(delay, half=32):  # a windowed-sinc fractional delay
        u = k - delay
        return np.sinc(u) * np.where(np.abs(u) < half, np.cos(np.pi * u / (2 * half)) ** 2, 0)

    direct = 0.002 * fs  # 2 ms to the near ear
    b, a = scipy.signal.butter(1, 1500 * (1 + np.cos(theta)), fs=fs)
    near = delayed_impulse(direct)
    far = 0.8 * scipy.signal.lfilter(b, a, delayed_impulse(direct + itd))
    room = 0.02 * rng.standard_normal((2, n)) * np.exp(-k / (0.01 * fs)) * (k > direct + 0.003 * fs)
    ears = np.array([near, far]) + room
    return ears if azimuth_deg > 0 else ears[::-1]


if BRIR_DIR is None:
    brirs = [toy_brir(+40, seed=1), toy_brir(-40, seed=2)]  # left and right loudspeaker
else:
    # the "-40" file turns the head by -40°: that loudspeaker appears at +40°, on the left
    brirs = []
    for name in ("brir_sweep-40.mat", "brir_sweep+40.mat"):
        b_, rate = audioapps.read_brir_mat(Path(BRIR_DIR) / name)
        brirs.append(at_rate(b_, rate))
plant = audioapps.binaural_plant(brirs)
print(plant)

ears = plant(x)
write_wav("binaural.wav", ears)  # headphones: the stereo sound on two virtual loudspeakers

fig = plot_layer(plant, title="the plant: loudspeakers (columns) -> ears (rows)")
plt.show()

# %% [markdown]
# ## Crosstalk cancellation: invert the plant
#
# Over real loudspeakers each ear also hears the *other* loudspeaker: that crosstalk is why
# loudspeakers cannot play a binaural recording faithfully. A crosstalk canceller `C` is a
# `2 × 2` layer placed before the loudspeakers such that `B ⋆ C ≈ δ(t − delay) I`: program
# channel `i` reaches ear `i` only. At every frequency it is a regularized inverse of the
# plant's matrix, `C(f) = (B(f)ᴴB(f) + β(f) I)⁻¹ B(f)ᴴ` (`specconv.kernels.inverse`), with
# a small `β` in the band we want to cancel (150 Hz–6 kHz) and a large one outside, where
# inverting would only boost what the plant cannot reproduce.
#
# The *channel separation* at an ear is how much louder its own program is than the other one,
# `20·log10 |S_ee / S_e,other|` with `S(f) = B(f) C(f)`. Without the canceller it is the
# head's natural separation.

# %%
band = (150.0, 6000.0)
n_taps = max(4096, 1 << int(np.ceil(np.log2(plant.kernel_size[0]))))  # about the plant's length
canceller = audioapps.crosstalk_canceller(plant, n_taps, fs=fs, band=band, reg=1e-2)
print(canceller)
f0, natural = audioapps.channel_separation(plant, fs=fs)
f1, cancelled = audioapps.channel_separation(plant, canceller, fs=fs)
in0, in1 = (f0 > band[0]) & (f0 < band[1]), (f1 > band[0]) & (f1 < band[1])
print(
    f"median separation {band[0]:.0f} Hz-{band[1] / 1000:.0f} kHz: "
    f"natural {np.median(natural[in0]):.1f} dB, "
    f"with canceller {np.median(cancelled[in1]):.1f} dB"
)
assert np.median(cancelled[in1]) > np.median(natural[in0]) + 6

fig, ax = plt.subplots(figsize=(9, 3.2))
ax.semilogx(f0[1:], natural[1:, 0], label="natural (left ear)")
ax.semilogx(f1[1:], cancelled[1:, 0], label="with crosstalk canceller (left ear)")
ax.axvspan(*band, color="g", alpha=0.08)
ax.set(xlabel="Hz", ylabel="separation (dB)", xlim=(50, fs / 2))
ax.legend()
plt.show()

# %% [markdown]
# In the time domain: the canceller feeds the loudspeakers, the plant carries them to the
# ears. Play the **left** channel only: the right ear should hear (almost) nothing in the
# band, while without the canceller it hears the left loudspeaker almost as loud as the left
# ear does.

# %%
program = np.stack([x[0], np.zeros_like(x[0])])  # left channel only
speakers = canceller(program)
at_ears = plant(speakers)
sos = scipy.signal.butter(4, band, btype="bandpass", fs=fs, output="sos")


def level(sig):
    return 10 * np.log10(np.mean(scipy.signal.sosfilt(sos, sig) ** 2))


plain = plant(program)
leak_plain = level(plain[0]) - level(plain[1])
leak_ctc = level(at_ears[0]) - level(at_ears[1])
print(
    f"left ear louder than right ear: {leak_plain:.1f} dB without, {leak_ctc:.1f} dB with canceller"
)
assert leak_ctc > leak_plain + 6

write_wav("crosstalk_cancelled_speakers.wav", canceller(ears))  # loudspeaker feeds for binaural.wav

# %% [markdown]
# The whole chain is itself one layer: `plant @ canceller` (the kernel-matrix product) is the
# `2 × 2` system from program to ears, which should be close to a delayed identity in the band.

# %%
system = plant @ canceller
print(system)
nfft = 1 << int(np.ceil(np.log2(system.kernel_size[0])))
H = system.frequency_response(nfft)
f = np.fft.rfftfreq(nfft, 1 / fs)
sel = (f > band[0]) & (f < band[1])
print("median |S(f)| in the band:\n", np.round(np.median(np.abs(H[sel]), axis=0), 3))
assert np.median(np.abs(H[sel, 0, 0])) > 10 * np.median(np.abs(H[sel, 0, 1]))

# %% [markdown]
# ## Summary
#
# * A true-stereo reverb, a binaural plant and a crosstalk canceller are `2 × 2` layers;
#   `apps.audio` builds them (`true_stereo_reverb`, `binaural_plant`, `crosstalk_canceller`).
# * The canceller is the plant's regularized inverse per frequency; `channel_separation`
#   measures it, and `plant @ canceller` is the whole chain as one layer.
# * `io.write` writes the results as WAV (16-bit here), refusing to clip silently.
#
# Next: [06_multicoil_mri.py](06_multicoil_mri.py) — the same algebra on MRI coils.
