"""specconv.fft: numpy-compatible planned transforms, fast lengths, wisdom, threads, plan pool."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import threading
from types import SimpleNamespace

import _reference as ref
import numpy as np
import pytest
from _tolerances import assert_close
from hypothesis import given
from hypothesis import strategies as st

import specconv
from specconv import fft

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


_COMPLEX_OF = {
    np.dtype(np.float32): np.complex64,
    np.dtype(np.complex64): np.complex64,
    np.dtype(np.float64): np.complex128,
    np.dtype(np.complex128): np.complex128,
    np.dtype(np.int64): np.complex128,
}


@st.composite
def transform_cases(draw, real):
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.integers(1, 9)) for _ in range(ndim))
    axes = draw(
        st.lists(
            st.integers(-ndim, ndim - 1), min_size=1, max_size=ndim, unique_by=lambda a: a % ndim
        )
    )
    dtypes = (np.float32, np.float64, np.int64) if real else ref.FLOAT_DTYPES + (np.int64,)
    use_s = draw(st.booleans())
    s = tuple(draw(st.integers(1, 10)) for _ in axes) if use_s else None
    return shape, tuple(axes), s, draw(st.sampled_from(dtypes)), draw(st.integers(0, 2**32 - 1))


@ref.hypothesis_settings(max_examples=80)
@given(case=transform_cases(real=False), inverse=st.booleans())
def test_fftn_ifftn_match_numpy(case, inverse):
    shape, axes, s, dtype, seed = case
    x = ref.random_array(np.random.default_rng(seed), shape, dtype)
    x0 = x.copy()
    ours = (fft.ifftn if inverse else fft.fftn)(x, s=s, axes=axes)
    theirs = (np.fft.ifftn if inverse else np.fft.fftn)(x.astype(np.complex128), s=s, axes=axes)
    assert ours.dtype == _COMPLEX_OF[np.dtype(dtype)]
    assert_close(ours, theirs)
    np.testing.assert_array_equal(x, x0)


@ref.hypothesis_settings(max_examples=80)
@given(case=transform_cases(real=True))
def test_rfftn_irfftn_match_numpy(case):
    shape, axes, s, dtype, seed = case
    rng = np.random.default_rng(seed)
    x = ref.random_array(rng, shape, dtype)
    x0 = x.copy()
    X = fft.rfftn(x, s=s, axes=axes)
    assert X.dtype == _COMPLEX_OF[np.dtype(dtype)]
    assert_close(X, np.fft.rfftn(x.astype(np.float64), s=s, axes=axes))
    np.testing.assert_array_equal(x, x0)
    # the inverse, on a spectrum of any content (also one irfftn must crop or pad)
    X0 = X.copy()
    if s is None and X.shape[axes[-1]] == 1:  # default length 2·(1 − 1) = 0: an error
        s = tuple(x.shape[a] for a in axes)
    y = fft.irfftn(X, s=s, axes=axes)
    expected_real = np.float32 if X.dtype == np.complex64 else np.float64
    assert y.dtype == expected_real
    assert_close(y, np.fft.irfftn(X.astype(np.complex128), s=s, axes=axes))
    np.testing.assert_array_equal(X, X0)  # c2r overwrites its input: it must work on a copy


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trips(dtype):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 10, 7)).astype(dtype)
    assert_close(fft.irfftn(fft.rfftn(x), s=x.shape), x)
    assert_close(fft.ifftn(fft.fftn(x)), x.astype(_COMPLEX_OF[np.dtype(dtype)]))
    assert_close(fft.irfftn(fft.rfftn(x, axes=(0, 2)), s=(3, 7), axes=(0, 2)), x)


@pytest.mark.parametrize(
    "call",
    [
        lambda: fft.irfftn(np.ones(1, dtype=complex)),  # default length 2·(1 − 1) = 0
        lambda: fft.irfftn(np.ones(3, dtype=complex), s=(0,)),
        lambda: fft.fftn(np.ones(3), s=(-1,), axes=(0,)),
        lambda: fft.rfftn(np.ones((2, 3)), s=(2, 0), axes=(0, 1)),
    ],
    ids=["irfftn-default", "irfftn-zero", "fftn-negative", "rfftn-zero"],
)
def test_transform_lengths_must_be_positive(call):
    """Regression: a zero length used to raise ZeroDivisionError from inside pyFFTW."""
    with pytest.raises(ValueError, match=r"transform lengths must be >= 1, got s=\("):
        call()


def test_rfftn_refuses_complex_input():
    with pytest.raises(TypeError, match="rfftn needs real input; use fftn for complex data"):
        fft.rfftn(np.ones(4) + 1j)


def test_transforms_refuse_non_numeric():
    with pytest.raises(TypeError, match=r"x must be a numeric array, got dtype <U1"):
        fft.fftn(np.array(["a", "b"]))
    with pytest.raises(ValueError, match=r"s and axes must have the same length"):
        fft.fftn(np.ones((2, 3)), s=(2, 3), axes=(0,))


# --------------------------------------------------------------------------------------------
# fast lengths


def _is_smooth(n):
    for p in (2, 3, 5, 7):
        while n % p == 0:
            n //= p
    return n == 1


@ref.hypothesis_settings(max_examples=200)
@given(n=st.one_of(st.integers(1, 5000), st.integers(1, 10**9)))
def test_next_fast_len_is_the_smallest_7_smooth_length(n):
    m = fft.next_fast_len(n)
    assert m >= n and _is_smooth(m)
    # minimal: nothing smooth in [n, m) (gaps between 7-smooth numbers are small here)
    assert not any(_is_smooth(k) for k in range(n, m))


@pytest.mark.parametrize(
    "n, expected", [(1, 1), (11, 12), (97, 98), (1001, 1008), (1024, 1024), (2**20 + 1, 1049760)]
)
def test_next_fast_len_values(n, expected):
    assert fft.next_fast_len(n) == expected


@pytest.mark.parametrize("n", [0, -5])
def test_next_fast_len_refuses_non_positive(n):
    with pytest.raises(ValueError, match=rf"n must be >= 1, got {n}"):
        fft.next_fast_len(n)


# --------------------------------------------------------------------------------------------
# wisdom


@pytest.fixture
def fresh_wisdom(monkeypatch, tmp_path):
    """An empty cache directory, wisdom not loaded yet, and an empty plan pool."""
    monkeypatch.setenv("SPECCONV_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(fft, "_wisdom_loaded", False)
    monkeypatch.setattr(fft, "_pool", fft._PlanPool())
    return tmp_path / "fftw-wisdom.json"


def _plan_something(n=77):
    x = np.random.default_rng(n).standard_normal(n)
    assert_close(fft.rfftn(x), np.fft.rfftn(x))


def _reload_wisdom(monkeypatch):
    monkeypatch.setattr(fft, "_wisdom_loaded", False)
    monkeypatch.setattr(fft, "_pool", fft._PlanPool())


def _stored_wisdom(path):
    header, body = path.read_text(encoding="latin-1").split("\n", 1)
    assert header == fft.WISDOM_HEADER
    return json.loads(body)


@pytest.mark.parametrize(
    "content",
    [
        b"garbage, not wisdom",
        pickle.dumps({"origin": fft._wisdom_origin(), "wisdom": (b"", b"", b"")}),
        (fft.WISDOM_HEADER + "\n[1, 2, 3]").encode(),
        (fft.WISDOM_HEADER + '\n{"origin": ["elsewhere"], "wisdom": []}').encode(),
        (fft.WISDOM_HEADER + "\n{not json").encode(),
        b"",
    ],
    ids=["garbage", "a-pickle", "not-a-dict", "foreign", "bad-json", "empty"],
)
def test_corrupt_or_foreign_wisdom_is_ignored_with_a_warning(fresh_wisdom, monkeypatch, content):
    fresh_wisdom.write_bytes(content)
    with pytest.warns(
        RuntimeWarning,
        match=r"Ignoring the FFTW wisdom file .*fftw-wisdom\.json"
        r".*It will be rewritten",
    ):
        _plan_something()
    fft.save_wisdom()
    stored = _stored_wisdom(fresh_wisdom)
    assert tuple(stored["origin"]) == fft._wisdom_origin()
    assert len(stored["wisdom"]) == 3 and all(isinstance(w, str) for w in stored["wisdom"])
    # the rewritten file loads silently (filterwarnings=error would turn a warning into failure)
    _reload_wisdom(monkeypatch)
    _plan_something(78)


def test_rejected_wisdom_is_ignored_with_a_warning(fresh_wisdom):
    body = {"origin": list(fft._wisdom_origin()), "wisdom": ["junk", "junk", "junk"]}
    fresh_wisdom.write_text(fft.WISDOM_HEADER + "\n" + json.dumps(body))
    with pytest.warns(RuntimeWarning, match=r"Ignoring the FFTW wisdom file.*rejected"):
        _plan_something()


class _Booby:
    """Unpickling this would create the marker file: proof that a cache was unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_an_old_pickled_cache_is_never_unpickled_and_is_replaced(fresh_wisdom, monkeypatch):
    legacy = fresh_wisdom.with_name("fftw-wisdom.pickle")
    marker = fresh_wisdom.with_name("unpickled")
    legacy.write_bytes(pickle.dumps(_Booby(str(marker))))
    with pytest.warns(
        RuntimeWarning,
        match=r"old FFTW wisdom file .*fftw-wisdom\.pickle.*never "
        r"loaded.*replaced by fftw-wisdom\.json",
    ):
        _plan_something()
    assert not marker.exists()
    fft.save_wisdom()
    assert sorted(p.name for p in fresh_wisdom.parent.iterdir()) == ["fftw-wisdom.json"]
    _reload_wisdom(monkeypatch)
    _plan_something(78)  # silent now


