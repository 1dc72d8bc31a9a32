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
# # 6. Multi-coil MRI: coils are channels, GRAPPA is a conv layer
#
# An MRI scanner receives with several coils at once, each seeing the body through its own
# smooth sensitivity. The data of one slice is a vector-valued signal on the k-space grid:
# `(C, ny, nx)`, a `C`-vector of coil samples at every k-space point — and, after an inverse
# FFT, a `C`-vector of coil values at every pixel. This notebook
#
# 1. goes between k-space and coil images (centred, orthonormal FFTs) and combines coils
#    (root-sum-of-squares);
# 2. compresses 8 coils to 4 with one matrix — a `1 × 1` layer — and with one matrix per
#    readout position (geometric coil compression), which is a layer along `kx`;
# 3. reconstructs undersampled k-space with GRAPPA, a `C × C` conv layer in k-space, and
#    shows that the same layer is a per-pixel `C × C` unmixing matrix in image space — the
#    seed's mat-vec, in the other domain.
#
# **Your own data:** set `KSPACE_FILE` to fully sampled Cartesian k-space `(coils, ky, kx)`
# that `specconv.io.read` reads — BART `.cfl`, fastMRI-style HDF5 (`kspace` of shape
# `(slices, coils, ky, kx)`; the middle slice is used), or `.npy` — e.g. the 8-coil brain
# `full.cfl` of mikgroup/espirit-matlab-examples. By default: the 8-coil phantom bundled with
# specconv (fastMRI-style HDF5, 3 slices of 80 × 64).

# %%
KSPACE_FILE = None  # e.g. "data/mri/espirit_matlab_examples/full.cfl"

# %%
import matplotlib.pyplot as plt
import numpy as np

from specconv import datasets, io
from specconv.apps import mri

