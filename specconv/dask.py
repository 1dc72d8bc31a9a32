"""Dask: conv layers on chunked arrays and over many files on a cluster (extra ``dask``).

:func:`conv_dask` applies a layer to a dask array chunked along its signal axes and returns a
lazy dask array: every block is extended by the kernel's halo (``map_overlap``-style overlap)
and convolved on its own, so the result equals ``layer`` on the computed array.

:func:`map_files` runs a read → conv → write pipeline (:func:`specconv.io.read`, the layer,
:func:`specconv.io.write`) over many recordings, one task per file, on a
``dask.distributed`` client.

Importing this module does not import dask; its functions do.
"""

from __future__ import annotations

import logging
import numbers
from pathlib import Path

import numpy as np

from . import fft
from ._optional import soft_import
from ._validate import as_array, result_dtype
from .layers import NUMPY_PAD_MODE, SpectralConv, check_padding_fits

logger = logging.getLogger("specconv")

__all__ = ["conv_dask", "map_files"]


def _dask_array():
    return soft_import("dask.array", "dask", purpose="dask arrays")


def _axis_chunks(chunks, stride, span):
    """Chunks of one padded axis for blocks with a right halo of ``span - 1``.

    Block boundaries fall on multiples of the stride (so every block's first output window
    starts at its first sample) and every block, the last one included, holds at least
    ``span - 1`` samples (so a block's halo lies entirely in its right neighbour). Existing
    boundaries are kept where they allow it, small chunks are merged.
    """
    total = sum(chunks)
    need = max(span - 1, 1)
    bounds = [0]
    for b in np.cumsum(chunks)[:-1]:
        b = int(b) // stride * stride
        if b - bounds[-1] >= need and total - b >= need:
            bounds.append(b)
    bounds.append(total)
    return tuple(int(c) for c in np.diff(bounds))