def test_wisdom_round_trips_through_the_cache(fresh_wisdom, monkeypatch):
    _plan_something(81)
    fft.save_wisdom()
    saved = fft._fftw().export_wisdom()
    fft._fftw().forget_wisdom()
    _reload_wisdom(monkeypatch)
    _plan_something(82)  # loads the file first
    loaded = fft._fftw().export_wisdom()
    assert all(line in new for old, new in zip(saved, loaded) for line in old.splitlines()[1:])


def test_four_processes_sharing_one_cache_never_see_a_partial_file(tmp_path):
    code = (
        "import warnings, numpy as np; warnings.simplefilter('error');"
        "from specconv import fft\n"
        "for n in range(60, 100):\n"
        "    fft._wisdom_loaded = False; fft.rfftn(np.ones(n)); fft.save_wisdom()\n"
    )
    env = {**os.environ, "SPECCONV_CACHE_DIR": str(tmp_path), "PYTHONPATH": REPO}
    procs = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    errors = [p.communicate(timeout=120)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errors
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fftw-wisdom.json"]


def test_missing_wisdom_is_fine_and_save_creates_the_directory(monkeypatch, tmp_path):
    target = tmp_path / "new" / "dir"
    monkeypatch.setenv("SPECCONV_CACHE_DIR", str(target))
    _reload_wisdom(monkeypatch)
    _plan_something(79)
    fft.save_wisdom()
    assert [p.name for p in target.iterdir()] == ["fftw-wisdom.json"]  # no temp files left


def test_save_wisdom_never_raises(monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("SPECCONV_CACHE_DIR", str(blocker / "sub"))
    fft.save_wisdom()  # logged, not raised


# --------------------------------------------------------------------------------------------
# threads and the plan pool


@pytest.fixture
def restore_threads():
    old = specconv.get_num_threads()
    yield
    specconv.set_num_threads(old)


def test_set_num_threads(restore_threads):
    old = specconv.get_num_threads()
    assert specconv.set_num_threads(1) == old
    assert specconv.get_num_threads() == 1
    assert specconv.set_num_threads(np.int64(2)) == 1
    assert specconv.get_num_threads() == 2 and type(specconv.get_num_threads()) is int


@pytest.mark.parametrize(
    "n, exc",
    [(0, ValueError), (-1, ValueError), (1.5, TypeError), ("2", TypeError), (None, TypeError)],
)
def test_set_num_threads_refuses_bad_values(restore_threads, n, exc):
    with pytest.raises(exc, match=r"n must be a positive int, got"):
        specconv.set_num_threads(n)


@pytest.mark.parametrize("value, expected", [("3", 3), ("1", 1)])
def test_thread_count_from_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv("SPECCONV_NUM_THREADS", value)
    assert fft._default_threads() == expected


@pytest.mark.parametrize("value", ["0", "-2", "many", "1.5"])
def test_bad_thread_count_in_the_environment_warns(monkeypatch, value):
    monkeypatch.setenv("SPECCONV_NUM_THREADS", value)
    with pytest.warns(
        RuntimeWarning,
        match=rf"SPECCONV_NUM_THREADS must be a positive integer, "
        rf"got '{value}'; using all cores",
    ):
        n = fft._default_threads()
    assert n >= 1


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_results_do_not_depend_on_threads(restore_threads, threads):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 4, 3000))
    w = rng.standard_normal((4, 4, 33))
    specconv.set_num_threads(threads)
    assert_close(specconv.conv(x, w, method="fft"), ref.conv(x, w))


