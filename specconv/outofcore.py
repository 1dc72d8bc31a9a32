"""Out-of-core: apply a conv layer to recordings larger than memory, from disk to disk.

:func:`apply` reads the input in chunks along its first spatial axis (time for 1-D layers),
each chunk with the halo the kernel needs, runs the layer on it and writes the chunk's output
(in the background, while the next chunk is computed). Peak memory is set by
``memory_budget``, not by the length of the recording.

Inputs: ``np.memmap`` (and ``.npy`` files, opened memory-mapped), h5py datasets (and HDF5
files), MNE ``Raw`` objects read with ``preload=False`` (and any file ``mne.io.read_raw``
reads), or any array-like with ``shape``, ``dtype`` and slicing. Outputs: ``.npy``, HDF5 and
FIF files, written atomically (a temporary file next to the target, renamed when complete: an
error or Ctrl-C leaves nothing behind), or an array you opened yourself (``np.memmap``, h5py
dataset), written in place. A target that is the source under another name (the same array or
memory, a link to its file, a memmap of it, a dataset in its HDF5 file) is refused before
anything is written: the chunks would overwrite input samples still to be read.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import logging
import math
import mmap
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from io import FileIO
from pathlib import Path

import numpy as np

from . import fft
from ._optional import has_module, soft_import
from ._validate import as_bool, as_int, as_shape, result_dtype
from .io._atomic import atomic_output, check_not_aliased, files_behind
from .io._common import FormatError
from .layers import NUMPY_PAD_MODE, Planning, SpectralConv, check_padding_fits

logger = logging.getLogger("specconv")

__all__ = ["apply", "output_shape"]

_H5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5")
_FIF_SUFFIXES = (".fif", ".fif.gz")
DEFAULT_BUDGET = 256 * 2**20


# ------------------------------------------------------------------------------ geometry
def _check_layer(layer):
    if not isinstance(layer, SpectralConv):
        raise TypeError(f"layer must be a specconv.SpectralConv, got {type(layer).__name__}.")
    return layer


def output_shape(layer, shape):
    """The shape ``layer`` gives an input of ``shape`` (to create an output file yourself).

    Parameters
    ----------
    layer : SpectralConv
    shape : tuple of int
        ``(C_in, *spatial)`` or ``(B, C_in, *spatial)``.

    Returns
    -------
    tuple of int

    Examples
    --------
    >>> import numpy as np
    >>> from specconv import SpectralConv
    >>> from specconv.outofcore import output_shape
    >>> output_shape(SpectralConv(np.ones((8, 4, 101)), stride=2), (4, 10_000))
    (8, 4950)
    """
    return _output_shape(layer, shape)


def _output_shape(layer, shape, name="shape"):
    """:func:`output_shape`; ``name`` is the parameter the errors name (``source`` in apply)."""
    _check_layer(layer)
    shape = as_shape(name, shape)
    d = layer.ndim
    if len(shape) not in (d + 1, d + 2):
        raise ValueError(
            f"{name} must be (C_in, *spatial) or (B, C_in, *spatial) with {d} spatial "
            f"dimension(s), got shape {shape}."
        )
    lead = shape[: len(shape) - d - 1]
    if shape[len(lead)] != layer.in_channels:
        raise ValueError(
            f"the input has {shape[len(lead)]} channels but the layer expects "
            f"{layer.in_channels} ({name} of shape {shape})."
        )
    out = []
    for a, n in enumerate(shape[-d:]):
        (pl, pr), s, e = layer.pads[a], layer.stride[a], layer.kernel_span[a]
        m = (n + pl + pr - e) // s + 1
        if m < 1:
            raise ValueError(
                f"The kernel (span {e}) is larger than the padded input ({n + pl + pr}) "
                f"along spatial axis {a} ({name} of shape {shape})."
            )
        out.append(m)
    return lead + (layer.out_channels,) + tuple(out)


# -------------------------------------------------------------------------------- inputs
def _shared_memmap(arr):
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


def _copy_through_mapping(dst, src, axis, mm):
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


def _file_behind(arr):
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


def _pread_into(fd, buf, pos, name):
    """Fill ``buf`` (C-contiguous) from ``fd`` at ``pos``; a short file is an error."""
    view = memoryview(buf).cast("B")
    done = 0
    while done < len(view):  # Linux reads at most ~2 GB per call
        n = os.preadv(fd, [view[done:]], pos + done)
        if n == 0:
            raise OSError(f"{name} ended before the array it should hold (truncated file?).")
        done += n


def _is_raw(obj):
    mne = sys.modules.get("mne")
    return mne is not None and isinstance(obj, mne.io.BaseRaw)


def _is_h5_dataset(obj):
    h5py = sys.modules.get("h5py")
    return h5py is not None and isinstance(obj, h5py.Dataset)


class _ArraySource:
    """Any array-like with ``shape``, ``dtype`` and basic slicing (memmap, h5py, ...)."""

    def __init__(self, arr, name):
        self.arr, self.name = arr, name
        self.shape = tuple(arr.shape)
        self.dtype = np.dtype(arr.dtype)
        if self.dtype.kind not in "biufc":
            raise TypeError(f"source must hold numbers, got dtype {self.dtype}.")
        self._mm, self._fd, self._offset = None, None, 0
        behind = _file_behind(arr)
        if behind is not None:
            self._fd, self._offset = os.open(behind[0], os.O_RDONLY), behind[1]
        elif isinstance(arr, np.ndarray):
            self._mm = _shared_memmap(arr)

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
                _pread_into(self._fd, row, pos, self.name)
            return out
        index = (slice(None),) * axis + (slice(lo, hi),)
        view = self.arr[index]
        if self._mm is None:
            return np.asarray(view)
        out = np.empty(view.shape, view.dtype)
        _copy_through_mapping(out, view, axis, self._mm)
        return out

    owned = False  # a mapping apply() opened itself: dropped at close, even while a
    # traceback still holds this object (its file stays open as long as the mapping lives)

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self.owned:
            self.arr = self._mm = None


class _RawSource:
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


def _open_source(source, dataset, picks, reject_by_annotation, stack):
    """An input adapter for ``source`` and the file it reads (or None)."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"No such file: {str(path)!r}.")
        name = path.name.lower()
        if name.endswith(".npy"):
            src = _ArraySource(np.load(path, mmap_mode="r"), str(path))
            src.owned = True
            return src, path
        if name.endswith(_H5_SUFFIXES):
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
            return _ArraySource(f[dataset], f"{path}:{dataset}"), path
        mne = soft_import("mne", "eeg", purpose="reading EEG/MEG files")
        raw = mne.io.read_raw(path, preload=False, verbose="error")
        return _RawSource(raw, picks, reject_by_annotation), path
    if _is_raw(source):
        files = [Path(f) for f in source.filenames if f]
        return _RawSource(source, picks, reject_by_annotation), (files[0] if files else None)
    if not all(hasattr(source, a) for a in ("shape", "dtype", "__getitem__")):
        raise TypeError(
            "source must be a path, an MNE Raw, or an array-like with shape, dtype and "
            f"slicing (np.memmap, h5py.Dataset, ...), got {type(source).__name__}."
        )
    path = None
    if isinstance(source, np.memmap) and source.filename:
        path = Path(source.filename)
    elif _is_h5_dataset(source):
        path = Path(source.file.filename)
    return _ArraySource(source, type(source).__name__), path


