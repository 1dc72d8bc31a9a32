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
# # 1. Conv layers as a channel-wise matrix–vector product of convolutions
#
# A deep-learning conv layer is usually drawn as a stack of filters sliding over an image.
# This notebook shows the other picture, the one specconv is built on: **a conv layer is a
# matrix whose entries are kernels, applied to a vector-valued signal**, and in the frequency
# domain it is an ordinary complex matrix at every frequency.
#
# You will see
#
# 1. the notation: vector-valued signals, channels, samples and pixels;
# 2. the conv-layer equation and its picture (`specconv.plot.plot_layer`);
# 3. that specconv gives the same numbers as PyTorch and as `scipy.signal`;
# 4. the frequency-domain view: transform every channel once, multiply by a
#    `C_out × C_in` matrix per frequency, transform back once.
#
# Everything runs on the samples bundled with specconv (`specconv.datasets`), in seconds.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import scipy.signal

import specconv
from specconv import datasets
from specconv.plot import plot_frequency_response, plot_layer

rng = np.random.default_rng(0)

# %% [markdown]
# ## Notation: a signal is a vector at every sample
#
# An EEG recording with `C` electrodes and `N` samples is an array `x` of shape `(C, N)`.
# Read it two ways:
#
# * by **channel**: `x[j]` is the scalar signal of electrode `j` (a row);
# * by **sample**: `x[:, n]` is a vector in $\mathbb{R}^C$ — the state of all electrodes at
#   time `n` (a column).
#
# So `x` is a *vector-valued signal*. Images are the same with more axes: an RGB image is
# `(3, H, W)`, a pixel `x[:, r, c]` is a 3-vector; the 8 coil images of an MRI scan are
# `(8, H, W)`. specconv always puts the channels first and the signal axes last, with an
# optional batch axis in front: `(C, *spatial)` or `(B, C, *spatial)`.
#
# The bundled EEG sample is such a signal (a 32-channel model of resting EEG at 256 Hz):

# %%
eeg = datasets.load("eeg-fif")
print(eeg)
picks = [eeg.ch_names.index(name) for name in ("Fp1", "Cz", "O1")]
sfreq = eeg.sfreq
x = eeg.data[picks, : int(4 * sfreq)] * 1e6  # 3 channels, 4 s, in µV
names = [eeg.ch_names[i] for i in picks]
print(
    "x:",
    x.shape,
    "-> channel",
    names[0],
    "is x[0]; the sample at t = 1 s is x[:, 256] =",
    np.round(x[:, 256], 1),
)

# %% [markdown]
# ## The conv-layer equation
#
# A conv layer with `C_in` inputs and `C_out` outputs holds a kernel $h_{ij}$ for every pair
# (output `i`, input `j`) and a bias $b_i$ per output:
#
# $$ y_i \;=\; b_i + \sum_{j=1}^{C_{in}} h_{ij} \star x_j , \qquad i = 1, \dots, C_{out} .$$
#
# Compare with a matrix–vector product $y = Hx + b$, $y_i = b_i + \sum_j H_{ij} x_j$: it is the
# same formula, with the product of two numbers replaced by the correlation $\star$ of a kernel
# with a signal. (Deep-learning libraries call it convolution but compute a
# cross-correlation, $(h \star x)[n] = \sum_k h[k]\,x[n + k]$: the kernel is not flipped.)
# The weight array `(C_out, C_in, K)` *is* that matrix of kernels.
#
# Here is a layer with the 3 EEG channels (Fp1, Cz, O1) as inputs and 2 outputs:
#
# * output 0, "alpha": the 8–13 Hz band of O1 minus that of Cz (a band-pass FIR in two
#   entries of the row, with opposite signs);
# * output 1, "blinks": Fp1 (the electrode above the eye) low-passed below 4 Hz.
#
# The other entries are zero kernels. `plot_layer` draws the kernel matrix with the input
# channels above it (channel `j` over column `j`) and the outputs beside it (output `i` level
# with row `i`). Read a row: output `i` is the sum of its row's kernels, each applied to the
# channel above it.

# %%
K = 129  # 0.5 s at 256 Hz
alpha = scipy.signal.firwin(K, [8, 13], pass_zero=False, fs=sfreq)
slow = scipy.signal.firwin(K, 4, fs=sfreq)
zero = np.zeros(K)
w = np.array(
    [
        [zero, -alpha, alpha],  # output 0 = alpha(O1) - alpha(Cz)
        [slow, zero, zero],
    ]
)  # output 1 = low-passed Fp1
b = np.array([0.0, -10.0])  # a bias per output (µV)
layer = specconv.SpectralConv(w, b, padding="same")
print(layer, "weight:", layer.weight.shape)

