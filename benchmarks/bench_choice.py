"""How well ``method="auto"`` chooses, on a grid of layers beyond the issue's workloads.

    python benchmarks/bench_choice.py [--dtypes float64,float32] [--only strided|stride1]
                                      [--rows all|base|new] [--quick] [--part 1/4]
                                      [--repeat 5] [--no-torch] [--fresh-weights]
                                      [--markdown OUT.md]

For every layer of the grid: ``specconv.conv`` (or ``conv_transpose``) with ``method="direct"``
and ``method="fft"`` (each warmed up, then ``--repeat`` rounds of one call of each in turn,
the median per method: timed in turns, a minute's drift of this shared machine's speed slows
both alike, where timed one after the other it made near ties look like 2x; the same weight
every call), which of the two ``"auto"`` picks on such a repeated call (the kernel spectra priced
as cached: see ``layers._Layer._choice``), and torch's ``conv1d/2d/3d`` beside them when torch is
installed. The *regret* of a layer is the time of auto's pick over the faster of the two: 1.00
means auto picked the faster method. Transposed layers have more than two ways to run (phases
of the direct method, a zero-stuffed input, polyphase FFTs): their ``auto`` is timed too and its
regret is that time over the fastest of the three. The summary gives, per dtype,
the geometric mean regret, how many layers are within 10 % and 25 % of the faster method, and
the worst ones. Every run names the CPU, the compiled loops' state, BLAS, FFTW and threads.

The base grid: 2-D CNN layers (1 x 3 x 224², 8 x 32 x 64², 8 x 64 x 128², 16 x 128 x 32²,
4 x 256 x 16², 1 x 64 x 256²) with 1 x 1 to 7 x 7 kernels, groups 1, 4 and depthwise, stride 1
and 2 ("same" padding); 1-D layers (EEG-, sensor- and audio-like, 3 to 255 taps, groups 1 and
depthwise); 3-D layers with 3³ and 5³ kernels: 172 rows per dtype, about 5 minutes each. The
new rows (``--rows new``, 17): decimation (strided 1-D, depthwise and dense, long filters),
interpolation (strided ``conv_transpose``), many short epochs, complex 2-D small kernels on
medium images, long 1-D kernels with few channels. ``--quick``: the new rows and every sixth
base row (about a minute per dtype); ``--part i/n``: the i-th of n slices of the rows, to run
a long grid in pieces.

``--fresh-weights``: every call gets a weight never seen before (a layer applied once, or
trained), so the kernel spectra are computed on every FFT call and auto prices them.

``--rows grad`` (12 rows): the weight gradient instead, ``conv_weight_grad`` with
``method="direct"`` and ``"fft"`` and the method ``"auto"`` picks, on long 1-D kernels, a 2-D
31 x 31 kernel, 3 x 3 CNN layers (one strided, one 3-D) and depthwise layers (one strided);
regret as above.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _machine  # noqa: E402
from bench_conv import Allocator, measure  # noqa: E402

import specconv  # noqa: E402
from specconv import _correlate, _costmodel, _geometry, fft  # noqa: E402


def layers():
    """``(x shape, weight shape, groups, stride)`` of every layer of the base grid."""
    grid = []
    for B, C, H in [
        (1, 3, 224),
        (8, 32, 64),
        (8, 64, 128),
        (16, 128, 32),
        (4, 256, 16),
        (1, 64, 256),
    ]:
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


#: ``(x shape, weight shape, groups, stride, kind)`` of the new rows; kind "conv",
#: "transpose" (weight (C_in, C_out/groups, k)) or "complex" (a conv of complex data).
NEW_ROWS = [
    # decimation: strided long filters, depthwise and dense
    ((1, 64, 100_000), (64, 1, 801), 64, 4, "conv"),
    ((1, 64, 100_000), (64, 1, 255), 64, 2, "conv"),
    ((1, 16, 50_000), (16, 16, 127), 1, 4, "conv"),
    ((4, 8, 20_000), (8, 8, 63), 1, 2, "conv"),
    # interpolation: strided transposed layers
    ((1, 32, 100_000), (32, 1, 32), 32, 4, "transpose"),
    ((1, 32, 50_000), (32, 1, 48), 32, 4, "transpose"),
    ((1, 8, 20_000), (8, 8, 64), 1, 2, "transpose"),
    # many short epochs
    ((300, 64, 1000), (64, 1, 129), 64, 1, "conv"),
    ((100, 32, 500), (32, 32, 31), 1, 1, "conv"),
    ((200, 16, 256), (16, 1, 33), 16, 1, "conv"),
    # complex 2-D, small kernels on medium images
    ((1, 16, 256, 256), (16, 16, 5, 5), 1, 1, "complex"),
    ((4, 8, 128, 128), (8, 8, 3, 3), 1, 1, "complex"),
    ((1, 32, 128, 128), (32, 32, 7, 7), 1, 1, "complex"),
    ((2, 16, 128, 128), (16, 1, 5, 5), 16, 1, "complex"),
    # long 1-D kernels, few channels
    ((1, 2, 200_000), (2, 2, 4097), 1, 1, "conv"),
    ((1, 1, 500_000), (1, 1, 1025), 1, 1, "conv"),
    ((1, 4, 100_000), (4, 1, 2049), 4, 1, "conv"),
]


#: ``(x shape, weight shape, groups, stride)`` of the weight-gradient rows (``--rows grad``):
#: ``conv_weight_grad`` of a layer with "same"-style padding ``k // 2``.
GRAD_ROWS = [
    # long 1-D kernels
    ((1, 16, 50_000), (16, 16, 1001), 1, 1),
    ((1, 4, 100_000), (4, 4, 255), 1, 1),
    ((4, 16, 8000), (16, 16, 15), 1, 1),
    # 2-D 31 x 31
    ((2, 16, 128, 128), (16, 16, 31, 31), 1, 1),
    # small CNN layers, 3 x 3
    ((8, 64, 64, 64), (64, 64, 3, 3), 1, 1),
    ((16, 128, 32, 32), (128, 128, 3, 3), 1, 1),
    ((8, 32, 64, 64), (32, 32, 3, 3), 1, 2),
    ((2, 8, 32, 32, 32), (8, 8, 3, 3, 3), 1, 1),
    # depthwise
    ((8, 64, 64, 64), (64, 1, 3, 3), 64, 1),
    ((8, 32, 64, 64), (32, 1, 7, 7), 32, 1),
    ((1, 64, 30_000), (64, 1, 63), 64, 1),
    ((8, 32, 64, 64), (32, 1, 3, 3), 32, 2),
]


def grad_pick(call):
    """The method ``"auto"`` takes for the weight gradient ``call("auto")`` makes."""
    from specconv import gradients

    picks = []
    choose = gradients._choose

    def spy(*args):
        picks.append(choose(*args))
        return picks[-1]

    gradients._choose = spy
    try:
        call("auto")
    finally:
        gradients._choose = choose
    return picks[0]


def bench_grad(dtype, args, allocator):
    """The weight-gradient rows: direct, fft and auto's pick (its regret as the conv rows')."""
    rng = np.random.default_rng(0)
    out = []
    for x_shape, w_shape, groups, stride in GRAD_ROWS:
        x = rng.standard_normal(x_shape).astype(dtype)
        padding = tuple(k // 2 for k in w_shape[2:])
        out_shape = tuple(
            (n + 2 * p - k) // stride + 1 for n, p, k in zip(x_shape[2:], padding, w_shape[2:])
        )
        g = rng.standard_normal((x_shape[0], w_shape[0]) + out_shape).astype(dtype)

        def call(method):
            return specconv.conv_weight_grad(
                x, w_shape, g, stride=stride, padding=padding, groups=groups, method=method
            )

        allocator.trim()
        calls = {m: lambda m=m: call(m) for m in ("direct", "fft")}
        times = measure_in_turns(calls, args.repeat, args.max_seconds)
        pick = grad_pick(call)
        regret = times[pick] / min(times.values())
        row = dict(
            x=x_shape,
            w=w_shape,
            groups=groups,
            stride=stride,
            pick=pick,
            regret=regret,
            kind="grad",
            **times,
        )
        out.append(row)
        print(format_row(dtype, row), flush=True)
    return out


def rows(which, quick):
    """The rows to run: ``(x shape, weight shape, groups, stride, kind)``."""
    base = [row + ("conv",) for row in layers()]
    if quick:
        base = base[::6]
    return {"all": base + NEW_ROWS, "base": base, "new": NEW_ROWS}[which]


def auto_pick(x_shape, w_shape, groups, stride, dtype, is_complex=False, shipped=False, again=True):
    """The method ``"auto"`` takes for this layer (the engine's own choice; with the shipped
    constants instead of this machine's if ``shipped``) on a call with a weight seen before
    (``again``) or a new one."""
    d = len(x_shape) - 2
    pads = [k // 2 for k in w_shape[2:]]
    geom = _geometry.Geometry(
        x_shape[0],
        x_shape[1],
        w_shape[0],
        groups,
        w_shape[2:],
        (1,) * d,
        (stride,) * d,
        tuple(n + 2 * p for n, p in zip(x_shape[2:], pads)),
        is_complex,
    )
    itemsize = np.dtype(dtype).itemsize
    workers = fft.get_num_threads()
    # the calls after the first, with the same weight: the kernel spectra are cached by then,
    # so auto takes the FFT wherever it wins without them (``layers._Layer._choice``)
    if shipped:  # the model alone (the input phases of strided layers are priced on this
        # machine's constants only)
        constants = _costmodel.SHIPPED[_costmodel.precision(itemsize, is_complex)]

        def choose(**options):
            return _costmodel.choose(
                geom, "auto", itemsize, workers, constants=constants, **options
            )

    else:  # as a layer chooses: for strided layers also their input phases (the FFT engine's)

        def choose(**options):
            pairs = tuple((p, p) for p in pads)
            return _correlate.choose(geom, pairs, "auto", itemsize, workers, **options)

    first = choose()
    if first.method == "fft" or not again:
        return first.method
    return choose(spectra_cached=True).method


def measure_in_turns(calls, repeat, max_seconds):
    """Median seconds of each of ``calls`` (name -> function), each warmed up once, then
    timed in rounds of one call of each; fewer rounds where they would take more than about
    ``max_seconds``, none where a warm-up alone did (its time is reported)."""
    gc.collect()
    warm = {}
    for name, fn in calls.items():
        t0 = time.perf_counter()
        fn()
        warm[name] = time.perf_counter() - t0
    rounds = min(repeat, int(max_seconds // max(sum(warm.values()), 1e-9)))
    if rounds < 1:
        return warm
    times = {name: [] for name in calls}
    for _ in range(rounds):
        for name, fn in calls.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: float(np.median(t)) for name, t in times.items()}


def torch_fn(x, w, groups, stride, padding, transpose=False):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(fft.get_num_threads())
    F = torch.nn.functional
    conv = (
        {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
        if transpose
        else {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
    )[w.ndim - 2]
    tx, tw = torch.from_numpy(x), torch.from_numpy(w)

    def run():
        with torch.no_grad():
            return conv(tx, tw, groups=groups, stride=stride, padding=padding)

    return run


def bench(dtype, args, allocator):
    rng = np.random.default_rng(0)
    out = []
    bump = itertools.count(1)
    selected = rows(args.rows, args.quick)
    i, n = args.part
    for x_shape, w_shape, groups, stride, kind in selected[
        (i - 1) * len(selected) // n : i * len(selected) // n
    ]:
        if args.only == "strided" and stride == 1 or args.only == "stride1" and stride > 1:
            continue
        cdtype = np.result_type(dtype, np.complex64) if kind == "complex" else np.dtype(dtype)
        x = rng.standard_normal(x_shape).astype(cdtype)
        w = rng.standard_normal(w_shape).astype(cdtype)
        if kind == "complex":
            x += 1j * rng.standard_normal(x_shape)
            w += 1j * rng.standard_normal(w_shape)
        if kind == "transpose":
            padding = 0

            def call(method, w):
                return specconv.conv_transpose(x, w, groups=groups, stride=stride, method=method)
        else:
            padding = tuple(k // 2 for k in w_shape[2:])

            def call(method, w):
                return specconv.conv(
                    x, w, groups=groups, stride=stride, padding=padding, method=method
                )

        methods = ("direct", "fft", "auto") if kind == "transpose" else ("direct", "fft")
        calls = {}
        for method in methods:
            # the same weight every call, or (--fresh-weights) one never seen before, made
            # ahead of the timed calls
            weights = (
                iter([w + next(bump) * 1e-9 for _ in range(args.repeat + 1)])
                if args.fresh_weights
                else itertools.repeat(w)
            )
            calls[method] = lambda m=method, ws=weights: call(m, next(ws))
        allocator.trim()
        times = measure_in_turns(calls, args.repeat, args.max_seconds)
        run_torch = None
        if not args.no_torch and kind != "complex":
            run_torch = torch_fn(x, w, groups, stride, padding, transpose=kind == "transpose")
        if run_torch is not None:
            allocator.trim()
            times["torch"] = measure(run_torch, args.repeat, args.max_seconds)[0]
        layer = (x_shape, w_shape, groups, stride, cdtype, kind == "complex")
        again = not args.fresh_weights
        pick = "auto" if kind == "transpose" else auto_pick(*layer, again=again)
        best = min(times[m] for m in methods)  # a transposed layer's auto may beat both
        regret = times[pick] / best
        row = dict(
            x=x_shape,
            w=w_shape,
            groups=groups,
            stride=stride,
            pick=pick,
            regret=regret,
            kind=kind,
            **times,
        )
        if kind != "transpose":  # what the shipped constants would have picked
            shipped = auto_pick(*layer, shipped=True, again=again)
            row["shipped_regret"] = times[shipped] / best
        out.append(row)
        print(format_row(dtype, row), flush=True)
    return out


def format_row(dtype, row):
    torch_cell = f"{row['torch'] * 1e3:8.2f}" if "torch" in row else "       -"
    kind = {"conv": "", "transpose": "T", "complex": "c", "grad": "w"}[row.get("kind", "conv")]
    auto_cell = f"  auto {row['auto'] * 1e3:8.2f}" if "auto" in row else ""
    return (
        f"{dtype:8s} {str(row['x']):20s} {str(row['w']):18s} g{row['groups']:<4d} "
        f"s{row['stride']}{kind:1s} direct {row['direct'] * 1e3:8.2f}  fft {row['fft'] * 1e3:8.2f}"
        f"{auto_cell}  torch {torch_cell} ms  auto: {row['pick']:6s} regret {row['regret']:.2f}"
        + (f" (shipped {row['shipped_regret']:.2f})" if "shipped_regret" in row else "")
    )


def summary(dtype, rows):
    regrets = np.array([r["regret"] for r in rows])
    worst = sorted(rows, key=lambda r: -r["regret"])[:3]
    lines = [
        f"{dtype}: {len(rows)} layers, geometric mean regret {math.exp(np.log(regrets).mean()):.3f}, "
        f"within 10 %: {int((regrets <= 1.1).sum())}, within 25 %: {int((regrets <= 1.25).sum())}, "
        f"worst: "
        + "; ".join(
            f"{r['x']} {r['w']} g{r['groups']} s{r['stride']} {r['regret']:.2f}" for r in worst
        )
    ]
    shipped = [r.get("shipped_regret", r["regret"]) for r in rows]
    if any("shipped_regret" in r for r in rows):
        lines.append(
            f"{dtype}: with the shipped constants: geometric mean regret "
            f"{math.exp(np.log(shipped).mean()):.3f}, worst {max(shipped):.2f}"
        )
    with_torch = [r for r in rows if "torch" in r]
    if with_torch:
        ratio = np.array([r["torch"] / r[r["pick"]] for r in with_torch])
        lines.append(
            f"{dtype}: torch / auto, geometric mean {math.exp(np.log(ratio).mean()):.2f} "
            f"(min {ratio.min():.2f}, max {ratio.max():.2f})"
        )
    return lines


def _part(text):
    i, _, n = text.partition("/")
    if not (i.isdigit() and n.isdigit() and 1 <= int(i) <= int(n)):
        raise argparse.ArgumentTypeError(f"--part must be I/N with 1 <= I <= N, got {text!r}")
    return int(i), int(n)


def machine_line():
    """CPU, compiled loops, BLAS, FFTW and threads of this run."""
    from specconv import _calibration, _compiled

    threads = fft.get_num_threads()
    key = _calibration.machine_key(threads)
    state = "calibrated" if _calibration.enabled() else "shipped constants"
    loops = (
        "absent"
        if _compiled.loops is None
        else ("on" if not _compiled.losing else f"off for {sorted(_compiled.losing)}")
    )
    return (
        f"CPU {key['cpu']}, compiled loops {loops} ({key['compiled']}), "
        f"BLAS {'; '.join(key['blas'])}, {key['fftw']}, {threads} threads, {state}"
    )


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dtypes", default="float64,float32")
    p.add_argument("--only", choices=("strided", "stride1"))
    p.add_argument(
        "--rows",
        choices=("all", "base", "new", "grad"),
        default="all",
        help="grad: the weight-gradient rows (conv_weight_grad), run alone",
    )
    p.add_argument("--quick", action="store_true", help="the new rows and every sixth base row")
    p.add_argument(
        "--part",
        type=_part,
        default=(1, 1),
        metavar="I/N",
        help="run only the I-th of N slices of the rows",
    )
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--max-seconds", type=float, default=3.0)
    p.add_argument("--no-torch", action="store_true")
    p.add_argument(
        "--fresh-weights",
        action="store_true",
        help="a weight never seen before on every call (its kernel spectra computed each time)",
    )
    p.add_argument("--markdown", help="write the summary and every row to this file")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    allocator = Allocator(keep=True)
    print(_machine.header(malloc="kept for reuse"), flush=True)
    run = bench_grad if args.rows == "grad" else bench
    results = {dtype: run(dtype, args, allocator) for dtype in args.dtypes.split(",")}
    weights = "a weight never seen before" if args.fresh_weights else "the same weight"
    lines = [f"{machine_line()}; {weights} on every call"]
    lines += [line for dtype, rows in results.items() for line in summary(dtype, rows)]
    print("\n".join(lines))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(
                f"`python benchmarks/bench_choice.py {' '.join(argv or sys.argv[1:])}`; "
                f"{_machine.markdown(malloc='kept for reuse')}\n\n"
            )
            f.write("\n".join(f"- {line}" for line in lines) + "\n\n```\n")
            f.write(
                "\n".join(format_row(dtype, r) for dtype, rows in results.items() for r in rows)
                + "\n```\n"
            )


if __name__ == "__main__":
    main()
