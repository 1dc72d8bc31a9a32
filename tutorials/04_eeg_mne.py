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
# # 4. EEG with MNE: a filter bank, a spatial filter, one layer, bad segments kept local
#
# A multichannel EEG recording is a vector-valued signal, and most of what an EEG pipeline
# does to it is linear and time-invariant: band-pass filters (per channel), re-referencing and
# surface Laplacians (mixing channels at every sample). In the language of notebooks 1–2 these
# are conv layers: a **depthwise filter bank** and a **`1 × 1` spatial layer** — and their
# product is **one** layer. This notebook
#
# 1. reads a recording with MNE and hands it to specconv (`specconv.io.from_mne`);
# 2. builds an MNE-designed filter bank as a depthwise layer and checks it against
#    `mne.filter.filter_data`;
# 3. composes an average reference and the filter bank into one layer;
# 4. marks bad segments as NaN and shows that specconv keeps them local (an FFT convolution
#    would not);
# 5. goes back to MNE objects (`specconv.io.to_mne`), plots and writes a FIF file.
#
# **Your own data:** set `EEG_FILE` to any file `mne.io.read_raw` reads (EDF, BDF, FIF,
# BrainVision `.vhdr`, EEGLAB `.set`, ...), e.g. the PhysioNet "EEG during mental arithmetic"
# recording `Subject00_2.edf`. By default the notebook uses the EEG sample bundled with
# specconv (a 32-channel, 60 s model of resting EEG with alpha rhythm, blinks and 50 Hz).

# %%
EEG_FILE = None  # e.g. "data/eeg/physionet_eegmat/Subject00_2.edf"

# %%
import matplotlib.pyplot as plt
import mne
import numpy as np
import scipy.signal

import specconv
from specconv import datasets, io
from specconv.apps import eeg as eegapps
from specconv.kernels import side_pads
from specconv.plot import plot_layer

mne.set_log_level("WARNING")
mne.viz.set_browser_backend("matplotlib")

path = datasets.path("eeg-fif") if EEG_FILE is None else EEG_FILE
raw = mne.io.read_raw(path, preload=True)
raw.pick("eeg")
print(raw)

# %% [markdown]
# ## Bad segments
#
# MNE marks artefacts with annotations whose description starts with `BAD_`. The bundled
# sample annotates its eye blinks as `blink`; we declare them bad, and add one more bad
# second (as if an electrode had popped) so that every recording has some.

# %%
annotations = raw.annotations.copy()
if "blink" in annotations.description:
    annotations.rename({"blink": "BAD_blink"})
annotations.append(onset=raw.times[-1] / 3, duration=1.0, description="BAD_electrode")
raw.set_annotations(annotations)
print(raw.annotations)

# %% [markdown]
# ## From MNE to specconv
#
# `io.from_mne` returns a `VectorSignal`: the data `(C, N)` in volts, channel names,
# `sfreq`, and MNE's `info` and annotations as metadata for the way back. With
# `reject_by_annotation="NaN"` the samples inside `BAD_*` annotations become NaN — MNE's own
# convention (`raw.get_data(reject_by_annotation="NaN")`).

# %%
clean = io.from_mne(raw)
marked = io.from_mne(raw, reject_by_annotation="NaN")
C, N, sfreq = clean.n_channels, clean.data.shape[1], clean.sfreq
print(clean)
print(f"{np.isnan(marked.data[0]).mean():.1%} of the samples are in bad segments")

# %% [markdown]
# ## A filter bank is a depthwise layer
#
# `eegapps.filter_bank` designs one band-pass FIR per band with MNE's own designer
# (`mne.filter.create_filter`: firwin, Hamming window, MNE's automatic transition bands and
# lengths) and builds the depthwise-multiplier layer of notebook 2: `groups = C`, weight
# `(C · bands, 1, taps)`, output `c · n_bands + b` = channel `c` in band `b`, zero phase.

# %%
bands = {"theta": (4.0, 8.0), "alpha": (8.0, 13.0), "beta": (13.0, 30.0)}
bank = eegapps.filter_bank(sfreq, list(bands.values()), C)
print(bank)

y = bank(clean.data)
print(clean.data.shape, "->", y.shape)

# %% [markdown]
# Its numbers are MNE's: `mne.filter.filter_data` with the same band and `pad="constant"`
# (zeros beyond the edges, the layer's padding). MNE's default edge extension is an odd
# reflection (`pad="reflect_limited"`), which no padding mode of a conv layer is;
# `eegapps.apply_like_mne` extends the signal that way first, then runs the layer unpadded.

