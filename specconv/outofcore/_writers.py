"""The outputs of :func:`specconv.outofcore.apply`: ``.npy`` and HDF5 files, arrays in place.

A writer takes each chunk's output with ``write(m0, y)`` (``m0``: its first index along the
chunked axis), in the I/O thread; ``close`` ends it. File writers write the temporary file
that :func:`specconv._atomic.atomic_output` later moves into place.
"""

from __future__ import annotations

import collections
import errno
import math
import os
from io import FileIO

import numpy as np

from .._optional import soft_import
from ._loop import run
from ._mapping import copy_through_mapping, shared_memmap


class _H5File(FileIO):
    """An HDF5 target's file, handed to h5py as a file object.

    After an error it discards writes: closing an HDF5 file flushes it, and when that flush
    fails too (a full disk) HDF5 keeps the file open -- its space held, the temporary file
    undeletable in practice -- and crashes at exit. The file is thrown away anyway.
    """

    discard = False

    def write(self, data):
        if self.discard:
            return memoryview(data).nbytes
        return super().write(data)

    def truncate(self, size=None):
        if self.discard:
            return self.tell() if size is None else size
        return super().truncate(size)

    def flush(self):
        if not self.discard:
            super().flush()


def write_h5(chunker, path, dataset, progress):
    h5py = soft_import("h5py", "mri", purpose="writing HDF5 files")
    fh = _H5File(path, "w+")
    try:
        f = h5py.File(fh, "w")
        try:
            dset = f.create_dataset(dataset, shape=chunker.out_shape, dtype=chunker.dtype)
            run(chunker, ArrayWriter(dset, chunker.axis), progress)
        except BaseException:
            fh.discard = True  # what is left to flush goes nowhere: closing cannot fail
            f.close()
            raise
        try:
            f.close()
        except BaseException:
            fh.discard = True  # the final flush failed: close without it
            f.close()
            raise
    finally:
        fh.discard = True  # nothing reaches the file after this, whatever HDF5 still holds
        fh.close()


class NpyWriter:
    """A ``.npy`` file written with positioned writes (no mapping: no resident pages).

    Written chunks leave the page cache soon after (``POSIX_FADV_DONTNEED``: on Linux it
    starts the write-back of dirty pages and drops clean ones), so a long output does not push
    everything else out of the cache and the next chunks reuse the freed pages.
    """

    def __init__(self, path, shape, dtype, axis):
        self.shape, self.dtype, self.axis = shape, np.dtype(dtype), axis
        self.f = open(path, "wb")  # noqa: SIM115 - closed in close()
        try:
            self._reserve(path)
        except BaseException:
            self.f.close()
            raise
        self._recent: collections.deque = collections.deque(
            maxlen=3
        )  # file ranges of the last chunks written

    def _reserve(self, path):
        header = {
            "descr": np.lib.format.dtype_to_descr(self.dtype),
            "fortran_order": False,
            "shape": self.shape,
        }
        np.lib.format.write_array_header_2_0(self.f, header)
        self.offset = self.f.tell()
        size = self.offset + math.prod(self.shape) * self.dtype.itemsize
        try:  # blocks reserved now: a full disk fails at once, and the writes cost less CPU
            os.posix_fallocate(self.f.fileno(), 0, size)
        except AttributeError:  # not on this platform
            self.f.truncate(size)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise OSError(exc.errno, f"needs {size} bytes", path) from exc
            self.f.truncate(size)  # not supported by this file system

    def write(self, m0, y):
        # every index before the chunk axis selects one contiguous run in the file
        inner = math.prod(self.shape[self.axis + 1 :]) * self.dtype.itemsize
        n_axis = self.shape[self.axis]
        y = np.ascontiguousarray(y, dtype=self.dtype)
        flat = y.reshape(-1, math.prod(y.shape[self.axis :]))
        fd = self.f.fileno()
        ranges = []
        for k, row in enumerate(flat):
            pos = self.offset + (k * n_axis + m0) * inner
            view = row.data.cast("B")
            done = 0
            while done < len(view):  # Linux writes at most ~2 GB per call
                done += os.pwrite(fd, view[done:], pos + done)
            ranges.append((pos, len(view)))
        self._recent.append(ranges)
        if hasattr(os, "posix_fadvise"):
            # this chunk: start its write-back; two chunks ago: written by now, drop it
            for old in (self._recent[-1], self._recent[0] if len(self._recent) == 3 else ()):
                for pos, n in old:
                    os.posix_fadvise(fd, pos, n, os.POSIX_FADV_DONTNEED)

    def close(self):
        self.f.close()


class ArrayWriter:
    """An array-like target (np.memmap, h5py.Dataset, ndarray) written in place."""

    def __init__(self, arr, axis):
        self.arr, self.axis = arr, axis
        self._mm = shared_memmap(arr) if isinstance(arr, np.ndarray) else None

    def write(self, m0, y):
        index = (slice(None),) * self.axis + (slice(m0, m0 + y.shape[self.axis]),)
        if self._mm is None:
            self.arr[index] = y
        else:  # dirty pages of a shared mapping stay in the page cache when unmapped
            copy_through_mapping(self.arr[index], y, self.axis, self._mm)

    def close(self):
        if isinstance(self.arr, np.memmap):
            self.arr.flush()
