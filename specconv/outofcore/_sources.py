"""The inputs of :func:`specconv.outofcore.apply`: arrays, HDF5 datasets, MNE Raw, files.

Every source reads ``[lo, hi)`` along one axis (``read``), says whether it fills a buffer it
is given (``fills_buffers``) and releases what it opened (``close``); :func:`open_source`
picks one for a path or an object and names the file behind it.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import numpy as np

from .._optional import soft_import
from ..io import FormatError
from ._mapping import copy_through_mapping, file_behind, pread_into, shared_memmap

H5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5")


def _is_raw(obj):
    mne = sys.modules.get("mne")
    return mne is not None and isinstance(obj, mne.io.BaseRaw)


class ArraySource:
    """Any array-like with ``shape``, ``dtype`` and basic slicing (memmap, h5py, ...)."""

    def __init__(self, arr, name):
        self.arr, self.name = arr, name
        self.shape = tuple(arr.shape)
        self.dtype = np.dtype(arr.dtype)
        if self.dtype.kind not in "biufc":
            raise TypeError(f"source must hold numbers, got dtype {self.dtype}.")
        self._mm, self._fd, self._offset = None, None, 0
        behind = file_behind(arr)
        if behind is not None:
            self._fd, self._offset = os.open(behind[0], os.O_RDONLY), behind[1]
        elif isinstance(arr, np.ndarray):
            self._mm = shared_memmap(arr)

    @property
    def fills_buffers(self):
        """Whether ``read`` fills the ``out`` it is given (rather than allocating)."""
        return self._fd is not None

    def read(self, axis, lo, hi, out=None):
        if self._fd is not None:  # every index before the axis selects one run in the file
            shape = self.shape[:axis] + (hi - lo,) + self.shape[axis + 1 :]
            if out is None or out.shape != shape:
                out = np.empty(shape, self.dtype)
            inner = math.prod(self.shape[axis + 1 :]) * self.dtype.itemsize
            for k, row in enumerate(out.reshape(math.prod(self.shape[:axis]), -1)):
                pos = self._offset + (k * self.shape[axis] + lo) * inner
                pread_into(self._fd, row, pos, self.name)
            return out
        index = (slice(None),) * axis + (slice(lo, hi),)
        view = self.arr[index]
        if self._mm is None:
            return np.asarray(view)
        out = np.empty(view.shape, view.dtype)
        copy_through_mapping(out, view, axis, self._mm)
        return out

    owned = False  # a mapping apply() opened itself: dropped at close, even while a
    # traceback still holds this object (its file stays open as long as the mapping lives)

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self.owned:
            self.arr = self._mm = None


class RawSource:
    """An MNE Raw (``preload=False`` reads from disk on demand), as ``(C, n_times)``."""

    def __init__(self, raw, picks, reject_by_annotation):
        if reject_by_annotation not in (None, "NaN"):
            raise ValueError(
                f"reject_by_annotation must be None or 'NaN' (bad segments become NaN and "
                f"stay local), got {reject_by_annotation!r}."
            )
        self.raw, self.reject = raw, reject_by_annotation
        names = raw.copy().pick(picks).ch_names if picks is not None else raw.ch_names
        self.picks = np.array([raw.ch_names.index(n) for n in names])
        self.shape = (len(self.picks), raw.n_times)
        self.dtype = np.dtype(np.float64)
        self.name = str(raw.filenames[0]) if raw.filenames and raw.filenames[0] else "Raw"

    fills_buffers = False

    def read(self, axis, lo, hi, out=None):
        return self.raw.get_data(
            picks=self.picks, start=lo, stop=hi, reject_by_annotation=self.reject
        )

    def close(self):
        pass


def open_source(source, dataset, picks, reject_by_annotation, stack):
    """The input adapter for ``source`` (its files: :func:`specconv._atomic.files_behind`)."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"No such file: {str(path)!r}.")
        name = path.name.lower()
        if name.endswith(".npy"):
            src = ArraySource(np.load(path, mmap_mode="r"), str(path))
            src.owned = True
            return src
        if name.endswith(H5_SUFFIXES):
            h5py = soft_import("h5py", "mri", purpose="reading HDF5 files")
            f = stack.enter_context(h5py.File(path, "r"))
            if dataset is not None and not isinstance(dataset, str):
                raise TypeError(
                    f"dataset must be a str (an HDF5 path) or None, got "
                    f"{type(dataset).__name__} {dataset!r}."
                )
            if dataset is None:
                names = [k for k, v in f.items() if isinstance(v, h5py.Dataset)]
                if len(names) != 1:
                    raise ValueError(
                        f"{str(path)!r} holds the datasets {names}; choose one with dataset=."
                    )
                dataset = names[0]
            if not isinstance(f.get(dataset), h5py.Dataset):
                names = [k for k, v in f.items() if isinstance(v, h5py.Dataset)]
                raise FormatError(
                    f"{str(path)!r} has no dataset {dataset!r} (it has {names}); "
                    f"choose one with dataset=."
                )
            return ArraySource(f[dataset], f"{path}:{dataset}")
        mne = soft_import("mne", "eeg", purpose="reading EEG/MEG files")
        raw = mne.io.read_raw(path, preload=False, verbose="error")
        return RawSource(raw, picks, reject_by_annotation)
    if _is_raw(source):
        return RawSource(source, picks, reject_by_annotation)
    if not all(hasattr(source, a) for a in ("shape", "dtype", "__getitem__")):
        raise TypeError(
            "source must be a path, an MNE Raw, or an array-like with shape, dtype and "
            f"slicing (np.memmap, h5py.Dataset, ...), got {type(source).__name__}."
        )
    return ArraySource(source, type(source).__name__)