sig = datasets.load("mri-fastmri") if KSPACE_FILE is None else io.read(KSPACE_FILE)
print(sig)
ksp = sig.data[sig.n_batch // 2] if sig.batched else sig.data  # (C, ny, nx), one slice
ksp = np.asarray(ksp, dtype=np.complex64)
C, ny, nx = ksp.shape
print("k-space of one slice:", ksp.shape, ksp.dtype)

# %% [markdown]
# ## k-space ↔ coil images
#
# `io.kspace_to_image` is the centred, orthonormal inverse FFT over the last two axes
# (DC in the middle of k-space, the image centred too), computed with specconv's FFTW plans.
# Orthonormal means the energy is the same in both domains. The coils are combined into one
# image by the root-sum-of-squares `sqrt(Σ_c |x_c|²)` at every pixel.

# %%
images = io.kspace_to_image(ksp)
assert np.isclose(np.linalg.norm(images), np.linalg.norm(ksp), rtol=1e-5)  # orthonormal
assert np.allclose(io.image_to_kspace(images), ksp, atol=1e-5 * np.abs(ksp).max())
reference = io.rss(images)

fig, axes = plt.subplots(2, C + 1, figsize=(1.6 * (C + 1), 3.6))
for c in range(C):
    axes[0, c].imshow(np.log1p(np.abs(ksp[c]) / np.abs(ksp).max() * 1e3), cmap="gray")
    axes[0, c].set_title(f"k-space {c}", fontsize=8)
    axes[1, c].imshow(np.abs(images[c]), cmap="gray")
    axes[1, c].set_title(f"coil {c}", fontsize=8)
axes[1, C].imshow(reference, cmap="gray")
axes[1, C].set_title("RSS", fontsize=8)
axes[0, C].set_visible(False)
for ax in axes.ravel():
    ax.axis("off")
plt.show()

# %% [markdown]
# ## Coil compression: a `1 × 1` layer
#
# Modern coil arrays have 32 or more elements, and the coils are strongly correlated: a few
# linear combinations ("virtual coils") carry almost all the signal. SVD coil compression
# (Huang et al. 2008) takes them from the left singular vectors of the coils × samples data
# matrix: one `C_v × C` matrix applied at every sample — a conv layer with `1 × 1` kernels.
# Because it acts on the channel axis only, it commutes with the FFT: compressing k-space
# and then reconstructing equals reconstructing and then compressing the coil images.

# %%
n_virtual = 4
cc = mri.svd_coil_compression(ksp, n_virtual)
print(cc.layer, f"\nkeeps {cc.retained_energy:.1%} of the energy with {n_virtual} of {C} coils")
compressed = cc(ksp)  # (4, ny, nx) virtual-coil k-space
assert compressed.shape == (n_virtual, ny, nx)
assert np.allclose(io.kspace_to_image(compressed), cc(images), atol=1e-5 * np.abs(images).max())

# Geometric coil compression (Zhang et al. 2013): one matrix per readout position x, which
# keeps more energy for the same number of virtual coils
gcc = mri.geometric_coil_compression(ksp, n_virtual)
print(f"geometric compression keeps {gcc.retained_energy:.1%}")
assert gcc.retained_energy >= cc.retained_energy
# ... and is a conv layer along kx whose frequency response at position x is matrices[x]
as_layer = gcc.as_layer()
print(as_layer)
assert np.allclose(as_layer(ksp), gcc(ksp), atol=1e-5 * np.abs(ksp).max())

fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
s = cc.singular_values
axes[0].plot(np.arange(1, C + 1), np.cumsum(s**2) / np.sum(s**2), "o-", label="SVD")
axes[0].axvline(n_virtual, color="gray", lw=0.8)
axes[0].set(xlabel="virtual coils", ylabel="retained energy", title="SVD coil compression")
axes[1].imshow(io.rss(cc(images)), cmap="gray")
axes[1].set_title(f"RSS of {n_virtual} SVD virtual coils")
axes[2].imshow(io.rss(io.kspace_to_image(gcc(ksp))), cmap="gray")
axes[2].set_title(f"RSS of {n_virtual} geometric virtual coils")
for ax in axes[1:]:
    ax.axis("off")
plt.show()

# %% [markdown]
# ## GRAPPA: a `C × C` conv layer in k-space
#
# To scan faster, acquire only every `R`-th line of k-space (along `ky`) plus a fully sampled
# block of autocalibration (ACS) lines in the centre. The coil images then fold over
# (alias). GRAPPA (Griswold et al. 2002) fills in the missing lines: each missing k-space
# value of coil `i` is a linear combination of the acquired neighbours in *all* coils — a
# `C × C` matrix of small 2-D kernels, i.e. **a conv layer over `(ky, kx)`**. Its weights are
# calibrated by least squares on the ACS block, where every line is known.
#
# `mri.undersample` makes a retrospectively undersampled copy; `mri.grappa` finds the ACS
# block and the lattice, calibrates the kernel and applies it.

# %%
n_acs = 24
results = {}
for R in (2, 3):
    undersampled, mask = mri.undersample(ksp, R, n_acs=n_acs)
    recon = mri.grappa(undersampled, R)
    results[R] = dict(
        mask=mask,
        zero_filled=io.rss(io.kspace_to_image(undersampled)),
        grappa=io.rss(io.kspace_to_image(recon)),
    )
    err_zf = mri.nrmse(results[R]["zero_filled"], reference)
    err_grappa = mri.nrmse(results[R]["grappa"], reference)
    results[R].update(err_zf=err_zf, err_grappa=err_grappa)
    print(
        f"R = {R}: {mask.mean():.0%} of the lines acquired; NRMSE of the RSS image: "
        f"zero-filled {err_zf:.3f}, GRAPPA {err_grappa:.3f}"
    )
    assert err_grappa < 0.5 * err_zf

fig, axes = plt.subplots(2, 4, figsize=(11, 5.4))
for row, R in enumerate((2, 3)):
    r = results[R]
    axes[row, 0].imshow(np.tile(r["mask"][:, None], (1, 16)), cmap="gray", aspect="auto")
    axes[row, 0].set_title(f"R = {R}: sampled ky lines", fontsize=9)
    axes[row, 1].imshow(r["zero_filled"], cmap="gray")
    axes[row, 1].set_title(f"zero-filled, NRMSE {r['err_zf']:.3f}", fontsize=9)
    axes[row, 2].imshow(r["grappa"], cmap="gray")
    axes[row, 2].set_title(f"GRAPPA, NRMSE {r['err_grappa']:.3f}", fontsize=9)
    axes[row, 3].imshow(np.abs(r["grappa"] - reference), cmap="magma", vmax=0.2 * reference.max())
    axes[row, 3].set_title("|GRAPPA − full| (×5)", fontsize=9)
for ax in axes.ravel():
    ax.axis("off")
plt.show()

# %% [markdown]
# ## The same layer in image space: one `C × C` matrix per pixel
#
# A k-space conv layer is, after the FFT, a multiplication by its frequency response
# (notebook 1) — and here the "frequencies" of k-space are the image pixels. So image-domain
# GRAPPA is a `C × C` unmixing matrix at every pixel, applied to the *aliased* coil images of
# the zero-filled lattice: exactly the k-space layer's frequency response, read at the
# pixels. `kernel.image_weights` returns those matrices, `kernel.unmix` applies them, and the
# two domains agree to float precision.

# %%
R = 2
acs = ksp[:, ny // 2 - n_acs // 2 : ny // 2 + n_acs // 2]
kernel = mri.calibrate_grappa(acs, R)
print("GRAPPA kernel as a layer:", kernel.layer)

lattice = np.zeros_like(ksp)
lattice[:, ::R] = ksp[:, ::R]  # every R-th line only
via_kspace = kernel.kspace(lattice)  # the conv layer in k-space
via_image = io.image_to_kspace(kernel.unmix(io.kspace_to_image(lattice)))  # per-pixel C × C
print(
    "max |k-space conv - image-domain unmixing| / max =",
    np.abs(via_kspace - via_image).max() / np.abs(via_kspace).max(),
)
assert np.allclose(via_kspace, via_image, atol=1e-5 * np.abs(via_kspace).max())

# the unmixing matrix at pixel (i, j) is the frequency response at minus that pixel
W = kernel.image_weights((ny, nx))  # (ny, nx, C, C)
H = kernel.layer.frequency_response((ny, nx), whole=True)  # (ny, nx, C, C), DFT order
iy, ix = (ny // 2 - np.arange(ny)) % ny, (nx // 2 - np.arange(nx)) % nx
assert np.allclose(W, H[np.ix_(iy, ix)])

fig, axes = plt.subplots(1, 5, figsize=(12, 2.8))
axes[0].imshow(np.abs(io.rss(io.kspace_to_image(lattice))), cmap="gray")
axes[0].set_title("aliased RSS (R = 2)", fontsize=9)
for k, ax in enumerate(axes[1:]):
    ax.imshow(np.abs(W[:, :, 0, k]), cmap="viridis")
    ax.set_title(f"|W[pixel, 0, {k}]|", fontsize=9)
for ax in axes:
    ax.axis("off")
fig.suptitle("image-domain GRAPPA: the weights of coil 0's output, pixel by pixel", y=1.06)
plt.show()

# %% [markdown]
# ## Summary
#
# * Coils are channels: k-space `(C, ny, nx)` and coil images are the same vector-valued
#   signal in two domains (`io.kspace_to_image`, `io.image_to_kspace`, `io.rss`).
# * SVD coil compression is a `1 × 1` layer; geometric compression is a layer along `kx`.
# * GRAPPA is a `C × C` conv layer in k-space and, equivalently, a `C × C` matrix per pixel
#   in image space — the layer's frequency response.
#
# Next: [07_long_recordings.py](07_long_recordings.py) — recordings too long for memory.