# ------------------------------------------------------------------------------- outputs
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


def _write_h5(chunker, path, dataset, progress):
    h5py = soft_import("h5py", "mri", purpose="writing HDF5 files")
    fh = _H5File(path, "w+")
    try:
        f = h5py.File(fh, "w")
        try:
            dset = f.create_dataset(dataset, shape=chunker.out_shape, dtype=chunker.dtype)
            _run(chunker, _ArrayWriter(dset, chunker.axis), progress)
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


class _NpyWriter:
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
        self._recent = collections.deque(maxlen=3)  # file ranges of the last chunks written

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
            view = memoryview(row).cast("B")
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


class _ArrayWriter:
    """An array-like target (np.memmap, h5py.Dataset, ndarray) written in place."""

    def __init__(self, arr, axis):
        self.arr, self.axis = arr, axis
        self._mm = _shared_memmap(arr) if isinstance(arr, np.ndarray) else None

    def write(self, m0, y):
        index = (slice(None),) * self.axis + (slice(m0, m0 + y.shape[self.axis]),)
        if self._mm is None:
            self.arr[index] = y
        else:  # dirty pages of a shared mapping stay in the page cache when unmapped
            _copy_through_mapping(self.arr[index], y, self.axis, self._mm)

    def close(self):
        if isinstance(self.arr, np.memmap):
            self.arr.flush()


