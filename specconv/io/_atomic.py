"""All-or-nothing output files.

Writers never write to the final path. They write into a hidden temporary directory created
next to it (same filesystem, so the final ``os.replace`` is atomic), under the final file
names -- MNE and pybv derive companion names and naming conventions from them -- and only a
complete result is moved into place. Any exception, KeyboardInterrupt included, removes the
temporary directory and leaves the destination as it was.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

logger = logging.getLogger("specconv")

__all__ = ["atomic_output", "same_file"]


def same_file(a, b):
    """Whether paths ``a`` and ``b`` name the same file (following links)."""
    a, b = Path(a), Path(b)
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


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
def atomic_output(targets, *, overwrite=False, protected=()):
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

    Yields
    ------
    list of Path
        One temporary path per target, with the target's file name.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from specconv.io._atomic import atomic_output
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
    try:
        tmpdir = Path(tempfile.mkdtemp(prefix=".specconv-", suffix=".tmp", dir=parent))
    except PermissionError as err:
        raise PermissionError(
            f"Cannot write to the output directory {str(parent)!r}: {err.strerror}."
        ) from err
    try:
        tmp_paths = [tmpdir / t.name for t in targets]
        yield tmp_paths
        missing = [str(p.name) for p in tmp_paths if not p.exists()]
        if missing:
            raise RuntimeError(f"internal error: the writer did not produce {missing}.")
        # Companion files a backend adds on its own (e.g. split parts) move too, first.
        declared = {p.name for p in tmp_paths}
        extra = sorted(p for p in tmpdir.iterdir() if p.name not in declared)
        moves = [(p, parent / p.name) for p in extra] + list(zip(tmp_paths, targets))
        for _, final in moves:  # again: files may have appeared meanwhile
            _check_target(final, overwrite, protected)
        for tmp, final in moves:
            os.replace(tmp, final)
            logger.debug("wrote %s", final)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