def _output_chunks(chunks, stride, span):
    """Outputs per block: windows starting in the block (at multiples of the stride) that fit."""
    total, out, start = sum(chunks), [], 0
    last_start = total - span  # the last complete window starts here
    for c in chunks:
        end = min(start + c, last_start + 1)
        out.append(max(0, -(-(end - start) // stride)))
        start += c
    return tuple(out)


def _conv_block(block, layer, spans):
    """The valid correlation of one block (with its right halo); empty if it is too short."""
    if any(n < e for n, e in zip(block.shape[-len(spans) :], spans)):
        shape = list(block.shape)
        shape[-len(spans) - 1] = layer.out_channels
        for a, (n, e, s) in enumerate(zip(block.shape[-len(spans) :], spans, layer.stride)):
            shape[len(shape) - len(spans) + a] = max(0, (n - e) // s + 1)
        return np.empty(shape, result_dtype(block, layer.weight, layer.bias))
    return layer(block)


def conv_dask(x, layer):
    """Apply a conv layer to a dask array, lazily, chunk by chunk with the kernel's halo.

    PyTorch conv semantics, exactly as ``layer(x.compute())``: padding (all padding modes),
    stride, dilation and groups. The channel axis is gathered into one chunk (every output
    channel needs every input channel of its group); the batch axis and every signal axis keep
    (about) their chunking, so the work parallelises over batches and signal chunks.

    Parameters
    ----------
    x : dask.array.Array or array_like [shape=(C_in, *spatial) or (B, C_in, *spatial)]
        Chunked along any axes; a numpy array is wrapped in one chunk.
    layer : SpectralConv

    Returns
    -------
    y : dask.array.Array [shape=(C_out, *out) or (B, C_out, *out)]
        Lazy. Its graph holds the layer once, however many chunks there are.

    See Also
    --------
    specconv.outofcore.apply : one recording from disk to disk on one machine.
    map_files : many recordings on a cluster.

    Notes
    -----
    Along every signal axis the (padded) array is cut into blocks that start at multiples of
    the stride and hold at least ``span - 1`` samples; each block is extended on the right by
    the first ``span - 1`` samples of its neighbour and convolved with no padding, which yields
    exactly the outputs whose windows start inside the block. Chunks smaller than the kernel
    are merged. The layer runs inside the tasks with ``specconv.get_num_threads()`` threads
    each: with a threaded scheduler running several tasks at once, consider
    ``specconv.set_num_threads(1)``.

    Examples
    --------
    >>> import numpy as np
    >>> import dask.array as da
    >>> from specconv import SpectralConv
    >>> from specconv.dask import conv_dask
    >>> rng = np.random.default_rng(0)
    >>> x = da.from_array(rng.standard_normal((4, 10_000)), chunks=(4, 1_000))
    >>> layer = SpectralConv(rng.standard_normal((8, 4, 101)), padding="same")
    >>> y = conv_dask(x, layer)
    >>> y.shape, y.chunks[1][:3]
    ((8, 10000), (1000, 1000, 1000))
    >>> bool(np.allclose(y.compute(scheduler="synchronous"), layer(x.compute())))
    True
    """
    da = _dask_array()
    dask = soft_import("dask", "dask", purpose="dask arrays")
    if not isinstance(layer, SpectralConv):
        raise TypeError(f"layer must be a specconv.SpectralConv, got {type(layer).__name__}.")
    if not isinstance(x, da.Array):
        x = da.asarray(as_array("x", x, allow_empty=True))
    if x.dtype.kind not in "biufc":
        raise TypeError(f"x must hold numbers, got dtype {x.dtype}.")
    d = layer.ndim
    if x.ndim not in (d + 1, d + 2):
        raise ValueError(
            f"x must have shape (C_in, *spatial) or (B, C_in, *spatial) with {d} spatial "
            f"dimension(s), got shape {x.shape}."
        )
    lead = x.ndim - d  # axes before the signal axes (batch, channels)
    if x.shape[lead - 1] != layer.in_channels:
        raise ValueError(
            f"x has {x.shape[lead - 1]} channels (axis {lead - 1} of shape {x.shape}) but the "
            f"layer expects {layer.in_channels}."
        )
    spans = layer.kernel_span
    pads = layer.pads
    check_padding_fits(layer.padding_mode, pads, x.shape[lead:])
    for a, ((pl, pr), n, e) in enumerate(zip(pads, x.shape[lead:], spans)):
        if n + pl + pr < e:
            raise ValueError(
                f"The kernel (span {e}) is larger than the padded input ({n + pl + pr}) along "
                f"spatial axis {a} (x of shape {x.shape})."
            )
    x = x.rechunk({lead - 1: -1})
    # the output chunks follow the input's: a window starting at padded position b gives
    # output b / stride, so the input's boundaries are the blocks' boundaries after padding
    wanted = []
    for c, (pl, pr), s, e in zip(x.chunks[lead:], pads, layer.stride, spans):
        inner = list(c[:-1]) + [c[-1] + pl + pr]
        wanted.append(_axis_chunks(inner, s, e))
    if any(p != (0, 0) for p in pads):
        x = da.pad(x, ((0, 0),) * lead + tuple(pads), mode=NUMPY_PAD_MODE[layer.padding_mode])
    x = x.rechunk(x.chunks[:lead] + tuple(wanted))
    out_chunks = (
        x.chunks[: lead - 1]
        + ((layer.out_channels,),)
        + tuple(_output_chunks(c, s, e) for c, s, e in zip(x.chunks[lead:], layer.stride, spans))
    )
    depth: dict[int, int | tuple[int, int]] = {lead + a: (0, e - 1) for a, e in enumerate(spans)}
    depth.update({a: 0 for a in range(lead)})
    xo = da.overlap.overlap(x, depth=depth, boundary="none", allow_rechunk=False)
    valid = layer.unpadded()
    dtype = result_dtype(
        np.empty(0, x.dtype), layer.weight, layer.bias, names=("x", "weight", "bias")
    )
    shared = dask.delayed(valid, pure=True)  # one graph key: shipped once per worker
    return da.map_blocks(
        _conv_block,
        xo,
        shared,
        spans,
        chunks=out_chunks,
        dtype=dtype,
        meta=np.empty((0,) * x.ndim, dtype),
        name="specconv-conv",
    )


# ---------------------------------------------------------------------------------- files
def _process_file(path, target, layer, read_options, write_options, overwrite, num_threads):
    """Read one recording, apply the layer, write the result; runs on a worker."""
    from . import io

    previous = fft.set_num_threads(num_threads) if num_threads else None
    try:
        sig = io.read(path, **read_options)
        out = sig.apply(layer)
        io.write(out, target, overwrite=overwrite, **write_options)
    finally:
        if previous is not None:
            fft.set_num_threads(previous)
    logger.info("map_files: %s -> %s", path, target)
    return str(target)


def map_files(
    paths,
    layer,
    out_dir,
    *,
    client=None,
    suffix=None,
    read_options=None,
    write_options=None,
    overwrite=False,
    num_threads=None,
):
    """Run read → conv → write over many recordings, one task per file, on a dask cluster.

    Every file is read with :func:`specconv.io.read`, passed through ``layer`` (channel
    names, sampling and metadata carried over by :meth:`VectorSignal.apply
    <specconv.signal.VectorSignal.apply>`) and written with :func:`specconv.io.write` to
    ``out_dir`` under the same name (atomically: a failed task leaves no file).

    Parameters
    ----------
    paths : iterable of path-like
        Input recordings in any format :func:`specconv.io.read` reads.
    layer : SpectralConv or callable
        Sent to the workers once (``client.scatter``), not once per file.
    out_dir : path-like
        Existing directory for the results.
    client : dask.distributed.Client, optional
        Where to run. None runs the files one after another in this process (no dask needed).
    suffix : str, optional
        Output extension (e.g. ``".npy"``) instead of each input's own.
    read_options, write_options : dict, optional
        Keyword arguments for :func:`specconv.io.read` and :func:`specconv.io.write`.
    overwrite : bool
        Replace existing outputs.
    num_threads : int, optional
        specconv threads inside each task. Default: 1 on a client (its workers already run
        tasks in parallel), this process's setting without one.

    Returns
    -------
    list of Path
        The outputs, in the order of ``paths``.

    Raises
    ------
    ValueError
        An output would be one of the inputs (``out_dir`` is their folder and ``suffix``
        keeps their extension, or a link to an input is in ``out_dir``): checked before any
        task runs.
    Exception
        The first error of any task (the other tasks are cancelled); outputs already
        written stay.

    Notes
    -----
    The same code runs on a real cluster: connect a client to its scheduler instead of a
    ``LocalCluster`` -- ``Client("tcp://scheduler-host:8786")`` for a cluster started with
    ``dask scheduler`` / ``dask worker``, or ``Client(SLURMCluster(...))`` with dask-jobqueue
    (PBS, SGE, LSF alike), or a Kubernetes/cloud cluster from dask-kubernetes or
    dask-cloudprovider. Requirements: the same specconv (with the extras the formats need)
    installed on every worker, ``paths`` and ``out_dir`` on a file system all workers see
    under the same names (NFS, Lustre, a mounted bucket), and enough memory per worker for one
    recording and its result (for recordings larger than that, call
    :func:`specconv.outofcore.apply` inside your own task instead). Give workers one thread
    each (``--nthreads 1``, ``LocalCluster(threads_per_worker=1)``) and as many workers as
    cores; specconv's ``num_threads`` then stays 1.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> import numpy as np
    >>> from specconv import SpectralConv, io
    >>> from specconv.signal import VectorSignal
    >>> from specconv.dask import map_files
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> (folder / "out").mkdir()
    >>> for k in range(3):
    ...     io.write(VectorSignal(np.ones((2, 500)) * k, sfreq=100.0), folder / f"rec{k}.npz")
    >>> layer = SpectralConv(np.ones((2, 1, 5)) / 5, groups=2, padding="same")
    >>> outs = map_files(sorted(folder.glob("rec*.npz")), layer, folder / "out")
    >>> [p.name for p in outs]
    ['rec0.npz', 'rec1.npz', 'rec2.npz']
    >>> float(io.read(outs[2]).data[0, 250])
    2.0

    On a cluster (here a local one with two worker processes)::

        from dask.distributed import Client, LocalCluster
        with LocalCluster(n_workers=2, threads_per_worker=1) as cluster, Client(cluster) as client:
            outs = map_files(paths, layer, "results/", client=client)
    """
    paths = [Path(p) for p in paths]
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise NotADirectoryError(f"out_dir {str(out_dir)!r} is not an existing directory.")
    if num_threads is not None and (
        not isinstance(num_threads, numbers.Integral)
        or isinstance(num_threads, bool)
        or num_threads < 1
    ):
        raise ValueError(f"num_threads must be a positive int or None, got {num_threads!r}.")
    targets = [out_dir / (p.name if suffix is None else p.stem + suffix) for p in paths]
    if len(set(targets)) != len(targets):
        dup = sorted({t.name for t in targets if targets.count(t) > 1})
        raise ValueError(f"Several inputs would write the same output file(s): {dup}.")
    # before any task runs: no output may be one of the inputs (same name, hard or symlink)
    from ._atomic import check_not_aliased

    for t in targets:
        check_not_aliased(t, paths, name="the output in out_dir")
    if num_threads is None and client is not None:
        num_threads = 1
    options = dict(
        read_options=dict(read_options or {}),
        write_options=dict(write_options or {}),
        overwrite=overwrite,
        num_threads=num_threads,
    )
    if client is None:
        return [Path(_process_file(p, t, layer, **options)) for p, t in zip(paths, targets)]
    # a fresh key per call: a hashed key could still be in release from a previous call
    [shared] = client.scatter([layer], broadcast=True, hash=False)
    futures = client.map(
        _process_file,
        [str(p) for p in paths],
        [str(t) for t in targets],
        layer=shared,
        pure=False,
        **options,
    )
    try:
        done = client.gather(futures)
    except BaseException:
        client.cancel(futures)
        raise
    return [Path(p) for p in done]
