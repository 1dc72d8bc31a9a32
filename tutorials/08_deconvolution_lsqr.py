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
# # 8. Multichannel deconvolution: the layer as a linear operator, solved with LSQR
#
# A known multichannel system — here the early part of a true-stereo room response, a
# `2 × 2` layer that mixes and filters — turned a stereo sound `x` into `y = A x + noise`.
# Getting `x` back is a linear inverse problem. Two ways, both with specconv:
#
# 1. **iterative**: the layer bound to the input's shape *is* the matrix `A`;
#    `specconv.aslinearoperator(layer, x.shape)` hands it to `scipy.sparse.linalg` as a `LinearOperator`
#    whose products run through specconv's FFT engine, with the exact adjoint `Aᴴ` for
#    `rmatvec`. `lsqr(A, y, damp=λ)` minimises `‖A x − y‖² + λ² ‖x‖²` over the exact,
#    finite-length problem;
# 2. **a filter**: `kernels.inverse(layer, n_taps, reg=β)` designs, at every frequency, the
#    Tikhonov inverse `(Hᴴ H + β I)⁻¹ Hᴴ` of the layer's `2 × 2` matrix and truncates it to an
#    FIR of `n_taps`. With `β = λ²` it is the same regularised problem on a periodic signal.
#
# The operator needs nothing but the forward layer: the same code deconvolves strided,
# grouped or 2-D/3-D layers, any padding mode, and SENSE-like problems whose `A` is not
# square, and a solver stops when the residual is at the noise level. The FIR is designed once
# and then filters streams at the cost of one layer. Their error and time, side by side.
#
# **Your own recording:** set `AUDIO_FILE` (a stereo WAV/FLAC) and `IR_FILE` (a 4-channel
# true-stereo impulse response in Web Audio order). By default the bundled samples are used.

# %%
AUDIO_FILE = None
IR_FILE = None

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
from scipy.sparse.linalg import lsqr
from threadpoolctl import threadpool_limits

import specconv
from specconv import datasets, io, kernels

sound = datasets.load("audio-pcm16") if AUDIO_FILE is None else io.read(AUDIO_FILE)
ir = datasets.load("ir-true-stereo") if IR_FILE is None else io.read(IR_FILE)
assert ir.sfreq == sound.sfreq, "resample the impulse response to the sound's rate first"
fs = sound.sfreq
start = int(0.25 * fs)
x = sound.data[:2, start : start + int(0.25 * fs)].astype(np.float64)  # 0.25 s, (2, N)
print(sound)
print(f"x: {x.shape} at {fs:g} Hz")

# %% [markdown]
# ## The system: a 2 × 2 mixing-and-filtering layer
#
# The first 512 taps (10.7 ms: the direct sound and the first reflections) of the true-stereo
# response, faded out, as the kernel matrix `h[out, in]`; `kernels.fir_layer` turns impulse
# responses into a layer applying them by true convolution ("full" output: `N + 511`
# samples). The observation adds white noise 40 dB below the signal.

# %%
K = 512
h = io.true_stereo_kernel(np.asarray(ir.data, dtype=np.float64))[..., :K]
h = h * np.hanning(2 * K)[K:]  # a fade instead of a cut: no step at the end of the taps
plant = kernels.fir_layer(h)
print(plant)

y_clean = plant(x)
rng = np.random.default_rng(0)
noise_rms = 0.01 * np.sqrt(np.mean(y_clean**2))  # -40 dB
y = y_clean + noise_rms * rng.standard_normal(y_clean.shape)
print(f"y: {y.shape}")

# %% [markdown]
# How hard is inverting it? At every frequency the layer is a `2 × 2` matrix; its singular
# values say how much each frequency is attenuated. Where the smaller one falls below the
# noise, no method can recover the signal there, and the regularisation `β` decides what
# happens instead. We take `β` as the noise-to-signal power ratio (the Wiener choice for
# white signal and noise), and LSQR's damping `λ = √β`.

# %%
U, s, Vh = kernels.svd(plant, 4096)
freqs = np.fft.rfftfreq(4096, 1 / fs)
beta = noise_rms**2 / np.mean(x**2)
damp = np.sqrt(beta)

fig, ax = plt.subplots(figsize=(8, 3.2))
ax.semilogy(freqs / 1000, s[:, 0], label="largest singular value")
ax.semilogy(freqs / 1000, s[:, 1], label="smallest singular value")
ax.axhline(damp, color="k", ls="--", lw=1, label="λ = √β (noise / signal)")
ax.set_xlabel("frequency (kHz)")
ax.set_title("the system's 2 × 2 matrix at every frequency")
ax.legend()
plt.show()

# %% [markdown]
# ## The layer as a `LinearOperator`
#
# `A.shape` is `(2·(N + 511), 2·N)`: vectors are the arrays flattened in C order. `A @ v`
# applies the layer, `A.H @ w` its adjoint — the transposed layer of the conjugated weight,
# cropped to the input's shape. The dot-product test `⟨A x, y⟩ = ⟨x, Aᴴ y⟩` checks that the
# adjoint is exact (it holds for every stride, padding, dilation, groups and padding mode).

# %%
A = specconv.aslinearoperator(plant, x.shape)
print(A)
u, v = rng.standard_normal(A.shape[1]), rng.standard_normal(A.shape[0])
lhs, rhs = np.vdot(A @ u, v), np.vdot(u, A.H @ v)
print(f"<A u, v> = {lhs:.12g}\n<u, Aᴴv> = {rhs:.12g}")
assert abs(lhs - rhs) <= 1e-12 * np.linalg.norm(A @ u) * np.linalg.norm(v)
assert np.allclose(A @ x.ravel(), y_clean.ravel())  # the operator is the layer

