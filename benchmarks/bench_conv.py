"""Time specconv.conv against its peers on the workloads of issue 2 (section 7).

    python benchmarks/bench_conv.py [--workloads W1,W4-k7] [--dtypes float64,float32]
                                    [--repeat 5] [--quick] [--markdown OUT.md]

Everything a row reports is the median of ``--repeat`` calls after one warm-up call, all in
this process, except two lines run in fresh subprocesses: the "ideal" (so its FFTW_MEASURE
wisdom never reaches specconv) and the first-call time (cold caches, empty wisdom directory).
See benchmarks/README.md for what each peer computes and how.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import itertools
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# The harness modules beside this file, and the checkout's specconv (before an installed one).
sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
import _machine  # noqa: E402
import ideal  # noqa: E402
import workloads  # noqa: E402

SPECCONV_METHODS = ("auto", "fft", "direct")


_T0 = time.perf_counter()


def log(msg):
    print(f"[{time.perf_counter() - _T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


# -- timing ----------------------------------------------------------------------------------


def measure(fn, repeat, max_seconds):
    """(median seconds, number of timed calls, output of the warm-up call).

    Slow calls get fewer repeats so one row stays within about ``max_seconds``; a warm-up
    slower than that is reported as is (n=0) rather than repeated.
    """
    gc.collect()
    t0 = time.perf_counter()
    out = fn()
    warm = time.perf_counter() - t0
    if warm > max_seconds:
        return warm, 0, out
    n = min(repeat, max(1, int(max_seconds // max(warm, 1e-9))))
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), n, out


class Allocator:
    """With ``--malloc keep``: glibc's malloc set to keep freed memory for reuse, so every row is
    timed at steady state. The default is the C library's own settings, as a user's process has.

    With glibc's defaults an array above 32 MiB is a fresh ``mmap`` on every call, and each of
    its 4 KiB pages faults on first touch. torch's depthwise conv on W4 allocates three 34 MB
    arrays per call: on this VM the faults added 5-25 ms, varying from run to run, to about
    8 ms of compute (float32). Timing the allocator that way would measure the VM, not the
    method. Arrays above 256 MiB are still mapped afresh (and returned when freed): kept up
    to 1 GiB, torch's float64 probe on W1b held 24 GB and the run was killed for lack of
    memory. ``trim()`` before each row hands the kept memory back, so the row's warm-up call
    faults its own memory in and ``peak mem`` still counts it. A no-op on other C libraries,
    and with ``--malloc default`` (the default).
    """

    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # from glibc's malloc.h

    def __init__(self, keep):
        self.libc = None
        if keep and platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
            libc = ctypes.CDLL("libc.so.6")
            if libc.mallopt(self.M_MMAP_THRESHOLD, 2**28) and libc.mallopt(
                self.M_TRIM_THRESHOLD, 2**31 - 1
            ):
                self.libc = libc

    @property
    def keeps_memory(self):
        return self.libc is not None

    def trim(self):
        if self.libc is not None:
            self.libc.malloc_trim(0)


class PeakMemory:
    """Peak resident memory above the starting point, from Linux's VmHWM (reset via clear_refs).

    ``extra`` is None where /proc does not allow resetting the high-water mark.
    """

    def __enter__(self):
        self.extra = None
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.start = self._read("VmRSS")
        except OSError:
            self.start = None
        return self

    def __exit__(self, *exc):
        if self.start is not None:
            self.extra = max(0, self._read("VmHWM") - self.start)

    @staticmethod
    def _read(field):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        raise OSError(field)


def truncated(wl, x, n_out):
    """``x`` cut along its last axis so the layer's output there has ``n_out`` samples."""
    lo, hi = wl.pads()[-1]
    return x[..., : max(1, n_out + wl.kernel[-1] - 1 - lo - hi)]


