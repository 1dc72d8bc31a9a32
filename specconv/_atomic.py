"""All-or-nothing output files, and the checks that keep outputs off their inputs.

The one implementation for every file specconv writes: the adapters (``io``), ``outofcore``,
FFTW wisdom (``fft``) and the calibration (``_calibration``). It sits low in the layers and
imports nothing from specconv, so the core may use it too.

Writers never write to the final path. They write into a hidden temporary directory created
next to it (same filesystem, so the final ``os.replace`` is atomic), under the final file
names -- MNE and pybv derive companion names and naming conventions from them -- and only a
complete result is moved into place. Any exception, KeyboardInterrupt included, removes the
temporary directory and leaves the destination as it was.

A process killed outright (SIGKILL, power loss) cannot clean up, so the temporary directory's
name records its owner: ``.specconv-<pid>-<host+boot tag>-<start time>-<random>.tmp``. The next
write into the same directory removes those whose owner is gone (no such process, a process
started later under the recycled pid, or an earlier boot of this host); a directory whose
owner still runs, or that another host made, is left alone.

:func:`check_not_aliased` is the one test of "this output is (part of) that input" for every
entry point: shared memory, or one file under two names (hard links, symlinks, the file
behind an ``np.memmap`` or an h5py dataset).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import secrets
import shutil
import socket
import sys
from pathlib import Path

import numpy as np

logger = logging.getLogger("specconv")

__all__ = [
    "atomic_output",
    "check_not_aliased",
    "files_behind",
    "remove_stale_temporaries",
    "same_file",
    "temporary_directory",
    "write_error",
]


# ----------------------------------------------------------------------------- aliasing
def same_file(a, b):
    """Whether paths ``a`` and ``b`` name the same file (hard links and symlinks included).

    Existing files are compared by device and inode; a path that does not exist yet is
    compared by its resolved name.

    Examples
    --------
    >>> import os, pathlib, tempfile
    >>> from specconv._atomic import same_file
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> (folder / "a.npy").write_bytes(b"x")
    1
    >>> os.link(folder / "a.npy", folder / "b.npy")
    >>> same_file(folder / "a.npy", folder / "b.npy"), same_file(folder / "a.npy", folder / "c")
    (True, False)
    """
    a, b = Path(a), Path(b)
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def _memmap_file(arr):
    """The file behind ``arr`` (an ndarray or a view of one), if it is a memory map."""
    obj = arr
    while obj is not None:
        name = getattr(obj, "filename", None)
        if isinstance(obj, np.memmap) and name:
            return Path(name)
        obj = getattr(obj, "base", None)
    return None


def files_behind(obj):
    """The files an output or input object writes or reads (paths, memmaps, h5py, MNE).

    Parameters
    ----------
    obj : path-like, ndarray, h5py.Dataset or h5py.File, mne.io.Raw, or None

    Returns
    -------
    list of Path
    """
    if obj is None:
        return []
    if isinstance(obj, (str, os.PathLike)):
        return [Path(obj)]
    if isinstance(obj, np.ndarray):
        path = _memmap_file(obj)
        return [path] if path is not None else []
    h5py = sys.modules.get("h5py")
    if h5py is not None and isinstance(obj, (h5py.Dataset, h5py.Group)):
        with contextlib.suppress(Exception):  # a closed file has no name
            return [Path(obj.file.filename)]
        return []
    mne = sys.modules.get("mne")
    if mne is not None and isinstance(obj, mne.io.BaseRaw):
        return [Path(f) for f in obj.filenames if f]
    return []


def _shares_memory(a, b):
    if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
        return False
    if not np.may_share_memory(a, b):
        return False
    try:  # bounds overlap; exact answer when cheap, else assume the worst
        return bool(np.shares_memory(a, b, max_work=10**6))  # type: ignore[arg-type]  # stubs: -1/0 only
    except getattr(np, "exceptions", np).TooHardError:  # np.exceptions: numpy >= 1.25
        return True


def check_not_aliased(target, sources, name="target"):
    """Refuse an output that is, or shares memory or a file with, one of ``sources``.

    Parameters
    ----------
    target : path-like, ndarray, h5py.Dataset or other output object
    sources : sequence
        The inputs: paths, arrays (memmaps included), h5py datasets, MNE Raw objects.
    name : str
        The parameter that holds ``target``, for the message.

    Raises
    ------
    ValueError
        ``target`` would write over (part of) an input.

    Examples
    --------
    >>> import numpy as np
    >>> from specconv._atomic import check_not_aliased
    >>> x = np.zeros((2, 10))
    >>> check_not_aliased(np.zeros((2, 10)), [x])
    >>> check_not_aliased(x[:, 5:], [x])
    Traceback (most recent call last):
    ...
    ValueError: target shares memory with the input ...
    """
    target_files = files_behind(target)
    for source in sources:
        if source is None:
            continue
        if _shares_memory(target, source):
            raise ValueError(
                f"{name} shares memory with the input (the output would overwrite the samples "
                "it is computed from); pass a separate array, or None to get a new one."
            )
        for t in target_files:
            for s in files_behind(source):
                if same_file(t, s):
                    how = "is" if isinstance(target, (str, os.PathLike)) else "is stored in"
                    raise ValueError(
                        f"Refusing to write over the input file {str(s)!r}: {name} {how} "
                        f"{str(t)!r}, the same file; choose another output (specconv never "
                        "modifies its input)."
                    )


# ------------------------------------------------------------------ stale temporaries
_TEMP_PREFIX = ".specconv-"
_TEMP_SUFFIX = ".tmp"
# .specconv-<pid>-<host tag><boot tag>-<start ticks>-<mkdtemp's random part>.tmp
_OWNED = re.compile(r"^\.specconv-(\d+)-([0-9a-f]{8})([0-9a-f]{8})-(\d+)-[^/]+\.tmp$")


def _tag(text):
    return hashlib.blake2s(text.encode(), digest_size=4).hexdigest()


def _boot_id():
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _start_ticks(pid):
    """The start time of process ``pid`` (clock ticks after boot); None when it is gone, or
    is a zombie; 0 when the system does not tell (then only its existence is checked)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        stat = None
    if stat is not None:
        fields = stat[stat.rindex(")") + 2 :].split()
        return None if fields[0] in ("Z", "X") else int(fields[19])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # exists, owned by someone else
        pass
    return 0


