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
# # 2. Groups: a block-diagonal kernel matrix
#
# In notebook 1 a conv layer was a `C_out × C_in` matrix of kernels. The `groups` option of
# PyTorch's conv layers (and of specconv's) says that many of those kernels are zero, in a
# fixed pattern: **the kernel matrix is block-diagonal with `groups` blocks**. This notebook
# shows
#
# 1. the block-diagonal kernel matrix, in time and at every frequency;
# 2. that a grouped layer *is* "split the channels, convolve each group, concatenate";
# 3. depthwise layers (`groups = C_in`): a filter bank per channel;
# 4. what groups save, and what they do not.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import scipy.signal

import specconv
from specconv import datasets, kernels
from specconv.plot import plot_layer

rng = np.random.default_rng(0)

eeg = datasets.load("eeg-fif")
sfreq = eeg.sfreq
names = ["F3", "F4", "C3", "C4", "P3", "P4"]  # left/right pairs: frontal, central, parietal
x = eeg.data[[eeg.ch_names.index(n) for n in names], : int(4 * sfreq)] * 1e6  # µV, 4 s
print("x:", x.shape, names)

# %% [markdown]
# ## The rule
#
# With `groups=G`, the `C_in` input channels are cut into `G` consecutive groups of
# `C_in / G`, the `C_out` outputs likewise, and output group `g` only sees input group `g`.
# The weight therefore only stores the kernels inside the blocks: its shape is
# `(C_out, C_in / G, K)`, and row `i` of it holds the kernels from the inputs of `i`'s group.
#
# Example: the 6 channels above are 3 left/right pairs. A layer with `groups=3` treats each
# pair on its own and makes two outputs per pair: the alpha band (8–13 Hz) of the **sum**
# (left + right) and of the **difference** (left − right, an asymmetry) — a `2 × 2` block
# `[[h, h], [h, −h]]` per pair, `h` an alpha band-pass FIR.

# %%
K = 129
h = scipy.signal.firwin(K, [8, 13], pass_zero=False, fs=sfreq)
block = np.array([[h, h], [h, -h]])  # (2 outputs, 2 inputs of the group, K)
w = np.concatenate([block, block, block])  # (C_out = 6, C_in / groups = 2, K)
layer = specconv.SpectralConv(w, groups=3, padding="same")
print(layer, "\nweight:", layer.weight.shape)

signal = eeg.replace(data=x, ch_names=tuple(names))
fig = plot_layer(layer, signal, title="groups=3: one 2 × 2 block per left/right pair")
plt.show()

# %% [markdown]
# The shaded cells are the kernels that are zero *by construction*: the weight never stores
# them. `kernels.to_dense_groups` writes the same layer with `groups=1` and explicit zero
# kernels, which gives the same outputs:

# %%
dense = kernels.to_dense_groups(layer)
print("dense weight:", dense.weight.shape)
mask = np.kron(np.eye(3), np.ones((2, 2))).astype(bool)  # the 3 diagonal 2 × 2 blocks
assert np.all(dense.weight[~mask] == 0)
y = layer(x)
assert np.allclose(dense(x), y, atol=1e-12 * np.abs(y).max())

# %% [markdown]
# ### At every frequency: a block-diagonal matrix
#
# The frequency response has the same structure: at every frequency `H(f)` is a 6 × 6
# complex matrix that is exactly zero off the diagonal blocks. (This is also how specconv
# computes it: one small product per block, never the zero-filled matrix.)

# %%
H = layer.frequency_response(1024)  # (513, 6, 6)
assert np.all(H[:, ~mask] == 0)
f10 = round(10 * 1024 / sfreq)
print("|H(10 Hz)| =\n", np.round(np.abs(H[f10]), 2))

fig, axes = plt.subplots(1, 3, figsize=(10, 3.2))
for ax, hz in zip(axes, (4, 10, 30)):
    im = ax.imshow(np.abs(H[round(hz * 1024 / sfreq)]), vmin=0, vmax=1, cmap="viridis")
    ax.set_title(f"|H(f)| at {hz} Hz")
    ax.set_xticks(range(6), names, fontsize=8)
    ax.set_yticks(range(6), ["sum", "diff"] * 3, fontsize=8)
fig.colorbar(im, ax=axes, shrink=0.8)
plt.show()

# %% [markdown]
# ## Groups = split, convolve, concatenate
#
# Because the blocks do not interact, a grouped layer is `G` independent ordinary layers:
# split the input channels into groups, apply each block to its group, and stack the outputs.

# %%
G = layer.groups
ci, co = layer.in_channels // G, layer.out_channels // G
parts = [
    specconv.conv(x[g * ci : (g + 1) * ci], w[g * co : (g + 1) * co], padding="same")
    for g in range(G)
]
y_split = np.concatenate(parts)
print("max |grouped - split/convolve/concatenate| =", np.abs(y - y_split).max())
assert np.allclose(y, y_split, atol=1e-12 * np.abs(y).max())

# the same with the kernel-matrix algebra: split into blocks and put them back on a diagonal
blocks = kernels.split_groups(layer)
print("blocks:", [b.weight.shape for b in blocks])
again = kernels.block_diag(blocks)
assert again.groups == 3 and np.allclose(again(x), y, atol=1e-12 * np.abs(y).max())

# %% [markdown]
# PyTorch agrees (when it is installed):

# %%
try:
    import torch
except ImportError:
    torch = None
    print("PyTorch is not installed: skipping the comparison with torch.nn.functional.conv1d")

if torch is not None:
    y_torch = torch.nn.functional.conv1d(
        torch.from_numpy(x[None]), torch.from_numpy(w), padding="same", groups=3
    )[0].numpy()
    assert np.allclose(y, y_torch, atol=1e-12 * np.abs(y).max())
    print("torch conv1d(groups=3) == specconv")

