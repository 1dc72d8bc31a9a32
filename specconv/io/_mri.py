"""Multi-coil MRI: fastMRI-style HDF5 (extra ``mri``), BART .cfl/.hdr, and k-space helpers.

Coils are the channels. fastMRI files hold ``kspace`` as ``(slices, coils, H, W)``; they load
as a batched signal (B = slices). BART files are column-major complex64 arrays with up to
16 named dimensions (0-2 space, 3 coils, 13 slices, ...); the non-coil, non-space dimensions
become the batch axis.
"""

from __future__ import annotations

import logging
import math
import numbers

import numpy as np

from .._optional import soft_import
from .._validate import as_bool, as_int
from ..signal import VectorSignal
from ._common import FormatError, reading

logger = logging.getLogger("specconv")

__all__ = [
    "kspace_to_image",
    "image_to_kspace",
    "rss",
    "coil_names",
    "read_fastmri",
    "write_fastmri",
    "read_cfl",
    "write_cfl",
    "cfl_paths",
]

#: BART dimension indices (``bart/src/misc/mri.h``).
BART_COIL_DIM = 3
BART_SLICE_DIM = 13
BART_MAX_DIMS = 16


def coil_names(n):
    """``coil00, coil01, ...`` (wider for more than 100 coils).

    Examples
    --------
    >>> from specconv.io._mri import coil_names
    >>> coil_names(3)
    ('coil00', 'coil01', 'coil02')
    """
    width = max(2, len(str(n - 1)))
    return tuple(f"coil{i:0{width}d}" for i in range(n))


# -- centred orthonormal FFTs ---------------------------------------------------------------
def _centered(data, axes, inverse):
    from .. import fft  # the planned FFTW transforms (lazy: io is the edge)

    x = data.data if isinstance(data, VectorSignal) else np.asarray(data)
    if x.dtype.kind not in "biufc":
        raise TypeError(f"data must be a numeric array, got dtype {x.dtype}.")
    if isinstance(axes, numbers.Integral):
        axes = (axes,)
    axes = tuple(int(a) for a in axes)
    for a in axes:
        if not -x.ndim <= a < x.ndim:
            raise ValueError(f"axes {axes} out of range for an array of {x.ndim} dimensions.")
    n = math.prod(x.shape[a] for a in axes)
    shifted = np.fft.ifftshift(x, axes=axes)
    y = fft.ifftn(shifted, axes=axes) if inverse else fft.fftn(shifted, axes=axes)
    # numpy's "backward" normalisation -> orthonormal: the same energy in both domains.
    y *= math.sqrt(n) if inverse else 1.0 / math.sqrt(n)
    y = np.fft.fftshift(y, axes=axes)
    if isinstance(data, VectorSignal):
        return data.replace(data=y, domain="image" if inverse else "kspace")
    return y


def kspace_to_image(data, axes=(-2, -1)):
    """Centred, orthonormal inverse FFT: k-space (DC in the middle) -> coil images.

    ``fftshift(ifftn(ifftshift(k), norm="ortho"))`` over ``axes``, computed with
    :func:`specconv.fft.ifftn` (FFTW plans from specconv's cache).

    Parameters
    ----------
    data : ndarray or VectorSignal
        k-space; for a signal the result is a signal with domain ``"image"``.
    axes : int or tuple of int
        The spatial axes (default: the last two).

    Returns
    -------
    ndarray or VectorSignal
        complex64 for single-precision input, complex128 otherwise.

    See Also
    --------
    image_to_kspace : The inverse.
    rss : Combine the coil images.

    Examples
    --------
    >>> import numpy as np
    >>> from specconv.io import kspace_to_image, image_to_kspace
    >>> img = np.random.default_rng(0).standard_normal((4, 6)) + 0j
    >>> k = image_to_kspace(img)
    >>> bool(np.allclose(kspace_to_image(k), img))
    True
    >>> bool(np.isclose(np.linalg.norm(k), np.linalg.norm(img)))   # orthonormal
    True
    >>> complex(image_to_kspace(np.ones((4, 4)))[2, 2])   # a flat image: all DC, centred
    (4+0j)
    """
    return _centered(data, axes, inverse=True)