# %%
n_bands = len(bands)
for b, (name, (lo, hi)) in enumerate(bands.items()):
    ref = mne.filter.filter_data(
        clean.data, sfreq, lo, hi, method="fir", phase="zero", pad="constant"
    )
    assert np.allclose(y[b::n_bands], ref, rtol=0, atol=1e-9 * np.abs(ref).max()), name

ref = mne.filter.filter_data(clean.data, sfreq, 8.0, 13.0)  # all MNE defaults
y_mne_edges = eegapps.apply_like_mne(bank, clean.data)
assert np.allclose(y_mne_edges[1::n_bands], ref, rtol=0, atol=1e-9 * np.abs(ref).max())
print("filter bank == mne.filter.filter_data, band by band (zero and MNE-style edges)")

# %% [markdown]
# The bank's kernel matrix for the first two channels (`kernels.split_groups` would give
# every channel's block; here we simply plot a sub-layer with the first 2 · 3 kernels):

# %%
first = specconv.SpectralConv(bank.weight[: 2 * n_bands], groups=2, padding="same")
seconds = slice(0, int(2 * sfreq))
two = clean.replace(data=clean.data[:2, seconds] * 1e6, ch_names=clean.ch_names[:2])
fig = plot_layer(first, two, title="filter bank of 2 channels (µV, 2 s)")
plt.show()

# %% [markdown]
# ## A spatial filter and the filter bank in ONE layer
#
# A spatial filter mixes the channels at every sample: a `C × C` matrix `S` — a `1 × 1` conv
# layer. Here it is a nearest-neighbour (Hjorth) surface Laplacian, every electrode minus the
# mean of its 4 nearest neighbours on the montage (for channels without standard positions
# the notebook falls back to the average reference; MNE's current source density,
# `eegapps.csd_matrix`, or any unmixing matrix work the same way).
#
# Spatial filter, then filter bank, is the product of the two layers: at every frequency
# `H(f) = H_bank(f) · S`, and in time a single layer with a `(C · 3) × C` matrix of kernels
# (`eegapps.spatiotemporal_layer`, which calls `specconv.kernels.compose`). It is exact,
# edges included.

# %%
try:
    S = eegapps.laplacian_matrix(eegapps.montage_positions(clean.ch_names), n_neighbors=4)
    spatial_name = "surface Laplacian"
except ValueError:  # channel names that are not on the 10-20 montage
    S = eegapps.rereference_matrix(C, ref="average")
    spatial_name = "average reference"
one = eegapps.spatiotemporal_layer(S, bank)
print(spatial_name, "+ filter bank =", one)
y_one = one(clean.data)
y_two_steps = bank(S @ clean.data)
assert np.allclose(y_one, y_two_steps, rtol=0, atol=1e-9 * np.abs(y_two_steps).max())

nfft = 1024
H_one, H_bank = one.frequency_response(nfft), bank.frequency_response(nfft)
assert np.allclose(H_one, H_bank @ S, atol=1e-12)
print(f"one layer == {spatial_name} then filter bank; H(f) = H_bank(f) @ S at every frequency")

fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
axes[0].imshow(np.abs(S), cmap="viridis")
axes[0].set(title=f"|S|: {spatial_name}", xlabel="input channel", ylabel="channel")
for ax, hz, b, band in ((axes[1], 10, 1, "alpha"), (axes[2], 20, 2, "beta")):
    ax.imshow(np.abs(H_one[round(hz * nfft / sfreq)][b::n_bands]), cmap="viridis")
    ax.set(title=f"|H({hz} Hz)|, the {band} outputs", xlabel="input channel")
plt.show()

# %% [markdown]
# ## Bad segments stay local
#
# A NaN inside an FFT convolution spreads over the whole output: the transform of a signal
# with one NaN is NaN at every frequency. `scipy.signal.fftconvolve` shows it:

# %%
h_alpha = bank.weight[1, 0]
nan_everywhere = scipy.signal.fftconvolve(marked.data[0], h_alpha, mode="same")
print(f"fftconvolve: {np.isnan(nan_everywhere).mean():.0%} of the output is NaN")

# %% [markdown]
# specconv keeps non-finite input local, on every method: an output is NaN exactly where the
# kernel, placed at that output, covers a NaN input — here the bad segments widened by the
# filter's half-length on each side — and every other output is exactly what the clean
# recording gives. We check both claims with an independent count of NaNs under the kernel:

# %%
y_marked = bank(marked.data)
((left, right),) = side_pads(bank)  # the layer's zero padding on each side
K = bank.kernel_size[0]
bad = np.isnan(marked.data).astype(float)
# NaNs under the kernel at every output: a box sum over the taps' window
under_kernel = np.stack([np.convolve(m, np.ones(K))[K - 1 - left : K - 1 - left + N] for m in bad])
expected = np.repeat(under_kernel > 0.5, n_bands, axis=0)  # every band of the channel

assert np.array_equal(np.isnan(y_marked), expected)
ok = ~expected
assert np.allclose(y_marked[ok], y[ok], rtol=0, atol=1e-9 * np.abs(y).max())
print(
    f"specconv: {np.isnan(y_marked).mean():.1%} of the output is NaN (input {bad.mean():.1%}: "
    f"every bad segment widens by the {K / sfreq:.2f} s kernel); every other sample equals "
    "the clean result"
)

t = np.arange(N) / sfreq
fig, ax = plt.subplots(figsize=(11, 3))
ax.plot(t, marked.data[0] * 1e6, color="0.6", lw=0.6, label=f"{clean.ch_names[0]} (bad = NaN)")
ax.plot(t, y_marked[1] * 1e6 * 3, lw=0.8, label="alpha band (×3), specconv")
for onset, dur in zip(raw.annotations.onset, raw.annotations.duration):
    ax.axvspan(onset, onset + dur, color="r", alpha=0.15)
ax.set(xlabel="s", ylabel="µV", xlim=(0, min(30, t[-1])))
ax.legend(loc="upper right", fontsize=8)
plt.show()

# %% [markdown]
# ## Back to MNE
#
# `sig.apply(layer)` runs a layer on a `VectorSignal` and keeps its metadata; `io.to_mne`
# turns the result into a `RawArray` (the original measurement info, new channel names —
# the source channels were EEG, so are the outputs — and the annotations), ready for any MNE
# function: here the PSD of the alpha outputs and MNE's raw browser with the bad segments
# shaded.

# %%
out_names = [f"{ch}-{band}" for ch in clean.ch_names for band in bands]
out = marked.apply(bank, ch_names=out_names)
raw_out = io.to_mne(out)
print(raw_out)
assert raw_out.ch_names == out_names and raw_out.info["sfreq"] == sfreq
assert len(raw_out.annotations) == len(raw.annotations)

alpha = raw_out.copy().pick(out_names[1::n_bands])
fig = alpha.plot(duration=10.0, n_channels=8, scalings=dict(eeg=20e-6), show=False)
plt.show()

# the spectra of the theta, alpha and beta outputs of Cz (from the clean recording)
cz = next((c for c, name in enumerate(clean.ch_names) if name.endswith("Cz")), 0)
picks = out_names[cz * n_bands : (cz + 1) * n_bands]
print("power spectra of", picks)
spectrum = (
    io.to_mne(clean.apply(bank, ch_names=out_names))
    .pick(picks)
    .compute_psd(fmax=40, reject_by_annotation=False)
)
fig = spectrum.plot(amplitude=False, spatial_colors=False, show=False)
plt.show()

# %% [markdown]
# Finally, write the filtered recording to a FIF file MNE (or specconv) reads back.
# `io.write` writes atomically: a temporary file renamed when complete, so an error never
# leaves a half-written file. (Bad samples are NaN in the file, as MNE would write them.)

# %%
io.write(out, "eeg_filter_bank_raw.fif", overwrite=True)
back = mne.io.read_raw_fif("eeg_filter_bank_raw.fif", preload=True)
assert back.ch_names == out_names
assert np.allclose(back.get_data(), out.data, rtol=1e-6, atol=0, equal_nan=True)
print("wrote eeg_filter_bank_raw.fif:", back)

# %% [markdown]
# ## Summary
#
# * EEG goes from MNE to specconv and back without losing its info or annotations
#   (`io.from_mne`, `sig.apply`, `io.to_mne`, `io.write`).
# * A filter bank is a depthwise layer with MNE's numbers; a spatial filter is a `1 × 1`
#   layer; their product is one layer, `H(f) = H_bank(f) · S`.
# * Bad segments as NaN stay where the kernel touches them; everything else is exact.
#
# Next: [05_stereo_audio.py](05_stereo_audio.py) — the same matrices for sound.

