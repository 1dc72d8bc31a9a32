"""The machine a benchmark ran on, in one line every script prints above its tables.

A timing means little without the CPU it came from: the same commit met 19 of 19 float32
targets on one CPU and 12 on another of the same kind (issue 18). Every table names the CPU model, specconv's
compiled level, the BLAS and FFTW builds and the thread counts; ``describe()`` gathers them
and ``header()`` writes them out.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path


def cpu_model():
    """The CPU's model name, with family/model/stepping where the name is vague (Linux)."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break  # the first processor is enough
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        fields = {}
    name = fields.get("model name")
    if name:
        ident = [f"{k} {fields[k]}" for k in ("cpu family", "model", "stepping") if k in fields]
        return f"{name} ({', '.join(ident)})" if ident else name
    if platform.system() == "Darwin":
        try:
            return subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            pass
    return platform.processor() or platform.machine()


def isa_flags():
    """The vector extensions the CPU reports, among those specconv's levels use."""
    wanted = ("avx512f", "avx512vl", "avx512bw", "avx512dq", "avx2", "fma", "asimd", "sve")
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    have = set(line.partition(":")[2].split())
                    return [w for w in wanted if w in have]
    except OSError:
        pass
    return []


def cores():
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def blas():
    """The BLAS libraries loaded (numpy's first): implementation, version, CPU kernels and
    threads, each with the package that ships it (threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown"
    found = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    found.sort(key=lambda p: "numpy" not in str(p.get("filepath")))
    described = []
    for p in found:
        path = Path(str(p.get("filepath")))
        owner = next(
            (part.split(".")[0] for part in path.parts if part.endswith(".libs")), path.parent.name
        )
        arch = f", {p['architecture']} kernels" if p.get("architecture") else ""
        described.append(
            f"{p.get('internal_api')} {p.get('version')} ({owner}, "
            f"{p.get('num_threads')} threads{arch})"
        )
    return "; ".join(described) or "unknown"


def commit():
    """The short commit of the working tree the benchmarks ran from, or "?"."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent,
            check=False,
        )
        return out.stdout.strip() or "?"
    except OSError:
        return "?"


def describe(**extra):
    """Everything a table needs to name its machine, as (key, value) pairs in print order.

    ``extra`` adds the script's own settings (malloc, peers' thread counts, ...).
    """
    import numpy as np

    import specconv
    from specconv import _compiled, fft

    level = _compiled.level or "off (numpy/BLAS path)"
    forced = os.environ.get(_compiled.ENVIRONMENT)
    rows = [
        ("date", time.strftime("%Y-%m-%d %H:%M")),
        ("commit", commit()),
        ("CPU", cpu_model()),
        ("ISA", " ".join(isa_flags()) or "?"),
        ("cores", str(cores())),
        (
            "compiled level",
            f"{level}"
            + (f" ({_compiled.ENVIRONMENT}={forced})" if forced else "")
            + f"; this CPU runs {', '.join(_compiled.levels()) or 'none'}",
        ),
        ("specconv threads", str(specconv.get_num_threads())),
        ("numpy", np.__version__),
        ("BLAS", blas()),
        ("FFTW", fft.fftw_version()),
    ]
    rows += [(k.replace("_", " "), str(v)) for k, v in extra.items()]
    return rows


def header(**extra):
    """:func:`describe` as text lines for a terminal or a markdown paragraph."""
    return "\n".join(f"{k}: {v}" for k, v in describe(**extra))


def markdown(**extra):
    """:func:`describe` as one markdown sentence (for tables written to RESULTS.md)."""
    return "; ".join(f"{k} {v}" for k, v in describe(**extra)) + "."
