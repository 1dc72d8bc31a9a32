"""Reading and writing through file mappings without filling resident memory.

Pages of a file mapping count as resident memory while mapped: :func:`copy_through_mapping`
copies row by row and drops the pages behind it, and a whole-file ``np.memmap`` is read with
positioned reads instead (:func:`file_behind`, :func:`pread_into`), which skip the mapping.
"""

from __future__ import annotations

import contextlib
import math
import mmap
import os

import numpy as np


def shared_memmap(arr):
    """The shared ``mmap`` behind ``arr`` if its pages may be dropped after reading, else None.

    Pages of a file mapping count as resident memory while mapped; dropping them
    (``MADV_DONTNEED``) after each chunk keeps the footprint bounded. Only shared mappings
    qualify: for a copy-on-write ``np.memmap`` (mode 'c') it would discard the user's edits.
    """
    if not hasattr(mmap, "MADV_DONTNEED"):
        return None
    obj, shared = arr, False
    while obj is not None:
        if isinstance(obj, np.memmap) and getattr(obj, "mode", None) in ("r", "r+", "w+"):
            shared = True
        if isinstance(obj, mmap.mmap):
            return obj if shared else None
        obj = getattr(obj, "base", None)
    return None


def _release(mm):
    if mm is not None:
        with contextlib.suppress(ValueError, OSError):  # closed or not supported
            mm.madvise(mmap.MADV_DONTNEED)


#: Bytes copied through a file mapping between releases of its pages. A page fault may map a
#: whole large folio of the page cache (MBs on recent kernels), so a chunk read in one go can
#: map far more than the chunk itself; copying row by row and releasing often keeps the
#: mapped, resident part small.
_MAPPED_BYTES = 256 * 2**10


def copy_through_mapping(dst, src, axis, mm):
    """``dst[...] = src[...]`` one row (index of the axes before ``axis``) at a time."""
    row_bytes = math.prod(src.shape[axis:]) * src.dtype.itemsize
    pending = 0
    for idx in np.ndindex(*src.shape[:axis]):
        dst[idx] = src[idx]
        pending += row_bytes
        if pending >= _MAPPED_BYTES:
            _release(mm)
            pending = 0
    _release(mm)


def file_behind(arr):
    """``(path, offset)`` of the file holding ``arr``, if positioned reads may replace slicing.

    Reading a chunk with ``preadv`` takes half the CPU time of copying it through the mapping
    (no page faults, no mapped pages to release), and out-of-core work shares the CPU with
    the engine. Only a C-contiguous array that is a shared mapping itself qualifies: a view's
    ``offset`` attribute is its parent's, and a copy-on-write mapping may hold edits the file
    lacks.
    """
    if (
        hasattr(os, "preadv")
        and isinstance(arr, np.memmap)
        and isinstance(arr.base, mmap.mmap)
        and arr.filename
        and getattr(arr, "mode", None) in ("r", "r+", "w+")
        and arr.flags.c_contiguous
    ):
        return arr.filename, arr.offset
    return None


def pread_into(fd, buf, pos, name):
    """Fill ``buf`` (C-contiguous) from ``fd`` at ``pos``; a short file is an error."""
    view = memoryview(buf).cast("B")
    done = 0
    while done < len(view):  # Linux reads at most ~2 GB per call
        n = os.preadv(fd, [view[done:]], pos + done)
        if n == 0:
            raise OSError(f"{name} ended before the array it should hold (truncated file?).")
        done += n
