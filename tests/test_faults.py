"""Faults while writing: outputs that alias their input, signals, full disks, read-only folders.

Everything is real: files linked and mapped the ways users link and map them, signals sent to
a ``python -m specconv apply`` subprocess, full file systems (a small tmpfs, mounted when the
tests run as root) and read-only ones. After each failure the checks are the same: the input
unchanged, nothing partial and no temporary folder left, no file handle left open.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from specconv import SpectralConv, _atomic, io
from specconv.outofcore import apply
from specconv.signal import VectorSignal

h5py = pytest.importorskip("h5py")

REPO = Path(__file__).resolve().parents[1]


def _listing(folder):
    return sorted(p.name for p in Path(folder).iterdir())


def _open_files():
    """This process's open file descriptors and what they point to."""
    gc.collect()  # arrays dropped with a traceback may hold a mapping until collected
    out = {}
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            out[fd] = os.readlink(f"/proc/self/fd/{fd}")
    return out


def _new_files(before):
    after = _open_files()
    return {fd: target for fd, target in after.items() if before.get(fd) != target}


@pytest.fixture
def layer():
    rng = np.random.default_rng(19)
    return SpectralConv(rng.standard_normal((3, 3, 9)).astype(np.float32), padding="same")


@pytest.fixture
def x():
    return np.random.default_rng(7).standard_normal((3, 5000)).astype(np.float32)


def _mount_tmpfs(path, options):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")


def _unmount(path):
    if subprocess.run(["umount", str(path)], capture_output=True, check=False).returncode:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


