"""The cost model's constants measured on this machine: stored, reused, re-measured, guarded.

tests/conftest.py turns measuring off for the rest of the suite; every test here turns it back
on with an empty cache directory of its own.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import specconv
from specconv import _calibration, _compiled, _costmodel, _direct, _measure, fft
from specconv._geometry import Geometry
from specconv.cli import main

ROOT = Path(__file__).resolve().parents[1]

#: A process that needs the single-precision constants once (a small float32 layer).
SCRIPT = """
import numpy as np, specconv
from specconv import _calibration
x = np.ones((1, 2, 64), np.float32)
w = np.ones((2, 1, 3), np.float32)
specconv.conv(x, w, groups=2)
print(_calibration.measure_count)
"""


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache directory, measuring on, nothing loaded in this process."""
    monkeypatch.setenv("SPECCONV_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("SPECCONV_CALIBRATE", "1")
    _calibration.forget()
    yield tmp_path
    _calibration.forget()


def _env(cache_dir):
    return dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        SPECCONV_CACHE_DIR=str(cache_dir),
        SPECCONV_CALIBRATE="1",
        SPECCONV_PLANNING_TIMELIMIT="0.002",
    )


def _fake_entry(**constants):
    """A stored entry with ``constants`` (the shipped ones by default) and no losing loop."""
    values = dataclasses.asdict(_costmodel.SHIPPED["double"])
    values.update(constants)
    return {"constants": values, "losing": [], "timings": {}, "seconds": 0.0}


def _store(path, threads, **entries):
    _calibration._write(path, threads, entries)


def test_first_use_measures_and_stores_the_constants(cache):
    before = _calibration.measure_count
    x = np.random.default_rng(0).standard_normal((1, 4, 200)).astype(np.float32)
    w = np.random.default_rng(1).standard_normal((4, 1, 5)).astype(np.float32)
    specconv.conv(x, w, groups=4)
    assert _calibration.measure_count == before + 1
    threads = fft.get_num_threads()
    path = _calibration.calibration_path(threads)
    assert path.parent == cache
    stored = json.loads(path.read_text())
    assert stored["format"] == _calibration.FORMAT
    assert stored["key"] == _calibration.machine_key(threads)
    assert list(stored["entries"]) == ["single"]  # only what the call needed
    measured = stored["entries"]["single"]["constants"]
    assert _costmodel.machine("single", threads) == dataclasses.replace(
        _costmodel.SHIPPED["single"], **measured
    )
    assert _costmodel.machine("single", threads) != _costmodel.SHIPPED["single"]
    # the same process asks again: no second measurement
    specconv.conv(x, w, groups=4)
    assert _calibration.measure_count == before + 1


def test_a_second_process_reuses_the_stored_file(tmp_path):
    first = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        check=True,
    )
    assert first.stdout.strip() == "1"
    (path,) = tmp_path.glob("calibration-*.json")
    mtime = path.stat().st_mtime_ns
    second = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        check=True,
    )
    assert second.stdout.strip() == "0"
    assert path.stat().st_mtime_ns == mtime


def test_processes_starting_together_measure_once_and_leave_one_whole_file(tmp_path):
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SCRIPT],
            env=_env(tmp_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err for _, err in outputs]
    files = sorted(
        p.name
        for p in tmp_path.iterdir()
        if "calibration" in p.name and not p.name.endswith(".lock")
    )
    assert len(files) == 1 and re.fullmatch(r"calibration-[0-9a-f]{16}\.json", files[0])
    assert "single" in json.loads((tmp_path / files[0]).read_text())["entries"]
    # the lock file serialises them: one measured, the others read its result
    assert sorted(int(out) for out, _ in outputs) == [0, 0, 0, 1]


def test_the_cli_measures_again_and_prints_measured_beside_shipped(cache, capsys):
    threads = fft.get_num_threads()
    path = _calibration.calibration_path(threads)
    _store(path, threads, single=_fake_entry(T_FFT=1e-9))
    before = _calibration.measure_count
    assert main(["calibrate", "--precision", "single"]) == 0
    assert _calibration.measure_count == before + 1
    out = capsys.readouterr().out
    assert str(path) in out
    assert re.search(r"T_FFT\s+8\.1e-11\s+\S+", out)
    assert re.search(r"single: compiled depthwise loop (used|OFF \(slower\)|: not built)", out)
    stored = json.loads(path.read_text())["entries"]["single"]["constants"]
    assert stored["T_FFT"] != 1e-9  # measured again, not the file's value
    assert _costmodel.machine("single", threads).T_FFT == stored["T_FFT"]


