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

The pieces, in the order a chunk meets them: ``_sources`` (the inputs), ``_chunks`` (a
chunk's input with halo and padding, and the layer without padding that runs on it),
``_plan`` (the chunk length for the memory budget), ``_loop`` (the I/O thread beside the
computation), ``_writers`` (``.npy``, HDF5, arrays in place) and ``_fif`` (FIF through MNE);
``_mapping`` reads and writes file mappings without filling resident memory. Output files
go through ``specconv._atomic``, the one atomic writer.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import numpy as np

from .._atomic import atomic_output, check_not_aliased, files_behind
from .._validate import as_bool, as_int
from ._chunks import Chunker, check_layer, output_shape_of
from ._fif import FIF_SUFFIXES, write_fif
from ._loop import IO_NICENESS, run
from ._sources import H5_SUFFIXES, ArraySource, open_source
from ._writers import ArrayWriter, NpyWriter, write_h5

logger = logging.getLogger("specconv")

__all__ = ["apply", "output_shape"]

DEFAULT_BUDGET = 256 * 2**20

# the names these pieces had when outofcore was one module (the tests reach them)
_ArraySource, _Chunker, _NpyWriter, _IO_NICENESS = ArraySource, Chunker, NpyWriter, IO_NICENESS


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
    return output_shape_of(layer, shape)


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
    layer = check_layer(layer)
    memory_budget = as_int("memory_budget", memory_budget, minimum=1)
    overwrite = as_bool("overwrite", overwrite)
    if progress is not None:
        progress = as_bool("progress", progress)
    if chunk_size is not None:
        chunk_size = as_int("chunk_size", chunk_size, minimum=1)
    with contextlib.ExitStack() as stack:
        src = open_source(source, dataset, picks, reject_by_annotation, stack)
        stack.callback(src.close)
        chunker = Chunker(layer, src, int(memory_budget), chunk_size)
        logger.info(
            "out-of-core: %s -> %s in %d chunk(s) of %d samples (about %.0f MB working set)",
            src.name,
            chunker.out_shape,
            -(-chunker.n_out // chunker.chunk),
            chunker.chunk,
            chunker.estimate / 2**20,
        )
        check_not_aliased(target, [source], name="target")
        if target is None:
            result = np.empty(chunker.out_shape, chunker.dtype)
            run(chunker, ArrayWriter(result, chunker.axis), progress)
            return result
        if not isinstance(target, (str, os.PathLike)):
            if tuple(target.shape) != chunker.out_shape:
                raise ValueError(
                    f"target has shape {tuple(target.shape)} but the output has shape "
                    f"{chunker.out_shape} (see output_shape)."
                )
            writer = ArrayWriter(target, chunker.axis)
            try:
                run(chunker, writer, progress)
            finally:
                writer.close()
            return target
        target = Path(target)
        name = target.name.lower()
        if not name.endswith((".npy", *H5_SUFFIXES, *FIF_SUFFIXES)):
            raise ValueError(
                f"Cannot choose an output format for {str(target)!r}: use a .npy, "
                f"{', '.join(H5_SUFFIXES)} or .fif file name, or pass an array."
            )
        protected = files_behind(source)
        with atomic_output([target], overwrite=overwrite, protected=protected) as (tmp,):
            if name.endswith(".npy"):
                writer = NpyWriter(tmp, chunker.out_shape, chunker.dtype, chunker.axis)
                try:
                    run(chunker, writer, progress)
                finally:
                    writer.close()
            elif name.endswith(H5_SUFFIXES):
                write_h5(chunker, tmp, target_dataset, progress)
            else:
                write_fif(chunker, tmp, progress, sfreq, ch_names)
        return target
