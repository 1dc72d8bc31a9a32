"""The compiled loops at every instruction-set level against the numpy/BLAS path, one run.

Each compiled loop must be at least as fast as the numpy/BLAS code it replaces, at every level
it is used at (issue 18). This times whole ``specconv.conv`` calls on each loop's typical
layers with the loops of every level this CPU runs (``specconv._compiled.levels()``) and with
none ("off"), in the same process, the variants interleaved round by round so that drift on a
shared machine hits them alike; medians after one warm-up call per variant.

    python benchmarks/bench_levels.py                    # every case, float and complex
    python benchmarks/bench_levels.py --cases dw7 --dtypes float32 --repeat 9

``ratio`` = off ÷ level: above 1 the level's loop wins. Run it under the CPU lock on shared
machines (``flock -x /tmp/specconv-cpu.lock python benchmarks/bench_levels.py``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _machine

import specconv
from specconv import _compiled

# (name, loop, x shape, weight shape, groups, padding, method, complex input, stride of a
# transposed layer or None)
CASES = [
    ("dw3", "depthwise", (8, 64, 128, 128), (64, 1, 3, 3), 64, 1, "direct", False, None),
    ("dw7", "depthwise", (8, 64, 128, 128), (64, 1, 7, 7), 64, 3, "direct", False, None),
    ("dw15", "depthwise", (8, 64, 128, 128), (64, 1, 15, 15), 64, 7, "direct", False, None),
    ("up4", "depthwise", (1, 32, 200_000), (32, 1, 48), 32, 0, "direct", False, 4),
    ("W3a", "product", (1, 32, 320, 320), (32, 32, 7, 7), 1, 3, "fft", True, None),
    ("cnn3", "product", (8, 64, 128, 128), (64, 64, 3, 3), 1, 1, "fft", False, None),
]
TITLES = {
    "dw3": "depthwise 3x3, 8 x 64 x 128^2, direct",
    "dw7": "depthwise 7x7, 8 x 64 x 128^2, direct",
    "dw15": "depthwise 15x15, 8 x 64 x 128^2, direct",
    "up4": "interpolation x4 (transposed, 48 taps), 32 x 200 000, direct phases",
    "W3a": "32 x 32 x 7 x 7 complex on 320^2, fft",
    "cnn3": "64 x 64 x 3 x 3 on 8 x 64 x 128^2, fft",
}


def arrays(case, real_name, seed=0):
    """The case's input and weight, in ``real_name``'s dtype (its complex one if complex)."""
    _, _, x_shape, w_shape, *_, is_complex, _ = case
    dtype = np.dtype(real_name)
    rng = np.random.default_rng(seed)

    def draw(shape):
        a = rng.standard_normal(shape, dtype=dtype)
        if is_complex:
            a = a + 1j * rng.standard_normal(shape, dtype=dtype)
        return a

    return draw(x_shape), draw(w_shape)


def loop_dtype(case, real_name):
    """The dtype the case's compiled loop computes in (the product works on spectra)."""
    real = np.dtype(real_name)
    if case[1] == "product":
        return np.result_type(real, np.complex64).name
    return real.name


def time_case(case, real_name, variants, repeat):
    """Median seconds per call of each variant ("off" or a level), interleaved round by round."""
    _, _, _, _, groups, padding, method, _, transposed_stride = case
    x, w = arrays(case, real_name)

    def call():
        if transposed_stride:
            specconv.conv_transpose(x, w, stride=transposed_stride, groups=groups, method=method)
        else:
            specconv.conv(x, w, groups=groups, padding=padding, method=method)

    times = {v: [] for v in variants}
    for v in variants:  # warm-up: plans, kernel spectra, first touch of the output
        _compiled.select(v)
        call()
    for _ in range(repeat):
        for v in variants:
            _compiled.select(v)
            t0 = time.perf_counter()
            call()
            times[v].append(time.perf_counter() - t0)
    return {v: statistics.median(t) for v, t in times.items()}


def table(rows, variants):
    """The results as a markdown table: ms per variant, and off ÷ level per level."""
    levels = [v for v in variants if v != "off"]
    head = ["case", "loop", "dtype", *(f"{v} ms" for v in variants), *(f"off/{v}" for v in levels)]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for case, dtype, med in rows:
        cells = [case[0], case[1], dtype] + [f"{med[v] * 1e3:.1f}" for v in variants]
        cells += [
            f"{med['off'] / med[v]:.2f}" + ("" if med["off"] >= med[v] else " ✗") for v in levels
        ]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--cases",
        default=",".join(c[0] for c in CASES),
        help="comma-separated case names: " + ", ".join(c[0] for c in CASES),
    )
    p.add_argument(
        "--dtypes",
        default="float32,float64",
        help="real dtypes; complex cases use the matching complex one",
    )
    p.add_argument("--repeat", type=int, default=5, help="timed rounds after the warm-up")
    p.add_argument(
        "--levels",
        help="comma-separated levels to time (default: every one "
        "this CPU runs); 'off' is always timed",
    )
    args = p.parse_args(argv)
    known = {c[0]: c for c in CASES}
    names = [n.strip() for n in args.cases.split(",") if n.strip()]
    for n in names:
        if n not in known:
            p.error(f"unknown case {n!r}; choose among {', '.join(known)}")
    args.cases = [known[n] for n in names]
    args.dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    for d in args.dtypes:
        if d not in ("float32", "float64"):
            p.error(f"--dtypes takes float32 and float64, got {d!r}")
    levels = (
        _compiled.levels()
        if args.levels is None
        else [v.strip() for v in args.levels.split(",") if v.strip() and v.strip() != "off"]
    )
    for v in levels:
        if v not in _compiled.levels():
            p.error(f"level {v!r} does not run here; this CPU runs {_compiled.levels()}")
    args.variants = ["off", *levels]
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    selected = _compiled.level
    print(
        _machine.header(
            timing=f"medians of {args.repeat} interleaved rounds after a warm-up; "
            "whole specconv.conv calls"
        )
    )
    print()
    rows = []
    for case in args.cases:
        for d in args.dtypes:
            med = time_case(case, d, args.variants, args.repeat)
            rows.append((case, loop_dtype(case, d), med))
            print(
                f"{case[0]} {d}: " + ", ".join(f"{v} {t * 1e3:.1f} ms" for v, t in med.items()),
                file=sys.stderr,
                flush=True,
            )
    _compiled.select(selected or "off")
    print(table(rows, args.variants))
    print()
    print("Cases: " + "; ".join(f"{c[0]} = {TITLES[c[0]]}" for c in args.cases) + ".")
    return 0


if __name__ == "__main__":
    sys.exit(main())