def image_to_kspace(data, axes=(-2, -1)):
    """Centred, orthonormal forward FFT: images -> k-space with DC in the middle.

    The inverse of :func:`kspace_to_image`; see there.

    Examples
    --------
    >>> import numpy as np
    >>> from specconv.io import image_to_kspace
    >>> k = image_to_kspace(np.ones((2, 4, 4), dtype=np.complex64))
    >>> k.dtype, k[0, 2, 2]
    (dtype('complex64'), np.complex64(4+0j))
    """
    return _centered(data, axes, inverse=False)


def rss(images, coil_axis=0):
    """Root-sum-of-squares coil combination ``sqrt(sum_c |x_c|**2)``.

    Parameters
    ----------
    images : ndarray or VectorSignal
        Coil images. For a signal the coil axis is its channel axis and ``coil_axis`` is
        ignored.
    coil_axis : int
        The coil axis of an array.

    Returns
    -------
    ndarray
        Real, the coil axis removed.

    Examples
    --------
    >>> import numpy as np
    >>> from specconv.io import rss
    >>> rss(np.array([[3.0, 1.0], [4j, 0.0]]))
    array([5., 1.])
    """
    if isinstance(images, VectorSignal):
        coil_axis = 1 if images.batched else 0
        images = images.data
    x = np.asarray(images)
    return np.sqrt(np.sum(np.abs(x) ** 2, axis=coil_axis))


# -- fastMRI HDF5 ---------------------------------------------------------------------------
def _h5py():
    return soft_import("h5py", "mri", purpose="fastMRI HDF5 files")


def _attr_value(v):
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.generic):
        return v.item()
    return v


def _dataset(f, name, path):
    """The dataset ``name`` of the open HDF5 file ``f``, or a FormatError naming what it has."""
    if not isinstance(name, str):
        raise TypeError(
            f"dataset must be a str (an HDF5 path), got {type(name).__name__} {name!r}."
        )
    ds = f.get(name)
    if not isinstance(ds, _h5py().Dataset):
        raise FormatError(
            f"{str(path)!r} has no {name!r} dataset (it has {sorted(f.keys())}); "
            "pass dataset=... to pick one."
        )
    return ds


def read_fastmri(path, *, dataset="kspace"):
    """Read a fastMRI-style HDF5 file: ``kspace`` ``(slices, coils, H, W)`` -> batched signal.

    Single-coil files (``(slices, H, W)``) get a coil axis of length 1. The file's
    attributes go to ``metadata["attrs"]``, the ISMRMRD XML header (if any) to
    ``metadata["ismrmrd_header"]`` (str), other dataset names to ``metadata["datasets"]``.
    """
    h5py = _h5py()
    with reading(path, "fastMRI HDF5"):
        with h5py.File(path, "r") as f:
            data = _dataset(f, dataset, path)[()]
            attrs = {k: _attr_value(v) for k, v in f.attrs.items()}
            header = None
            if "ismrmrd_header" in f:
                header = _attr_value(f["ismrmrd_header"][()])
            others = tuple(sorted(k for k in f.keys() if k not in (dataset, "ismrmrd_header")))
    singlecoil = data.ndim == 3
    if singlecoil:
        data = data[:, np.newaxis]
    if data.ndim != 4:
        raise FormatError(
            f"{str(path)!r}: dataset {dataset!r} must be (slices, coils, H, W) or "
            f"(slices, H, W), got shape {data.shape}."
        )
    meta = {
        "format": "fastmri",
        "attrs": attrs,
        "ismrmrd_header": header,
        "datasets": others,
        "singlecoil": singlecoil,
        "source": (str(path),),
    }
    return VectorSignal(
        data, coil_names(data.shape[1]), domain="kspace", batched=True, metadata=meta
    )


