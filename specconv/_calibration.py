"""The cost model's machine constants, measured on the machine at hand and kept (like FFTW's
wisdom).

``method="auto"`` prices each method with seconds per operation (:class:`_costmodel.Constants`).
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
import tempfile
import threading
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from . import _compiled, fft

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

_lock = threading.RLock()
_cache = {}  # (precision, threads) -> entry (see measure)


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
            entries[prec] = measure(prec, threads)
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
            model, flags = _sysctl("machdep.cpu.brand_string"), " ".join(
                _sysctl(k) for k in ("machdep.cpu.features", "machdep.cpu.leaf7_features",
                                     "hw.optional.arm64"))
    return model or platform.processor() or platform.machine(), flags


def _sysctl(name):
    import subprocess

    try:
        return subprocess.run(["sysctl", "-n", name], capture_output=True, text=True,
                              timeout=5, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _blas():
    try:
        import threadpoolctl

        return sorted(f"{p.get('internal_api')} {p.get('version')} {p.get('architecture')}"
                      for p in threadpoolctl.threadpool_info() if p.get("user_api") == "blas")
    except Exception:  # noqa: BLE001 - threadpoolctl could not inspect the libraries
        return ["unknown"]


def _compiled_id():
    """The compiled loops' build (a digest of the module file) and level, or None."""
    loops = _compiled.loops
    if loops is None:
        return None
    try:
        digest = hashlib.sha256(Path(loops.__file__).read_bytes()).hexdigest()[:16]
    except (OSError, AttributeError, TypeError):
        digest = "?"
    level = getattr(loops, "level", None)
    level = level() if callable(level) else level
    return f"{digest} {level}" if level is not None else digest


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
    from ._costmodel import Constants

    names = {f.name for f in dataclasses.fields(Constants)}
    values = entry.get("constants") if isinstance(entry, dict) else None
    if not isinstance(values, dict) or not set(values) <= names:
        return False
    if not all(isinstance(v, float) and math.isfinite(v) and v > 0 for v in values.values()):
        return False
    losing = entry.get("losing", [])
    return isinstance(losing, list) and all(
        isinstance(pair, list) and len(pair) == 2 and pair[0] in LOOPS
        and isinstance(pair[1], str) for pair in losing)


def _read(path, threads=None, *, warn=True):
    """The entries ``{precision: entry}`` of the file at ``path`` ({} if absent or invalid,
    with a warning naming it if ``warn``)."""
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as err:
        reason = str(err)
    else:
        reason = None
        try:
            data = json.loads(text)  # data only: nothing on disk is ever executed
        except ValueError as err:
            reason = f"it is not valid JSON ({err})"
        else:
            if not (isinstance(data, dict) and data.get("format") == FORMAT
                    and data.get("version") == VERSION):
                reason = f"it is not a version-{VERSION} specconv calibration file"
            elif threads is not None and data.get("key") != machine_key(threads):
                reason = "it was measured on another machine or software version"
            elif not (isinstance(data.get("entries"), dict) and all(
                    p in PRECISIONS and _valid_entry(e) for p, e in data["entries"].items())):
                reason = "it holds values that are not positive, finite constants"
            else:
                return dict(data["entries"])
    if warn:
        warnings.warn(f"Ignoring the calibration file {path}: {reason}. It will be measured "
                      f"again and rewritten.", RuntimeWarning, stacklevel=5)
    return {}


def _write(path, threads, entries):
    """Write ``entries`` to ``path`` atomically (a temporary file renamed into place)."""
    payload = {"format": FORMAT, "version": VERSION, "key": machine_key(threads),
               "entries": entries}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".calibration-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


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
            entry = measure(prec, threads)
            entries[prec] = entry
            _write(path, threads, entries)
    except OSError as err:  # a read-only cache: measured for this process only
        logger.info("could not store the calibration in %s: %s", path, err)
        entry = measure(prec, threads) if entry is None else entry
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


# ---------------------------------------------------------------------------------------------
# measuring


def _seconds(fn, repeat=3):
    """Median seconds of ``fn()`` after one warm-up call (which plans, allocates, caches)."""
    t0 = time.perf_counter()
    fn()
    if time.perf_counter() - t0 > 0.05:  # long enough to be steady: keep the budget
        repeat = 1
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _coefficients(cost, names, zero):
    """The coefficients of ``cost(constants)`` (linear) in the constants ``names``."""
    return [cost(dataclasses.replace(zero, **{n: 1.0})) for n in names]