def test_pool_lends_distinct_plans_to_simultaneous_users(monkeypatch):
    monkeypatch.setattr(fft, "_pool", fft._PlanPool())
    args = ((16,), np.float64, (9,), np.complex128, (0,))
    with fft.borrow(*args, threads=1) as p1:
        with fft.borrow(*args, threads=1) as p2:
            assert p1 is not p2
            assert not np.shares_memory(p1.input_array, p2.input_array)
    with fft.borrow(*args, threads=1) as p3:  # returned plans are reused
        assert p3 is p1 or p3 is p2


def test_pool_is_bounded_by_count_and_bytes():
    pool = fft._PlanPool(max_plans=3)
    for n in range(8, 14):
        with pool.borrow(((n,), "<c16", (n,), "<c16", (0,), "FFTW_FORWARD", 1, False)):
            pass
    assert sum(len(v) for v in pool._free.values()) == 3
    pool = fft._PlanPool(max_bytes=3 * 2 * 16 * 1000)  # room for three 1000-point plans
    for n in range(1000, 1006):
        with pool.borrow(((n,), "<c16", (n,), "<c16", (0,), "FFTW_FORWARD", 1, False)):
            pass
    assert sum(len(v) for v in pool._free.values()) == 2


def test_execute_keeps_no_reference_to_the_callers_arrays():
    a = fft.aligned_empty((4, 64), np.float64)
    a[...] = 1.0
    out = fft.aligned_empty((4, 33), np.complex128)
    fft.execute(a, out, (1,))
    with fft.borrow(a.shape, a.dtype, out.shape, out.dtype, (1,)) as plan:
        assert not np.shares_memory(plan.input_array, a)
        assert not np.shares_memory(plan.output_array, out)