def estimate_direct(fn, wl, x, max_seconds, trim, probe_flops=5e8, threshold_flops=1e8):
    """(seconds, bytes) ``fn`` would take on the whole input; None when obviously cheap.

    Direct methods cost time and scratch memory (torch float64 builds im2col columns of
    C_in * kernel * output values) roughly in proportion to the output length, so run them on
    a shortened signal and scale. Small slices sit in cache and flatter the method (measured:
    10x for specconv's direct path on a long 1-D kernel), so the slice grows 4x at a time until
    one run takes a tenth of ``max_seconds`` or the slice is a quarter of the signal; it stops
    as soon as an estimate exceeds ``max_seconds``. Each size's time is the fastest of a few
    runs (a busy machine makes single runs spike); its memory that of the first run, after
    ``trim()`` has returned kept memory (see ``Allocator``).
    """
    flops = wl.direct_flops()
    if flops < threshold_flops:
        return None
    n_full = wl.out_spatial()[-1]
    n_out = max(1, math.ceil(n_full * min(probe_flops, flops / 20) / flops))
    while True:
        xs = truncated(wl, x, n_out)
        trim()
        with PeakMemory() as mem:  # one call: kept memory would grow over repeats by fragmentation
            fn(xs)
        seconds = math.inf
        for _ in range(3):
            t0 = time.perf_counter()
            fn(xs)
            seconds = min(seconds, time.perf_counter() - t0)
        scale = n_full / n_out
        est = (seconds * scale, None if mem.extra is None else mem.extra * scale)
        if est[0] > max_seconds or seconds > max_seconds / 10 or 4 * n_out > n_full / 4:
            return est
        n_out *= 4


def rel_err(y, ref):
    if y.shape != ref.shape:
        return float("inf")
    return float(np.max(np.abs(y - ref)) / max(np.max(np.abs(ref)), np.finfo(np.float64).tiny))


def tolerance(dtype):
    return 1e-4 if np.dtype(dtype) in (np.float32, np.complex64) else 1e-9


# -- specconv --------------------------------------------------------------------------------


def specconv_conv():
    """(specconv.conv or None, why not)."""
    try:
        import specconv
    except ImportError as exc:
        return None, f"specconv not importable ({exc})"
    conv = getattr(specconv, "conv", None)
    return (conv, "") if conv is not None else (None, "specconv.conv not available yet")


def specconv_fn(conv, wl, w, method):
    return lambda x: conv(x, w, padding=wl.padding, groups=wl.groups, method=method)


def fresh_weights_fn(conv, wl, w, copies):
    """``conv`` auto with a weight of new contents on every call (1 ulp apart in one tap).

    specconv's functions reuse kernel spectra when called again with equal weights (keyed on
    their contents); this row shows the cost when every call brings new weights.
    """
    ws = []
    for k in range(copies):
        wk = w.copy()
        flat = wk.reshape(-1).view(wk.real.dtype)  # complex: nudge a real part
        for _ in range(k):
            flat[0] = np.nextafter(flat[0], np.inf)
        ws.append(wk)
    calls = itertools.count()
    return lambda x: conv(x, ws[next(calls) % copies], padding=wl.padding, groups=wl.groups)


# -- subprocess children ---------------------------------------------------------------------


def run_child(kind, payload, env=None, timeout=1800):
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind, json.dumps(payload)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-3:]
        raise RuntimeError(f"{kind} child failed: " + " | ".join(tail))
    return json.loads(proc.stdout.strip().splitlines()[-1])


def child_main(kind, payload):
    p = json.loads(payload)
    wl = workloads.by_name(p["workload"], quick=p["quick"])
    if kind == "ideal":
        result = ideal.run(wl, p["dtype"], p["tile"], p["repeat"], p["threads"], p["plan_limit"])
    elif kind == "first":
        conv, why = specconv_conv()
        if conv is None:
            raise SystemExit(why)
        x, w = wl.make(p["dtype"], p["seed"])
        fn = specconv_fn(conv, wl, w, "auto")
        t0 = time.perf_counter()
        fn(x)
        first = time.perf_counter() - t0
        times = []
        for _ in range(p["repeat"]):
            t0 = time.perf_counter()
            fn(x)
            times.append(time.perf_counter() - t0)
        result = dict(first=first, warm=float(np.median(times)))
    else:
        raise SystemExit(f"unknown child {kind!r}")
    print(json.dumps(result))