def measure(prec, threads):
    """Measure the constants of precision ``prec`` ("single" or "double") on ``threads``
    threads, and which compiled loops lose to numpy/BLAS.

    Returns ``{"constants": {name: seconds}, "losing": [[loop, dtype name], ...], "timings":
    {kernel: seconds}, "seconds": total}``. Constants it does not time are the shipped ones
    scaled like the nearest measured one (spectrum passes like copies) or kept (python
    overheads, the strided-pass factor).
    """
    global measure_count
    from . import _costmodel, _direct
    from ._blas import limit as blas_limit
    from ._engine import Geometry

    measure_count += 1
    start = time.perf_counter()
    real = np.dtype(np.float32 if prec == "single" else np.float64)
    cplx = np.result_type(real, np.complex64)
    shipped = _costmodel.SHIPPED[prec]
    zero = dataclasses.replace(shipped, **{f.name: 0.0 for f in dataclasses.fields(shipped)})
    rng = np.random.default_rng(0)
    got, timings, losing = {}, {}, []

    def over_budget():
        return time.perf_counter() - start > BUDGET

    # a batch of real transforms, as the engine's tiles (a chunk larger than the caches)
    L, howmany = 2048, 1024
    with fft.borrow((howmany, L), real, (howmany, L // 2 + 1), cplx, (1,),
                    threads=threads) as plan:
        plan.input_array[:] = rng.standard_normal(plan.input_array.shape)
        t = timings["fft"] = _seconds(plan.execute)
    got["T_FFT"] = t / (howmany * L * math.log2(L))

    # gathering overlapping tiles from a signal larger than the caches (any values do)
    src = np.full((32, 150_000), 0.5, real)
    dst = np.empty((32, 40, 2048), real)
    windows = np.lib.stride_tricks.sliding_window_view(src, 2048, axis=-1)[:, : 40 * 3600 : 3600]
    t = timings["copy"] = _seconds(lambda: np.copyto(dst, windows))
    got["T_COPY"] = t / dst.size

    # the per-frequency product: BLAS matmul (one thread per worker), elementwise
    F, cols, c = 128, 32, 64
    a = (rng.standard_normal((F, 1, cols, c)) + 0j).astype(cplx)
    h = (rng.standard_normal((F, 1, c, c)) + 0j).astype(cplx)
    out = np.empty((F, 1, cols, c), cplx)
    with blas_limit(1):
        t = timings["matmul"] = _seconds(lambda: np.matmul(a, h, out=out))
    got["T_CMAC_MATMUL"] = t / (F * cols * c * c) / threads
    hx = (rng.standard_normal((32, 1, 1025)) + 0j).astype(cplx)
    xs = (rng.standard_normal((32, 16, 1025)) + 0j).astype(cplx)
    ys = np.empty((32, 16, 1025), cplx)
    t = timings["elementwise"] = _seconds(lambda: np.multiply(hx, xs, out=ys))
    got["T_CMAC_ELEMENTWISE"] = t / ys.size / threads

    if _compiled.loops is not None:
        ratio = _compiled_over_blas(rng, cplx, timings)
        got["T_CMAC_COMPILED"] = got["T_CMAC_MATMUL"] * ratio
        if ratio > 1:
            losing.append(["product", cplx.name])

    # the direct method: a 1 x 1 kernel (one GEMM)
    w = rng.standard_normal((32, 32, 1)).astype(real)
    xt = rng.standard_normal((1, 32, 20_000)).astype(real)
    geom = Geometry(1, 32, 32, 1, (1,), (1,), (1,), (20_000,), False)
    t = timings["pointwise"] = _seconds(
        lambda: _direct._pointwise(xt, ((0, 0),), w, geom, real, threads))
    got["T_MAC_DIRECT"] = t / (32 * 32 * 20_000)

    # depthwise layers: the numpy loops (7 x 7), the compiled ones (1 x 1 and 7 x 7)
    images = rng.standard_normal((4, 32, 96, 96)).astype(real)

    def depthwise(k, fn):
        geom = Geometry(4, 32, 32, 32, (k, k), (1, 1), (1, 1), (96 + k - 1,) * 2, False)
        taps = rng.standard_normal((32, 1, k, k)).astype(real)
        pads = ((k // 2, k // 2),) * 2
        return geom, _seconds(lambda: fn(images, pads, taps, geom, real, threads))

    with_copies = dataclasses.replace(zero, T_COPY=got["T_COPY"])
    geom, t = depthwise(7, _direct._depthwise_numpy)
    timings["depthwise numpy 7x7"] = t
    tap = _costmodel.numpy_depthwise_cost(geom, dataclasses.replace(zero, T_DEPTHWISE_TAP=1.0))
    got["T_DEPTHWISE_TAP"] = max(t - _costmodel.numpy_depthwise_cost(geom, with_copies),
                                 t / 2) / tap
    if _compiled.loops is not None:
        geom1, t1 = depthwise(1, _direct._depthwise_compiled)
        geom7, t7 = depthwise(7, _direct._depthwise_compiled)
        timings["depthwise compiled 1x1"], timings["depthwise compiled 7x7"] = t1, t7
        names = ("T_COMPILED_TAP", "T_COMPILED_SAMPLE")
        a1 = _coefficients(lambda c: _costmodel.compiled_depthwise_cost(geom1, threads, c),
                           names, zero)
        a7 = _coefficients(lambda c: _costmodel.compiled_depthwise_cost(geom7, threads, c),
                           names, zero)
        got["T_COMPILED_SAMPLE"] = t1 / (a1[1] + a1[0])
        got["T_COMPILED_TAP"] = max(t7 - a7[1] * got["T_COMPILED_SAMPLE"], t7 / 4) / a7[0]
        if t7 > t:
            losing.append(["depthwise", real.name])

    if not over_budget():
        _fit_slabs(rng, real, threads, zero, got, timings)

    # not timed: passes over spectra go as copies do; python overheads and FFTW's strided
    # passes are kept
    scale = got["T_COPY"] / shipped.T_COPY
    got["T_FOLD"] = shipped.T_FOLD * scale
    got["T_SPECTRA_PASS"] = shipped.T_SPECTRA_PASS * scale
    for name, value in got.items():
        ref = getattr(shipped, name)
        got[name] = float(min(max(value, ref / MAX_FACTOR), ref * MAX_FACTOR))
    seconds = time.perf_counter() - start
    logger.info("calibrated %s precision on %d threads in %.2f s", prec, threads, seconds)
    return {"constants": got, "losing": losing, "timings": timings, "seconds": seconds}


def _compiled_over_blas(rng, cplx, timings, B=4, T=8, c=64, fft_shape=(12, 36)):
    """Time of the engine's compiled product on one chunk (FFTW's layout) over that of its
    BLAS matmul with the transposes around it (``_ChunkWorker.matmul`` either way, with
    kernel spectra laid out for each), one thread."""
    from . import _engine
    from ._blas import limit as blas_limit

    F = math.prod(_engine.spectral_shape(fft_shape, False))
    x = (rng.standard_normal((B, 1, c, T, F)) + 1j * rng.standard_normal((B, 1, c, T, F)))
    x = x.astype(cplx)
    block = min(_engine.FREQ_BLOCK, F)
    chunk = SimpleNamespace(xflat=x, yflat=np.empty_like(x), compiled=True,
                            xblock=np.empty((block, 1, B, T, c), cplx),
                            yblock=np.empty((block, 1, B, T, c), cplx))
    lanes = _engine.product_lanes(cplx.itemsize)
    blocks = -(-F // lanes)
    laid_out = rng.standard_normal((1, blocks, c, c, lanes)).astype(cplx)
    by_frequency = rng.standard_normal((F, 1, c, c)).astype(cplx)
    compiled = _seconds(lambda: _engine._ChunkWorker.matmul(chunk, laid_out, (chunk,), 0, F))
    chunk.compiled = False
    with blas_limit(1):
        blas = _seconds(lambda: _engine._ChunkWorker.matmul(chunk, by_frequency, (chunk,), 0, F))
    timings["product compiled"], timings["product blas"] = compiled, blas
    return compiled / blas


def _fit_slabs(rng, real, threads, zero, got, timings):
    """``T_MAC_SLAB``, ``T_SLAB_SAMPLE`` and ``T_CALL`` from three layers on slabs, each
    dominated by one term (multiply-adds, copies, calls), fitted through the model itself."""
    import scipy.optimize

    from . import _costmodel, _direct
    from ._engine import Geometry

    names = ("T_MAC_SLAB", "T_SLAB_SAMPLE", "T_CALL")
    rows, seconds = [], []
    for batch, channels, groups, size in ((2, 64, 1, 64), (2, 64, 16, 64), (64, 8, 1, 6)):
        geom = Geometry(batch, channels, channels, groups, (3, 3), (1, 1), (1, 1),
                        (size + 2,) * 2, False)
        x = rng.standard_normal((batch, channels, size, size)).astype(real)
        w = rng.standard_normal((channels, channels // groups, 3, 3)).astype(real)
        t = _seconds(lambda x=x, w=w, geom=geom: _direct._slabs(x, ((1, 1),) * 2, w, geom, real,
                                                                 threads))
        timings[f"slabs {batch}x{channels}x{size}^2 groups {groups}"] = t
        rows.append(_coefficients(
            lambda c, geom=geom: _costmodel.slab_cost(geom, real.itemsize, threads, c), names,
            zero))
        seconds.append(t)
    # relative errors count alike: each row scaled by its time
    A = np.array(rows) / np.array(seconds)[:, None]
    scale = A.max(axis=0)
    fit, _ = scipy.optimize.nnls(A / scale, np.ones(len(seconds)))
    for name, value in zip(names, fit / scale):
        if value > 0:  # a term the fit could not see keeps its shipped value
            got[name] = float(value)