def test_sys_info_names_the_calibration_file(cache, capsys):
    assert main(["sys-info"]) == 0
    assert str(_calibration.calibration_path()) in capsys.readouterr().out


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"{ not json", "not valid JSON"),
        (b"\x80\x04\x95pickled", "not valid JSON"),
        (json.dumps({"format": "something else", "version": 1}).encode(), "not a version-1"),
        ("foreign", "another machine"),
        ("negative", "not positive, finite"),
        ("unknown constant", "not positive, finite"),
    ],
)
def test_a_corrupt_or_foreign_file_is_ignored_with_a_warning(cache, monkeypatch, content, reason):
    threads = fft.get_num_threads()
    path = _calibration.calibration_path(threads)
    entry = _fake_entry()
    if content == "foreign":
        payload = {
            "format": _calibration.FORMAT,
            "version": _calibration.VERSION,
            "key": dict(_calibration.machine_key(threads), cpu="another CPU"),
            "entries": {"double": entry},
        }
    elif content in ("negative", "unknown constant"):
        bad = _fake_entry(T_FFT=-1.0) if content == "negative" else _fake_entry(T_MAGIC=1.0)
        payload = {
            "format": _calibration.FORMAT,
            "version": _calibration.VERSION,
            "key": _calibration.machine_key(threads),
            "entries": {"double": bad},
        }
    if isinstance(content, str):
        content = json.dumps(payload).encode()
    path.write_bytes(content)
    measured = _fake_entry(T_FFT=3e-10)
    monkeypatch.setattr(_calibration, "measurer", lambda prec, threads: measured)
    with pytest.warns(RuntimeWarning, match=re.escape(str(path)) + ".*" + reason):
        got = _calibration.constants("double", threads)
    assert got == measured["constants"]
    rewritten = json.loads(path.read_text())
    assert rewritten["entries"] == {"double": measured}
    assert rewritten["key"] == _calibration.machine_key(threads)


def test_the_variable_turns_measuring_off(cache, monkeypatch):
    monkeypatch.setenv("SPECCONV_CALIBRATE", "0")

    def refuse(prec, threads):
        raise AssertionError("measured although SPECCONV_CALIBRATE=0")

    monkeypatch.setattr(_calibration, "measurer", refuse)
    x = np.random.default_rng(0).standard_normal((1, 4, 200))
    w = np.random.default_rng(1).standard_normal((4, 4, 5))
    specconv.conv(x, w)
    for prec in _calibration.PRECISIONS:
        assert _costmodel.machine(prec, fft.get_num_threads()) == _costmodel.SHIPPED[prec]
    assert not list(cache.iterdir())
    assert not _compiled.losing


# 64 depthwise channels of 128^2, 3 x 3 taps: the shipped constants take the direct method
DEPTHWISE = Geometry(1, 64, 64, 64, (3, 3), (1, 1), (1, 1), (130, 130), False)


def test_measured_constants_that_invert_a_choice_invert_it(cache):
    threads = fft.get_num_threads()
    shipped = _costmodel.SHIPPED["double"]
    assert _costmodel.choose(DEPTHWISE, "auto", 8, threads, constants=shipped).method == "direct"
    dear = dataclasses.replace(
        shipped,
        T_COMPILED_TAP=100 * shipped.T_COMPILED_TAP,
        T_DEPTHWISE_TAP=100 * shipped.T_DEPTHWISE_TAP,
    )
    assert _costmodel.choose(DEPTHWISE, "auto", 8, threads, constants=dear).method == "fft"
    # the same through a stored calibration, as a later process reads it
    _store(
        _calibration.calibration_path(threads),
        threads,
        double=_fake_entry(
            T_COMPILED_TAP=dear.T_COMPILED_TAP, T_DEPTHWISE_TAP=dear.T_DEPTHWISE_TAP
        ),
    )
    assert _costmodel.choose(DEPTHWISE, "auto", 8, threads).method == "fft"
    # and the other way round: dear transforms make the direct method win a long kernel
    long = Geometry(1, 8, 8, 1, (255,), (1,), (1,), (30_254,), False)
    assert _costmodel.choose(long, "auto", 8, threads, constants=shipped).method == "fft"
    dear_fft = dataclasses.replace(
        shipped, T_FFT=1000 * shipped.T_FFT, T_COPY=1000 * shipped.T_COPY
    )
    assert _costmodel.choose(long, "auto", 8, threads, constants=dear_fft).method == "direct"
    # a call's own overhead decides small layers: a dear FFT call sends one to the direct method
    small = Geometry(1, 2, 2, 1, (15,), (1,), (1,), (48_000,), False)
    assert _costmodel.choose(small, "auto", 8, threads, constants=shipped).method == "fft"
    dear_call = dataclasses.replace(shipped, T_FFT_CALL=100 * shipped.T_FFT_CALL)
    assert _costmodel.choose(small, "auto", 8, threads, constants=dear_call).method == "direct"