@pytest.fixture
def full_disk(tmp_path):
    """A 256 KiB file system: every output below is larger."""
    path = tmp_path / "small"
    _mount_tmpfs(path, "size=256k")
    yield path
    _unmount(path)


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder nobody may write: a read-only mount as root, else permissions."""
    path = tmp_path / "locked"
    if os.geteuid() == 0:
        _mount_tmpfs(path, "ro,size=64k")
        yield path
        _unmount(path)
        return
    path.mkdir()
    path.chmod(0o500)
    try:
        if os.access(path, os.W_OK):
            pytest.skip("running with privileges that ignore directory permissions")
        yield path
    finally:
        path.chmod(0o700)


# ----------------------------------------------------------------------------- aliasing
def _alias_cases(folder, x):
    """(name, source, target factory) for outputs that are the input under another name."""
    np.save(folder / "x.npy", x)
    os.link(folder / "x.npy", folder / "hard.npy")
    os.symlink(folder / "x.npy", folder / "sym.npy")
    with h5py.File(folder / "x.h5", "w") as f:
        f["x"] = x
        f.create_dataset("y", shape=x.shape, dtype=x.dtype)
    return {
        "the same array": (x, lambda: x),
        "a view of it": (x, lambda: x[::-1]),
        "a writable memmap of the source file": (
            folder / "x.npy",
            lambda: np.load(folder / "x.npy", mmap_mode="r+"),
        ),
        "an ndarray view of that memmap": (
            folder / "x.npy",
            lambda: np.asarray(np.load(folder / "x.npy", mmap_mode="r+")),
        ),
        "a hard link to the source file": (folder / "x.npy", lambda: folder / "hard.npy"),
        "a symlink to the source file": (folder / "x.npy", lambda: folder / "sym.npy"),
        "the source memmap's file by another name": (
            np.load(folder / "x.npy", mmap_mode="r"),
            lambda: folder / "hard.npy",
        ),
        "the HDF5 file of the source dataset": (folder / "x.h5", lambda: folder / "x.h5"),
    }


ALIASES = [
    "the same array",
    "a view of it",
    "a writable memmap of the source file",
    "an ndarray view of that memmap",
    "a hard link to the source file",
    "a symlink to the source file",
    "the source memmap's file by another name",
    "the HDF5 file of the source dataset",
]


@pytest.mark.parametrize("case", ALIASES)
def test_outofcore_refuses_targets_that_alias_the_source(tmp_path, layer, x, case):
    original = x.copy()
    source, make_target = _alias_cases(tmp_path, x)[case]
    files = {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    target = make_target()
    with pytest.raises(
        ValueError,
        match=r"^(target shares memory with the input|Refusing to "
        r"write over the input file .*target is)",
    ):
        apply(layer, source, target, dataset="x", overwrite=True, chunk_size=1000, progress=False)
    np.testing.assert_array_equal(x, original)
    assert {p: p.read_bytes() for p in files} == files
    assert not any(p.name.startswith(".specconv-") for p in tmp_path.iterdir())


def test_outofcore_refuses_a_dataset_in_the_source_file(tmp_path, layer, x):
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["x"] = x
        f.create_dataset("y", shape=x.shape, dtype=x.dtype)
    with h5py.File(tmp_path / "x.h5", "r+") as f:
        with pytest.raises(ValueError, match=r"input file .*x\.h5.*target is stored in"):
            apply(layer, f["x"], f["y"], progress=False)
        np.testing.assert_array_equal(f["x"][...], x)
        assert not f["y"][...].any()


def test_outofcore_computes_into_a_separate_memmap(tmp_path, layer, x):
    """The refusals above are about aliasing, not memmap targets as such."""
    np.save(tmp_path / "x.npy", x)
    y = np.lib.format.open_memmap(tmp_path / "y.npy", "w+", np.float32, x.shape)
    apply(layer, tmp_path / "x.npy", y, chunk_size=700, progress=False)
    np.testing.assert_allclose(y, layer(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("link", ["hard", "sym"])
def test_io_write_refuses_the_input_under_another_name(tmp_path, x, link):
    io.write(VectorSignal(x, sfreq=100.0), tmp_path / "x.npz")
    (os.link if link == "hard" else os.symlink)(tmp_path / "x.npz", tmp_path / "y.npz")
    before = (tmp_path / "x.npz").read_bytes()
    sig = io.read(tmp_path / "y.npz")
    with pytest.raises(ValueError, match=r"Refusing to write over the input file"):
        io.write(sig.replace(data=sig.data * 2), tmp_path / "x.npz", overwrite=True)
    assert (tmp_path / "x.npz").read_bytes() == before
    assert _listing(tmp_path) == ["x.npz", "y.npz"]


def test_io_write_refuses_the_file_a_memmapped_signal_reads(tmp_path, x):
    np.save(tmp_path / "x.npy", x)
    before = (tmp_path / "x.npy").read_bytes()
    sig = VectorSignal(np.load(tmp_path / "x.npy", mmap_mode="r"), sfreq=100.0)  # no metadata
    with pytest.raises(ValueError, match=r"input file .*x\.npy.*path is .*x\.npy"):
        io.write(sig, tmp_path / "x.npy", overwrite=True)
    assert (tmp_path / "x.npy").read_bytes() == before
    assert _listing(tmp_path) == ["x.npy"]


@pytest.mark.parametrize("link", ["hard", "sym"])
def test_cli_refuses_the_input_under_another_name(tmp_path, x, link, capsys):
    from specconv.cli import main

    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "k.npy", np.ones((3, 3, 5), np.float32))
    (os.link if link == "hard" else os.symlink)(tmp_path / "x.npy", tmp_path / "out.npy")
    before = (tmp_path / "x.npy").read_bytes()
    status = main(
        [
            "apply",
            str(tmp_path / "x.npy"),
            "--kernel",
            str(tmp_path / "k.npy"),
            "-o",
            str(tmp_path / "out.npy"),
            "--overwrite",
        ]
    )
    assert status == 2
    assert "refusing to write" in capsys.readouterr().err.lower()
    assert (tmp_path / "x.npy").read_bytes() == before
    assert _listing(tmp_path) == ["k.npy", "out.npy", "x.npy"]


@pytest.mark.parametrize("how", ["same folder", "hard link", "symlink"])
def test_map_files_refuses_outputs_that_are_inputs_before_any_task(tmp_path, x, how):
    from specconv.dask import map_files

    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    out.mkdir()
    paths = []
    for k in range(3):
        paths.append(inputs / f"rec{k}.npz")
        io.write(VectorSignal(x + k, sfreq=100.0), paths[-1])
    contents = [p.read_bytes() for p in paths]
    if how == "same folder":
        out = inputs
    elif how == "hard link":  # rec1's output would land on rec2's input
        os.link(paths[2], out / "rec1.npz")
    else:
        os.symlink(paths[2], out / "rec1.npz")
    before = _listing(out)
    layer = SpectralConv(np.ones((3, 1, 5), np.float32) / 5, groups=3, padding="same")
    with pytest.raises(
        ValueError,
        match=r"Refusing to write over the input file .*the output "
        r"in out_dir is",
    ):
        map_files(paths, layer, out, overwrite=True)
    assert [p.read_bytes() for p in paths] == contents
    assert _listing(out) == before  # not even rec0 was written


# ------------------------------------------------------------------------------ signals
def _default_signals():
    """In the job: the ending signals at their defaults, as in a terminal. A test run under
    nohup or as a background job would hand SIGHUP/SIGINT down ignored, and the command
    rightly keeps a signal its caller chose to ignore."""
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        signal.signal(getattr(signal, name), signal.SIG_DFL)


def _cli(args, **kwargs):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen(
        [sys.executable, "-X", "faulthandler", "-m", "specconv", *map(str, args)],
        env=env,
        preexec_fn=_default_signals,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


@pytest.fixture(scope="module")
def long_job(tmp_path_factory):
    """An input and a kernel that take a second or more to convolve (32 x 32 channels)."""
    folder = tmp_path_factory.mktemp("long")
    rng = np.random.default_rng(0)
    np.save(folder / "x.npy", rng.standard_normal((32, 300_000)).astype(np.float32))
    np.save(folder / "k.npy", rng.standard_normal((32, 32, 257)).astype(np.float32))
    return folder


def _temporaries(folder):
    return [p for p in Path(folder).iterdir() if p.name.startswith(".specconv-")]


def _start_and_wait_for_temporary(long_job, out):
    proc = _cli(["apply", long_job / "x.npy", "--kernel", long_job / "k.npy", "-o", out / "y.npy"])
    deadline = time.monotonic() + 120
    while not _temporaries(out):
        if proc.poll() is not None:
            raise AssertionError(f"the job ended first: {proc.returncode} {proc.stderr.read()}")
        assert time.monotonic() < deadline, "no temporary folder appeared"
        time.sleep(0.005)
    return proc


def _finish(proc, timeout=60):
    """The job's stderr once it ends; a hung job is aborted to show its threads' stacks."""
    try:
        return proc.communicate(timeout=timeout)[1]
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)  # faulthandler prints every thread's stack
        raise AssertionError(f"the job hangs:\n{proc.communicate()[1]}") from None


@pytest.mark.parametrize(
    "signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=lambda s: signal.Signals(s).name
)
def test_a_signal_mid_job_leaves_nothing_and_exits_128_plus_signum(tmp_path, long_job, signum):
    proc = _start_and_wait_for_temporary(long_job, tmp_path)
    proc.send_signal(signum)
    err = _finish(proc)
    assert proc.returncode == 128 + signum, err
    assert "no output was written" in err
    assert _listing(tmp_path) == []


def test_after_sigkill_the_next_write_removes_the_dead_owners_temporary(tmp_path, long_job, x):
    proc = _start_and_wait_for_temporary(long_job, tmp_path)
    proc.kill()
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    [stale] = _temporaries(tmp_path)
    # one a live process owns (this one), and one whose owner cannot be told: both stay
    live = Path(tempfile.mkdtemp(prefix=_atomic._owner_prefix(), suffix=".tmp", dir=tmp_path))
    (live / "y.npy").write_bytes(b"being written")
    unknown = tmp_path / ".specconv-abc123.tmp"
    unknown.mkdir()
    io.write(VectorSignal(x, sfreq=100.0), tmp_path / "next.npz")
    assert not stale.exists()
    assert sorted(_temporaries(tmp_path)) == sorted([live, unknown])
    assert (live / "y.npy").read_bytes() == b"being written"


def test_temporaries_are_judged_by_pid_start_time_and_boot(tmp_path):
    """A recycled pid (same pid, later start) is dead; another host's folder is never ours."""
    host, boot = _atomic._tag(__import__("socket").gethostname()), _atomic._tag(_atomic._boot_id())
    pid, start = os.getpid(), _atomic._start_ticks(os.getpid())
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    names = {
        f".specconv-{pid}-{host}{boot}-{start}-aaaa.tmp": True,  # this process: kept
        f".specconv-{pid}-{host}{boot}-{start + 1}-bbbb.tmp": False,  # pid recycled
        f".specconv-{dead}-{host}{boot}-1-cccc.tmp": False,  # process gone
        f".specconv-{pid}-{host}{_atomic._tag('other boot')}-{start}-dddd.tmp": False,
        f".specconv-{dead}-{_atomic._tag('other host')}{boot}-1-eeee.tmp": True,
        ".specconv-ffff.tmp": True,  # no owner recorded
    }
    for name in names:
        (tmp_path / name).mkdir()
    (tmp_path / ".specconv-1-notadir.tmp").write_text("a file, not ours")
    removed = _atomic.remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in removed) == sorted(n for n, keep in names.items() if not keep)
    assert sorted(_listing(tmp_path)) == sorted(
        [n for n, keep in names.items() if keep] + [".specconv-1-notadir.tmp"]
    )