# -- one workload and dtype ------------------------------------------------------------------


def bench_case(wl, dtype_name, args, conv, conv_why, subprocesses=True):
    import peers as peers_mod  # imports scipy.signal: only here, so the children start faster

    tag = f"[{wl.name} {dtype_name}]"
    x, w = wl.make(dtype_name, args.seed)
    rows, ref, ref_name = [], None, None
    tol = tolerance(x.dtype)

    def record(name, fn, note="", estimate=None):
        nonlocal ref, ref_name
        row = dict(name=name, seconds=None, status="", note=note, n=0, err=None, mem=None)
        rows.append(row)
        if estimate is not None:
            try:
                est_s, est_b = estimate() or (None, None)
            except Exception as exc:
                row["status"] = f"error: {type(exc).__name__}: {exc}"
                log(f"{tag} {name}: {row['status']}")
                return None
            if est_s is not None and est_s > args.max_seconds:
                row["status"] = f"skipped (est. {est_s:.0f} s)"
            elif est_b is not None and est_b > args.peer_mem_gb * 2**30:
                row["status"] = f"skipped (est. {est_b / 2**30:.0f} GB)"
            if row["status"]:
                log(f"{tag} {name}: {row['status']}")
                return None
        log(f"{tag} {name} ...")
        args.allocator.trim()
        try:
            with PeakMemory() as mem:
                row["seconds"], row["n"], y = measure(lambda: fn(x), args.repeat, args.max_seconds)
            row["mem"] = mem.extra
        except MemoryError:
            row["status"] = "error: out of memory"
            log(f"{tag} {name}: {row['status']}")
            return None
        except Exception as exc:
            row["status"] = f"error: {type(exc).__name__}: {exc}"
            log(f"{tag} {name}: {row['status']}")
            return None
        if ref is None:
            ref, ref_name = y, name
        else:
            row["err"] = rel_err(y, ref)
            if not row["err"] <= tol:
                # peers agreeing with each other but not with specconv point at specconv
                row["status"] = f"DISAGREES with {ref_name} (tolerance {tol:g})"
        log(
            f"{tag} {name}: {fmt_time(row['seconds'])} (n={row['n']})"
            + (f", rel err {row['err']:.1e}" if row["err"] is not None else "")
        )
        return row

    for method in SPECCONV_METHODS:
        name = f"specconv {method}"
        if conv is None:
            rows.append(
                dict(
                    name=name,
                    seconds=None,
                    status=f"n/a ({conv_why})",
                    note="",
                    n=0,
                    err=None,
                    mem=None,
                )
            )
            continue
        fn = specconv_fn(conv, wl, w, method)
        est = (
            (lambda fn=fn: estimate_direct(fn, wl, x, args.max_seconds, args.allocator.trim))
            if method == "direct"
            else None
        )
        record(name, fn, estimate=est)
    if conv is not None:
        record(
            "specconv auto, new weights",
            fresh_weights_fn(conv, wl, w, args.repeat + 10),
            note="kernel spectra computed in every call",
        )
    layer_cls = getattr(sys.modules.get("specconv"), "SpectralConv", None)
    if conv is not None and layer_cls is not None:
        # not a ratio row: shows what applying one layer to many signals costs (spectra cached)
        layer = layer_cls(w, padding=wl.padding, groups=wl.groups)
        record("SpectralConv layer, auto", layer, note="kernel spectra cached after the warm-up")

    peer_list, missing = peers_mod.build(
        wl, w, args.peer_mem_gb * 2**30, args.scipy_workers, args.mne_jobs
    )
    for peer in peer_list:
        if peer.probe == "truncate":
            est = lambda peer=peer: estimate_direct(
                peer.fn, wl, x, args.max_seconds, args.allocator.trim
            )
        elif peer.probe == "pairs":
            est = lambda peer=peer: (peers_mod.estimate_pairs(peer, x), None)
        else:
            est = None
        record(peer.name, peer.fn, note=peer.note, estimate=est)
    for name, why in missing:
        rows.append(
            dict(name=name, seconds=None, status=f"n/a: {why}", note="", n=0, err=None, mem=None)
        )
    ref = None  # the reference output can be large; drop it before the subprocesses run

    case = dict(
        workload=wl.name,
        title=wl.describe(),
        dtype=dtype_name,
        target=wl.target,
        rows=rows,
        ref=ref_name,
        ideal=None,
        first=None,
    )

    if subprocesses and not args.no_ideal:
        tile, why = ideal.choose_tile(wl, x, w, args.ideal_mem_gb * 2**30)
        if tile is None:
            case["ideal"] = dict(error=f"no tile fits {args.ideal_mem_gb} GB")
        else:
            log(f"{tag} ideal, tile {tile} ({why}) ...")
            payload = dict(
                workload=wl.name,
                quick=args.quick,
                dtype=dtype_name,
                tile=list(tile),
                repeat=args.repeat,
                threads=int(os.environ.get("SPECCONV_NUM_THREADS", os.cpu_count())),
                plan_limit=args.ideal_plan_limit,
            )
            try:
                case["ideal"] = dict(run_child("ideal", payload), source=why)
                log(f"{tag} ideal: {fmt_time(case['ideal']['total'])}")
            except Exception as exc:
                case["ideal"] = dict(error=str(exc), source=why)
                log(f"{tag} ideal: {exc}")

    if subprocesses and not args.no_first_call and conv is not None:
        log(f"{tag} first call in a fresh process ...")
        with tempfile.TemporaryDirectory(prefix="specconv-bench-cache-") as cache:
            env = dict(os.environ, SPECCONV_CACHE_DIR=cache)
            payload = dict(
                workload=wl.name,
                quick=args.quick,
                dtype=dtype_name,
                repeat=args.repeat,
                seed=args.seed,
            )
            try:
                case["first"] = run_child("first", payload, env=env)
                log(
                    f"{tag} first call {case['first']['first']:.3f} s, warm {case['first']['warm']:.3f} s"
                )
            except Exception as exc:
                case["first"] = dict(error=str(exc))
                log(f"{tag} first call: {exc}")
    peaks = [r["mem"] for r in rows if r["mem"] is not None]
    if peaks:
        log(f"{tag} largest row peak memory {max(peaks) / 2**30:.2f} GB above its start")
    return case