def write_fastmri(sig, path, *, dataset="kspace", compression=None):
    """Write ``kspace`` ``(slices, coils, H, W)`` plus the attributes and ISMRMRD header."""
    h5py = _h5py()
    if sig.domain != "kspace":
        raise ValueError(
            f"a fastMRI file stores k-space, but the signal's domain is {sig.domain!r}; "
            "convert it with specconv.io.image_to_kspace or write .npy/.npz."
        )
    data = sig.data if sig.batched else sig.data[np.newaxis]
    if data.ndim != 4:
        raise ValueError(
            f"a fastMRI file stores 2-D slices, got spatial shape {sig.spatial_shape}."
        )
    with h5py.File(path, "w") as f:
        f.create_dataset(dataset, data=data, compression=compression)
        for key, value in (sig.metadata.get("attrs") or {}).items():
            try:
                f.attrs[key] = value
            except TypeError:
                logger.debug("attribute %r (%s) not written", key, type(value).__name__)
        header = sig.metadata.get("ismrmrd_header")
        if header is not None:
            f.create_dataset(
                "ismrmrd_header",
                data=np.bytes_(header.encode("utf-8") if isinstance(header, str) else header),
            )


def fastmri_info(path, *, dataset="kspace"):
    h5py = _h5py()
    with reading(path, "fastMRI HDF5"):
        with h5py.File(path, "r") as f:
            ds = _dataset(f, dataset, path)
            shape, dtype = ds.shape, str(ds.dtype)
    coils = shape[1] if len(shape) == 4 else 1
    return {"channels": coils, "batch": shape[0], "shape": shape, "dtype": dtype}


# -- BART .cfl/.hdr -------------------------------------------------------------------------
def cfl_paths(path):
    """The (data, header) pair for a BART name given as ``x.cfl`` or ``x.hdr``."""
    return path.with_suffix(".cfl"), path.with_suffix(".hdr")


def _read_dims(hdr):
    lines = [ln.strip() for ln in hdr.read_text(encoding="ascii").splitlines()]
    try:
        at = lines.index("# Dimensions")
        dims = [int(v) for v in lines[at + 1].split()]
    except (ValueError, IndexError) as err:
        raise FormatError(
            f"{str(hdr)!r} is not a BART header: expected '# Dimensions' followed by a "
            "line of integers."
        ) from err
    if not dims or any(d < 1 for d in dims) or len(dims) > BART_MAX_DIMS:
        raise FormatError(f"{str(hdr)!r}: invalid BART dimensions {dims}.")
    return dims