# --------------------------------------------------------------------------- the chunks
class _Chunker:
    """Output chunks along the first spatial axis, each from its input with the halo."""

    def __init__(self, layer, src, memory_budget, chunk_size=None):
        d = layer.ndim
        self.layer, self.src = layer, src
        shape = src.shape
        self.batched = len(shape) == d + 2
        self.out_shape = _output_shape(layer, shape, "source")
        self.axis = len(shape) - d  # the chunked axis in source and output arrays
        self.n_in = shape[self.axis]
        self.n_out = self.out_shape[self.axis]
        self.pads = layer.pads
        self.stride, self.span = layer.stride[0], layer.kernel_span[0]
        self.dtype = result_dtype(
            np.empty(0, src.dtype), layer.weight, layer.bias, names=("source", "weight", "bias")
        )
        check_padding_fits(layer.padding_mode, self.pads, shape[-d:])
        # every chunk runs through one valid-correlation layer of one geometry, so the
        # kernel spectra are computed once (the last chunk is padded to the same length);
        # the user's layer holds the frozen weight: no second copy
        planning = Planning(borrow_weight=True)
        if chunk_size is None:
            self.chunk, spectra_budget, self.estimate = _plan_chunk(self, memory_budget)
            planning = Planning(
                borrow_weight=True, spectra_cached=True, spectra_budget=spectra_budget
            )
        else:
            self.chunk = min(chunk_size, self.n_out)
            self.estimate = math.nan
        self.valid = SpectralConv(
            layer.weight,
            layer.bias,
            stride=layer.stride,
            padding=0,
            dilation=layer.dilation,
            groups=layer.groups,
            method=layer.method,
            nan_policy=layer.nan_policy,
            planning=planning,
        )

    def in_range(self, m0):
        """Source indices ``[lo, hi)`` along the axis that the outputs from ``m0`` need."""
        s = self.stride
        lo = m0 * s - self.pads[0][0]
        return lo, lo + (self.chunk - 1) * s + self.span

    def read(self, m0, out=None):
        """The input that outputs ``m0 .. m0 + chunk`` need, halo and padding included (in
        ``out``, a previous chunk's input, where the source can fill it)."""
        lo, hi = self.in_range(m0)
        x = self._read_padded(lo, hi, out)
        d = self.layer.ndim
        if d > 1 and any(p != (0, 0) for p in self.pads[1:]):
            widths = ((0, 0),) * (x.ndim - d + 1) + tuple(self.pads[1:])
            x = np.pad(x, widths, mode=NUMPY_PAD_MODE[self.layer.padding_mode])
        return x

    def run(self, m0, x, out=None):
        """Outputs ``m0 .. m0 + chunk`` (cropped at the end) from ``read(m0)`` (computed
        in ``out``, from :meth:`output_buffer`, if given)."""
        y = self.valid(x, out=out)
        stop = min(self.chunk, self.n_out - m0)
        return y[(slice(None),) * self.axis + (slice(0, stop),)]

    def output_buffer(self):
        """An array :meth:`run` can compute a chunk in."""
        shape = list(self.out_shape)
        shape[self.axis] = self.chunk
        return np.empty(shape, self.dtype)

    def compute(self, m0):
        return self.run(m0, self.read(m0))

    def _read_padded(self, lo, hi, out=None):
        n, axis = self.n_in, self.axis
        a, b = max(lo, 0), min(hi, n)
        if lo >= 0 and hi <= n:
            return self.src.read(axis, lo, hi, out)
        shape = list(self.src.shape)
        shape[axis] = hi - lo
        if out is not None and out.shape == tuple(shape):  # a chunk at an end: reuse the buffer
            x = out
            x.fill(0)
        else:
            x = np.zeros(shape, dtype=self.src.dtype)

        def put(i0, i1, values):  # source indices i0 .. i1 - 1 into the padded chunk
            x[(slice(None),) * axis + (slice(i0 - lo, i1 - lo),)] = values

        if b > a:
            put(a, b, self.src.read(axis, a, b))
        mode = self.layer.padding_mode
        if mode == "zeros":
            return x
        pl, pr = self.pads[0]
        for i0, i1 in ((max(lo, -pl), min(hi, 0)), (max(lo, n), min(hi, n + pr))):
            if i1 <= i0:
                continue
            idx = np.arange(i0, i1)
            if mode == "reflect":
                src_idx = np.where(idx < 0, -idx, 2 * (n - 1) - idx)
            elif mode == "replicate":
                src_idx = np.clip(idx, 0, n - 1)
            else:
                src_idx = idx % n
            r0, r1 = int(src_idx.min()), int(src_idx.max()) + 1
            part = self.src.read(axis, r0, r1)
            put(i0, i1, np.take(part, src_idx - r0, axis=axis))
        return x