def test_plans_borrowed_while_estimating_are_estimated_exact_and_kept_apart():
    """The calibration's plans: estimated (their time does not depend on how far a measuring
    got), reused inside the block, never lent to a later call."""
    x = np.random.default_rng(4).standard_normal((64, 2048))
    key = (x.shape, np.float64, (64, 1025), np.complex128, (1,))
    with fft.estimating():
        with fft.borrow(*key, threads=1) as plan:
            assert plan.flags[0] == "FFTW_ESTIMATE"
            plan.input_array[...] = x
            plan.execute()
            assert_close(plan.output_array, np.fft.rfft(x, axis=1))
        with fft.borrow(*key, threads=1) as again:
            assert again is plan
    with fft.borrow(*key, threads=1) as later:
        assert later is not plan and later.flags[0] == "FFTW_MEASURE"


def test_planning_does_not_touch_the_data():
    """FFTW_MEASURE overwrites the arrays it plans on: plans are made on scratch arrays."""
    x = np.random.default_rng(3).standard_normal((5, 131))
    x0 = x.copy()
    a = fft.aligned_empty(x.shape, np.float64)
    a[...] = x
    out = fft.aligned_empty((5, 66), np.complex128)
    fft.execute(a, out, (1,))
    np.testing.assert_array_equal(a, x0)
    assert_close(out, np.fft.rfft(x0, axis=1))


def test_concurrent_conv_calls_are_correct(restore_threads):
    """Two threads running conv on the same shapes (the same plan keys) at the same time."""
    specconv.set_num_threads(2)
    rng = np.random.default_rng(4)
    w = rng.standard_normal((4, 3, 17))
    xs = [rng.standard_normal((2, 3, 2000)) for _ in range(2)]
    expected = [ref.conv(x, w, padding=8) for x in xs]
    layer = specconv.SpectralConv(w, padding=8, method="fft")
    barrier = threading.Barrier(2)
    errors, results = [], {}

    def work(i):
        try:
            barrier.wait()
            for r in range(6):
                results[i, r] = (
                    specconv.conv(xs[i], w, padding=8, method="fft") if r % 2 else layer(xs[i])
                )
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for (i, _), y in results.items():
        assert_close(y, expected[i])
    assert len(results) == 12


def test_concurrent_transforms_are_correct():
    rng = np.random.default_rng(5)
    xs = [rng.standard_normal((8, 250)) for _ in range(4)]
    barrier = threading.Barrier(4)
    out = {}

    def work(i):
        barrier.wait()
        for r in range(10):
            out[i, r] = fft.rfftn(xs[i], axes=(1,))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == 40
    for (i, _), X in out.items():
        assert_close(X, np.fft.rfft(xs[i], axis=1))


# --------------------------------------------------------------------------------------------
# provisional plans: measured again once the time limit cut them short