# -- reporting -------------------------------------------------------------------------------


def fmt_time(seconds):
    if seconds is None:
        return "—"
    ms = seconds * 1e3
    return f"{ms:.0f} ms" if ms >= 100 else f"{ms:.1f} ms" if ms >= 10 else f"{ms:.2f} ms"


def fmt_ratio(r):
    return "—" if r is None else f"{r:.2f}×"


def summarize(case):
    """The figures the issue's targets are about, derived from a case's rows."""
    by = {r["name"]: r for r in case["rows"]}
    auto, fft, fresh = (
        by.get(k, {}).get("seconds")
        for k in ("specconv auto", "specconv fft", "specconv auto, new weights")
    )
    timed_peers = [
        r
        for r in case["rows"]
        if not r["name"].lower().startswith(("specconv", "spectralconv"))
        and r["seconds"] is not None
    ]
    fastest = min(timed_peers, key=lambda r: r["seconds"], default=None)
    ideal_t = (case["ideal"] or {}).get("total")
    first = case["first"] or {}
    return dict(
        auto=auto,
        fft=fft,
        fastest=fastest,
        auto_mem=by.get("specconv auto", {}).get("mem"),
        ratio=fastest["seconds"] / auto if fastest and auto else None,
        fresh=fresh,
        fresh_ratio=fastest["seconds"] / fresh if fastest and fresh else None,
        ideal=ideal_t,
        of_ideal=ideal_t / fft if ideal_t and fft else None,
        first_over=first["first"] - first["warm"] if "first" in first else None,
    )