def test_the_fixed_costs_are_measured(cache):
    """The per-chunk and per-call overheads and the kernel spectra are timed on the machine at
    hand, not shipped."""
    entry = _calibration.recalibrate(["double"])["double"]
    for name in ("T_CHUNK", "T_FFT_CALL", "T_DIRECT_CALL", "T_SPECTRA", "T_ROW"):
        assert name in entry["constants"] and entry["constants"][name] > 0
    timed = {"64 chunks", "1 chunk", "fft call", "direct call", "kernel spectra"}
    assert timed | {"128 tiles of 10 x 18"} <= set(entry["timings"])


@pytest.mark.parametrize("residual, expected", [(0.0, 1 / 4), (1.0, 4.0)])
def test_the_row_residual_stays_near_the_shipped_value(cache, monkeypatch, residual, expected):
    """T_ROW, a layer's time less the model's price of the rest, is kept within
    RESIDUAL_FACTOR of the shipped value, however far the layer's time swings."""
    monkeypatch.setattr(_measure, "_row_overhead", lambda *args: residual)
    entry = _calibration.recalibrate(["single"])["single"]
    shipped = _costmodel.SHIPPED["single"].T_ROW
    assert _measure.RESIDUAL_FACTOR == 4.0
    assert entry["constants"]["T_ROW"] == pytest.approx(shipped * expected)


def test_dear_rows_and_spectra_passes_price_small_tiles_and_few_tiles_up():
    """A tile's rows cost beyond their points: dear ones make the chosen tiles longer. A
    product with few tiles per run streams its kernel spectra: dear passes make it dearer by
    exactly their bytes."""
    threads = 2
    shipped = _costmodel.SHIPPED["double"]
    geom = Geometry(4, 16, 16, 1, (3,), (1,), (1,), (8002,), False)
    cheap = dataclasses.replace(shipped, T_ROW=0.0)
    dear = dataclasses.replace(shipped, T_ROW=100 * shipped.T_ROW)

    def tile(c):
        return _costmodel.choose(geom, "fft", 8, threads, constants=c).tiling.fft_shape[0]

    assert tile(dear) > tile(cheap)
    small = Geometry(4, 256, 256, 1, (3, 3), (1, 1), (1, 1), (18, 18), False)
    plan = _costmodel.choose(small, "fft", 8, threads, spectra_cached=True, constants=shipped)
    more = dataclasses.replace(shipped, T_SPECTRA_PASS=2 * shipped.T_SPECTRA_PASS)
    dearer = _costmodel.fft_cost(
        small, plan.tiling.fft_shape, True, 8, workers=threads, constants=more
    )
    t = plan.tiling
    runs = -(-t.tiles[0] // t.chunk) * (small.batch // t.batch_block)
    passes = runs * _costmodel.spectra_bytes(small, t.fft_shape, 8) * shipped.T_SPECTRA_PASS
    assert dearer - plan.seconds == pytest.approx(passes)


class _Refusing:
    """Compiled loops that must not run (the calibration measured them slower)."""

    def __init__(self, loops):
        self._loops = loops

    def depthwise(self, *args):
        raise AssertionError("the compiled depthwise loop ran although it loses here")

    def product(self, *args):
        raise AssertionError("the compiled product ran although it loses here")


@pytest.mark.skipif(_compiled.loops is None, reason="no compiled loops in this install")
@pytest.mark.parametrize("method", ["auto", "fft", "direct"])
def test_loops_measured_slower_are_not_used_on_any_path(cache, monkeypatch, method):
    threads = fft.get_num_threads()
    entry = _fake_entry()
    entry["losing"] = [["depthwise", "float64"], ["product", "complex128"]]
    _store(_calibration.calibration_path(threads), threads, double=entry)
    monkeypatch.setattr(_compiled, "loops", _Refusing(_compiled.loops))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 16, 40, 40))
    for w, groups in [
        (rng.standard_normal((16, 1, 5, 5)), 16),
        (rng.standard_normal((16, 16, 3, 3)), 1),
    ]:
        y = specconv.conv(x, w, groups=groups, padding=1, method=method)
        ref = specconv.conv(x, w, groups=groups, padding=1, method="direct")
        np.testing.assert_allclose(y, ref, rtol=1e-9, atol=1e-9)
    assert not _compiled.use("depthwise", np.float64)
    assert not _direct.compiled_depthwise(DEPTHWISE, np.float64)
    # single precision was not measured slower: its loops stay on
    assert _compiled.use("depthwise", np.float32)


def test_the_key_names_the_compiled_build_and_level(monkeypatch):
    """A rebuilt extension or another level is another machine: the key holds a digest of the
    module file and the level (it once held '?' for every build, from the loops' namespace)."""
    if _compiled.loops is None:
        pytest.skip("no compiled loops in this install")
    digest, level = _calibration._compiled_id().split()
    assert level == _compiled.level and re.fullmatch("[0-9a-f]{16}", digest)
    monkeypatch.setattr(_compiled, "loops", None)
    assert _calibration._compiled_id() is None
