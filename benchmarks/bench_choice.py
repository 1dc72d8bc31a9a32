"""How well ``method="auto"`` chooses, on a grid of layers beyond the issue's workloads.

    python benchmarks/bench_choice.py [--dtypes float64,float32] [--only strided|stride1]
                                      [--repeat 5] [--no-torch] [--markdown OUT.md]

For every layer of the grid: ``specconv.conv`` with ``method="direct"`` and ``method="fft"``
(median of ``--repeat`` calls after a warm-up, the same weight every call), which of the two
``"auto"`` picks, and torch's ``conv1d/2d/3d`` beside them when torch is installed. The
*regret* of a layer is the time of auto's pick over the faster of the two: 1.00 means auto
picked the faster method. The summary gives, per dtype, the geometric mean regret, how many
layers are within 10 % and 25 % of the faster method, and the worst ones.

The grid: 2-D CNN layers (1 x 3 x 224², 8 x 32 x 64², 8 x 64 x 128², 16 x 128 x 32²,
4 x 256 x 16², 1 x 64 x 256²) with 1 x 1 to 7 x 7 kernels, groups 1, 4 and depthwise, stride 1
and 2 ("same" padding); 1-D layers (EEG-, sensor- and audio-like, 3 to 255 taps, groups 1 and
depthwise); 3-D layers with 3³ and 5³ kernels. 172 rows per dtype, about 5 minutes each.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import specconv  # noqa: E402
from specconv import _costmodel, _geometry, fft  # noqa: E402

import _machine  # noqa: E402
from bench_conv import Allocator, measure  # noqa: E402


def layers():
    """``(x shape, weight shape, groups, stride)`` of every layer of the grid."""
    grid = []
    for B, C, H in [(1, 3, 224), (8, 32, 64), (8, 64, 128), (16, 128, 32), (4, 256, 16),
                    (1, 64, 256)]:
        for k in (1, 3, 5, 7):
            for g in sorted({1, 4, C} if C % 4 == 0 else {1, C}):
                for s in (1, 2):
                    grid.append(((B, C, H, H), (C, C // g, k, k), g, s))
    for B, C, N in [(1, 64, 30000), (4, 16, 8000), (1, 2, 48000)]:
        for k in (3, 15, 63, 255):
            for g in (1, C):
                grid.append(((B, C, N), (C, C // g, k), g, 1))
    for B, C, N in [(1, 16, 32), (2, 8, 48), (1, 32, 16)]:
        for k in (3, 5):
            for g in (1, C):
                grid.append(((B, C, N, N, N), (C, C // g, k, k, k), g, 1))
    return grid


def auto_pick(x_shape, w_shape, groups, stride, dtype):
    """The method ``"auto"`` takes for this layer (the engine's own choice)."""
    d = len(x_shape) - 2
    pads = [k // 2 for k in w_shape[2:]]
    geom = _geometry.Geometry(
        x_shape[0], x_shape[1], w_shape[0], groups, w_shape[2:], (1,) * d, (stride,) * d,
        tuple(n + 2 * p for n, p in zip(x_shape[2:], pads)), False,
    )
    return _costmodel.choose(geom, "auto", np.dtype(dtype).itemsize, fft.get_num_threads()).method


def torch_fn(x, w, groups, stride, padding):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(fft.get_num_threads())
    conv = {1: torch.nn.functional.conv1d, 2: torch.nn.functional.conv2d,
            3: torch.nn.functional.conv3d}[w.ndim - 2]
    tx, tw = torch.from_numpy(x), torch.from_numpy(w)

    def run():
        with torch.no_grad():
            return conv(tx, tw, groups=groups, stride=stride, padding=padding)

    return run


def bench(dtype, args, allocator):
    rng = np.random.default_rng(0)
    rows = []
    for x_shape, w_shape, groups, stride in layers():
        if args.only == "strided" and stride == 1 or args.only == "stride1" and stride > 1:
            continue
        x = rng.standard_normal(x_shape).astype(dtype)
        w = rng.standard_normal(w_shape).astype(dtype)
        padding = tuple(k // 2 for k in w_shape[2:])
        times = {}
        for method in ("direct", "fft"):
            allocator.trim()
            times[method] = measure(
                lambda: specconv.conv(x, w, groups=groups, stride=stride, padding=padding,
                                      method=method),
                args.repeat, args.max_seconds,
            )[0]
        run_torch = None if args.no_torch else torch_fn(x, w, groups, stride, padding)
        if run_torch is not None:
            allocator.trim()
            times["torch"] = measure(run_torch, args.repeat, args.max_seconds)[0]
        pick = auto_pick(x_shape, w_shape, groups, stride, dtype)
        regret = times[pick] / min(times["direct"], times["fft"])
        row = dict(x=x_shape, w=w_shape, groups=groups, stride=stride, pick=pick,
                   regret=regret, **times)
        rows.append(row)
        print(format_row(dtype, row), flush=True)
    return rows


def format_row(dtype, row):
    torch_cell = f"{row['torch'] * 1e3:8.2f}" if "torch" in row else "       -"
    return (f"{dtype:8s} {str(row['x']):20s} {str(row['w']):18s} g{row['groups']:<4d} "
            f"s{row['stride']}  direct {row['direct'] * 1e3:8.2f}  fft {row['fft'] * 1e3:8.2f}"
            f"  torch {torch_cell} ms  auto: {row['pick']:6s} regret {row['regret']:.2f}")


def summary(dtype, rows):
    regrets = np.array([r["regret"] for r in rows])
    worst = sorted(rows, key=lambda r: -r["regret"])[:3]
    lines = [
        f"{dtype}: {len(rows)} layers, geometric mean regret {math.exp(np.log(regrets).mean()):.3f}, "
        f"within 10 %: {int((regrets <= 1.1).sum())}, within 25 %: {int((regrets <= 1.25).sum())}, "
        f"worst: " + "; ".join(
            f"{r['x']} {r['w']} g{r['groups']} s{r['stride']} {r['regret']:.2f}" for r in worst)
    ]
    with_torch = [r for r in rows if "torch" in r]
    if with_torch:
        ratio = np.array([r["torch"] / r[r["pick"]] for r in with_torch])
        lines.append(
            f"{dtype}: torch / auto, geometric mean {math.exp(np.log(ratio).mean()):.2f} "
            f"(min {ratio.min():.2f}, max {ratio.max():.2f})"
        )
    return lines


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dtypes", default="float64,float32")
    p.add_argument("--only", choices=("strided", "stride1"))
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--max-seconds", type=float, default=3.0)
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--markdown", help="write the summary and every row to this file")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    allocator = Allocator(keep=True)
    print(_machine.header(malloc="kept for reuse"), flush=True)
    results = {dtype: bench(dtype, args, allocator) for dtype in args.dtypes.split(",")}
    lines = [line for dtype, rows in results.items() for line in summary(dtype, rows)]
    print("\n".join(lines))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(f"`python benchmarks/bench_choice.py {' '.join(argv or sys.argv[1:])}`; "
                    f"{_machine.markdown(malloc='kept for reuse')}\n\n")
            f.write("\n".join(f"- {line}" for line in lines) + "\n\n```\n")
            f.write("\n".join(format_row(dtype, r) for dtype, rows in results.items()
                              for r in rows) + "\n```\n")


if __name__ == "__main__":
    main()
