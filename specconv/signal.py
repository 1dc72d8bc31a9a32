"""The vector-valued signal container shared by the I/O adapters, the CLI and the datasets.

A :class:`VectorSignal` is a C-channel signal -- an EEG recording, a stereo sound, the coils
of an MRI acquisition -- with the few facts needed to apply a conv layer to it and write the
result back: channel names, the sampling (``sfreq`` for time series, ``spacing`` for images),
the domain, and the source format's metadata. Channels lead, signal axes trail, and an optional
batch axis (epochs, slices) comes first: ``(C, *spatial)`` or ``(B, C, *spatial)``.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from ._typing import ArrayLike, Domain
from ._validate import check_option

__all__ = ["VectorSignal", "DOMAINS"]

#: Allowed values of :attr:`VectorSignal.domain`.
DOMAINS: tuple[Domain, ...] = ("time", "image", "kspace")


class FrozenDict(Mapping):
    """A read-only, picklable mapping (``types.MappingProxyType`` cannot be pickled).

    Examples
    --------
    >>> from specconv.signal import FrozenDict
    >>> m = FrozenDict({"format": "wav"})
    >>> m["format"], len(m), dict(m)
    ('wav', 1, {'format': 'wav'})
    """

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, Any] | Iterable[tuple[str, Any]] = ()) -> None:
        self._items = dict(items)

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"FrozenDict({self._items!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenDict, (self._items,))


def default_ch_names(n: int) -> tuple[str, ...]:
    """Generated channel names ``ch000, ch001, ...`` (wider when ``n > 1000``).

    Examples
    --------
    >>> from specconv.signal import default_ch_names
    >>> default_ch_names(3)
    ('ch000', 'ch001', 'ch002')
    """
    width = max(3, len(str(n - 1)))
    return tuple(f"ch{i:0{width}d}" for i in range(n))


def _positive_float(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a positive real number, got {value!r}.")
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}.")
    return value


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class VectorSignal:
    """A C-channel signal with its channel names, sampling, domain and source metadata.

    Immutable: the fields cannot be reassigned, ``data`` is a read-only view of the array it
    was built from (no copy), and ``metadata`` is a read-only mapping. Use :meth:`replace` or
    :meth:`apply` to derive new signals. The invariants are checked once, here.

    Parameters
    ----------
    data : ndarray [shape=(C, *spatial) or (B, C, *spatial)]
        Real or complex samples. Time series are ``(C, N)`` (or ``(B, C, N)`` for epochs);
        images and k-space have one or more spatial axes.
    ch_names : sequence of str, optional
        One unique name per channel. Default ``ch000, ch001, ...``.
    domain : {"time", "image", "kspace"}
        What the trailing axes are. ``"time"`` requires ``sfreq`` and exactly one signal axis.
    sfreq : float, optional
        Sampling frequency in Hz (time domain only).
    spacing : tuple of float, optional
        Sample spacing along each spatial axis (image and k-space domains only), in the unit
        of the source format (mm for MRI images).
    batched : bool
        Whether ``data`` has a leading batch axis (epochs, MRI slices).
    metadata : mapping, optional
        Source-format facts the writers and ``to_mne`` use: ``"format"`` plus format
        specifics (MNE ``"info"``, ``"annotations"``, ``"bads"``; audio ``"subtype"``;
        ``"ismrmrd_header"``, ...). Stored as a read-only shallow copy.

    Attributes
    ----------
    n_channels, n_batch, spatial_shape, duration

    See Also
    --------
    specconv.io.read : Build a VectorSignal from a file.
    specconv.io.write : Write one to a file.

    Notes
    -----
    Building a signal never copies ``data``: ``VectorSignal.data`` is a read-only *view*, so
    the caller's array stays writable and the signal cannot be changed through it. Libraries
    that want to write into their input (MNE's in-place methods, ``torch.from_numpy``) need an
    explicit ``np.array(sig.data)``; :func:`specconv.io.to_mne` does that for you.

    Examples
    --------
    >>> import numpy as np
    >>> from specconv.signal import VectorSignal
    >>> x = np.zeros((2, 48000), dtype=np.float32)
    >>> sig = VectorSignal(x, ("left", "right"), sfreq=48000.0)
    >>> sig.n_channels, sig.duration, sig.data.flags.writeable
    (2, 1.0, False)
    >>> np.shares_memory(sig.data, x)
    True
    >>> sig.replace(sfreq=24000.0).duration
    2.0
    """

    data: np.ndarray
    #: None at construction: generated names (``__post_init__`` stores a tuple)
    ch_names: Sequence[str] = None  # type: ignore[assignment]
    domain: Domain = "time"
    sfreq: float | None = None
    spacing: Sequence[float] | None = None
    batched: bool = False
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=FrozenDict)

    def __post_init__(self) -> None:
        data = self.data
        if not isinstance(data, np.ndarray):
            raise TypeError(
                f"data must be a numpy.ndarray, got {type(data).__name__}; convert it with "
                "numpy.asarray first."
            )
        if isinstance(data, np.ma.MaskedArray):
            raise TypeError(
                "data is a masked array; a VectorSignal does not carry a mask. Pass "
                "data.filled(value) (or NaN for missing samples) instead."
            )
        if data.dtype.kind not in "iufc":
            raise TypeError(f"data must have an integer, float or complex dtype, got {data.dtype}.")
        check_option("domain", self.domain, DOMAINS)
        if not isinstance(self.batched, (bool, np.bool_)):
            raise TypeError(f"batched must be a bool, got {self.batched!r}.")
        batched = bool(self.batched)
        lead = 2 if batched else 1
        layout = "(B, C, *spatial)" if batched else "(C, *spatial)"
        if data.ndim < lead + 1:
            raise ValueError(
                f"data must have shape {layout} with at least one signal axis (batched="
                f"{batched}), got shape {data.shape}."
            )
        if self.domain == "time" and data.ndim != lead + 1:
            raise ValueError(
                f"data of a time-domain signal must have shape "
                f"{'(B, C, N)' if batched else '(C, N)'}, got shape {data.shape}."
            )
        n_channels = data.shape[lead - 1]
        if n_channels < 1:
            raise ValueError(f"data must have at least one channel, got shape {data.shape}.")

        ch_names = self.ch_names
        if ch_names is None:
            ch_names = default_ch_names(n_channels)
        elif (
            isinstance(ch_names, str)
            or not isinstance(ch_names, (Sequence, np.ndarray))
            or (isinstance(ch_names, np.ndarray) and ch_names.ndim != 1)
            or not all(isinstance(c, str) for c in ch_names)
        ):
            raise TypeError(f"ch_names must be a sequence of str, got {ch_names!r}.")
        ch_names = tuple(ch_names)
        if len(ch_names) != n_channels:
            raise ValueError(
                f"ch_names has {len(ch_names)} names but data has {n_channels} channels "
                f"(axis {lead - 1} of shape {data.shape})."
            )
        if len(set(ch_names)) != len(ch_names):
            dup = sorted({c for c in ch_names if ch_names.count(c) > 1})
            raise ValueError(f"ch_names must be unique, got duplicates {dup}.")

        sfreq, spacing = self.sfreq, self.spacing
        n_spatial = data.ndim - lead
        if self.domain == "time":
            if sfreq is None:
                raise ValueError("sfreq is required for a time-domain signal, got None.")
            sfreq = _positive_float("sfreq", sfreq)
            if spacing is not None:
                raise ValueError(
                    f"spacing applies to image and k-space signals; a time-domain signal "
                    f"carries its sampling in sfreq, got spacing={spacing!r}."
                )
        else:
            if sfreq is not None:
                raise ValueError(
                    f"sfreq applies to time-domain signals, got sfreq={sfreq!r} for domain "
                    f"{self.domain!r}; use spacing instead."
                )
            if spacing is not None:
                if isinstance(spacing, numbers.Real):
                    spacing = (spacing,) * n_spatial
                if isinstance(spacing, str) or not isinstance(spacing, (Sequence, np.ndarray)):
                    raise TypeError(
                        f"spacing must be a positive number or a sequence of {n_spatial}, got "
                        f"{spacing!r}."
                    )
                spacing = tuple(_positive_float("spacing", s) for s in spacing)
                if len(spacing) != n_spatial:
                    raise ValueError(
                        f"spacing must have one entry per spatial axis ({n_spatial}), got "
                        f"{spacing!r}."
                    )

        # A view, not a copy: the caller's array keeps its own writeable flag.
        view = data.view()
        view.flags.writeable = False
        metadata = self.metadata
        if not isinstance(metadata, Mapping):
            raise TypeError(f"metadata must be a mapping, got {type(metadata).__name__}.")
        if not isinstance(metadata, FrozenDict):
            metadata = FrozenDict(metadata)

        set_ = object.__setattr__
        set_(self, "data", view)
        set_(self, "ch_names", ch_names)
        set_(self, "sfreq", sfreq)
        set_(self, "spacing", spacing)
        set_(self, "batched", batched)
        set_(self, "metadata", metadata)

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuild through __init__ so the unpickled data is read-only again.
        return (
            VectorSignal,
            (
                self.data,
                self.ch_names,
                self.domain,
                self.sfreq,
                self.spacing,
                self.batched,
                self.metadata,
            ),
        )

    # -- derived facts -------------------------------------------------------------------
    @property
    def n_channels(self) -> int:
        """Number of channels C."""
        return len(self.ch_names)

    @property
    def n_batch(self) -> int | None:
        """Size of the batch axis (epochs, slices), or None when the signal is unbatched."""
        return self.data.shape[0] if self.batched else None

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """Shape of the trailing signal axes (``(N,)`` for a time series)."""
        return self.data.shape[2 if self.batched else 1 :]

    @property
    def duration(self) -> float | None:
        """Length in seconds of a time-domain signal (``N / sfreq``), else None."""
        if self.domain != "time":
            return None
        return self.data.shape[-1] / self.sfreq

    def __repr__(self) -> str:
        fmt = self.metadata.get("format")
        parts = [
            f"shape={self.data.shape}",
            f"dtype={self.data.dtype}",
            f"domain={self.domain!r}",
        ]
        if self.sfreq is not None:
            parts.append(f"sfreq={self.sfreq:g}")
        if self.spacing is not None:
            parts.append(f"spacing={self.spacing}")
        if self.batched:
            parts.append("batched=True")
        names = ", ".join(self.ch_names[:4]) + (", ..." if self.n_channels > 4 else "")
        parts.append(f"ch_names=[{names}]")
        if fmt:
            parts.append(f"format={fmt!r}")
        return f"VectorSignal({', '.join(parts)})"

    # -- derivation ----------------------------------------------------------------------
    def replace(self, **changes: Any) -> VectorSignal:
        """Return a copy of the signal with some fields changed (the data is not copied).

        Examples
        --------
        >>> import numpy as np
        >>> from specconv.signal import VectorSignal
        >>> sig = VectorSignal(np.ones((2, 100)), sfreq=100.0)
        >>> sig.replace(ch_names=("a", "b")).ch_names
        ('a', 'b')
        """
        return dataclasses.replace(self, **changes)

    def apply(
        self,
        layer: Callable[[np.ndarray], ArrayLike],
        *,
        ch_names: Sequence[str] | None = None,
        sfreq: float | None = None,
        spacing: Sequence[float] | None = None,
    ) -> VectorSignal:
        """Apply a layer to the data and return the result as a new signal.

        ``layer(data)`` receives the array as stored, ``(C, *spatial)`` or
        ``(B, C, *spatial)``, and must return an array with the same number of axes.

        Parameters
        ----------
        layer : callable
            E.g. a :class:`specconv.SpectralConv`; any callable mapping an ndarray to an
            ndarray of the same rank works.
        ch_names : sequence of str, optional
            Names of the output channels. By default: the layer's ``out_ch_names`` attribute
            if it has one, else the input names when the channel count is unchanged (so a
            depthwise filter keeps them), else generated ``ch000, ch001, ...``.
        sfreq, spacing : optional
            Sampling of the output. Needed when the layer has a ``stride`` other than 1
            (the output grid is then coarser and apply will not guess how).

        Returns
        -------
        VectorSignal
            Same domain, batching and metadata; new data and channel names.

        Examples
        --------
        >>> import numpy as np
        >>> from specconv.signal import VectorSignal
        >>> sig = VectorSignal(np.ones((2, 8)), ("L", "R"), sfreq=8.0)
        >>> sig.apply(lambda x: 2 * x).ch_names
        ('L', 'R')
        >>> mono = sig.apply(lambda x: x.sum(axis=0, keepdims=True))
        >>> mono.ch_names, mono.data.shape
        (('ch000',), (1, 8))
        """
        out = np.asarray(layer(self.data))
        if out.ndim != self.data.ndim:
            raise ValueError(
                f"the layer returned shape {out.shape} for input shape {self.data.shape}; "
                f"apply needs an output with the same number of axes ({self.data.ndim})."
            )
        n_out = out.shape[1 if self.batched else 0]
        if ch_names is None:
            provided = getattr(layer, "out_ch_names", None)
            if provided is not None and len(provided) == n_out:
                ch_names = tuple(provided)
            elif n_out == self.n_channels:
                ch_names = self.ch_names
            else:
                ch_names = default_ch_names(n_out)
        stride = getattr(layer, "stride", 1)
        strides = stride if isinstance(stride, (tuple, list)) else (stride,)
        grid_known = self.domain == "time" or self.spacing is not None
        if any(s != 1 for s in strides) and grid_known and sfreq is None and spacing is None:
            raise ValueError(
                f"the layer has stride={stride!r}, which changes the sampling grid; pass "
                "sfreq= (time signals) or spacing= (images) for the output explicitly."
            )
        changes: dict[str, Any] = {"data": out, "ch_names": ch_names}
        if sfreq is not None:
            changes["sfreq"] = sfreq
        if spacing is not None:
            changes["spacing"] = spacing
        return self.replace(**changes)