# %% [markdown]
# ## MNE in, MNE out: `apply_to_mne`
#
# The round trip above (`from_mne` → `apply` → `to_mne`) is what a pipeline would otherwise
# write itself. `eegapps.apply_to_mne` does it in one call and behaves like `raw.filter`:
# same picks (data channels, bad ones included), each good segment between
# `skip_by_annotation` annotations filtered separately, MNE's edge extension
# (`pad="reflect_limited"` for Raw, `"edge"` for Epochs/Evoked), a copy unless `copy=False`.
# A filter bank's outputs are named `<channel>-<band>` and inherit their channel's type,
# position and bad status; channels not picked (stim, EOG, ...) pass through. With the same
# FIR the numbers are `raw.filter`'s — and a recording read with `preload=False` is read
# segment by segment through the out-of-core path.

# %%
raw_in = mne.io.read_raw(path, preload=True)  # all channels, the file's own annotations
n_eeg = len(raw_in.copy().pick("eeg", exclude=()).ch_names)
bank_eeg = eegapps.filter_bank(sfreq, list(bands.values()), n_eeg)
banked = eegapps.apply_to_mne(bank_eeg, raw_in, picks="eeg", bands=list(bands))
print(banked)
print(banked.ch_names[:6], "...")

ref = raw_in.copy().filter(8.0, 13.0, picks="eeg")
alpha_names = [name for name in banked.ch_names if name.endswith("-alpha")]
eeg_names = raw_in.copy().pick("eeg", exclude=()).ch_names
scale = np.abs(ref.get_data(picks=eeg_names)).max()
assert np.allclose(
    banked.get_data(picks=alpha_names), ref.get_data(picks=eeg_names), rtol=0, atol=1e-9 * scale
)

alpha_layer = eegapps.filter_bank(sfreq, [bands["alpha"]], n_eeg)
lazy = mne.io.read_raw(path, preload=False)
streamed = eegapps.apply_to_mne(alpha_layer, lazy, picks="eeg")
assert np.allclose(
    streamed.get_data(picks=eeg_names), ref.get_data(picks=eeg_names), rtol=0, atol=1e-9 * scale
)
print("apply_to_mne == raw.filter (in memory and from disk with preload=False)")

# %% [markdown]
# ## Decoding with scikit-learn: a filter bank in a cross-validated pipeline
#
# `specconv.sklearn.LayerTransformer` wraps a layer as a scikit-learn transformer of epochs
# `(n_epochs, n_channels, n_times)` (each epoch filtered as `epochs.filter` filters it; `fit`
# learns nothing). Here a toy task on the recording: does a 2-s epoch hold an annotated event
# (a blink in the bundled sample)? Features: the log-variance of every channel in every band
# (a filter-bank power decoder), or MNE's CSP on the banked channels; both cross-validated.

# %%
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from specconv.sklearn import LayerTransformer

events = mne.make_fixed_length_events(raw_in, duration=2.0)
epochs = mne.Epochs(
    raw_in,
    events,
    tmin=0.0,
    tmax=2.0 - 1 / sfreq,
    baseline=None,
    picks="eeg",
    preload=True,
    reject_by_annotation=False,
)
onsets = raw_in.annotations.onset - raw_in.first_time
ends = onsets + raw_in.annotations.duration
starts = (epochs.events[:, 0] - raw_in.first_samp) / sfreq
labels = np.array([np.any((onsets < s + 2.0) & (ends > s)) for s in starts], dtype=int)
X = epochs.get_data()
print(f"{len(X)} epochs, {labels.sum()} with an annotated event")

if 3 <= labels.sum() <= len(labels) - 3:
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    transformer = LayerTransformer(bank_eeg, ch_names=epochs.ch_names, bands=list(bands))
    log_variance = make_pipeline(
        transformer,
        FunctionTransformer(lambda Z: np.log(Z.var(axis=-1))),
        StandardScaler(),
        LogisticRegression(max_iter=1000),
    )
    print("filter bank + log-variance:", cross_val_score(log_variance, X, labels, cv=cv).round(2))
    print("features:", transformer.fit(X).get_feature_names_out()[:3], "...")

    from mne.decoding import CSP

    csp = make_pipeline(
        LayerTransformer(bank_eeg),
        CSP(n_components=6, reg="ledoit_wolf", log=True),
        LogisticRegression(),
    )
    print("filter bank + CSP:         ", cross_val_score(csp, X, labels, cv=cv).round(2))
else:
    print("too few epochs with (or without) annotations to decode; skipped")
