"""NumPy ``.npy``/``.npz`` files: plain arrays whose layout the caller states.

A ``.npy`` file carries no channel axis, sampling or domain, so they are options:
``coil_axis`` (default 0) is the channel axis, ``batch_axis`` an optional batch axis, and the
domain is ``"time"`` when ``sfreq`` is given, ``"image"`` when ``spacing`` is given, else
``"kspace"`` for complex arrays (as MRI tools store them) and ``"image"`` for real ones
(``domain=`` says it outright). Channels are named ``coil00, ...`` for complex MRI arrays and
neutrally ``ch000, ...`` otherwise. ``.npz`` files written by specconv are self-describing
(data, channel names, domain, sampling) and read back exactly.
"""

from __future__ import annotations

import numpy as np

from .._validate import as_bool
from ..signal import DOMAINS, VectorSignal, default_ch_names
from ._common import FormatError, reading
from ._mri import coil_names

__all__ = ["read_npy", "read_npz", "write_npy", "write_npz"]

# Keys of a specconv-written .npz.
_SELF_DESCRIBING = {"data", "ch_names", "domain", "batched", "sfreq", "spacing"}


def _axis(name, value, ndim):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}.")
    if not -ndim <= value < ndim:
        raise ValueError(f"{name}={value} is out of range for an array with {ndim} dimensions.")
    return int(value) % ndim


def from_array(
    arr,
    *,
    coil_axis=0,
    batch_axis=None,
    domain=None,
    sfreq=None,
    spacing=None,
    ch_names=None,
    metadata=None,
):
    """Wrap an array as a signal, moving the stated axes to the front (views, no copy)."""
    if arr.dtype.kind not in "iufc":
        raise FormatError(f"the array has dtype {arr.dtype}; expected numbers.")
    coil = _axis("coil_axis", coil_axis, arr.ndim)
    if batch_axis is None:
        data = np.moveaxis(arr, coil, 0)
    else:
        batch = _axis("batch_axis", batch_axis, arr.ndim)
        if batch == coil:
            raise ValueError(f"batch_axis and coil_axis must differ, both are {coil_axis}.")
        data = np.moveaxis(arr, (batch, coil), (0, 1))
    if domain is None:
        if sfreq is not None:
            domain = "time"
        elif spacing is not None or arr.dtype.kind != "c":
            domain = "image"
        else:
            domain = "kspace"
    if not isinstance(domain, str) or domain not in DOMAINS:
        raise ValueError(
            f"Invalid value for the 'domain' parameter. Allowed values are 'time', 'image' "
            f"and 'kspace', but got {domain!r} instead."
        )
    n = data.shape[1 if batch_axis is not None else 0]
    if ch_names is None:
        # "coil" says MRI: only complex spatial data (k-space, coil images) is presumed so
        mri = arr.dtype.kind == "c" and domain != "time"
        ch_names = coil_names(n) if mri else default_ch_names(n)
    return VectorSignal(
        data,
        ch_names,
        domain=domain,
        sfreq=sfreq,
        spacing=spacing,
        batched=batch_axis is not None,
        metadata=metadata or {},
    )


def read_npy(
    path, *, coil_axis=0, batch_axis=None, domain=None, sfreq=None, spacing=None, mmap=False
):
    """Read a ``.npy`` array; ``mmap=True`` maps it read-only instead of loading it."""
    mmap = as_bool("mmap", mmap)
    with reading(path, "NumPy .npy"):
        arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    return from_array(
        arr,
        coil_axis=coil_axis,
        batch_axis=batch_axis,
        domain=domain,
        sfreq=sfreq,
        spacing=spacing,
        metadata={"format": "npy", "source": (str(path),)},
    )


def read_npz(
    path, *, key=None, coil_axis=0, batch_axis=None, domain=None, sfreq=None, spacing=None
):
    """Read a ``.npz``: a specconv-written one exactly, else the array ``key``.

    Without ``key``, an archive with a single array, or with a ``kspace`` array, needs no
    choice; otherwise the error lists the keys.
    """
    with reading(path, "NumPy .npz"):
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.files)
            if key is None and _SELF_DESCRIBING <= set(keys):
                fields = {k: z[k] for k in _SELF_DESCRIBING}
            else:
                fields = None
                if key is None:
                    if len(keys) == 1:
                        key = keys[0]
                    elif "kspace" in keys:
                        key = "kspace"
                    else:
                        raise FormatError(
                            f"{str(path)!r} holds several arrays {keys}; pass key=... to "
                            "choose one."
                        )
                if key not in keys:
                    raise FormatError(f"{str(path)!r} has no array {key!r}; it has {keys}.")
                arr = z[key]
    meta = {"format": "npz", "source": (str(path),)}
    if fields is None:
        return from_array(
            arr,
            coil_axis=coil_axis,
            batch_axis=batch_axis,
            domain=domain,
            sfreq=sfreq,
            spacing=spacing,
            metadata={**meta, "key": key},
        )
    sf = float(fields["sfreq"])
    sp = tuple(float(v) for v in fields["spacing"])
    return VectorSignal(
        fields["data"],
        tuple(str(c) for c in fields["ch_names"]),
        domain=str(fields["domain"]),  # type: ignore[arg-type]  # VectorSignal checks it
        sfreq=None if np.isnan(sf) else sf,
        spacing=sp or None,
        batched=bool(fields["batched"]),
        metadata=meta,
    )


def write_npy(sig, path):
    """Save ``sig.data`` as is: ``(C, *spatial)``, or ``(B, C, *spatial)`` when batched
    (read it back with ``batch_axis=0, coil_axis=1``)."""
    with open(path, "wb") as fh:  # a handle: np.save would append ".npy" to other names
        np.save(fh, sig.data, allow_pickle=False)


def write_npz(sig, path, *, compressed=False):
    """Save a self-describing archive: data, channel names, domain, batching, sampling."""
    save = np.savez_compressed if compressed else np.savez
    with open(path, "wb") as fh:
        save(fh, **_fields(sig))


def _fields(sig):
    return dict(
        data=sig.data,
        ch_names=np.array(sig.ch_names, dtype=str),
        domain=np.array(sig.domain),
        batched=np.array(sig.batched),
        sfreq=np.array(np.nan if sig.sfreq is None else sig.sfreq),
        spacing=np.array(sig.spacing or (), dtype=float),
    )