def print_case(case):
    s = summarize(case)
    target = f"target ≥ {case['target']}×" if case["target"] else ""
    print(f"\n== {case['workload']} {case['title']} — {case['dtype']} — {target}")
    print(
        f"   {'method':<40} {'median':>12} {'peer/auto':>10} {'rel err':>9} {'peak mem':>9}  note"
    )
    for r in case["rows"]:
        t = fmt_time(r["seconds"]) if r["seconds"] is not None else r["status"]
        ratio = fmt_ratio(r["seconds"] / s["auto"]) if r["seconds"] and s["auto"] else ""
        err = (
            f"{r['err']:.1e}"
            if r["err"] is not None
            else ("ref" if r["name"] == case["ref"] else "")
        )
        how = (
            f"n={r['n']}"
            if r["n"]
            else "one cold call (slower than --max-seconds)"
            if r["seconds"]
            else ""
        )
        note = ", ".join(t for t in (r["note"], how) if t)
        flag = f"  {r['status']}" if r["seconds"] is not None and r["status"] else ""
        mem = f"{r['mem'] / 2**30:.2f} GB" if r["mem"] is not None else ""
        print(f"   {r['name']:<40} {t:>12} {ratio:>10} {err:>9} {mem:>9}  {note}{flag}")
    ide = case["ideal"]
    if ide is not None:
        if "error" in ide:
            print(f"   {'ideal':<40} {'error':>12}  {ide['error']}")
        else:
            parts = f"fwd {fmt_time(ide['fwd'])} + product {fmt_time(ide['mm'])} + inv {fmt_time(ide['inv'])}"
            print(
                f"   {'ideal':<40} {fmt_time(ide['total']):>12} {'':>10} {'':>9} {'':>9}  {parts}; "
                f"tile {tuple(ide['tile'])} x {ide['cols']} cols, {ide['source']}; "
                f"{ide['planner']} planning {ide['plan_seconds']:.1f} s"
            )
    first = case["first"]
    if first is not None:
        if "error" in first:
            print(f"   {'first call (auto)':<40} {'error':>12}  {first['error']}")
        else:
            print(
                f"   {'first call (auto)':<40} {first['first'] * 1e3:>9.0f} ms {'':>10} {'':>9} {'':>9}  "
                f"warm {fmt_time(first['warm'])} in that process; first − warm = {first['first'] - first['warm']:.2f} s"
            )
    fp = s["fastest"]
    line = (
        f"   => fastest peer: {fp['name']} {fmt_time(fp['seconds'])}" if fp else "   => no peer ran"
    )
    if s["ratio"] is not None:
        verdict = (
            "" if not case["target"] else (" met" if s["ratio"] >= case["target"] else " MISSED")
        )
        line += f"; ratio fastest/auto {s['ratio']:.2f}× ({target}{verdict})"
    if s["fresh_ratio"] is not None:
        line += f"; with new weights each call {s['fresh_ratio']:.2f}×"
    if s["of_ideal"] is not None:
        line += (
            f"; fft reaches {s['of_ideal']:.2f} of the ideal (fft/ideal = {1 / s['of_ideal']:.2f})"
        )
    print(line, flush=True)


COLUMNS = [  # (markdown header, how a row name maps to it)
    ("auto", lambda n: n == "specconv auto"),
    ("fft", lambda n: n == "specconv fft"),
    ("direct", lambda n: n == "specconv direct"),
    ("auto, new weights", lambda n: n == "specconv auto, new weights"),
    ("layer", lambda n: n.startswith("SpectralConv")),
    ("torch", lambda n: n.startswith("torch")),
    ("fftconvolve bcast", lambda n: n.startswith("scipy fftconvolve bcast")),
    ("oaconvolve bcast", lambda n: n.startswith("scipy oaconvolve bcast")),
    ("oaconvolve loop", lambda n: n.startswith("scipy oaconvolve per")),
    ("MNE", lambda n: n.startswith("MNE")),
]


