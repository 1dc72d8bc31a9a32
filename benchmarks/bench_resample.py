"""Interpolation and decimation by strided layers, against scipy.signal and torch.

    python benchmarks/bench_resample.py [--dtypes float64,float32] [--repeat 7] [--markdown]

Two multichannel resamplers, the same FIR filter on every channel (a Kaiser-windowed
low-pass from ``scipy.signal.firwin``), each computed by every peer to the same numbers
(checked against specconv's, to the tolerance of the dtype):

interpolation x4, 32 channels x 200 000 samples, 48 taps
    specconv ``conv_transpose(x, w, stride=4, groups=32)``: the full-length zero-stuffed
    convolution ``y[t] = sum_i x[i] h[t - 4 i]``, ``4 (n - 1) + 48`` samples;
    ``scipy.signal.upfirdn(h, x, up=4)``: the same samples; timed as one call on the
    (32, n) array (one thread) and as one call per channel on a thread pool of all cores,
    the faster counts;
    ``scipy.signal.resample_poly(x, 4, 1, window=h)``: the same filter scaled by 4, cropped
    to ``4 n`` samples centred on the filter's delay; specconv computes it as
    ``conv_transpose`` of ``4 h`` with padding ``(23, 21)``.
decimation x4, 64 channels x 300 000 samples, 1001 taps
    ``upfirdn(h, x, down=4)``: the full convolution kept at every 4th sample; specconv
    ``conv(x, h[::-1], stride=4, padding=1000, groups=64)`` and ``torch.nn.functional.conv1d``
    with the same arguments (all cores) compute the same samples; upfirdn as above.

Targets (issue 18): interpolation >= 2x upfirdn; decimation >= 3x the faster of torch and
upfirdn. Times are medians of ``--repeat`` calls after one warm-up call (specconv's kernel
spectra are then cached, as any resampler applied to a stream of blocks would have them).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import scipy
import scipy.signal

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import specconv
from specconv import _compiled, fft

CORES = os.cpu_count()


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    info = {}
    for line in lines:
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    model = info.get("model name", platform.machine())
    if "cpu family" in info:
        model += f" (family {info['cpu family']} model {info.get('model', '?')})"
    return model


def compiled_level():
    """The instruction-set level of the compiled loops specconv runs here."""
    if _compiled.loops is None:
        return "off (numpy path)"
    level = getattr(_compiled, "level", None) or getattr(_compiled.loops, "level", None)
    if level:
        return str(level)
    # the loops are target clones, picked by the CPU's flags at load time
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(next(line for line in f if line.startswith("flags")).split(":")[1].split())
    except (OSError, StopIteration):
        return "compiled (level unknown)"
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags:
        return "x86-64-v4 (AVX-512)"
    if {"avx2", "fma"} <= flags:
        return "x86-64-v3 (AVX2+FMA)"
    return "default"


def blas():
    try:
        from threadpoolctl import threadpool_info

        return (
            ", ".join(
                f"{p['internal_api']} {p['version']}"
                for p in threadpool_info()
                if p.get("user_api") == "blas"
            )
            or "?"
        )
    except ImportError:
        return "?"


def commit():
    try:
        return (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                cwd=ROOT,
                check=False,
            ).stdout.strip()
            or "?"
        )
    except OSError:
        return "?"


def median_time(fn, repeat):
    fn()  # warm-up: plans, kernel spectra, pool threads
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def rel_err(y, ref):
    return float(np.max(np.abs(y - ref)) / np.max(np.abs(ref)))


def tolerance(dtype):
    return 1e-5 if np.dtype(dtype) == np.float32 else 1e-11


def upfirdn_peers(h, x, **kw):
    """upfirdn as one call on the (C, n) array (one thread), and per channel on a thread pool
    of all cores."""
    pool = ThreadPoolExecutor(CORES)

    def one_call():
        return scipy.signal.upfirdn(h, x, axis=-1, **kw)

    def per_channel():
        return np.stack(
            list(pool.map(lambda c: scipy.signal.upfirdn(h, x[c], **kw), range(x.shape[0])))
        )

    return {"upfirdn (1 thread)": one_call, f"upfirdn ({CORES} threads, per channel)": per_channel}


def interpolation(dtype, repeat):
    C, n, up, K = 32, 200_000, 4, 48
    rng = np.random.default_rng(0)
    x = rng.standard_normal((C, n)).astype(dtype)
    h = scipy.signal.firwin(K, 1 / up, window=("kaiser", 5.0)).astype(dtype)
    w = np.broadcast_to(h, (C, 1, K)).copy()  # (C_in, C_out/groups, taps): true convolution
    rows = {}
    ours = {
        "specconv auto": lambda: specconv.conv_transpose(x, w, stride=up, groups=C),
        "specconv fft": lambda: specconv.conv_transpose(x, w, stride=up, groups=C, method="fft"),
    }
    ref = ours["specconv fft"]()
    peers = upfirdn_peers(h, x, up=up)
    for name, fn in {**ours, **peers}.items():
        check = rel_err(fn(), ref)
        assert check <= tolerance(dtype), (name, check)
        rows[name] = median_time(fn, repeat)
    # resample_poly: the filter scaled by up, centred (half_len 23: crop 23 left, 21 right)
    half = (K - 1) // 2
    full = (n - 1) * up + K
    pads = ((half, full - half - n * up),)
    w_poly = w * up
    poly_ours = lambda: specconv.conv_transpose(x, w_poly, stride=up, groups=C, padding=pads)
    poly_ref = poly_ours()
    poly = lambda: scipy.signal.resample_poly(x, up, 1, axis=-1, window=h)
    check = rel_err(poly(), poly_ref)
    assert check <= tolerance(dtype), ("resample_poly", check)
    rows["specconv auto, resample_poly's crop"] = median_time(poly_ours, repeat)
    rows["resample_poly (1 thread)"] = median_time(poly, repeat)
    return rows


def decimation(dtype, repeat):
    import torch

    C, n, down, K = 64, 300_000, 4, 1001
    rng = np.random.default_rng(1)
    x = rng.standard_normal((C, n)).astype(dtype)
    h = scipy.signal.firwin(K, 1 / down, window=("kaiser", 8.0)).astype(dtype)
    w = np.broadcast_to(h[::-1], (C, 1, K)).copy()  # correlation taps: the filter flipped
    kw = dict(stride=down, padding=K - 1, groups=C)
    ours = {
        "specconv auto": lambda: specconv.conv(x, w, **kw),
        "specconv fft": lambda: specconv.conv(x, w, method="fft", **kw),
    }
    ref = ours["specconv fft"]()
    torch.set_num_threads(CORES)
    xt, wt = torch.from_numpy(x[None]), torch.from_numpy(w)

    def torch_conv():
        with torch.no_grad():
            return torch.nn.functional.conv1d(xt, wt, **kw)[0].numpy()

    rows = {}
    for name, fn in {
        **ours,
        f"torch conv1d ({CORES} threads)": torch_conv,
        **upfirdn_peers(h, x, down=down),
    }.items():
        check = rel_err(fn(), ref)
        assert check <= tolerance(dtype), (name, check)
        rows[name] = median_time(fn, repeat)
    return rows


def report(title, rows, peers, target):
    best_peer = min(peers, key=lambda p: rows[p])
    ratio = rows[best_peer] / rows["specconv auto"]
    print(f"\n{title}")
    for name, t in rows.items():
        print(f"  {name:<40} {t * 1e3:9.1f} ms   {rows['specconv auto'] / t:5.2f}x of auto's time")
    mark = "met" if ratio >= target else "MISSED"
    print(
        f"  ratio: fastest peer ({best_peer}) / specconv auto = {ratio:.2f} "
        f"(target >= {target}: {mark})"
    )
    return ratio


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dtypes", default="float64,float32")
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--only", choices=("interpolation", "decimation"))
    args = p.parse_args(argv)
    print(
        f"commit {commit()}, {time.strftime('%Y-%m-%d %H:%M')}; CPU {cpu_model()}, "
        f"{CORES} cores; compiled level {compiled_level()}; specconv threads "
        f"{fft.get_num_threads()}; numpy {np.__version__}, scipy {scipy.__version__}, "
        f"{fft.fftw_version()}, BLAS {blas()}"
    )
    for dtype in args.dtypes.split(","):
        if args.only in (None, "interpolation"):
            rows = interpolation(dtype, args.repeat)
            peers = [r for r in rows if r.startswith("upfirdn")]
            report(f"interpolation x4, 32 x 200000, 48 taps, {dtype}", rows, peers, 2.0)
            crop = rows["specconv auto, resample_poly's crop"]
            print(
                f"  resample_poly / specconv (its crop) = "
                f"{rows['resample_poly (1 thread)'] / crop:.2f}"
            )
        if args.only in (None, "decimation"):
            rows = decimation(dtype, args.repeat)
            peers = [r for r in rows if not r.startswith("specconv")]
            report(f"decimation x4, 64 x 300000, 1001 taps, {dtype}", rows, peers, 3.0)


if __name__ == "__main__":
    main()
