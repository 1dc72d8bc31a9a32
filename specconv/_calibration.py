"""The cost model's machine constants, measured on the machine at hand and kept (like FFTW's
wisdom).

``method="auto"`` prices each method with seconds per operation (:class:`Constants`).
Shipped numbers come from one development machine; another CPU, BLAS or thread count can
reverse a choice. So the first time the model needs the constants of a precision (single or
double) at a thread count, this module times small kernels shaped like the engine's own work
-- a batch of real FFTs, the tile copies, the per-frequency product (BLAS, elementwise and
compiled), the direct method's 1 × 1 GEMM, depthwise loops and slabs -- fits the model's
constants to them, and stores them. That takes about 0.4-0.7 s per precision on a 2-core
machine, once: every later process reads the file.

The same measurement decides, per compiled loop and dtype, whether specconv's compiled loops
(``_simd.c``) beat the numpy/BLAS code they replace here; a loop that loses is switched off
(``_compiled.losing``) on every call path.

Storage: ``calibration-<digest>.json`` in specconv's cache directory (``SPECCONV_CACHE_DIR``,
default ``~/.cache/specconv``), one file per CPU (model name and ISA flags), thread count and
versions of specconv, its compiled loops, numpy, BLAS and FFTW; the digest names that key,
which the file also holds. Plain JSON, written to a temporary file and renamed into place,
under a lock file so that processes starting together measure once; a file that does not
parse, holds other keys or impossible values is ignored with a ``RuntimeWarning`` naming it
and measured again.

Environment variables
---------------------
SPECCONV_CALIBRATE
    ``0`` (or ``off``, ``false``, ``no``): measure nothing, read nothing; the shipped constants
    are used and every compiled loop runs. ``specconv calibrate`` measures again and prints
    the constants next to the shipped ones.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import platform
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import _compiled, fft
from ._atomic import atomic_output

logger = logging.getLogger("specconv")

ENV = "SPECCONV_CALIBRATE"
FORMAT = "specconv-calibration"
VERSION = 1
PRECISIONS = ("single", "double")
LOOPS = ("depthwise", "product")

#: Measured constants may differ from the shipped ones by at most this factor either way; a
#: fit beyond it is noise (a busy machine, a kernel that stayed in cache), not the machine.
MAX_FACTOR = 30.0

#: Seconds one precision's measurement may take before the remaining kernels are skipped
#: (their constants then scale with the others, see :func:`measure`).
BUDGET = 1.5

#: How many times :func:`measure` ran in this process (the tests check that a stored file is
#: reused without measuring).
measure_count = 0
#: ``measure(prec, threads) -> entry``: :mod:`specconv._measure` registers it when imported
#: (it times the engine and the direct method, which sit above this module)
measurer: Callable[[str, int], dict[str, Any]] | None = None

_lock = threading.RLock()
_cache: dict[tuple[str, int], dict[str, Any]] = {}  # (precision, threads) -> entry (see measure)


@dataclass(frozen=True)
class Constants:
    """Seconds per operation of one precision at one thread count (see the module docstring).

    Measured for double precision on the development machine with two threads; the shipped
    single-precision ones take half for the direct method's taps, copies and GEMMs.
    """

    T_FFT: float = 8.1e-11  # real FFT, per L·log2(L) point (complex: x2)
    T_COPY: float = 3.2e-10  # gather/scatter, per sample and channel
    T_CMAC_MATMUL: float = 7.9e-11  # complex multiply-add inside a batched BLAS matmul
    T_CMAC_ELEMENTWISE: float = 4.8e-10  # complex multiply-add as a numpy elementwise product
    # the compiled product: the BLAS rate scaled by a chunk's compiled product over its BLAS
    # matmul with the transposes around it, which the model leaves out
    T_CMAC_COMPILED: float = 6e-11
    T_MAC_DIRECT: float = 2.1e-11  # real multiply-add in a 1 x 1 kernel's GEMM
    T_DEPTHWISE_TAP: float = 1.9e-10  # one tap at one sample of the numpy depthwise loops' grid
    # the compiled depthwise loops: one tap at one output sample, and copying the input in and
    # the output out, per output sample (small images, which stay in cache, take half)
    T_COMPILED_TAP: float = 1.9e-11
    T_COMPILED_SAMPLE: float = 4.8e-10
    # the direct method's slabs: a real multiply-add in their single-threaded GEMMs (on two
    # workers), a sample copied or accumulated, a numpy call
    T_MAC_SLAB: float = 1.7e-11
    T_SLAB_SAMPLE: float = 4.0e-10
    T_CALL: float = 2e-6
    T_CHUNK: float = 5e-5  # per chunk of tiles beyond its work: python, plans and calls
    # per row of a tile of one channel (a run along the last axis) beyond its points: the
    # transforms' and the strided copies' own overhead, which small tiles pay many times
    T_ROW: float = 1.5e-8
    # per call of each method beyond its work: validation, the choice, handing out the threads
    T_FFT_CALL: float = 1.5e-4
    T_DIRECT_CALL: float = 8e-5
    # one pass of the stride's spectrum folding, per complex output frequency (a lower bound:
    # dense layers folded slower still)
    T_FOLD: float = 5e-10
    # the kernel spectra, per point of a kernel zero-padded to the tile (complex: x2): padding,
    # transform and laying them out for the product, which cost more than the transform
    T_SPECTRA: float = 3.5e-9
    # reading the kernel spectra once more, per byte: every chunk's product streams all of them
    T_SPECTRA_PASS: float = 5e-11
    # ``s``: an axis but the last (strided in memory) whose length takes FFTW more than one
    # codelet costs as many more stages of n log2 n (2-D tiles of 28 or 40 x 72 against 32 x 72)
    STRIDED_PASS: float = 6.0
    # python, reading and hand-over per out-of-core chunk, besides the engine
    T_IO_CHUNK: float = 1e-3
    # the streaming partitioner (``stream.py``), one frame of one level: python and two
    # transform calls
    T_FRAME: float = 3.0e-5


#: The shipped constants per precision ("double": float64/complex128, "single").
SHIPPED = {
    "double": Constants(),
    "single": Constants(
        T_DEPTHWISE_TAP=0.95e-10,
        T_COMPILED_TAP=0.95e-11,
        T_COMPILED_SAMPLE=2.4e-10,
        T_MAC_SLAB=0.85e-11,
        T_SLAB_SAMPLE=2.0e-10,
        T_SPECTRA=1.8e-9,
    ),
}


def enabled():
    """Whether measuring is on (``SPECCONV_CALIBRATE`` is not 0/off/false/no)."""
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "off", "false", "no")


def constants(prec, threads):
    """The measured constants (name -> seconds) of precision ``prec`` on ``threads`` threads:
    read from the calibration file, or measured and stored the first time; ``{}`` when
    measuring is off. Also switches off the compiled loops that lost there."""
    if not enabled():
        return {}
    key = (prec, threads)
    entry = _cache.get(key)
    if entry is None:
        with _lock:
            entry = _cache.get(key)
            if entry is None:
                entry = _cache[key] = _load_or_measure(prec, threads)
                _apply_losing(prec, entry)
    return entry["constants"]


def forget():
    """Drop what this process loaded or measured (the file stays); loops all switched back on."""
    with _lock:
        _cache.clear()
        _compiled.losing.clear()


def recalibrate(precisions=PRECISIONS, threads=None):
    """Measure ``precisions`` again on ``threads`` threads (default: specconv's), store them
    and use them in this process. Returns ``{precision: entry}`` (see :func:`measure`)."""
    threads = threads or fft.get_num_threads()
    path = calibration_path(threads)
    entries = {}
    with _lock:
        for prec in precisions:
            entries[prec] = _measure(prec, threads)
        with _file_lock(path):
            stored = _read(path, threads, warn=False)
            stored.update(entries)
            _write(path, threads, stored)
        for prec, entry in entries.items():
            if enabled():  # else this process keeps the shipped constants, as asked
                _cache[(prec, threads)] = entry
                _apply_losing(prec, entry)
    return entries


# ---------------------------------------------------------------------------------------------
# the file


def _cpu():
    """``(model name, ISA flags)`` of this CPU, as the OS reports them."""
    model = flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                name, _, value = (part.strip() for part in line.partition(":"))
                if name in ("model name", "Model", "Hardware") and not model:
                    model = value
                elif name in ("flags", "Features") and not flags:
                    flags = " ".join(sorted(value.split()))
    except OSError:  # not Linux
        if platform.system() == "Darwin":
            model, flags = (
                _sysctl("machdep.cpu.brand_string"),
                " ".join(
                    _sysctl(k)
                    for k in (
                        "machdep.cpu.features",
                        "machdep.cpu.leaf7_features",
                        "hw.optional.arm64",
                    )
                ),
            )
    return model or platform.processor() or platform.machine(), flags


#: Bytes assumed where the OS does not say how large the last-level cache is.
FALLBACK_CACHE = 8 * 2**20


@functools.lru_cache(maxsize=1)
def last_level_cache():
    """Bytes of this CPU's last-level cache (the one the worker threads share), as the OS
    reports it (Linux sysfs, macOS sysctl); ``FALLBACK_CACHE`` where it does not."""
    found = _sysfs_cache(Path("/sys/devices/system/cpu/cpu0/cache"))
    if not found and platform.system() == "Darwin":
        for name in ("hw.l3cachesize", "hw.perflevel0.l2cachesize", "hw.l2cachesize"):
            value = _sysctl(name)
            if value.isdigit() and int(value) > 0:
                return int(value)
    return found or FALLBACK_CACHE


def _sysfs_cache(root):
    """Bytes of the highest-level data or unified cache listed under ``root`` (Linux's
    ``index*/{level,type,size}`` files), 0 where there is none or it does not parse."""
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    caches = []
    try:
        for index in root.glob("index*"):
            if (index / "type").read_text().strip() == "Instruction":
                continue
            size = (index / "size").read_text().strip()
            scale = units.get(size[-1:].upper(), 1)
            size = int(size[:-1] if scale > 1 else size) * scale
            caches.append((int((index / "level").read_text()), size))
    except (OSError, ValueError, IndexError):
        return 0
    return max(caches)[1] if caches else 0


def _sysctl(name):
    import subprocess

    try:
        return subprocess.run(
            ["sysctl", "-n", name], capture_output=True, text=True, timeout=5, check=False
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _blas():
    try:
        import threadpoolctl

        return sorted(
            f"{p.get('internal_api')} {p.get('version')} {p.get('architecture')}"
            for p in threadpoolctl.threadpool_info()
            if p.get("user_api") == "blas"
        )
    except Exception:  # noqa: BLE001 - threadpoolctl could not inspect the libraries
        return ["unknown"]


def _compiled_id():
    """The compiled loops' build (a digest of the extension module's file) and level, or
    None where they are off."""
    if _compiled.loops is None:
        return None
    try:
        digest = hashlib.sha256(Path(_compiled._simd.__file__).read_bytes()).hexdigest()[:16]
    except (OSError, AttributeError, TypeError):
        digest = "?"
    return f"{digest} {_compiled.level}"


@functools.lru_cache(maxsize=16)
def machine_key(threads):
    """What a calibration is only valid for: CPU, threads and the versions of the software."""
    from . import __version__

    model, flags = _cpu()
    return {
        "cpu": model,
        "isa": hashlib.sha256(flags.encode()).hexdigest()[:16],
        "machine": platform.machine(),
        "threads": threads,
        "specconv": __version__,
        "compiled": _compiled_id(),
        "numpy": np.__version__,
        "blas": _blas(),
        "fftw": fft.fftw_version(),
    }


def calibration_path(threads=None):
    """The calibration file of this machine for ``threads`` threads (default: specconv's)."""
    key = machine_key(threads or fft.get_num_threads())
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return fft._cache_dir() / f"calibration-{digest}.json"


def _valid_entry(entry):
    names = {f.name for f in dataclasses.fields(Constants)}
    values = entry.get("constants") if isinstance(entry, dict) else None
    if not isinstance(values, dict) or not set(values) <= names:
        return False
    if not all(isinstance(v, float) and math.isfinite(v) and v > 0 for v in values.values()):
        return False
    losing = entry.get("losing", [])
    return isinstance(losing, list) and all(
        isinstance(pair, list) and len(pair) == 2 and pair[0] in LOOPS and isinstance(pair[1], str)
        for pair in losing
    )


def _read(path, threads=None, *, warn=True):
    """The entries ``{precision: entry}`` of the file at ``path`` ({} if absent or invalid,
    with a warning naming it if ``warn``)."""
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as err:
        reason: str | None = str(err)
    else:
        reason = None
        try:
            data = json.loads(text)  # data only: nothing on disk is ever executed
        except ValueError as err:
            reason = f"it is not valid JSON ({err})"
        else:
            if not (
                isinstance(data, dict)
                and data.get("format") == FORMAT
                and data.get("version") == VERSION
            ):
                reason = f"it is not a version-{VERSION} specconv calibration file"
            elif threads is not None and data.get("key") != machine_key(threads):
                reason = "it was measured on another machine or software version"
            elif not (
                isinstance(data.get("entries"), dict)
                and all(p in PRECISIONS and _valid_entry(e) for p, e in data["entries"].items())
            ):
                reason = "it holds values that are not positive, finite constants"
            else:
                return dict(data["entries"])
    if warn:
        warnings.warn(
            f"Ignoring the calibration file {path}: {reason}. It will be measured "
            f"again and rewritten.",
            RuntimeWarning,
            stacklevel=5,
        )
    return {}


def _write(path, threads, entries):
    """Write ``entries`` to ``path`` atomically (a temporary file renamed into place)."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "key": machine_key(threads),
        "entries": entries,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output([path], overwrite=True) as (tmp,), open(tmp, "w") as f:
        json.dump(payload, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())


@contextlib.contextmanager
def _file_lock(path):
    """Hold an exclusive lock on ``path``'s lock file (where the OS has ``flock``): processes
    starting together then measure once; elsewhere the rename alone keeps the file whole."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: write-then-rename only
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _load_or_measure(prec, threads):
    path = calibration_path(threads)
    entry = _read(path, threads).get(prec)
    if entry is not None:
        return entry
    try:
        with _file_lock(path):
            entries = _read(path, threads, warn=False)  # another process may have measured
            if prec in entries:
                return entries[prec]
            entry = _measure(prec, threads)
            entries[prec] = entry
            _write(path, threads, entries)
    except OSError as err:  # a read-only cache: measured for this process only
        logger.info("could not store the calibration in %s: %s", path, err)
        entry = _measure(prec, threads) if entry is None else entry
    return entry


def _apply_losing(prec, entry):
    """Switch the compiled loops of ``prec`` on or off as ``entry`` measured them."""
    names = _dtype_names(prec)
    for loop in LOOPS:
        for name in names:
            _compiled.losing.discard((loop, name))
    for loop, name in entry.get("losing", []):
        _compiled.losing.add((loop, name))


def _dtype_names(prec):
    return ("float32", "complex64") if prec == "single" else ("float64", "complex128")


def _measure(prec, threads):
    global measure_count
    measure_count += 1
    assert measurer is not None  # importing specconv imports _measure, which registers it
    return measurer(prec, threads)