def test_the_library_leaves_signal_handlers_alone(tmp_path, layer, x):
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    io.write(VectorSignal(x, sfreq=100.0), tmp_path / "a.npy")
    apply(layer, x, tmp_path / "b.npy", progress=False)
    from specconv.cli import main

    np.save(tmp_path / "k.npy", np.ones((3, 3, 5), np.float32))
    assert (
        main(
            [
                "apply",
                str(tmp_path / "a.npy"),
                "--kernel",
                str(tmp_path / "k.npy"),
                "-o",
                str(tmp_path / "c.npy"),
            ]
        )
        == 0
    )  # the CLI restores them
    assert {s: signal.getsignal(s) for s in handlers} == handlers


# ---------------------------------------------------------------------------- full disk
def _time_signal(n=64_000, channels=4, scale=0.4):
    data = np.random.default_rng(3).uniform(-scale, scale, (channels, n))
    return VectorSignal(data, sfreq=8000.0)


# name -> (file name, signal, options): each several times larger than the file system
FORMATS = {
    "npy": ("out.npy", lambda: _time_signal(), {}),
    "npz": ("out.npz", lambda: _time_signal(), {}),
    "npz-compressed": ("out.npz", lambda: _time_signal(), {"compressed": True}),
    "cfl": ("out.cfl", lambda: VectorSignal(_time_signal().data + 1j, domain="kspace"), {}),
    "fastmri": (
        "out.h5",
        lambda: VectorSignal((_time_signal().data + 1j).reshape(4, 250, 256), domain="kspace"),
        {},
    ),
    "wav": ("out.wav", lambda: _time_signal(), {"subtype": "PCM_16"}),
    "flac": ("out.flac", lambda: _time_signal(200_000), {"subtype": "PCM_24"}),
    "ogg": ("out.ogg", lambda: _time_signal(1_500_000, 2), {}),
    "fif": ("out_raw.fif", lambda: _time_signal(), {}),
    "edf": ("out.edf", lambda: _time_signal(), {}),
    "bdf": ("out.bdf", lambda: _time_signal(), {}),
    "brainvision": ("out.vhdr", lambda: _time_signal(), {"ch_types": "eeg"}),
    "eeglab": ("out.set", lambda: _time_signal(), {}),
}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_full_disk_names_the_file_and_the_cause_and_leaves_nothing(tmp_path, full_disk, fmt):
    name, make, options = FORMATS[fmt]
    sig = make()
    (tmp_path / "roomy").mkdir()
    io.write(sig, tmp_path / "roomy" / name, **options)  # it fits elsewhere; imports done
    assert sum(p.stat().st_size for p in (tmp_path / "roomy").iterdir()) > 256 * 1024
    before = _open_files()
    with pytest.raises(OSError, match=r"No space left on device") as caught:
        io.write(sig, full_disk / name, **options)
    assert caught.value.errno == errno.ENOSPC
    assert caught.value.filename == str(full_disk / name)
    assert _listing(full_disk) == []
    assert _new_files(before) == {}


