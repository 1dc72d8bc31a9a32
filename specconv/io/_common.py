"""Pieces every adapter shares: the error type, path checks and backend-error translation."""

from __future__ import annotations

import contextlib
import os
import re
import struct
import warnings
from pathlib import Path

import numpy as np

__all__ = ["FormatError", "as_path", "reading", "require_time_signal", "companions"]


class FormatError(ValueError):
    """A file that cannot be read as (or written to) the format it was taken for.

    Raised for truncated or corrupt files, unknown formats and extension/content mismatches.
    It is a :class:`ValueError`, so ``except ValueError`` keeps working.
    """


def as_path(path, name="path"):
    """Return ``path`` as a :class:`pathlib.Path` (TypeError for anything else)."""
    if isinstance(path, (str, os.PathLike)):
        return Path(path)
    raise TypeError(f"{name} must be a str or os.PathLike, got {type(path).__name__}.")


# Backend warnings that mean "the file is shorter than its header says". The backends read
# what is there and warn; specconv treats it as an error unless the caller allows it.
TRUNCATION_WARNINGS = (
    r"Reached EOF prematurely",  # scipy.io.wavfile
    r"Number of records from the header does not match the file size",  # mne EDF/BDF/GDF
    r"FIF tag directory missing",  # mne FIF
    r"Invalid tag with only",  # mne FIF
)

# Exceptions third-party readers raise for malformed input. Missing files and permission
# problems are not format problems: they pass through unchanged.
_BACKEND_ERRORS = (
    ValueError,
    OSError,
    EOFError,
    KeyError,
    IndexError,
    struct.error,
    RuntimeError,
    AttributeError,
    UnicodeDecodeError,
)


@contextlib.contextmanager
def reading(path, fmt, *, allow_truncated=False):
    """Translate a backend's failure to read ``path`` into a :class:`FormatError`.

    Warnings the backend emits are held back: when the read fails they become part of the
    error message (one clear error instead of a warning cascade); when it succeeds they are
    re-emitted, except the "file shorter than its header" ones, which are an error unless
    ``allow_truncated`` is true.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        except (FileNotFoundError, PermissionError, IsADirectoryError, FormatError):
            raise
        except _BACKEND_ERRORS as err:
            said = "".join(f" [{w.category.__name__}: {w.message}]" for w in caught)
            raise FormatError(
                f"Could not read {str(path)!r} as {fmt}: {type(err).__name__}: {err}{said}"
            ) from err
    truncated = [
        w for w in caught if any(re.search(p, str(w.message)) for p in TRUNCATION_WARNINGS)
    ]
    if truncated and not allow_truncated:
        raise FormatError(
            f"{str(path)!r} looks truncated or corrupt ({fmt}): {truncated[0].message} Pass "
            "allow_truncated=True to read what is there."
        )
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def require_time_signal(sig, fmt, *, batched_ok=False, complex_ok=False):
    """Check that ``sig`` fits a time-series format (names the format in the error)."""
    if sig.domain != "time":
        raise ValueError(
            f"{fmt} stores time series, but the signal's domain is {sig.domain!r}; write it "
            "as .npy/.npz (or .h5/.cfl for k-space) instead."
        )
    if sig.batched and not batched_ok:
        raise ValueError(
            f"{fmt} stores one continuous recording, but the signal is batched "
            f"(shape {sig.data.shape}); write it as .fif or .npz, or pick one batch entry."
        )
    if np.iscomplexobj(sig.data) and not complex_ok:
        raise ValueError(
            f"{fmt} stores real samples, but the signal is complex ({sig.data.dtype}); take "
            "the real part or magnitude first, or write .npy/.npz."
        )


def companions(path, suffixes):
    """``path`` with each of ``suffixes`` (the files of a multi-file format)."""
    path = Path(path)
    return [path.with_suffix(s) for s in suffixes]