# %% [markdown]
# ## LSQR through the operator
#
# Each iteration costs one `A` and one `Aᴴ` product: two multichannel FFT convolutions. LSQR
# stops when the damped normal equations are solved to its tolerances (`istop = 2`: a
# least-squares solution to `atol`). The relative error of the recovered signal is measured
# against the clean `x`.
#
# The solver's own vector operations (norms, dot products) run in numpy's BLAS. A
# multithreaded OpenBLAS keeps its threads spinning after each of them; when the machine's
# cores are busy with other work too, they compete with specconv's FFT threads between the
# products. One BLAS thread (`threadpoolctl.threadpool_limits`) keeps the solver's cost at
# that of its products (on an idle machine it makes no difference).


# %%
def rel_error(estimate):
    return np.linalg.norm(estimate - x) / np.linalg.norm(x)


t0 = time.perf_counter()
with threadpool_limits(1, user_api="blas"):
    sol = lsqr(A, y.ravel(), damp=damp, atol=1e-4, btol=1e-4, iter_lim=1000)
t_lsqr = time.perf_counter() - t0
x_lsqr = sol[0].reshape(x.shape)
istop, iterations = sol[1], sol[2]
err_lsqr = rel_error(x_lsqr)
print(
    f"LSQR: istop {istop}, {iterations} iterations, {t_lsqr:.2f} s, relative error {err_lsqr:.4f}"
)
assert istop in (1, 2), "LSQR converged to its tolerance"

# %% [markdown]
# The error as the iterations proceed (LSQR restarted with growing iteration limits: it is
# deterministic, so these are the iterates of the run above).

# %%
limits = [2, 4, 8, 16, 32, 64]
with threadpool_limits(1, user_api="blas"):
    errors_by_limit = [
        rel_error(
            lsqr(A, y.ravel(), damp=damp, atol=1e-4, btol=1e-4, iter_lim=k)[0].reshape(x.shape)
        )
        for k in limits
        if k < iterations
    ]

# %% [markdown]
# ## The regularised FIR inverse
#
# `kernels.inverse` with the same `β`, for three FIR lengths. `mode="same"` aligns the
# inverse's output with its input, so the first `N` samples of `inverse(y)` estimate `x`.
# The time includes the design (an SVD at every frequency of the design grid) and the
# filtering; each is timed on its second run, when FFTW's plans for its shapes exist (the
# LSQR run above reused the plans of the dot-product test).

# %%
fir = {}
for n_taps in (1024, 2048, 8192):
    for _ in range(2):
        t0 = time.perf_counter()
        inv = kernels.inverse(plant, n_taps, reg=beta, mode="same")
        x_fir = inv(y)[:, : x.shape[1]]
        elapsed = time.perf_counter() - t0
    fir[n_taps] = (rel_error(x_fir), elapsed, x_fir)

print(f"{'method':>22} | {'relative error':>14} | {'time (s)':>8}")
print(f"{'LSQR, ' + str(iterations) + ' iterations':>22} | {err_lsqr:14.4f} | {t_lsqr:8.3f}")
for n_taps, (err, elapsed, _) in fir.items():
    print(f"{'FIR inverse, ' + str(n_taps) + ' taps':>22} | {err:14.4f} | {elapsed:8.3f}")

# %%
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 3.6))
ax0.semilogy(
    limits[: len(errors_by_limit)] + [iterations], errors_by_limit + [err_lsqr], "o-", label="LSQR"
)
for (n_taps, (err, _, _)), ls in zip(fir.items(), (":", "-.", "--")):
    ax0.axhline(err, color="C1", ls=ls, label=f"FIR inverse, {n_taps} taps")
ax0.set_xscale("log", base=2)
ax0.set_xlabel("LSQR iterations")
ax0.set_ylabel("relative error of x")
ax0.legend(fontsize=8)
ax0.set_title("error: LSQR against the FIR inverse (same β)")
seg = slice(3000, 3300)
t_ms = np.arange(x.shape[1])[seg] / fs * 1000
ax1.plot(t_ms, x[0, seg], "k", lw=2, label="x (left)")
ax1.plot(t_ms, x_lsqr[0, seg], "C0", label="LSQR")
ax1.plot(t_ms, fir[1024][2][0, seg], "C1", alpha=0.8, label="FIR inverse, 1024 taps")
ax1.set_xlabel("time (ms)")
ax1.legend(fontsize=8)
ax1.set_title("a few milliseconds of the left channel")
plt.tight_layout()
plt.show()

# %% [markdown]
# Both solve the same regularised problem, and with enough taps the FIR reaches LSQR's error.
# LSQR's error settles after a few dozen iterations (and creeps up a little after that, as the
# iterates start to fit the noise: stopping early regularises too).
# With too few it cannot: the inverse of a room response rings for longer than its taps,
# and the truncation error adds to the noise. LSQR has no such length to choose — it solves
# the finite problem exactly, edges included — and needs only products with `A` and `Aᴴ`;
# the FIR, once designed, filters any amount of signal at the cost of one layer.

# %%
assert err_lsqr <= 1.02 * min(err for err, _, _ in fir.values())
assert fir[1024][0] > 1.2 * err_lsqr  # a short FIR inverse pays for its truncation
assert errors_by_limit[0] > 10 * err_lsqr  # the iterations are what recovers x
