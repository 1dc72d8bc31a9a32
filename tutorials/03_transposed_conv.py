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
# # 3. Transposed conv layers: the adjoint, not the inverse
#
# Decoders, U-Nets and GAN generators use *transposed* convolutions (`ConvTranspose1d/2d`)
# to go "back up" from a strided conv layer. The name is exact: a conv layer is a linear map,
# i.e. a (huge, structured) matrix `A`, and the transposed layer is `Aᵀ`. This notebook shows
#
# 1. the matrix `A` of a small strided layer and its transpose;
# 2. the adjoint (dot-product) test `⟨A x, y⟩ = ⟨x, Aᵀ y⟩`;
# 3. at every frequency: the **conjugate transpose** `H(f)ᴴ` of the layer's matrix;
# 4. stride in the frequency domain: a strided conv **folds** the spectrum, a strided
#    transposed conv **tiles** it;
# 5. equality with PyTorch's `conv_transpose1d/2d`;
# 6. why `Aᵀ` is not an inverse, and what a (regularized) inverse looks like.

# %%
import matplotlib.pyplot as plt
import numpy as np
import scipy.signal

import specconv
from specconv import datasets, kernels

rng = np.random.default_rng(0)

# %% [markdown]
# ## The matrix of a conv layer
#
# A layer maps `C_in × N` numbers to `C_out × M` numbers linearly, so it has a matrix `A` of
# shape `(C_out·M, C_in·N)`: its column `k` is the layer applied to the `k`-th unit vector.
# Here is a 2 → 3 channel layer with 5-tap kernels, stride 2 and padding 2 on `N = 16`
# samples, next to the matrix of its transposed layer `layer.T`
# (a `SpectralConvTranspose` with the same weight). `output_size` tells the transposed layer
# which of the possible input lengths to restore (a stride-2 layer maps 15 and 16 samples to 8).

# %%
w = rng.standard_normal((3, 2, 5))
layer = specconv.SpectralConv(w, stride=2, padding=2)
N = 16
M = layer(np.zeros((2, N))).shape[-1]


def matrix_of(f, shape):
    """The matrix of a linear map f on arrays of the given shape (column k = f(e_k))."""
    n = int(np.prod(shape))
    return np.stack([f(np.eye(n)[k].reshape(shape)).ravel() for k in range(n)], axis=1)


A = matrix_of(layer, (2, N))
AT = matrix_of(lambda y: layer.T(y, output_size=(N,)), (3, M))
print("A:", A.shape, " matrix of layer.T:", AT.shape)
assert np.allclose(AT, A.T)

fig, axes = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [2, 1.5]})
lim = np.abs(A).max()
axes[0].imshow(A, cmap="RdBu_r", vmin=-lim, vmax=lim)
axes[0].set_title("A = SpectralConv(stride=2)\nrows: 3 outputs × 8, columns: 2 inputs × 16")
axes[1].imshow(AT, cmap="RdBu_r", vmin=-lim, vmax=lim)
axes[1].set_title("matrix of layer.T = Aᵀ")
for ax, mat, (r, c) in ((axes[0], A, (3, 2)), (axes[1], AT, (2, 3))):
    for k in range(1, r):  # lines between the channel blocks
        ax.axhline(k * mat.shape[0] / r - 0.5, color="k", lw=0.8)
    for k in range(1, c):
        ax.axvline(k * mat.shape[1] / c - 0.5, color="k", lw=0.8)
plt.show()

# %% [markdown]
# Each block of `A` (one channel pair) is a Toeplitz band made of one kernel, moving two
# columns per row because of the stride: the kernel matrix of notebook 1, written out as a
# matrix of matrices.
#
# ## The adjoint (dot-product) test
#
# For real weights `Aᵀ` is the adjoint: `⟨A x, y⟩ = ⟨x, Aᵀ y⟩` for all `x`, `y`. This is the
# test every linear operator in specconv passes — here with groups, dilation, stride and
# padding at once, in 1-D and 2-D:

# %%
for d, shape in ((1, (4, 101)), (2, (4, 23, 19))):
    w_ = rng.standard_normal((6, 2) + (3,) * d)
    fwd = specconv.SpectralConv(w_, stride=2, padding=1, dilation=2, groups=2)
    x_ = rng.standard_normal(shape)
    y_ = rng.standard_normal(fwd(x_).shape)
    lhs = np.vdot(fwd(x_), y_)
    rhs = np.vdot(x_, fwd.T(y_, output_size=shape[1:]))
    print(f"{d}-D: <A x, y> = {lhs:.12f}   <x, Aᵀ y> = {rhs:.12f}")
    assert np.isclose(lhs, rhs, rtol=1e-12)

# %% [markdown]
# ## At every frequency: the conjugate transpose
#
# In the frequency domain (stride 1), the layer is the matrix `H(f)` at every frequency
# (notebook 1). Its transpose is the conjugate transpose `H(f)ᴴ`, frequency by frequency: a
# `C_in × C_out` matrix, the kernels reversed in time (which conjugates their spectra).