def _engine_plan(chunker, m, spectra_budget):
    """Bytes and modelled seconds of the engine on a chunk of ``m`` outputs.

    Uses the engine's own plan (cost model and tiling) for this geometry, as the chunker's
    layer will run it: kernel spectra computed once (so longer tiles than a one-off call
    would pick) within ``spectra_budget`` bytes. Counts the kernel spectra, what computing
    them takes (one block of kernels), the tile buffers and the zero-padded input a worker
    gathers its last tiles from. The seconds are those of a chunk whose kernel spectra are
    already cached, as every chunk but the first, with the engine's chunks shared out among
    the workers.
    """
    from . import _costmodel, _engine
    from ._geometry import Geometry

    layer, src = chunker.layer, chunker.src
    d = layer.ndim
    spatial = list(src.shape[-d:])
    spatial[0] = (m - 1) * chunker.stride + chunker.span
    for a in range(1, d):
        spatial[a] += sum(chunker.pads[a])
    B = src.shape[0] if chunker.batched else 1
    dtype = chunker.dtype
    geom = Geometry(
        B,
        layer.in_channels,
        layer.out_channels,
        layer.groups,
        layer.kernel_size,
        layer.dilation,
        layer.stride,
        tuple(spatial),
        dtype.kind == "c",
    )
    workers = fft.get_num_threads()
    isz = dtype.itemsize
    choice = _costmodel.choose(
        geom, layer.method, isz, workers, spectra_cached=True, spectra_budget=spectra_budget
    )
    if choice.method == "direct":  # a zero-padded copy and the per-tap shifted inputs
        return 2 * B * layer.in_channels * math.prod(spatial) * isz, choice.seconds
    t = choice.tiling
    L = math.prod(t.fft_shape)
    F = math.prod(_engine.spectral_shape(t.fft_shape, geom.is_complex))
    # while the spectra are computed, one block of kernels at a time: the zero-padded
    # kernels and their transform in the kernels' precision
    esz = np.result_type(layer.weight.dtype, dtype).itemsize
    csz = np.result_type(dtype, np.complex64).itemsize
    computing = math.prod(_engine.spectra_block(geom, t.fft_shape, csz)) * (L + 2 * F) * esz
    tiles = t.chunk * math.prod(t.tiles[1:])
    per_tile = _costmodel.tile_bytes(geom, t.fft_shape, isz)
    per_chunk = t.batch_block * t.group_block * tiles * per_tile
    # the tile buffers are the pooled FFT plans' arrays: every chunk reuses the same ones;
    # a team's members hold one chunk between them, solo workers one chunk each
    buffers = per_chunk if t.team > 1 else min(workers, t.n_chunks) * per_chunk
    # a worker whose tiles run past the input's end gathers them from a zero-padded copy
    run = t.chunk // t.team
    gathered = (
        t.batch_block
        * geom.in_channels
        // layer.groups
        * t.group_block
        * ((run - 1) * t.step[0] + t.fft_shape[0])
        * math.prod(spatial[1:])
        * isz
    )
    buffers += min(workers, t.n_chunks * t.team) * gathered
    seconds = _costmodel.chunked_cost(geom, t, choice.seconds, isz, workers)
    # freed memory may stay resident: what computing the spectra took counts until the end
    spectra = _costmodel.spectra_bytes(geom, t.fft_shape, isz)
    # python, reading and hand-over per chunk: the same model's constant, as all of it
    per_chunk = _costmodel.machine(_costmodel.precision(isz, geom.is_complex), workers).T_IO_CHUNK
    return spectra + computing + buffers, seconds + per_chunk


#: Chunk lengths tried between the kernel span and the whole signal (geometrically spaced).
_CHUNK_CANDIDATES = 40
#: Shares of the memory budget the kernel spectra may take (longer tiles need more).
_SPECTRA_SHARES = (1 / 8, 1 / 4, 3 / 8, 1 / 2)


