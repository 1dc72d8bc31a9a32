"""FFT planning: the only module that talks to FFTW.

Planning is kept apart from executing, as in pyFFTW itself: a plan is bound to shapes, strides
and dtypes and executed on buffers of exactly that layout. Plans live in one bounded,
lock-protected pool (no background threads); wisdom is loaded from and saved to a user cache
directory, so a shape planned once is planned instantly in the next session.

Planning never takes the user's time unbounded: plans are measured (``FFTW_MEASURE``) under a
time limit; small transforms, where measuring cannot pay off, and huge batched ones, where one
measurement overshoots any limit, are planned by FFTW's estimate at once. A plan whose
measuring hit the limit is provisional: FFTW planned the rest by estimate, which can make a
transform twice as slow (128 transforms of 96 x 96, complex64, cut off at 0.1 s: 28 µs each;
measured to the end, in 0.12 s: 15 µs). The next time that transform is borrowed, once the
call that planned it has returned the plan, it is measured again under ten times the limit.
The wisdom keeps the result, so a machine pays for this once per transform shape.

Environment variables
---------------------
SPECCONV_NUM_THREADS
    Default number of threads (default: the cores this process may use).
SPECCONV_CACHE_DIR
    Where wisdom is kept (default: ``$XDG_CACHE_HOME/specconv`` or ``~/.cache/specconv``).
SPECCONV_PLANNING_TIMELIMIT
    Seconds FFTW may spend measuring one plan (default 0.1); ten times as long when a
    provisional plan is measured again.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import json
import logging
import os
import platform
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np

from ._atomic import atomic_output
from ._typing import ArrayLike, DTypeLike, Shape

__all__ = [
    "fftn",
    "ifftn",
    "rfftn",
    "irfftn",
    "next_fast_len",
    "get_num_threads",
    "set_num_threads",
    "wisdom_path",
    "planning_timelimit",
]

logger = logging.getLogger("specconv")

_MAX_FREE_PLANS = 128
_MAX_FREE_BYTES = 256 * 2**20

#: Transforms over MEASURE_FROM to ESTIMATE_FROM elements are measured (FFTW_MEASURE, under the
#: time limit); smaller and larger ones are planned with FFTW_ESTIMATE (see _PlanPool._build).
MEASURE_FROM = 2**15
ESTIMATE_FROM = 2**23
#: A provisional plan is measured again under this many times the time limit: the first
#: limit cuts most plans short, and FFTW_PATIENT overran the longer one more often than not
#: (measurements: ``benchmarks/RESULTS.md``, "Measurements behind the code's constants").
REMEASURE_FACTOR = 10
#: Spectra of transforms whose bytes are a multiple of a page are laid out one cache line
#: further apart when a borrower asks (``spread``): rows a page apart share their cache sets,
#: and a product reading hundreds of them at one frequency evicts what it prefetched.
PAGE_BYTES = 4096
LINE_BYTES = 64


def _fftw():
    """pyFFTW, imported on first use.

    Importing pyfftw also imports its ``interfaces``, which import dask when it is installed;
    deferring it keeps ``import specconv`` light.
    """
    import pyfftw

    return pyfftw


# --------------------------------------------------------------------------------------------
# threads


def _default_threads():
    env = os.environ.get("SPECCONV_NUM_THREADS")
    if env:
        try:
            n = int(env)
        except ValueError:
            n = 0
        if n >= 1:
            return n
        warnings.warn(
            f"SPECCONV_NUM_THREADS must be a positive integer, got {env!r}; using all cores.",
            RuntimeWarning,
            stacklevel=2,
        )
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


_num_threads = _default_threads()


def get_num_threads() -> int:
    """Number of threads specconv uses for FFTs and its per-frequency products.

    Returns
    -------
    n : int

    Examples
    --------
    >>> import specconv
    >>> specconv.get_num_threads() >= 1
    True
    """
    return _num_threads


def set_num_threads(n: int) -> int:
    """Set the number of threads specconv uses (default: all cores).

    Also settable with the environment variable ``SPECCONV_NUM_THREADS``.

    Parameters
    ----------
    n : int
        A positive number of threads.

    Returns
    -------
    previous : int
        The number in force before the call, to restore it later.

    Examples
    --------
    >>> import specconv
    >>> old = specconv.set_num_threads(1)
    >>> specconv.get_num_threads()
    1
    >>> _ = specconv.set_num_threads(old)
    """
    global _num_threads
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool):
        raise TypeError(f"n must be a positive int, got {n!r}.")
    if n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}.")
    previous, _num_threads = _num_threads, int(n)
    return previous


# --------------------------------------------------------------------------------------------
# fast lengths


def _smooth_numbers(limit):
    """All 2·3·5·7-smooth numbers up to ``limit``, sorted."""
    out = []
    p2 = 1
    while p2 <= limit:
        p3 = p2
        while p3 <= limit:
            p5 = p3
            while p5 <= limit:
                p7 = p5
                while p7 <= limit:
                    out.append(p7)
                    p7 *= 7
                p5 *= 5
            p3 *= 3
        p2 *= 2
    return sorted(out)


_SMOOTH = np.array(_smooth_numbers(2**31), dtype=np.int64)


def next_fast_len(n: int) -> int:
    """Smallest length ``>= n`` whose only prime factors are 2, 3, 5 and 7.

    FFTW is fastest on such lengths.

    Parameters
    ----------
    n : int
        Minimum length, ``>= 1``.

    Returns
    -------
    length : int

    Examples
    --------
    >>> from specconv.fft import next_fast_len
    >>> next_fast_len(1001), next_fast_len(1024), next_fast_len(97)
    (1008, 1024, 98)
    """
    n = int(n)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}.")
    if n > _SMOOTH[-1]:
        raise ValueError(f"n must be <= {int(_SMOOTH[-1])} (the longest length planned), got {n}.")
    return int(_SMOOTH[np.searchsorted(_SMOOTH, n)])


def fast_lengths(lo: int, hi: int) -> list[int]:
    """All fast lengths in ``[lo, hi]`` (for the cost model's search)."""
    i, j = np.searchsorted(_SMOOTH, [lo, hi], side="left")
    return [int(v) for v in _SMOOTH[i : j + (j < len(_SMOOTH) and _SMOOTH[j] == hi)]]


# --------------------------------------------------------------------------------------------
# wisdom


def _cache_dir():
    env = os.environ.get("SPECCONV_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "specconv"


def fftw_version() -> str:
    """Versions of pyFFTW and the FFTW library it wraps, e.g. ``"pyFFTW 0.15.1, FFTW 3.3.10"``."""
    pyfftw = _fftw()
    return f"pyFFTW {pyfftw.__version__}, FFTW {getattr(pyfftw, 'fftw_version', '?')}"


def _wisdom_origin():
    # Wisdom is only valid for the FFTW build and CPU that measured it.
    return (_fftw().fftw_version, platform.machine(), platform.node())


#: The first line of a wisdom file; bumped whenever the layout below changes.
WISDOM_HEADER = "specconv-fftw-wisdom 1"


def wisdom_path() -> Path:
    """The file FFTW's wisdom is kept in, in ``SPECCONV_CACHE_DIR`` (see the module docstring).

    Examples
    --------
    >>> from specconv import fft
    >>> fft.wisdom_path().name
    'fftw-wisdom.json'
    """
    return _cache_dir() / "fftw-wisdom.json"


def _legacy_wisdom_path():
    # Written by earlier versions with pickle; never read (unpickling runs code), replaced.
    return _cache_dir() / "fftw-wisdom.pickle"


def _encode_wisdom(wisdom):
    """The cache file's text: a version header line, then JSON of the origin and wisdom.

    pyFFTW's wisdom is a tuple of ``bytes`` (FFTW's own text format, one per precision), stored
    as latin-1 strings so any byte round-trips.
    """
    body = {"origin": list(_wisdom_origin()), "wisdom": [w.decode("latin-1") for w in wisdom]}
    return WISDOM_HEADER + "\n" + json.dumps(body) + "\n"


def _decode_wisdom(text):
    """The wisdom tuple of a cache file's ``text``; ValueError says why it cannot be used."""
    header, _, body = text.partition("\n")
    if header != WISDOM_HEADER:
        raise ValueError(f"its first line is not {WISDOM_HEADER!r}")
    stored = json.loads(body)
    if not isinstance(stored, dict) or tuple(stored.get("origin", ())) != _wisdom_origin():
        raise ValueError("it was made by another FFTW build or machine")
    wisdom = stored.get("wisdom")
    if not (isinstance(wisdom, list) and all(isinstance(w, str) for w in wisdom)):
        raise ValueError("it holds no list of wisdom strings")
    return tuple(w.encode("latin-1") for w in wisdom)


def _load_wisdom():
    legacy = _legacy_wisdom_path()
    if legacy.exists():
        warnings.warn(
            f"Ignoring the old FFTW wisdom file {legacy}: pickled caches are never loaded "
            f"(unpickling can run code). It will be replaced by {wisdom_path().name}.",
            RuntimeWarning,
            stacklevel=3,
        )
    path = wisdom_path()
    if not path.exists():
        return
    try:
        with open(path, encoding="latin-1") as f:
            wisdom = _decode_wisdom(f.read())
        ok = _fftw().import_wisdom(wisdom)
        if not all(ok):
            raise ValueError("FFTW rejected part of it")
    except Exception as err:  # any unreadable file is just ignored
        warnings.warn(
            f"Ignoring the FFTW wisdom file {path}: {err}. It will be rewritten.",
            RuntimeWarning,
            stacklevel=3,
        )


def save_wisdom() -> None:
    """Write FFTW's accumulated wisdom to the cache directory (atomically).

    The file is text (a version header, then JSON), never a pickle. An old pickled cache left
    by earlier versions is removed. Called automatically at interpreter exit; failures are
    logged, never raised.
    """
    path = wisdom_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        text = _encode_wisdom(_fftw().export_wisdom())
        # readers in other processes see the old file or the new one, never a partial one
        with atomic_output([path], overwrite=True) as (tmp,):
            tmp.write_text(text, encoding="latin-1")
        with contextlib.suppress(FileNotFoundError):
            _legacy_wisdom_path().unlink()
    except OSError as err:
        logger.info("could not save FFTW wisdom to %s: %s", path, err)


_wisdom_loaded = False
_wisdom_dirty = False


def _ensure_wisdom():
    global _wisdom_loaded
    if not _wisdom_loaded:
        _wisdom_loaded = True
        _load_wisdom()
        atexit.register(_save_wisdom_if_dirty)


def _save_wisdom_if_dirty() -> None:
    if _wisdom_dirty:
        save_wisdom()


# --------------------------------------------------------------------------------------------
# the plan pool


def planning_timelimit() -> float:
    """Seconds FFTW may spend planning one transform (``SPECCONV_PLANNING_TIMELIMIT``,
    default 0.1; a plan is measured again later with a longer limit, see the module docstring).

    Examples
    --------
    >>> from specconv import fft
    >>> fft.planning_timelimit() > 0
    True
    """
    try:
        return float(os.environ.get("SPECCONV_PLANNING_TIMELIMIT", 0.1))
    except ValueError:
        return 0.1


def aligned_empty(shape: Shape, dtype: DTypeLike) -> np.ndarray:
    """An uninitialised SIMD-aligned array (what plans execute on)."""
    return _fftw().empty_aligned(shape, dtype=dtype)


def spread_empty(shape: Shape, dtype: DTypeLike, ndim: int) -> np.ndarray:
    """Like :func:`aligned_empty`, but the blocks of the trailing ``ndim`` axes (one transform
    each) start a cache line further apart when their bytes are a multiple of a page.

    Examples
    --------
    >>> import numpy as np
    >>> from specconv import fft
    >>> a = fft.spread_empty((3, 32, 32), np.complex128, 2)
    >>> a.shape, a.strides[0]
    ((3, 32, 32), 16448)
    """
    shape = tuple(shape)
    lead, block = shape[: len(shape) - ndim], shape[len(shape) - ndim :]
    itemsize, count = np.dtype(dtype).itemsize, int(np.prod(block))
    if count == 0 or count * itemsize % PAGE_BYTES or LINE_BYTES % itemsize:
        return aligned_empty(shape, dtype)
    rows = aligned_empty((int(np.prod(lead)), count + LINE_BYTES // itemsize), dtype)
    return reshaped_view(rows[:, :count], shape)


def reshaped_view(a: np.ndarray, shape: Shape) -> np.ndarray:
    """``a.reshape(shape)``, which must be a view (writes to it reach ``a``).

    Examples
    --------
    >>> import numpy as np
    >>> from specconv import fft
    >>> fft.reshaped_view(np.zeros((4, 6))[:, :4], (2, 2, 4)).shape
    (2, 2, 4)
    """
    view = a.reshape(shape)
    if view.size and view.ctypes.data != a.ctypes.data:  # a copy
        raise ValueError(f"an array of strides {a.strides} has no view of shape {tuple(shape)}")
    return view


class _PlanPool:
    """Plans by shape, dtype, axes and threads, each lent to one caller at a time.

    A plan owns its input and output arrays, and a borrower uses them as its buffers, so no
    memory is held twice. Returned plans wait for the next borrower, the least recently used
    dropped first once they hold more than ``max_bytes`` (or ``max_plans``). A provisional
    plan (its measuring hit the time limit) is measured again when it is next borrowed; the
    plans lent before that are dropped when they come back.
    """

    def __init__(self, max_bytes=_MAX_FREE_BYTES, max_plans=_MAX_FREE_PLANS, estimate=None):
        self._free = collections.OrderedDict()
        self._estimate = estimate  # True: every plan estimated (else by its size)
        self._lock = threading.Lock()
        # One plan is measured at a time: a twin planned meanwhile then comes from wisdom at
        # once instead of being measured again (FFTW's planner is not reentrant anyway).
        self._build_lock = threading.Lock()
        self._max_bytes, self._max_plans = max_bytes, max_plans
        self._provisional = set()  # keys whose measuring the time limit cut short
        # of each key's plans: +1 when re-measured
        self._generation: collections.Counter[tuple] = collections.Counter()

    @contextlib.contextmanager
    def borrow(self, key):
        with self._lock:
            plans = self._free.get(key)
            plan = plans.pop() if plans else None
            remeasure = plan is not None and key in self._provisional
            if remeasure:  # the free twins are provisional too: drop them all
                self._provisional.discard(key)
                self._free.pop(key, None)
                self._generation[key] += 1
                plan = None
            generation = self._generation[key]
        if plan is None:
            limit = planning_timelimit() * (REMEASURE_FACTOR if remeasure else 1)
            with self._build_lock:
                plan, seconds = self._build(*key, timelimit=limit, estimate=self._estimate)
            # FFTW stops measuring at the limit and estimates the rest; a transform is measured
            # again once at most (a twin of one whose wisdom is still cut short would loop)
            if generation == 0 and plan.flags[0] == "FFTW_MEASURE" and seconds >= 0.9 * limit:
                with self._lock:
                    self._provisional.add(key)
        try:
            yield plan
        finally:
            with self._lock:
                if generation == self._generation[key]:
                    self._free.setdefault(key, []).append(plan)
                    self._free.move_to_end(key)
                    self._evict()

    def _evict(self):
        def held():
            plans = [p for v in self._free.values() for p in v]
            return len(plans), sum(p.input_array.nbytes + p.output_array.nbytes for p in plans)

        count, nbytes = held()
        while self._free and (count > self._max_plans or nbytes > self._max_bytes):
            self._free.popitem(last=False)
            count, nbytes = held()

    @staticmethod
    def _build(
        in_shape,
        in_dtype,
        out_shape,
        out_dtype,
        axes,
        direction,
        threads,
        spread,
        *,
        timelimit,
        estimate=None,
    ):
        """A new plan, measured within ``timelimit`` seconds or estimated (``estimate``: by
        its size if None), and the seconds its planning took."""
        global _wisdom_dirty
        _ensure_wisdom()

        def buffer(shape, dtype, spectra):
            return (
                spread_empty(shape, dtype, len(axes))
                if spread and spectra
                else aligned_empty(shape, dtype)
            )

        inverse = direction == "FFTW_BACKWARD"  # the spectra: an inverse's input, else the output
        inp, out = buffer(in_shape, in_dtype, inverse), buffer(out_shape, out_dtype, not inverse)
        # Small transforms take microseconds: measuring them (tens of ms) cannot pay off. On
        # huge batched ones a single measurement overshoots the time limit several times over
        # (measured 0.8 s per plan under a 0.25 s limit, 1.3 s first-call cost under 0.1 s).
        size = max(inp.size, out.size)
        if estimate is None:
            estimate = size < MEASURE_FROM or size >= ESTIMATE_FROM
        start = time.perf_counter()
        plan = _fftw().FFTW(
            inp,
            out,
            axes=axes,
            direction=direction,
            flags=("FFTW_ESTIMATE" if estimate else "FFTW_MEASURE",),
            threads=threads,
            planning_timelimit=timelimit,
        )
        _wisdom_dirty = True
        return plan, time.perf_counter() - start

    def clear(self):
        with self._lock:
            self._free.clear()


_pool = _PlanPool()
_local = threading.local()  # .pool: a thread's own pool inside ``estimating()``


@contextlib.contextmanager
def estimating() -> Iterator[None]:
    """Inside this block, the plans this thread borrows are estimated at once and come from a
    pool of their own, dropped at its end: the calibration's, whose timings must not depend on
    how far a time-limited measuring got, and whose plans must not serve later calls.

    Examples
    --------
    >>> import numpy as np
    >>> from specconv import fft
    >>> with fft.estimating():
    ...     with fft.borrow((8, 64), np.float64, (8, 33), np.complex128, (1,)) as plan:
    ...         plan.flags[0]
    'FFTW_ESTIMATE'
    """
    outer = getattr(_local, "pool", None)
    _local.pool = _PlanPool(estimate=True)
    try:
        yield
    finally:
        _local.pool = outer


def borrow(
    in_shape: Shape,
    in_dtype: DTypeLike,
    out_shape: Shape,
    out_dtype: DTypeLike,
    axes: Sequence[int],
    *,
    inverse: bool = False,
    threads: int | None = None,
    spread: bool = False,
) -> AbstractContextManager[Any]:
    """Lend a plan; use its ``input_array`` and ``output_array`` as buffers, then ``execute()``.

    The transform is unnormalised. Real input means r2c, real output c2r (which overwrites its
    input). Use as a context manager; the plan goes back to the pool at its end. ``spread``:
    the spectra (output, or input of an inverse) are laid out as by :func:`spread_empty`
    (``axes`` must then be the trailing ones), so not necessarily contiguous.
    """
    key = (
        tuple(in_shape),
        np.dtype(in_dtype).str,
        tuple(out_shape),
        np.dtype(out_dtype).str,
        tuple(axes),
        "FFTW_BACKWARD" if inverse else "FFTW_FORWARD",
        threads or _num_threads,
        bool(spread),
    )
    return (getattr(_local, "pool", None) or _pool).borrow(key)


def execute(
    inp: np.ndarray,
    out: np.ndarray,
    axes: Sequence[int],
    *,
    inverse: bool = False,
    threads: int | None = None,
) -> np.ndarray:
    """Run the unnormalised transform of ``inp`` into ``out`` over ``axes``.

    For callers that keep their own buffers (C-contiguous, aligned: :func:`aligned_empty`).
    """
    with borrow(
        inp.shape, inp.dtype, out.shape, out.dtype, axes, inverse=inverse, threads=threads
    ) as plan:
        own_in, own_out = plan.input_array, plan.output_array
        plan.update_arrays(inp, out)
        try:
            plan.execute()
        finally:  # hold no reference to the caller's arrays
            plan.update_arrays(own_in, own_out)
    return out


# --------------------------------------------------------------------------------------------
# numpy-compatible convenience transforms


def _complex_of(dtype):
    return (
        np.dtype(np.complex64) if dtype in (np.float32, np.complex64) else np.dtype(np.complex128)
    )


def _prepare(x, s, axes, complex_input):
    x = np.asarray(x)
    if x.dtype.kind not in "biufc":
        raise TypeError(f"x must be a numeric array, got dtype {x.dtype}.")
    if axes is None:
        axes = tuple(range(x.ndim)) if s is None else tuple(range(x.ndim - len(s), x.ndim))
    axes = tuple(a % x.ndim for a in axes)
    if s is None:
        s = tuple(x.shape[a] for a in axes)
    if len(s) != len(axes):
        raise ValueError(f"s and axes must have the same length, got s={s!r}, axes={axes!r}.")
    if any(n < 1 for n in s):
        raise ValueError(f"transform lengths must be >= 1, got s={tuple(s)!r}.")
    base = x.dtype if x.dtype.kind in "fc" and x.dtype != np.float16 else np.dtype(np.float64)
    dtype = (
        _complex_of(base)
        if complex_input
        else np.dtype(np.float32 if base in (np.float32, np.complex64) else np.float64)
    )
    if not complex_input and x.dtype.kind == "c":
        raise TypeError("rfftn needs real input; use fftn for complex data.")
    return x, tuple(int(v) for v in s), axes, dtype


def _copy_in(x, s, axes, dtype, shape_along):
    """An aligned copy of ``x`` cropped or zero-padded to ``shape_along`` on ``axes``."""
    shape = list(x.shape)
    for a, n in zip(axes, shape_along):
        shape[a] = n
    buf = _fftw().zeros_aligned(tuple(shape), dtype=dtype)
    src = tuple(
        slice(0, min(x.shape[a], shape[a])) if a in axes else slice(None) for a in range(x.ndim)
    )
    buf[src] = x[src]
    return buf


def fftn(x: ArrayLike, s: Shape | None = None, axes: Sequence[int] | None = None) -> np.ndarray:
    """N-D discrete Fourier transform, like :func:`numpy.fft.fftn`, planned with FFTW.

    Parameters
    ----------
    x : array_like
        Input; never modified.
    s : sequence of int, optional
        Transform lengths (crop or zero-pad), as in numpy.
    axes : sequence of int, optional
        Axes to transform (default: all, or the last ``len(s)``).

    Returns
    -------
    X : ndarray, complex
        complex64 for single-precision input, complex128 otherwise.

    See Also
    --------
    ifftn : the inverse.
    rfftn : for real input, about twice as fast.

    Examples
    --------
    >>> import numpy as np
    >>> from specconv.fft import fftn
    >>> x = np.arange(12.0).reshape(3, 4)
    >>> np.allclose(fftn(x), np.fft.fftn(x))
    True
    """
    x, s, axes, dtype = _prepare(x, s, axes, complex_input=True)
    buf = _copy_in(x, s, axes, dtype, s)
    return execute(buf, aligned_empty(buf.shape, dtype), axes)


def ifftn(x: ArrayLike, s: Shape | None = None, axes: Sequence[int] | None = None) -> np.ndarray:
    """Inverse of :func:`fftn` (normalised by ``1/n`` like numpy).

    Examples
    --------
    >>> import numpy as np
    >>> from specconv.fft import fftn, ifftn
    >>> x = np.random.default_rng(0).standard_normal((4, 6)) + 0j
    >>> np.allclose(ifftn(fftn(x)), x)
    True
    """
    x, s, axes, dtype = _prepare(x, s, axes, complex_input=True)
    buf = _copy_in(x, s, axes, dtype, s)
    out = execute(buf, aligned_empty(buf.shape, dtype), axes, inverse=True)
    out *= 1.0 / np.prod(s)
    return out


def rfftn(x: ArrayLike, s: Shape | None = None, axes: Sequence[int] | None = None) -> np.ndarray:
    """N-D FFT of real input, like :func:`numpy.fft.rfftn` (last axis halved).

    Examples
    --------
    >>> import numpy as np
    >>> from specconv.fft import rfftn
    >>> x = np.random.default_rng(0).standard_normal((5, 8))
    >>> np.allclose(rfftn(x), np.fft.rfftn(x))
    True
    """
    x, s, axes, dtype = _prepare(x, s, axes, complex_input=False)
    buf = _copy_in(x, s, axes, dtype, s)
    out_shape = list(buf.shape)
    out_shape[axes[-1]] = s[-1] // 2 + 1
    return execute(buf, aligned_empty(tuple(out_shape), _complex_of(dtype)), axes)


def irfftn(x: ArrayLike, s: Shape | None = None, axes: Sequence[int] | None = None) -> np.ndarray:
    """Inverse of :func:`rfftn`, like :func:`numpy.fft.irfftn`.

    Examples
    --------
    >>> import numpy as np
    >>> from specconv.fft import rfftn, irfftn
    >>> x = np.random.default_rng(0).standard_normal((5, 7))
    >>> np.allclose(irfftn(rfftn(x), s=x.shape), x)
    True
    """
    x = np.asarray(x)
    if axes is None:
        axes = tuple(range(x.ndim)) if s is None else tuple(range(x.ndim - len(s), x.ndim))
    axes = tuple(a % x.ndim for a in axes)
    if s is None:
        s = tuple(x.shape[a] for a in axes[:-1]) + (2 * (x.shape[axes[-1]] - 1),)
    x, s, axes, cdtype = _prepare(x, s, axes, complex_input=True)
    half = list(s)
    half[-1] = s[-1] // 2 + 1
    buf = _copy_in(x, s, axes, cdtype, half)  # c2r overwrites its input: always a copy
    out_shape = list(buf.shape)
    out_shape[axes[-1]] = s[-1]
    rdtype = np.float32 if cdtype == np.complex64 else np.float64
    out = execute(buf, aligned_empty(tuple(out_shape), rdtype), axes, inverse=True)
    out *= 1.0 / np.prod(s)
    return out