@pytest.mark.parametrize("suffix", [".npy", ".h5", "_raw.fif"])
def test_full_disk_out_of_core_closes_everything(tmp_path, full_disk, layer, suffix):
    x = np.random.default_rng(5).standard_normal((3, 60_000)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    options = {"sfreq": 100.0} if suffix.endswith(".fif") else {}
    apply(
        layer,
        tmp_path / "x.npy",
        tmp_path / f"warm{suffix}",
        chunk_size=20_000,
        progress=False,
        **options,
    )
    before = _open_files()
    with pytest.raises(OSError, match=r"No space left on device") as caught:
        apply(
            layer,
            tmp_path / "x.npy",
            full_disk / f"y{suffix}",
            chunk_size=20_000,
            progress=False,
            **options,
        )
    assert caught.value.errno == errno.ENOSPC
    assert caught.value.filename == str(full_disk / f"y{suffix}")
    assert _listing(full_disk) == []
    assert _new_files(before) == {}
    assert not h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_FILE)
    os.statvfs(full_disk)  # the space is free again: nothing holds a deleted file
    assert os.statvfs(full_disk).f_bfree == os.statvfs(full_disk).f_blocks


def test_full_disk_hdf5_process_exits_cleanly(tmp_path, full_disk):
    """The HDF5 library used to crash at exit over the file it could not flush."""
    np.save(tmp_path / "x.npy", np.ones((3, 60_000), np.float32))
    code = (
        "import errno, numpy as np\n"
        "from specconv import SpectralConv\n"
        "from specconv.outofcore import apply\n"
        "layer = SpectralConv(np.ones((3, 3, 9), np.float32), padding='same')\n"
        "try:\n"
        f"    apply(layer, {str(tmp_path / 'x.npy')!r}, {str(full_disk / 'y.h5')!r},\n"
        "          chunk_size=20_000, progress=False)\n"
        "except OSError as err:\n"
        "    print('ENOSPC' if err.errno == errno.ENOSPC else err)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "ENOSPC"), done.stderr
    assert _listing(full_disk) == []


# ------------------------------------------------------------------------ read-only folders
def test_read_only_folder_io_write(read_only_dir, x):
    with pytest.raises(PermissionError, match="Cannot write to the output directory"):
        io.write(VectorSignal(x, sfreq=100.0), read_only_dir / "y.npz")
    assert _listing(read_only_dir) == []


def test_read_only_folder_outofcore(read_only_dir, layer, x):
    with pytest.raises(PermissionError, match="Cannot write to the output directory"):
        apply(layer, x, read_only_dir / "y.npy", progress=False)
    assert _listing(read_only_dir) == []


def test_read_only_folder_cli_fails_before_the_work(tmp_path, read_only_dir, x, capsys):
    from specconv.cli import main

    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "k.npy", np.ones((3, 3, 5), np.float32))
    status = main(
        [
            "apply",
            str(tmp_path / "x.npy"),
            "--kernel",
            str(tmp_path / "k.npy"),
            "-o",
            str(read_only_dir / "y.npy"),
        ]
    )
    assert status == 2
    assert "Cannot write to the output directory" in capsys.readouterr().err
    assert _listing(read_only_dir) == []


# ------------------------------------------------------- exceptions at the worst moments
def test_an_interrupt_right_after_the_temporary_folder_is_made(tmp_path, monkeypatch, x):
    """A signal's exception can land just after ``mkdir`` returns: the folder still goes."""
    real_mkdir = os.mkdir

    def mkdir_then_interrupt(path, *args, **kwargs):
        real_mkdir(path, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "mkdir", mkdir_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        io.write(VectorSignal(x, sfreq=100.0), tmp_path / "y.npz")
    assert _listing(tmp_path) == []


def test_an_interrupt_between_the_files_of_a_set_leaves_no_incomplete_set(tmp_path, monkeypatch):
    pytest.importorskip("pybv")
    sig = _time_signal(2000)
    real_replace, calls = os.replace, []

    def replace_then_interrupt(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        io.write(sig, tmp_path / "y.vhdr", ch_types="eeg")
    assert len(calls) == 2  # one file of the three had been moved into place
    assert _listing(tmp_path) == []