# %% [markdown]
# ## Depthwise layers: a filter bank per channel
#
# The extreme case `groups = C_in` gives every input channel its own block: a *depthwise*
# layer. With `M` outputs per input (a "depthwise multiplier", weight `(C_in · M, 1, K)`)
# every channel goes through a bank of `M` filters — e.g. the theta, alpha and beta bands of
# every EEG channel. Output `c · M + m` is channel `c` through filter `m`.

# %%
bands = {"theta": (4, 8), "alpha": (8, 13), "beta": (13, 30)}
bank = np.array([scipy.signal.firwin(K, b, pass_zero=False, fs=sfreq) for b in bands.values()])
M, C = len(bank), x.shape[0]
w_dw = np.tile(bank, (C, 1))[:, None, :]  # (C * M, 1, K)
depthwise = specconv.SpectralConv(w_dw, groups=C, padding="same")
y_dw = depthwise(x)
print(depthwise, "\n", x.shape, "->", y_dw.shape)

# each output is one channel correlated with one filter: scipy, channel by channel
ref = np.stack(
    [scipy.signal.correlate(x[c], bank[m], mode="same") for c in range(C) for m in range(M)]
)
assert np.allclose(y_dw, ref, atol=1e-12 * np.abs(ref).max())

# %% [markdown]
# At every frequency the depthwise matrix has a single non-zero column segment per input: a
# `C · M × C` matrix with `M`-tall blocks on the diagonal (for `M = 1` simply a diagonal
# matrix — the product is elementwise, which is how specconv computes it).

# %%
Hdw = depthwise.frequency_response(1024)
fig, axes = plt.subplots(1, 3, figsize=(9, 4))
for ax, hz in zip(axes, (6, 10, 20)):
    ax.imshow(np.abs(Hdw[round(hz * 1024 / sfreq)]), vmin=0, vmax=1, cmap="viridis", aspect=0.5)
    ax.set_title(f"|H(f)| at {hz} Hz")
    ax.set_xticks(range(C), names, fontsize=7)
    ax.set_yticks(range(C * M), [f"{n} {b}" for n in names for b in bands], fontsize=6)
plt.tight_layout()
plt.show()
in_band = Hdw[round(10 * 1024 / sfreq)][1::M, :]  # the alpha rows at 10 Hz: ≈ identity
assert np.allclose(np.abs(in_band), np.eye(C), atol=0.05)

# %% [markdown]
# ### Depthwise-separable = depthwise, then a `1 × 1` mixing layer
#
# MobileNet-style "separable" convolutions follow the depthwise layer with a pointwise
# (`1 × 1`) layer that mixes channels. In the kernel-matrix view this is a matrix product, so
# the two layers compose into **one** ordinary layer whose matrix at every frequency is
# `P @ H_dw(f)` (`kernels.compose`, or `pointwise @ depthwise`):

# %%
P = rng.standard_normal((4, C * M))  # mix the 18 band signals into 4 outputs
pointwise = kernels.pointwise(P)
separable = pointwise @ depthwise  # one SpectralConv: 6 -> 4 channels, weight (4, 6, K)
print(separable)
assert np.allclose(separable(x), pointwise(depthwise(x)), atol=1e-10 * np.abs(y_dw).max())
assert np.allclose(separable.frequency_response(1024), P @ Hdw, atol=1e-12)

# %% [markdown]
# ## What groups cost
#
# In the frequency domain the layer costs
#
# * `C_in` forward and `C_out` inverse transforms — **independent of `groups`**;
# * `C_out · C_in / G` complex multiply-adds per frequency for the block-diagonal products.
#
# So groups cut the matrix product by `G`, but not the transforms: a depthwise layer is
# dominated by its FFTs (and for short kernels the direct method wins; `method="auto"`
# chooses). A rough timing, 64 → 64 channels, 129 taps, 30 000 samples:

# %%
C64, N = 64, 30_000
x64 = rng.standard_normal((C64, N))
rows = []
for G in (1, 4, 16, 64):
    layer_g = specconv.SpectralConv(rng.standard_normal((C64, C64 // G, K)), groups=G)
    layer_g(x64)  # warm-up: FFTW plans and kernel spectra are made once per shape
    t0 = time.perf_counter()
    layer_g(x64)
    rows.append((G, C64 * C64 // G, time.perf_counter() - t0))
    print(f"groups={G:3d}: {C64 * C64 // G:5d} kernels, {rows[-1][2] * 1e3:6.1f} ms")

fig, ax = plt.subplots(figsize=(5, 3))
ax.loglog([r[1] for r in rows], [r[2] * 1e3 for r in rows], "o-", label="measured")
ax.set_xlabel("non-zero kernels  C_out · C_in / groups")
ax.set_ylabel("time (ms)")
for G, n, t in rows:
    ax.annotate(f"G={G}", (n, t * 1e3), textcoords="offset points", xytext=(4, 4))
ax.set_title("64 -> 64 channels: the transforms stay")
plt.show()

# %% [markdown]
# ## Summary
#
# * `groups=G` makes the kernel matrix block-diagonal (weight `(C_out, C_in/G, *kernel)`); at
#   every frequency `H(f)` is block-diagonal too.
# * A grouped layer equals splitting the channels, convolving each group and concatenating
#   (`kernels.split_groups` / `kernels.block_diag` go back and forth).
# * Depthwise (`groups = C_in`) is a filter bank per channel; with a pointwise layer after it,
#   it composes into one ordinary layer.
# * Groups divide the per-frequency product by `G`; the `C_in + C_out` transforms remain.
#
# Next: [03_transposed_conv.py](03_transposed_conv.py) — the transposed layer.