def _plan_chunk(chunker, budget):
    """The chunk length (outputs along the axis) and the spectra budget that fit ``budget``
    and run fastest.

    Candidates are chunk lengths spaced geometrically from the kernel span to the whole signal
    (then more finely up to the next one above the best), times a few shares of the budget
    for the kernel spectra (longer tiles waste less of each transform on the kernel's
    overlap, but their spectra take more memory). Among those whose working memory fits, the
    one with the least modelled time per output sample wins (the memory needed does not grow
    monotonically with the chunk, hence no bisection).
    """
    src, layer = chunker.src, chunker.layer
    B = src.shape[0] if chunker.batched else 1
    other_in = math.prod(src.shape[chunker.axis + 1 :])
    other_out = math.prod(chunker.out_shape[chunker.axis + 1 :])
    read = B * layer.in_channels * other_in * np.dtype(src.dtype).itemsize
    isz = chunker.dtype.itemsize
    out = B * layer.out_channels * other_out * isz

    def plan(m, spectra_budget):
        n_in = (m - 1) * chunker.stride + chunker.span
        engine, seconds = _engine_plan(chunker, m, spectra_budget)
        # the chunk, a copy of it if it holds NaNs, the next chunk being read, the output
        # and the previous one being written
        return 3 * n_in * read + 2 * m * out + engine, seconds / m

    def best_of(sizes, best=None):
        for share in _SPECTRA_SHARES:
            spectra_budget = int(share * budget)
            for m in sizes:
                need, per_sample = plan(m, spectra_budget)
                if need <= budget and (best is None or per_sample <= best[3] * 1.001):
                    best = (m, spectra_budget, need, per_sample)
        return best

    n = chunker.n_out
    floor = max(1, min(n, chunker.span))
    sizes = np.unique(np.append(np.geomspace(floor, n, _CHUNK_CANDIDATES).astype(np.int64), n))
    best = best_of(sizes.tolist())
    if best is not None and best[0] < n:  # refine up to the next length tried
        above = int(sizes[np.searchsorted(sizes, best[0], side="right")])
        best = best_of(np.linspace(best[0], above, 10).astype(np.int64)[1:-1].tolist(), best)
    if best is None:
        need = plan(floor, int(_SPECTRA_SHARES[0] * budget))[0]
        raise ValueError(
            f"memory_budget={budget} bytes is too small for this layer: one chunk of {floor} "
            f"output samples needs about {need} bytes."
        )
    return best[:3]


# ------------------------------------------------------------------------------ progress
@contextlib.contextmanager
def _progress_bar(total, progress, desc):
    """Yield an ``update(n)`` callable: a tqdm bar, or nothing when progress is off.

    ``progress=None`` shows a bar only on a terminal and only if tqdm is installed.
    """
    if progress is None:
        progress = sys.stderr is not None and sys.stderr.isatty() and has_module("tqdm")
    if not progress:
        yield lambda n: None
        return
    tqdm = soft_import("tqdm", "progress", purpose="progress bars")
    with tqdm.tqdm(total=total, unit="sample", unit_scale=True, desc=desc, leave=False) as bar:
        yield bar.update