@pytest.fixture
def planner(monkeypatch):
    """An empty pool whose plans report ``planner.seconds`` of planning (default: all of the
    time limit, as when FFTW's measuring is cut short); ``planner.limits`` logs each build's
    limit."""
    monkeypatch.setattr(fft, "_pool", fft._PlanPool())
    monkeypatch.setenv("SPECCONV_PLANNING_TIMELIMIT", "0.01")
    build = fft._PlanPool._build
    log = SimpleNamespace(limits=[], seconds=None)

    def reporting(*key, timelimit, estimate=None):
        plan, _ = build(*key, timelimit=timelimit, estimate=estimate)
        log.limits.append(timelimit)
        return plan, timelimit if log.seconds is None else log.seconds

    monkeypatch.setattr(fft._PlanPool, "_build", staticmethod(reporting))
    return log


MEASURED = ((4, 64, 256), np.float64, (4, 64, 129), np.complex128, (1, 2))  # 2^16: measured


def _transform_is_right(plan):
    x = np.random.default_rng(5).standard_normal(MEASURED[0])
    plan.input_array[...] = x
    plan.execute()
    assert_close(plan.output_array, np.fft.rfftn(x, axes=(1, 2)))


def test_a_plan_cut_short_is_measured_again_when_next_borrowed(planner):
    with fft.borrow(*MEASURED, threads=1) as first:
        with fft.borrow(*MEASURED, threads=1):  # its twin, lent at the same time
            pass
    assert planner.limits == [0.01, 0.01]
    planner.seconds = 0.001  # measured to the end, this time
    with fft.borrow(*MEASURED, threads=1) as again:
        assert again is not first
        _transform_is_right(again)
    assert planner.limits == [0.01, 0.01, 0.01 * fft.REMEASURE_FACTOR]
    with fft.borrow(*MEASURED, threads=1) as reused:  # no more measuring: the new plan is lent
        assert reused is again
    assert len(planner.limits) == 3


def test_a_plan_lent_while_its_transform_is_measured_again_is_dropped_on_return(planner):
    lent = fft.borrow(*MEASURED, threads=1)
    stale = lent.__enter__()
    with fft.borrow(*MEASURED, threads=1):  # its twin, back in the pool first
        pass
    planner.seconds = 0.001
    with fft.borrow(*MEASURED, threads=1) as remeasured:
        pass
    lent.__exit__(None, None, None)  # comes back after the new measuring: not kept
    with fft.borrow(*MEASURED, threads=1) as a, fft.borrow(*MEASURED, threads=1) as b:
        assert remeasured in (a, b) and stale not in (a, b)
    assert planner.limits == [0.01, 0.01, 0.01 * fft.REMEASURE_FACTOR, 0.01]


def test_a_plan_measured_to_the_end_or_estimated_is_kept(planner):
    planner.seconds = 0.0
    with fft.borrow(*MEASURED, threads=1) as first:
        pass
    small = ((16,), np.float64, (9,), np.complex128, (0,))  # estimated: under MEASURE_FROM
    planner.seconds = None
    with fft.borrow(*small, threads=1) as estimated:
        pass
    with fft.borrow(*MEASURED, threads=1) as p, fft.borrow(*small, threads=1) as q:
        assert p is first and q is estimated
    assert len(planner.limits) == 2


def test_a_transform_is_measured_again_once_at_most(planner):
    for _ in range(4):  # every plan reports its measuring cut short
        with fft.borrow(*MEASURED, threads=1), fft.borrow(*MEASURED, threads=1):
            pass
    assert planner.limits == [0.01, 0.01, 0.01 * fft.REMEASURE_FACTOR, 0.01]


def test_spectra_a_page_long_are_spread_a_cache_line_apart():
    spread = fft.spread_empty((5, 32, 32), np.complex128, 2)  # 16 KB per transform
    assert spread.strides[0] == 32 * 32 * 16 + fft.LINE_BYTES
    assert spread.ctypes.data % fft._fftw().simd_alignment == 0  # every block: as aligned
    spread[...] = np.arange(5)[:, None, None]  # every block its own memory
    np.testing.assert_array_equal(spread[:, 7, 9], np.arange(5))
    assert fft.spread_empty((5, 30, 32), np.complex128, 2).flags.c_contiguous  # 15 KB: as is
    assert fft.spread_empty((4, 512), np.float64, 1).strides[0] == 4096 + fft.LINE_BYTES


def test_a_reshape_that_would_copy_is_refused():
    rows = np.zeros((4, 6))
    assert fft.reshaped_view(rows[:, :4], (2, 2, 4)).base is rows
    with pytest.raises(ValueError, match=r"strides \(48, 8\) has no view of shape \(16,\)"):
        fft.reshaped_view(rows[:, :4], (16,))