def _owner_prefix():
    pid = os.getpid()
    return (
        f"{_TEMP_PREFIX}{pid}-{_tag(socket.gethostname())}{_tag(_boot_id())}-"
        f"{_start_ticks(pid) or 0}-"
    )


def _is_stale(name, host, boot):
    """Whether the temporary directory ``name`` belongs to a process that no longer runs."""
    m = _OWNED.match(name)
    if m is None or m[2] != host:  # not ours to judge: an older format, another host
        return False
    if m[3] != boot:  # made before this host last booted
        return True
    ticks = _start_ticks(int(m[1]))
    return ticks is None or (ticks != 0 and int(m[4]) != 0 and ticks != int(m[4]))


def remove_stale_temporaries(folder):
    """Remove the temporary directories of dead specconv processes in ``folder``.

    Never touches one whose owner still runs (or might: another host's, an older format's).

    Returns
    -------
    list of Path
        What was removed.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from specconv._atomic import remove_stale_temporaries
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> remove_stale_temporaries(folder)
    []
    """
    host, boot = _tag(socket.gethostname()), _tag(_boot_id())
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not (entry.name.startswith(_TEMP_PREFIX) and entry.name.endswith(_TEMP_SUFFIX)):
            continue
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False) and _is_stale(entry.name, host, boot):
                shutil.rmtree(entry.path)
                removed.append(Path(entry.path))
                logger.info("removed %s, left by a specconv process that was killed", entry.path)
    return removed


@contextlib.contextmanager
def temporary_directory(parent):
    """A new owner-tagged temporary directory in ``parent``, removed at the end of the block.

    Stale ones are removed first. The directory is made inside the ``try`` whose ``finally``
    removes it: an exception raised by a signal handler just after ``mkdir`` returns (where
    :func:`tempfile.mkdtemp` would leave it behind) still finds it cleaned up.
    """
    remove_stale_temporaries(parent)
    path = None
    try:
        for _ in range(100):
            path = Path(parent) / f"{_owner_prefix()}{secrets.token_hex(8)}{_TEMP_SUFFIX}"
            try:
                os.mkdir(path, 0o700)
                break
            except FileExistsError:  # not ours (64 random bits: practically never)
                path = None
            except OSError as err:
                path = None
                better = _unwritable(parent, err)
                if better is None:
                    raise
                raise better from err
        else:
            raise FileExistsError(f"Cannot create a temporary directory in {str(parent)!r}.")
        yield path
    finally:
        if path is not None:
            shutil.rmtree(path, ignore_errors=True)


def _unwritable(parent, err):
    if err.errno == errno.EROFS:
        why = "it is on a read-only file system"
    elif isinstance(err, PermissionError):
        why = err.strerror
    else:
        return None
    return PermissionError(
        err.errno, f"Cannot write to the output directory {str(parent)!r}: {why}."
    )


# ------------------------------------------------------------------------ write errors
_SHORT_WRITE = re.compile(r"(\d+) requested and (\d+) written")
_FULL = (errno.ENOSPC, errno.EDQUOT)