# ---------------------------------------------------------------------------------- main
def apply(
    layer,
    source,
    target=None,
    *,
    dataset=None,
    target_dataset="data",
    picks=None,
    reject_by_annotation=None,
    memory_budget=DEFAULT_BUDGET,
    chunk_size=None,
    progress=None,
    overwrite=False,
    sfreq=None,
    ch_names=None,
):
    """Apply a conv layer to a recording chunk by chunk, with bounded memory.

    The result equals ``layer(source[...])`` computed in memory (PyTorch conv semantics, the
    layer's padding, stride, dilation, groups and padding mode), but only one chunk along the
    first spatial axis (time, for 1-D layers) and its kernel halo are in memory at a time.

    Parameters
    ----------
    layer : SpectralConv
    source : path-like, np.memmap, h5py.Dataset, mne.io.Raw or array-like
        ``(C_in, *spatial)`` or ``(B, C_in, *spatial)``. Paths: ``.npy`` (memory-mapped),
        HDF5 (see ``dataset``), or any file :func:`mne.io.read_raw` reads (``preload=False``).
        A Raw gives ``(n_channels, n_times)`` in SI units (see ``picks``).
    target : path-like, np.memmap, h5py.Dataset, ndarray or None
        ``.npy``, ``.h5``/``.hdf5`` (dataset ``target_dataset``) or ``.fif`` file, written to a
        temporary file and renamed when complete (an error or KeyboardInterrupt leaves no
        file, and an existing file is replaced only with ``overwrite=True``); or an array of
        :func:`output_shape`, written in place (not atomic); or None: return an ndarray.
    dataset : str, optional
        Dataset of an HDF5 ``source`` file (default: its only dataset).
    target_dataset : str
        Dataset name in an HDF5 ``target`` file.
    picks, reject_by_annotation : optional
        For MNE sources: channels as :meth:`mne.io.Raw.get_data` takes them (default all), and
        None or ``"NaN"`` (bad segments become NaN, which the layer keeps local).
    memory_budget : int
        Bytes for the working set: chunk buffers, kernel spectra, transform tiles. The chunk
        length is the longest that fits. Default 256 MiB.
    chunk_size : int, optional
        Output samples per chunk along the first spatial axis, instead of the longest that
        fits ``memory_budget``.
    progress : bool, optional
        Show a tqdm progress bar (extra ``progress``). Default: when stderr is a terminal.
    overwrite : bool
        Replace an existing ``target`` file.
    sfreq, ch_names : optional
        Sampling rate and channel names of a ``.fif`` target (taken from a Raw source when
        the channels map one to one, and sfreq divided by the stride).

    Returns
    -------
    Path, the target array, or ndarray
        The target file's path, the array written, or the result (``target=None``).

    Raises
    ------
    ValueError
        Shapes that do not fit the layer, a budget too small for one chunk, a ``target`` that
        is the source or shares memory or a file with it (checked before anything is written),
        an HDF5 ``source`` without the ``dataset`` (a :class:`specconv.io.FormatError`).
    FileExistsError
        ``target`` exists and ``overwrite`` is False.
    OSError
        The disk filled up (``errno.ENOSPC``, the target in ``filename``); nothing partial is
        kept and every file is closed.

    See Also
    --------
    output_shape : the shape of the result, to create an output array yourself.
    specconv.stream.StreamingConv : for live signals with a latency of one block.
    specconv.dask.conv_dask : the same chunking as a lazy dask array, for a cluster.

    Notes
    -----
    Memory: ``memory_budget`` covers what specconv allocates. Pages of a memory-mapped input
    or output count as resident memory too while mapped; they are released after every chunk
    (``madvise(MADV_DONTNEED)`` on shared mappings), and ``.npy`` targets are written with
    positioned writes instead of a mapping. Add the interpreter and libraries (about 100 MB).

    Speed: one I/O thread reads the next chunk and writes the previous one while a chunk is
    computed, at a slightly lower scheduling priority on Linux (it has a whole chunk's time;
    the computing threads work in lockstep, and preempting one stalls the others). Inputs and
    outputs take turns in two buffers each. A ``.npy`` source (or a read-only or shared
    ``np.memmap`` of a whole file) is read with positioned reads rather than through its
    mapping; a ``.npy`` target has its disk blocks reserved before the first chunk (a full disk
    fails at once, leaving nothing) and its written chunks are dropped from the page cache,
    which the output would otherwise fill. The chunk length and the tile length are planned
    together: every chunk reuses the kernel spectra, so the tiles are longer than a one-off
    call of the layer would use.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> import numpy as np
    >>> from specconv import SpectralConv
    >>> from specconv.outofcore import apply
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> x = np.lib.format.open_memmap(folder / "eeg.npy", mode="w+", dtype=np.float32,
    ...                               shape=(8, 100_000))
    >>> x[:] = np.random.default_rng(0).standard_normal(x.shape)
    >>> layer = SpectralConv(np.ones((8, 8, 51), np.float32) / 400, padding="same")
    >>> out = apply(layer, folder / "eeg.npy", folder / "filtered.npy",
    ...             memory_budget=8 * 2**20, progress=False)
    >>> y = np.load(out, mmap_mode="r")
    >>> y.shape, y.dtype
    ((8, 100000), dtype('float32'))
    >>> bool(np.allclose(y, layer(np.asarray(x)), atol=1e-5))
    True
    """
    layer = _check_layer(layer)
    memory_budget = as_int("memory_budget", memory_budget, minimum=1)
    overwrite = as_bool("overwrite", overwrite)
    if progress is not None:
        progress = as_bool("progress", progress)
    if chunk_size is not None:
        chunk_size = as_int("chunk_size", chunk_size, minimum=1)
    with contextlib.ExitStack() as stack:
        src, src_path = _open_source(source, dataset, picks, reject_by_annotation, stack)
        stack.callback(src.close)
        chunker = _Chunker(layer, src, int(memory_budget), chunk_size)
        logger.info(
            "out-of-core: %s -> %s in %d chunk(s) of %d samples (about %.0f MB working set)",
            src.name,
            chunker.out_shape,
            -(-chunker.n_out // chunker.chunk),
            chunker.chunk,
            chunker.estimate / 2**20,
        )
        check_not_aliased(target, [source, src_path], name="target")
        if target is None:
            result = np.empty(chunker.out_shape, chunker.dtype)
            _run(chunker, _ArrayWriter(result, chunker.axis), progress)
            return result
        if not isinstance(target, (str, os.PathLike)):
            if tuple(target.shape) != chunker.out_shape:
                raise ValueError(
                    f"target has shape {tuple(target.shape)} but the output has shape "
                    f"{chunker.out_shape} (see output_shape)."
                )
            writer = _ArrayWriter(target, chunker.axis)
            try:
                _run(chunker, writer, progress)
            finally:
                writer.close()
            return target
        target = Path(target)
        name = target.name.lower()
        if not name.endswith((".npy", *_H5_SUFFIXES, *_FIF_SUFFIXES)):
            raise ValueError(
                f"Cannot choose an output format for {str(target)!r}: use a .npy, "
                f"{', '.join(_H5_SUFFIXES)} or .fif file name, or pass an array."
            )
        protected = [p for p in files_behind(source) + [src_path] if p is not None]
        with atomic_output([target], overwrite=overwrite, protected=protected) as (tmp,):
            if name.endswith(".npy"):
                writer = _NpyWriter(tmp, chunker.out_shape, chunker.dtype, chunker.axis)
                try:
                    _run(chunker, writer, progress)
                finally:
                    writer.close()
            elif name.endswith(_H5_SUFFIXES):
                _write_h5(chunker, tmp, target_dataset, progress)
            else:
                _write_fif(chunker, tmp, progress, sfreq, ch_names)
        return target


#: How much lower the I/O thread's priority is than the caller's (Linux niceness). Its work
#: has slack (a whole chunk's computation), while the engine's workers share each chunk in
#: lockstep: a worker preempted by the I/O thread holds up the other at the next barrier.
#: Not lower: next to busy processes a lower priority starves the I/O thread (measurements: ``benchmarks/RESULTS.md``, "Measurements behind the code's constants").
_IO_NICENESS = 5


def _yield_to_compute():
    """Lower the calling thread's priority (Linux only: elsewhere it is the process's)."""
    if sys.platform.startswith("linux") and _IO_NICENESS:
        tid = threading.get_native_id()
        with contextlib.suppress(OSError):
            os.setpriority(
                os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + _IO_NICENESS)
            )