def _cell(row):
    if row is None:
        return ""
    if row["seconds"] is not None:
        return f"{row['seconds'] * 1e3:.4g}" + (" ⚠" if row["status"] else "")
    st = row["status"]
    return (
        st.replace("skipped ", "skip ")
        if st.startswith("skipped")
        else ("n/a" if st.startswith("n/a") else "error")
    )


def machine_lines(args):
    """The machine, the compiled level and every thread count, for the header of each output."""
    cores = _machine.cores()
    return _machine.describe(
        malloc="kept for reuse (--malloc keep)"
        if args.allocator.keeps_memory
        else "C library defaults",
        peer_threads=f"torch {cores}; scipy.fft workers {' and '.join(map(str, args.scipy_workers or (1, cores)))}"
        f" (each a row, the faster counts); MNE n_jobs "
        f"{' and '.join(map(str, args.mne_jobs or (1, cores)))}",
    )


def markdown(cases, argv, args):
    out = [
        "## Benchmark results",
        "",
        f"`python benchmarks/bench_conv.py {shlex.join(argv)}`; "
        + "; ".join(f"{k} {v}" for k, v in machine_lines(args))
        + ". Other versions: "
        + ", ".join(_versions())
        + ". "
        "Medians after one warm-up call; times in ms. ratio = fastest peer ÷ specconv auto "
        "(same weights every call, as the peers get: specconv reuses their kernel spectra); "
        "new-w ratio = the same with new weights in every call (spectra recomputed); "
        "of ideal = ideal ÷ specconv fft; first − warm in a fresh process with an empty wisdom cache; "
        "peak mem = resident memory above the pre-call level, output included. "
        "Peers with several thread counts show the faster. "
        "See benchmarks/README.md for what each peer computes.",
        "",
        "| workload | dtype | auto ms | fastest peer | ratio | target | new-w ratio | fft ms | ideal ms | of ideal | first − warm | auto peak mem |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cases:
        s = summarize(c)
        fp = s["fastest"]
        ok = (
            ""
            if s["ratio"] is None or not c["target"]
            else (" ✓" if s["ratio"] >= c["target"] else " ✗")
        )
        out.append(
            "| "
            + " | ".join(
                [
                    c["workload"],
                    c["dtype"],
                    f"{s['auto'] * 1e3:.4g}" if s["auto"] else "—",
                    f"{fp['name']} {fp['seconds'] * 1e3:.4g}" if fp else "—",
                    fmt_ratio(s["ratio"]) + ok,
                    f"≥ {c['target']}×" if c["target"] else "",
                    fmt_ratio(s["fresh_ratio"]),
                    f"{s['fft'] * 1e3:.4g}" if s["fft"] else "—",
                    f"{s['ideal'] * 1e3:.4g}" if s["ideal"] else "—",
                    f"{s['of_ideal']:.2f}" if s["of_ideal"] else "—",
                    f"{s['first_over']:.2f} s" if s["first_over"] is not None else "—",
                    f"{s['auto_mem'] / 2**30:.2f} GB" if s["auto_mem"] is not None else "—",
                ]
            )
            + " |"
        )
    out += [
        "",
        "All timings (ms; `skip (est. N s)` = not run, estimated above the time limit):",
        "",
        "| workload | dtype | " + " | ".join(h for h, _ in COLUMNS) + " | ideal |",
        "|---|---|" + "---|" * (len(COLUMNS) + 1),
    ]
    for c in cases:
        cells = []
        for _, match in COLUMNS:  # several thread counts of one peer: the fastest
            rows = [r for r in c["rows"] if match(r["name"])]
            timed = [r for r in rows if r["seconds"] is not None]
            cells.append(
                _cell(
                    min(timed, key=lambda r: r["seconds"]) if timed else rows[0] if rows else None
                )
            )
        ide = (c["ideal"] or {}).get("total")
        cells.append(f"{ide * 1e3:.4g}" if ide else "—")
        out.append(f"| {c['workload']} | {c['dtype']} | " + " | ".join(cells) + " |")
    out += [
        "",
        "Workloads: "
        + "; ".join(
            f"{c['workload']} = {c['title']}"
            for c in cases[:: max(1, len(set(x["dtype"] for x in cases)))]
        ),
        "",
    ]
    return "\n".join(out)


# -- main ------------------------------------------------------------------------------------


def _versions():
    versions = []
    for mod in ("scipy", "torch", "mne"):
        try:
            versions.append(f"{mod} {__import__(mod).__version__}")
        except ImportError:
            pass
    return versions


def _counts(text):
    counts = [int(t) for t in text.split(",") if t.strip()]
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"positive integers separated by commas, got {text!r}")
    return counts