def _disk_full(folder, missing):
    """Whether the file system of ``folder`` lacks ``missing`` bytes (or is all but full)."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < max(missing, 16 * st.f_frsize)


def write_error(err, target, folder):
    """The error to raise for ``err`` while writing ``target``, or None to keep ``err``.

    Backends often lose the file's name (h5py names the temporary file) or the cause (numpy
    reports a full disk as "N requested and M written", libsndfile as "System error", both
    without errno). The replacement names the target and the cause; it must be built while
    the partial output still fills ``folder``, which tells a full disk from other failures.
    """
    if isinstance(
        err,
        (
            FileExistsError,
            FileNotFoundError,
            IsADirectoryError,
            NotADirectoryError,
            PermissionError,
        ),
    ):
        return None
    if not (isinstance(err, OSError) or type(err).__name__ == "LibsndfileError"):
        return None
    text = str(err)
    short = _SHORT_WRITE.search(text)
    code = getattr(err, "errno", None) if isinstance(err, OSError) else None
    if code is None and "No space left on device" in text:
        code = errno.ENOSPC
    if code is None and _disk_full(folder, int(short[1]) - int(short[2]) if short else 0):
        code = errno.ENOSPC
    if code in _FULL:
        detail = getattr(err, "strerror", None) or ""  # a writer's own detail, not a dump
        detail = f" ({detail})" if detail.startswith("needs ") else ""
        return OSError(
            code,
            f"{os.strerror(code)} while writing the output{detail}; the partial file was removed",
            str(target),
        )
    if code is None and short is not None:
        return OSError(
            f"Could not write {str(target)!r}: {err} (a short write: the device "
            "failed or a size limit was reached); the partial file was removed."
        )
    return None


# ------------------------------------------------------------------------ atomic output
def _check_target(path, overwrite, protected):
    parent = path.parent
    if not parent.exists():
        raise FileNotFoundError(f"Output directory {str(parent)!r} does not exist.")
    if not parent.is_dir():
        raise NotADirectoryError(f"Output path {str(path)!r}: {str(parent)!r} is not a directory.")
    for source in protected:
        if same_file(path, source):
            raise ValueError(
                f"Refusing to write over the input file {str(source)!r}: choose another "
                "output path (specconv never modifies its input)."
            )
    if path.is_dir():
        raise IsADirectoryError(f"Output path {str(path)!r} is a directory, not a file name.")
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"Output file {str(path)!r} already exists; pass overwrite=True to replace it."
        )


@contextlib.contextmanager
def atomic_output(targets, *, overwrite=False, protected=(), label=None):
    """Yield temporary paths for ``targets``; move them into place only on success.

    Parameters
    ----------
    targets : sequence of path-like
        The final files, all in one directory, in the order they are moved into place
        (put a header that names the other files last).
    overwrite : bool
        Replace existing files. Without it an existing target raises FileExistsError.
    protected : sequence of path-like
        Files that must never be written (the input of a pipeline), whatever ``overwrite``.
    label : path-like, optional
        The file to name in errors (default: the first target).

    Yields
    ------
    list of Path
        One temporary path per target, with the target's file name.

    Raises
    ------
    OSError
        The body's full-disk or short-write error, with ``errno.ENOSPC`` where that is the
        cause, naming ``label`` (see :func:`write_error`).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from specconv._atomic import atomic_output
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> with atomic_output([folder / "a.txt"]) as (tmp,):
    ...     _ = tmp.write_text("complete")
    >>> (folder / "a.txt").read_text()
    'complete'
    >>> try:
    ...     with atomic_output([folder / "b.txt"]) as (tmp,):
    ...         _ = tmp.write_text("half")
    ...         raise KeyboardInterrupt
    ... except KeyboardInterrupt:
    ...     pass
    >>> sorted(p.name for p in folder.iterdir())
    ['a.txt']
    """
    targets = [Path(t) for t in targets]
    parents = {t.parent.resolve() for t in targets if t.parent.exists()}
    if len(parents) > 1:
        raise ValueError(f"targets must share one directory, got {targets}.")
    for t in targets:
        _check_target(t, overwrite, protected)
    parent = targets[0].parent
    with temporary_directory(parent) as tmpdir:
        tmp_paths = [tmpdir / t.name for t in targets]
        try:
            yield tmp_paths
        except Exception as err:
            better = write_error(err, targets[0] if label is None else label, tmpdir)
            if better is None:
                raise
            raise better from err
        missing = [str(p.name) for p in tmp_paths if not p.exists()]
        if missing:
            raise RuntimeError(f"internal error: the writer did not produce {missing}.")
        # Companion files a backend adds on its own (e.g. split parts) move too, first.
        declared = {p.name for p in tmp_paths}
        extra = sorted(p for p in tmpdir.iterdir() if p.name not in declared)
        moves = [(p, parent / p.name) for p in extra] + list(zip(tmp_paths, targets))
        for _, final in moves:  # again: files may have appeared meanwhile
            _check_target(final, overwrite, protected)
        moved = []
        try:
            for tmp, final in moves:
                moved.append(final)
                os.replace(tmp, final)
                logger.debug("wrote %s", final)
        except BaseException:  # e.g. a signal between two files: no incomplete set stays
            for final in moved:
                with contextlib.suppress(OSError):
                    final.unlink()
            raise