def _run(chunker, writer, progress):
    # one I/O thread reads the next chunk and writes the previous one while this one is
    # computed (file reads and writes release the GIL): two input and two output chunks exist
    # at a time
    starts = range(0, chunker.n_out, chunker.chunk)
    # They take turns in two buffers each (the inputs where the source fills buffers): a new
    # array per chunk, freed in the other thread, left freed memory resident (measured +50 MB
    # peak on 1.8 GB for the inputs; one output chunk more in some runs, but not others).
    spare = None
    outputs = [chunker.output_buffer() for _ in starts[:2]]
    with (
        _progress_bar(chunker.n_out, progress, "specconv") as update,
        ThreadPoolExecutor(
            1, thread_name_prefix="specconv-io", initializer=_yield_to_compute
        ) as io,
    ):
        reading, writing = io.submit(chunker.read, starts[0]), None
        for i, m0 in enumerate(starts):
            x = reading.result()
            if i + 1 < len(starts):
                reading = io.submit(chunker.read, starts[i + 1], spare)
            y = chunker.run(m0, x, outputs[i % 2])
            spare = x if chunker.src.fills_buffers else None
            del x
            if writing is not None:
                writing.result()
            writing = io.submit(writer.write, m0, y)
            update(y.shape[chunker.axis])
            del y
        writing.result()