signal = eeg.replace(data=x, ch_names=tuple(names))  # keep the channel names for the figure
fig = plot_layer(layer, signal, title="y_i = b_i + Σ_j h_ij ⋆ x_j  (3 EEG channels -> 2 outputs)")
plt.show()

# %% [markdown]
# ## Same numbers as scipy.signal and PyTorch
#
# The equation can be computed literally, one pair at a time, with
# `scipy.signal.correlate` — the reference specconv is tested against. specconv's
# `padding="same"` pads `(K - 1) // 2` zeros on each side, as PyTorch does:

# %%
y = layer(x)

pad = (K - 1) // 2
xp = np.pad(x, ((0, 0), (pad, pad)))
y_pairs = np.stack(
    [
        b[i] + sum(scipy.signal.correlate(xp[j], w[i, j], mode="valid") for j in range(3))
        for i in range(2)
    ]
)
print("max |specconv - scipy pair loop| =", np.abs(y - y_pairs).max())
assert y.shape == (2, x.shape[1])
assert np.allclose(y, y_pairs, rtol=1e-12, atol=1e-12 * np.abs(y).max())

# %% [markdown]
# PyTorch's `conv1d` is the same layer (when PyTorch is installed; it is not a dependency of
# specconv, so this cell only reports when it is missing):

# %%
try:
    import torch
except ImportError:
    torch = None
    print("PyTorch is not installed: skipping the comparison with torch.nn.functional.conv1d")

if torch is not None:
    y_torch = torch.nn.functional.conv1d(
        torch.from_numpy(x[None]), torch.from_numpy(w), torch.from_numpy(b), padding=pad
    )[0].numpy()
    print("max |specconv - torch| =", np.abs(y - y_torch).max())
    assert np.allclose(y, y_torch, rtol=1e-12, atol=1e-12 * np.abs(y).max())

# %% [markdown]
# ### Images: pixels are vectors too
#
# Nothing changes in two dimensions. Take the 8 coil images of the bundled MRI phantom (their
# magnitudes, a real 8-channel image: every pixel is an 8-vector), and map them to 4 channels
# with 5 × 5 kernels and stride 2 — PyTorch's `conv2d`:

# %%
from specconv.io import kspace_to_image

coils = np.abs(kspace_to_image(datasets.load("mri-bart").data)).astype(np.float64)
w2 = rng.standard_normal((4, 8, 5, 5))
y2 = specconv.conv(coils, w2, stride=2, padding=2)
print("coil images", coils.shape, "-> conv2d, stride 2 ->", y2.shape)

ref2 = np.stack(
    [
        sum(scipy.signal.correlate(np.pad(coils[j], 2), w2[i, j], mode="valid") for j in range(8))
        for i in range(4)
    ]
)[:, ::2, ::2]  # stride 2 keeps every other output
assert np.allclose(y2, ref2, atol=1e-10 * np.abs(ref2).max())
if torch is not None:
    y2_torch = torch.nn.functional.conv2d(
        torch.from_numpy(coils[None]), torch.from_numpy(w2), stride=2, padding=2
    )[0].numpy()
    assert np.allclose(y2, y2_torch, atol=1e-10 * np.abs(y2).max())

fig, axes = plt.subplots(2, 8, figsize=(12, 3.4))
for j, ax in enumerate(axes[0]):
    ax.imshow(coils[j], cmap="gray")
    ax.set_title(f"coil {j}", fontsize=8)
for i, ax in enumerate(axes[1]):
    if i < 4:
        ax.imshow(y2[i], cmap="RdBu_r")
        ax.set_title(f"output {i}", fontsize=8)
for ax in axes.ravel():
    ax.axis("off")
fig.suptitle("8-channel image (every pixel an 8-vector) -> 4 channels, 5 × 5 kernels, stride 2")
plt.show()

# %% [markdown]
# ## The frequency-domain view: one matrix per frequency
#
# The discrete Fourier transform turns a (circular) correlation into a product. Apply it to
# every channel of the equation and the sum over `j` stays a sum:
#
# $$ Y_i(f) \;=\; \sum_j H_{ij}(f)\, X_j(f) \qquad\Longleftrightarrow\qquad
#    Y(f) = H(f)\, X(f) \quad\text{at every frequency } f . $$
#
# So the layer is **an ordinary complex `C_out × C_in` matrix at every frequency**, applied to
# the vector of the input channels' spectra at that frequency. `layer.frequency_response(L)`
# returns these matrices for a DFT of length `L`: an array `(L // 2 + 1, C_out, C_in)`.
#
# Let's verify it by hand. With circular padding the layer is exactly a circular correlation,
# so: transform every input channel **once**, multiply by `H(f)` at every frequency, transform
# every output channel back **once**:

# %%
N = x.shape[1]
circular = specconv.SpectralConv(w, padding="same", padding_mode="circular")
H = circular.frequency_response(N)  # (N // 2 + 1, 2, 3): one 2 × 3 matrix per frequency
X = np.fft.rfft(x, axis=-1)  # C_in = 3 forward transforms
Y = np.einsum("fij,jf->if", H, X)  # a 2 × 3 mat-vec at each of the N // 2 + 1 frequencies
y_by_hand = np.fft.irfft(Y, N, axis=-1)  # C_out = 2 inverse transforms
print("H:", H.shape, " max |by hand - layer| =", np.abs(y_by_hand - circular(x)).max())
assert np.allclose(y_by_hand, circular(x), atol=1e-12 * np.abs(y_by_hand).max())

# %% [markdown]
# With zero padding (the usual case) the same holds once the transform is long enough that
# nothing wraps around: pad the signal with zeros to `L ≥ N`, and the first `N − K + 1`
# outputs of the circular result are the layer's "valid" outputs. (specconv does this over
# overlap-save tiles, so long signals never need one huge transform.)

# %%
valid = specconv.SpectralConv(w)  # padding=0: N - K + 1 outputs, no bias
L = 1024  # >= N
Y = np.einsum("fij,jf->if", valid.frequency_response(L), np.fft.rfft(x, L, axis=-1))
y_linear = np.fft.irfft(Y, L, axis=-1)[:, : N - K + 1]
assert np.allclose(y_linear, valid(x), atol=1e-12 * np.abs(y_linear).max())
print("zero-padded transform-once == layer with padding=0:", valid(x).shape)

# %% [markdown]
# `plot_frequency_response` draws the matrix entry by entry: the magnitude and phase of every
# $H_{ij}(f)$ — the band-pass and low-pass entries, and the zero kernels (flat at the floor).
# At 10 Hz, for instance, the matrix is close to `[[0, -1, 1], [0, 0, 0]]` (up to phase): the
# alpha output sees O1 − Cz, the blink output sees nothing.

# %%
fig = plot_frequency_response(layer, 512, sfreq=sfreq)
plt.show()

H10 = layer.frequency_response(512)[round(10 * 512 / sfreq)]  # the matrix at 10 Hz
print("|H(10 Hz)| =\n", np.round(np.abs(H10), 2))
assert np.allclose(np.abs(H10), [[0, 1, 1], [0, 0, 0]], atol=0.05)

# %% [markdown]
# ## Why transform once?
#
# Computed pair by pair, the layer costs `C_out · C_in` convolutions — with FFTs, three
# transforms each. The matrix view needs only `C_in` forward and `C_out` inverse transforms
# plus a small matrix product per frequency: for 16 → 16 channels that is 32 transforms
# instead of 768. A quick (unscientific) timing on this machine, 16 × 16 kernels of 257 taps on
# 20 000 samples; `method="direct"` is specconv's non-FFT implementation, for comparison:

# %%
x16 = rng.standard_normal((16, 20_000))
w16 = rng.standard_normal((16, 16, 257))


def timed(f):
    t0 = time.perf_counter()
    out = f()
    return out, time.perf_counter() - t0


y_fft, t_spec = timed(lambda: specconv.conv(x16, w16))
y_pairs, t_pairs = timed(
    lambda: np.stack(
        [
            sum(scipy.signal.fftconvolve(x16[j], w16[i, j, ::-1], mode="valid") for j in range(16))
            for i in range(16)
        ]
    )
)
y_direct, t_direct = timed(lambda: specconv.conv(x16, w16, method="direct"))
print(f"specconv (auto) {t_spec * 1e3:7.1f} ms")
print(f"scipy pair loop {t_pairs * 1e3:7.1f} ms  (256 fftconvolve calls)")
print(f"specconv direct {t_direct * 1e3:7.1f} ms")
assert np.allclose(y_fft, y_pairs, atol=1e-10 * np.abs(y_pairs).max())
assert np.allclose(y_fft, y_direct, atol=1e-10 * np.abs(y_pairs).max())

# %% [markdown]
# ## Summary
#
# * A conv layer is `y = H ⋆ x + b`: a `C_out × C_in` matrix of kernels acting on a
#   vector-valued signal — `specconv.SpectralConv(weight, bias, ...)`, PyTorch semantics,
#   any number of spatial dimensions.
# * In the frequency domain it is one complex `C_out × C_in` matrix per frequency,
#   `layer.frequency_response(L)`: transform once, multiply, transform back once.
#
# Next: [02_groups.py](02_groups.py) — what `groups` does to that matrix.