# %%
layer1 = specconv.SpectralConv(w, padding=2)  # stride 1
H = layer1.frequency_response(64)  # (33, 3, 2)
HT = layer1.T.frequency_response(64)  # (33, 2, 3)
print("H:", H.shape, " H of the transposed layer:", HT.shape)
assert np.allclose(HT, H.conj().transpose(0, 2, 1))

# %% [markdown]
# ## Stride: folding and tiling the spectrum
#
# Keeping every `s`-th output (a strided conv) **folds** the spectrum: the `N/s` frequencies
# of the decimated signal each sum `s` frequencies of the full-rate one (aliasing),
#
# $$ Y_{\downarrow s}[k] = \frac{1}{s} \sum_{r=0}^{s-1} Y\!\left[k + r\tfrac{N}{s}\right]. $$
#
# Its transpose inserts `s − 1` zeros between samples ("zero-stuffing"), which **tiles** the
# spectrum: the spectrum of the zero-stuffed signal is the original one repeated `s` times,
#
# $$ U[k] = Y[k \bmod N] , \qquad k = 0, \dots, sN - 1 . $$
#
# Tiling is the adjoint of folding, just as the strided transposed conv is the adjoint of the
# strided conv. A transposed layer with stride `s` is therefore: tile the input spectra `s`
# times, then multiply by `H(f)ᴴ` at every frequency. First the two identities:

# %%
s = 3
x = rng.standard_normal((2, 48))
full = specconv.SpectralConv(w, padding=2, padding_mode="circular")  # circular: exact DFT view
strided = specconv.SpectralConv(w, padding=2, padding_mode="circular", stride=s)
Yfull, Ydown = np.fft.fft(full(x)), np.fft.fft(strided(x))
assert np.allclose(Ydown, Yfull.reshape(3, s, 48 // s).sum(axis=1) / s)  # folding

y = rng.standard_normal((3, 20))
u = np.zeros((3, 20 * s))
u[:, ::s] = y  # zero-stuffed
assert np.allclose(np.fft.fft(u), np.tile(np.fft.fft(y), (1, s)))  # tiling
print("strided conv folds the spectrum; zero-stuffing tiles it")

fig, axes = plt.subplots(1, 2, figsize=(10, 2.8))
axes[0].stem(np.abs(np.fft.fft(y[0])))
axes[0].set_title("|spectrum| of y (20 samples)")
axes[1].stem(np.abs(np.fft.fft(u[0])))
axes[1].set_title(f"|spectrum| of y zero-stuffed by {s}: tiled {s} times")
for k in range(1, s):
    axes[1].axvline(20 * k - 0.5, color="r", ls="--")
plt.show()

# %% [markdown]
# Now the transposed layer with stride 3 computed by hand in the frequency domain: tile the
# spectra of the (zero-padded) input, multiply by the transposed layer's per-frequency
# matrix, transform back. It equals `SpectralConvTranspose(w, stride=3)`:

# %%
up = specconv.SpectralConvTranspose(w, stride=s)  # weight (C_in=3, C_out=2, K): 3 -> 2 channels
out = up(y)  # (2, (20 - 1)·3 + 5)
m = 24  # zero-pad y to 24 samples so that nothing wraps: 3·24 >= len(out)
L = s * m
U = np.tile(np.fft.fft(y, m), (1, s))  # the tiled spectrum of the zero-stuffed input
Hup = up.frequency_response(L, whole=True)  # (L, 2, 3)
by_hand = np.fft.ifft(np.einsum("fij,jf->if", Hup, U)).real[:, : out.shape[1]]
print(
    "transposed conv, stride 3:",
    y.shape,
    "->",
    out.shape,
    " max |by hand - layer| =",
    np.abs(by_hand - out).max(),
)
assert np.allclose(by_hand, out, atol=1e-12 * np.abs(out).max())

# %% [markdown]
# ## Same numbers as PyTorch
#
# `specconv.conv_transpose` follows `torch.nn.functional.conv_transpose1d/2d/3d`, including
# `output_padding`, `groups` and `dilation` (skipped when PyTorch is not installed):

# %%
try:
    import torch
except ImportError:
    torch = None
    print("PyTorch is not installed: skipping the comparison with torch conv_transpose")

if torch is not None:
    opts = dict(stride=2, padding=1, output_padding=1, groups=2, dilation=2)
    for d, shape in ((1, (4, 50)), (2, (4, 13, 11))):
        w_ = rng.standard_normal((4, 3) + (3,) * d)  # (C_in, C_out / groups, *kernel)
        x_ = rng.standard_normal(shape)
        ours = specconv.conv_transpose(x_, w_, **opts)
        f = torch.nn.functional.conv_transpose1d if d == 1 else torch.nn.functional.conv_transpose2d
        theirs = f(torch.from_numpy(x_[None]), torch.from_numpy(w_), **opts)[0].numpy()
        assert ours.shape == theirs.shape
        assert np.allclose(ours, theirs, atol=1e-12 * np.abs(theirs).max())
        print(f"{d}-D conv_transpose {shape} -> {ours.shape}: equal to torch")

# %% [markdown]
# ## Why the transpose is not an inverse
#
# `Aᵀ A` is not the identity. At every frequency it is `H(f)ᴴ H(f)`, whose eigenvalues are
# the squared singular values `s(f)²` of `H(f)`: the transposed layer *amplifies* what the
# layer passes well and *attenuates further* what it already attenuated. An inverse must
# divide by `s(f)` instead — and cannot, where `s(f) ≈ 0`. Strided layers are worse: the
# stride-2 layer above maps 32 numbers to 24, so it has a null space and no inverse at all:

# %%
print("rank of A:", np.linalg.matrix_rank(A), "of", A.shape[1], "input dimensions")
assert np.linalg.matrix_rank(A) < A.shape[1]

# %% [markdown]
# A stride-1 example on EEG: a 2 × 2 layer that blurs two channels (Fp1 and O1, 8 s) with a
# Gaussian kernel and leaks a little of each into the other. `layer.T(layer(x))` is a blurrier
# signal, not `x`. `kernels.inverse` builds a Tikhonov-regularized inverse
# `G(f) = (HᴴH + β)⁻¹Hᴴ` as an FIR layer: it restores `x` wherever `s(f)² ≫ β` — here below
# about 50 Hz — and cannot restore what the blur erased above (the EEG's line noise and
# broadband noise).

# %%
eeg = datasets.load("eeg-fif")
sfreq = eeg.sfreq
x = eeg.data[[eeg.ch_names.index("Fp1"), eeg.ch_names.index("O1")], : int(8 * sfreq)] * 1e6
n = x.shape[1]
g = scipy.signal.windows.gaussian(15, 1.5)
g /= g.sum()
blur = specconv.SpectralConv(
    np.array([[g, 0.5 * np.roll(g, 2)], [0.3 * np.roll(g, -2), g]]), padding="same"
)
y = blur(x)
x_T = blur.T(y)
inv = kernels.inverse(blur, 257, reg=1e-4, mode="same")
x_inv = inv(y)


def band_error(estimate, lo=None, hi=40.0, edge=256):
    """Relative error of `estimate` vs x below `hi` Hz, away from the edges."""
    a, b = np.fft.rfft(estimate[:, edge:-edge]), np.fft.rfft(x[:, edge:-edge])
    f = np.fft.rfftfreq(n - 2 * edge, 1 / sfreq)
    band = f < hi
    return np.linalg.norm((a - b)[:, band]) / np.linalg.norm(b[:, band])


err_T, err_inv = band_error(x_T), band_error(x_inv)
print(f"error below 40 Hz: transpose {err_T:.1%}, regularized inverse {err_inv:.3%}")
assert err_T > 0.1 and err_inv < 0.01

_, sv, _ = kernels.svd(blur, n)
f = np.fft.rfftfreq(n, 1 / sfreq)
fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
axes[0].semilogy(f, sv)
axes[0].semilogy(f, sv**2, "--")
axes[0].axhline(np.sqrt(1e-4), color="gray", lw=0.8)
axes[0].set(xlabel="Hz", title="singular values s(f) of H(f) (dashed: s² = what Aᵀ A applies)")
t = np.arange(n) / sfreq
sl = slice(int(2 * sfreq), int(3 * sfreq))
axes[1].plot(t[sl], x[1, sl], "k", lw=1.5, label="x (O1)")
axes[1].plot(t[sl], x_T[1, sl], label="layer.T(layer(x))")
axes[1].plot(t[sl], x_inv[1, sl], label="inverse(layer)(layer(x))", alpha=0.8)
axes[1].set(xlabel="s", ylabel="µV")
axes[1].legend(fontsize=8)
plt.show()

# %% [markdown]
# ## Summary
#
# * `layer.T` / `SpectralConvTranspose` / `conv_transpose` is the transpose `Aᵀ` of the
#   layer's matrix: for real weights the adjoint (`⟨Ax, y⟩ = ⟨x, Aᵀy⟩`), PyTorch's numbers.
# * Per frequency it is the conjugate transpose `H(f)ᴴ`; a stride folds the spectrum, its
#   transpose tiles it.
# * `Aᵀ` is not `A⁻¹`: it multiplies by `s(f)²` where an inverse divides by `s(f)`. For an
#   inverse use `kernels.inverse` (regularized, as an FIR layer), and expect to recover only
#   the frequencies the layer did not erase.
#
# Next: [04_eeg_mne.py](04_eeg_mne.py) — a real-data pipeline with MNE.