# ---------------------------------------------------------------------------------- FIF
def _write_fif(chunker, path, progress, sfreq, ch_names):
    mne = soft_import("mne", "eeg", purpose="writing FIF files")
    layer, src = chunker.layer, chunker.src
    if chunker.batched or layer.ndim != 1:
        raise ValueError(
            f"A FIF target needs a (C, n_times) time series and a 1-D layer, got input shape "
            f"{src.shape} and a {layer.ndim}-D layer."
        )
    if chunker.dtype.kind == "c":
        raise ValueError("A FIF target needs real data; the result is complex.")
    C_out, n_out = chunker.out_shape
    raw = src.raw if isinstance(src, _RawSource) else None
    aligned = raw is not None and chunker.stride == 1 and n_out == chunker.n_in
    if sfreq is None:
        if raw is None:
            raise ValueError("sfreq is required to write a FIF file from a non-MNE source.")
        sfreq = raw.info["sfreq"] / chunker.stride
    if ch_names is None and raw is not None and C_out == len(src.picks):
        info = mne.pick_info(raw.info, src.picks)
        with info._unlock():
            info["sfreq"] = float(sfreq)
        for ch in info["chs"]:  # the lazy raw below hands over physical values
            ch["cal"], ch["range"] = 1.0, 1.0
    else:
        names = list(ch_names) if ch_names is not None else [f"ch{i:03d}" for i in range(C_out)]
        if len(names) != C_out:
            raise ValueError(f"ch_names has {len(names)} names for {C_out} output channels.")
        info = mne.create_info(names, float(sfreq), "misc")
        if raw is not None:
            info.set_meas_date(raw.info["meas_date"])
    first = raw.first_samp if aligned else 0
    lazy = _lazy_raw(mne, info, n_out, first, chunker)
    if aligned and len(raw.annotations):
        annot = raw.annotations
        if annot.orig_time is None:  # onsets then count from the first sample: re-base them
            annot = mne.Annotations(
                annot.onset - raw.first_time,
                annot.duration,
                annot.description,
                ch_names=annot.ch_names,
            )
        lazy.set_annotations(annot)
    fmt = "double" if chunker.dtype == np.float64 else "single"
    with _progress_bar(n_out, progress, "specconv") as update:
        lazy._raw_extras[0]["cache"].update = update
        # MNE rounds the buffer up: ask for a hair less than one chunk to get exactly one
        lazy.save(
            path,
            fmt=fmt,
            buffer_size_sec=(chunker.chunk - 0.5) / float(sfreq),
            overwrite=True,
            verbose="error",
        )


class _ChunkCache:
    """The chunker's outputs for MNE's buffer requests, keeping the newest chunk.

    MNE's buffers may straddle two chunks; keeping one chunk computes each chunk once.
    """

    def __init__(self, chunker, first_samp):
        self.chunker, self.first_samp = chunker, first_samp
        self.update = None
        self._m0, self._y = None, None

    def _chunk(self, m0):
        if self._m0 != m0:
            self._m0, self._y = None, None
            self._y = self.chunker.compute(m0)
            self._m0 = m0
        return self._y

    def get(self, start, stop):
        """Output samples ``start .. stop - 1`` (in MNE's sample numbering)."""
        start, stop = start - self.first_samp, stop - self.first_samp
        size = self.chunker.chunk
        pieces, m = [], start
        while m < stop:
            m0 = m // size * size
            y = self._chunk(m0)
            pieces.append(y[:, m - m0 : min(stop - m0, y.shape[1])])
            m = m0 + y.shape[1]
        if self.update is not None:
            self.update(stop - start)
        return np.concatenate(pieces, axis=1) if len(pieces) > 1 else pieces[0]


def _lazy_raw(mne, info, n_times, first_samp, chunker):
    """A Raw whose samples are computed by the chunker when MNE asks for them."""

    class _ConvRaw(mne.io.BaseRaw):
        def __init__(self):
            cache = _ChunkCache(chunker, first_samp)
            super().__init__(
                info,
                preload=False,
                first_samps=(first_samp,),
                last_samps=(first_samp + n_times - 1,),
                filenames=(None,),
                raw_extras=[{"cache": cache}],
                orig_format="double",
                verbose="error",
            )

        def _read_segment_file(self, data, idx, fi, start, stop, cals, mult):
            # MNE calls this through a proxy that exposes only _raw_extras and filenames
            one = self._raw_extras[fi]["cache"].get(start, stop)
            if mult is not None:
                data[:] = mult @ one[idx]
            else:
                data[:] = one[idx] * cals

    return _ConvRaw()
