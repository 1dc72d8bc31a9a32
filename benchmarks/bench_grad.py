"""Weight gradients and LSQR through the operator: specconv against torch, side by side.

The cases of issue 23 (section 4)::

    python benchmarks/bench_grad.py --case grad1d --dtype float32   # 64 x 64 x 1001, 64 x 100 000
    python benchmarks/bench_grad.py --case grad2d --dtype float64   # 8 x 64 x 128², 31 x 31
    python benchmarks/bench_grad.py --case lsqr                     # tutorial 8's deconvolution
    python benchmarks/bench_grad.py --case train1d --dtype float32  # one training step, torch
    python benchmarks/bench_grad.py --case vjp1d --dtype float32    # forward + vjp, spectra kept

Each specconv row is the best of ``--repeat`` calls after one warm-up (FFTW planning); torch
(``torch.nn.grad.conv{1,2}d_weight``, its CPU threads as configured) is timed once, as its
calls take tens of seconds and vary little. Results go to stdout, one line per method.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

import specconv


def _best(fn, repeat):
    fn()  # warm-up: plans
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def grad(case, dtype, repeat, torch_too):
    rng = np.random.default_rng(0)
    if case == "grad1d":
        x = rng.standard_normal((1, 64, 100_000)).astype(dtype)
        w_shape, kw, torch_kw = (64, 64, 1001), {}, {}
    else:
        x = rng.standard_normal((8, 64, 128, 128)).astype(dtype)
        w_shape, kw, torch_kw = (64, 64, 31, 31), {"padding": "same"}, {"padding": 15}
    n_out = tuple(n - k + 1 for n, k in zip(x.shape[2:], w_shape[2:])) if not kw else x.shape[2:]
    g = rng.standard_normal(x.shape[:1] + (w_shape[0],) + tuple(n_out)).astype(dtype)
    rows = []
    for method in ("auto", "fft"):
        t, dw = _best(
            lambda m=method: specconv.conv_weight_grad(x, w_shape, g, method=m, **kw), repeat
        )
        rows.append((f"specconv {method}", t))
    if torch_too:
        import torch

        fn = torch.nn.grad.conv1d_weight if case == "grad1d" else torch.nn.grad.conv2d_weight
        label = f"torch.nn.grad ({torch.get_num_threads()} threads)"
        t0 = time.perf_counter()
        try:
            ref = fn(torch.from_numpy(x), w_shape, torch.from_numpy(g), **torch_kw).numpy()
        except RuntimeError as err:  # its float64 CPU path unfolds the input: tens of GB
            print(f"{label} failed: {str(err).splitlines()[0][:160]}")
        else:
            rows.append((label, time.perf_counter() - t0))
            err = np.abs(dw - ref).max() / np.abs(ref).max()
            print(f"max |specconv - torch| / max |torch| = {err:.2g}")
    return rows


def lsqr(repeat):
    from scipy.sparse.linalg import lsqr as scipy_lsqr
    from threadpoolctl import threadpool_limits

    from specconv import datasets, io, kernels

    sound = datasets.load("audio-pcm16")
    ir = datasets.load("ir-true-stereo")
    x = sound.data[:2, 12000:24000].astype(np.float64)
    h = io.true_stereo_kernel(np.asarray(ir.data, dtype=np.float64))[..., :512]
    h = h * np.hanning(1024)[512:]
    plant = kernels.fir_layer(h)
    y = plant(x)
    noise = 0.01 * np.sqrt(np.mean(y**2))
    y = y + noise * np.random.default_rng(0).standard_normal(y.shape)
    A = specconv.aslinearoperator(plant, x.shape)
    damp = noise / np.sqrt(np.mean(x**2))
    rows = []
    for label, blas in (("LSQR, BLAS threads as numpy's", None), ("LSQR, one BLAS thread", 1)):

        def solve(blas=blas):
            if blas is None:
                return scipy_lsqr(A, y.ravel(), damp=damp, atol=1e-4, btol=1e-4)
            with threadpool_limits(blas, user_api="blas"):
                return scipy_lsqr(A, y.ravel(), damp=damp, atol=1e-4, btol=1e-4)

        t, sol = _best(solve, repeat)
        err = np.linalg.norm(sol[0].reshape(x.shape) - x) / np.linalg.norm(x)
        rows.append((f"{label}: istop {sol[1]}, {sol[2]} iterations, error {err:.4f}", t))
    return rows


def train1d(dtype, repeat):
    """Forward + backward of a 32 -> 32 channel, 1001-tap Conv1d on 2 x 32 x 20 000 samples:
    torch.nn.Conv1d against the specconv.torch drop-in (same state_dict)."""
    import torch

    import specconv.torch as sct

    tdtype = getattr(torch, str(np.dtype(dtype)))
    torch.manual_seed(0)
    ours = sct.Conv1d(32, 32, 1001, padding="same", dtype=tdtype)
    theirs = torch.nn.Conv1d(32, 32, 1001, padding="same", dtype=tdtype)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, 32, 20_000, dtype=tdtype, requires_grad=True)
    rows = []
    for label, module, n in (
        ("specconv.torch.Conv1d", ours, repeat),
        ("torch.nn.Conv1d", theirs, 1),
    ):

        def step(module=module):
            module.zero_grad()
            x.grad = None
            y = module(x)
            y.square().mean().backward()
            return y

        t, _ = _best(step, n)
        rows.append((f"training step (forward + backward), {label}", t))
    return rows


def vjp1d(dtype, repeat):
    """Forward pass and vector-Jacobian product of the 64 x 64 x 1001 layer on 64 x 100 000
    samples: the weight gradient recomputing the input spectra (``vjp(layer, x, g)``) against
    reusing the forward pass's (``y, pullback = vjp(layer, x)``), and the weight gradient
    alone both ways."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 64, 100_000)).astype(dtype)
    w = (rng.standard_normal((64, 64, 1001)) / 250).astype(dtype)
    layer = specconv.SpectralConv(w, method="fft")
    g = rng.standard_normal((1, 64, 100_000 - 1000)).astype(dtype)

    def recompute():
        layer(x)
        return specconv.vjp(layer, x, g)

    def reuse():
        _, pullback = specconv.vjp(layer, x)
        return pullback(g)

    _, pullback = specconv.vjp(layer, x)
    print(f"input spectra kept: {pullback.saved_bytes / 2**20:.0f} MiB")
    rows = []
    t, a = _best(recompute, repeat)
    rows.append(("forward + vjp, weight gradient recomputes the input spectra", t))
    t, b = _best(reuse, repeat)
    rows.append(("forward + vjp, weight gradient reuses the forward's spectra", t))
    print(
        f"max |reuse - recompute| / max |recompute| (weight) = "
        f"{np.abs(a[1] - b[1]).max() / np.abs(a[1]).max():.2g}"
    )
    t, _ = _best(lambda: specconv.conv_weight_grad(x, w.shape, g, method="fft"), repeat)
    rows.append(("weight gradient alone, from x (conv_weight_grad, fft)", t))
    t, _ = _best(lambda: pullback.weight_grad(g), repeat)
    rows.append(("weight gradient alone, from the kept spectra", t))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--case", choices=("grad1d", "grad2d", "lsqr", "train1d", "vjp1d"), required=True
    )
    parser.add_argument("--dtype", default="float64", choices=("float32", "float64"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-torch", action="store_true")
    args = parser.parse_args()
    print(
        f"{platform.processor() or platform.machine()}, specconv threads "
        f"{specconv.get_num_threads()}, case {args.case}, {args.dtype}"
    )
    if args.case == "lsqr":
        rows = lsqr(args.repeat)
    elif args.case == "train1d":
        rows = train1d(args.dtype, args.repeat)
    elif args.case == "vjp1d":
        rows = vjp1d(np.dtype(args.dtype), args.repeat)
    else:
        rows = grad(args.case, np.dtype(args.dtype), args.repeat, not args.no_torch)
    for label, seconds in rows:
        print(f"{label:60s} {seconds:9.3f} s")


if __name__ == "__main__":
    main()