def read_cfl(path, *, coil_axis=BART_COIL_DIM, domain="kspace", mmap=False):
    """Read BART ``.cfl/.hdr`` (column-major complex64) as a coil signal.

    Dimension ``coil_axis`` (BART's COIL_DIM 3 by default) becomes the channel axis; the
    non-singleton dimensions among 0-2 are the spatial axes; any other non-singleton
    dimensions (maps, echoes, slices, ...) are flattened, in BART order, into a batch axis
    (the last BART dimension varying slowest). Singleton spatial dimensions are dropped.
    The original dimensions are kept in ``metadata["bart_dims"]`` so that writing restores
    them. The format does not record whether it holds k-space or images: ``domain`` says
    (default ``"kspace"``). ``mmap=True`` maps the file read-only instead of loading it.
    """
    cfl, hdr = cfl_paths(path)
    for p in (cfl, hdr):
        if not p.exists():
            raise FileNotFoundError(
                f"BART data needs both {cfl.name} and {hdr.name}; {str(p)!r} does not exist."
            )
    mmap = as_bool("mmap", mmap)
    with reading(path, "BART cfl"):
        dims = _read_dims(hdr)
    coil_axis = as_int("coil_axis", coil_axis)
    if not 0 <= coil_axis < BART_MAX_DIMS:
        raise ValueError(f"coil_axis must be in [0, {BART_MAX_DIMS}), got {coil_axis}.")
    dims = dims + [1] * max(0, coil_axis + 1 - len(dims))
    count = math.prod(dims)
    size = cfl.stat().st_size
    if size != 8 * count:
        raise FormatError(
            f"{str(cfl)!r} has {size} bytes but its header {dims} needs {8 * count} "
            "(complex64); the file is truncated or does not belong to this header."
        )
    if mmap:
        flat = np.memmap(cfl, dtype="<c8", mode="r", shape=(count,))
    else:
        flat = np.fromfile(cfl, dtype="<c8", count=count)
    raw = flat.reshape(dims, order="F")
    spatial = [d for d in (0, 1, 2) if d != coil_axis and dims[d] > 1] or [
        min(d for d in (0, 1, 2) if d != coil_axis)
    ]
    batch = [d for d in range(len(dims)) if d not in spatial and d != coil_axis and dims[d] > 1]
    rest = [d for d in range(len(dims)) if d not in spatial + batch + [coil_axis]]
    # Batch dims in reverse order: the last BART dim varies slowest, like C's first axis.
    arr = raw.transpose(batch[::-1] + [coil_axis] + spatial + rest)
    shape = [dims[coil_axis]] + [dims[d] for d in spatial]
    if batch:
        shape = [math.prod(dims[d] for d in batch)] + shape
    data = arr.reshape(shape)
    meta = {
        "format": "cfl",
        "bart_dims": tuple(dims),
        "bart_spatial": tuple(spatial),
        "bart_batch": tuple(batch),
        "coil_axis": coil_axis,
        "source": (str(cfl), str(hdr)),
    }
    return VectorSignal(
        data, coil_names(dims[coil_axis]), domain=domain, batched=bool(batch), metadata=meta
    )


def _cfl_layout(sig):
    """(dims, coil axis, spatial dims, batch dims) for writing ``sig``.

    A signal read from a cfl file goes back to its original dimensions; others use BART's
    conventions: space in dims 0-2, coils in 3, a batch in 13 (SLICE_DIM).
    """
    meta = sig.metadata
    n_spatial = len(sig.spatial_shape)
    if meta.get("format") == "cfl" and len(meta.get("bart_spatial", ())) == n_spatial:
        coil, spatial = meta["coil_axis"], list(meta["bart_spatial"])
        old_dims, old_batch = tuple(meta["bart_dims"]), list(meta["bart_batch"])
    else:
        if n_spatial > 3:
            raise ValueError(
                f"BART stores at most 3 spatial dimensions, got spatial shape {sig.spatial_shape}."
            )
        coil, spatial = BART_COIL_DIM, list(range(n_spatial))
        old_dims, old_batch = (), []
    dims = [1] * max(len(old_dims), coil + 1, max(spatial) + 1)
    dims[coil] = sig.n_channels
    for d, n in zip(spatial, sig.spatial_shape):
        dims[d] = n
    batch = []
    if sig.batched:
        if old_batch and math.prod(old_dims[d] for d in old_batch) == sig.n_batch:
            batch = old_batch
            for d in batch:
                dims[d] = old_dims[d]
        else:
            batch = old_batch if len(old_batch) == 1 else [BART_SLICE_DIM]
            dims += [1] * max(0, batch[0] + 1 - len(dims))
            dims[batch[0]] = sig.n_batch
    return dims, coil, spatial, batch


def write_cfl(sig, paths):
    """Write ``(cfl, hdr)`` temporary paths; complex64 (the format's only sample type)."""
    cfl, hdr = paths
    dims, coil, spatial, batch = _cfl_layout(sig)
    rest = [d for d in range(len(dims)) if d not in spatial + batch + [coil]]
    order = batch[::-1] + [coil] + spatial + rest
    arr = sig.data.astype("<c8", copy=False).reshape([dims[d] for d in order])
    # Back to BART's dimension order, then column-major bytes (= C order of the transpose).
    arr = arr.transpose(np.argsort(order))
    np.ascontiguousarray(arr.T).tofile(cfl)
    hdr.write_text("# Dimensions\n" + " ".join(str(d) for d in dims) + " \n", encoding="ascii")