def parse_args(argv):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--workloads", help="comma-separated name prefixes, e.g. W1,W3b,W4-k7 (default: all)"
    )
    p.add_argument(
        "--dtypes",
        default="float64,float32",
        help="real dtypes; complex workloads use the matching complex",
    )
    p.add_argument(
        "--repeat", type=int, help="timed calls per row after one warm-up (default 5, --quick 2)"
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="shrunk workloads for smoke-testing the harness (< 1 min)",
    )
    p.add_argument("--markdown", type=Path, help="write the result tables as markdown to this file")
    p.add_argument(
        "--max-seconds",
        type=float,
        help="skip rows estimated slower than this per call (default 60, --quick 1)",
    )
    p.add_argument(
        "--peer-mem-gb",
        type=float,
        default=6.0,
        help="memory budget (GB) per row: scipy peers are chunked to it, probed direct methods estimated above it are skipped",
    )
    p.add_argument(
        "--ideal-mem-gb", type=float, default=4.0, help="memory budget for the ideal's arrays"
    )
    p.add_argument(
        "--ideal-plan-limit",
        type=float,
        help="FFTW_MEASURE time limit (s) per ideal plan; 0 = FFTW_ESTIMATE (default 30, --quick 0)",
    )
    p.add_argument(
        "--scipy-workers",
        type=_counts,
        help="comma-separated scipy.fft worker counts, each timed as a row of its own "
        "(default: 1 and all cores; the faster counts)",
    )
    p.add_argument(
        "--mne-jobs",
        type=_counts,
        help="comma-separated MNE n_jobs values (default: 1 and all cores)",
    )
    p.add_argument("--no-ideal", action="store_true", help="skip the ideal line")
    p.add_argument("--no-first-call", action="store_true", help="skip the first-call subprocess")
    p.add_argument(
        "--malloc",
        choices=("default", "keep"),
        default="default",
        help="default: the C library's own settings, as in a user's process (default); "
        "keep: glibc keeps freed memory, so no row pays page faults for fresh "
        "large arrays on every call",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--child", nargs=2, metavar=("KIND", "JSON"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for name, full, quick in (
        ("repeat", 5, 2),
        ("max_seconds", 60.0, 1.0),
        ("ideal_plan_limit", 30.0, 0.0),
    ):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.child:
        return child_main(*args.child)
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    bad = [d for d in dtypes if d not in ("float32", "float64")]
    if bad:
        raise SystemExit(f"--dtypes: allowed values are float32 and float64, got {bad}")
    chosen = workloads.select(args.workloads, quick=args.quick)
    args.allocator = Allocator(keep=args.malloc == "keep")
    log(
        "malloc: freed memory kept for reuse"
        if args.allocator.keeps_memory
        else "malloc: C library defaults"
    )
    conv, why = specconv_conv()
    if conv is None:
        log(f"specconv rows disabled: {why}")
    print("\n".join(f"{k}: {v}" for k, v in machine_lines(args)), flush=True)
    start = time.perf_counter()
    cases = []
    for wl in chosen:
        for i, dt in enumerate(dtypes):
            # --quick: the subprocess lines (ideal, first call) for the first dtype only, for time
            cases.append(bench_case(wl, dt, args, conv, why, subprocesses=not (args.quick and i)))
            print_case(cases[-1])
    log(f"done in {time.perf_counter() - start:.0f} s")
    if args.markdown:
        args.markdown.write_text(markdown(cases, argv, args))
        log(f"wrote {args.markdown}")


if __name__ == "__main__":
    main()
