"""Checks at the public boundary and the one dtype policy.

Every public function validates its arguments here, so that error messages read the same
everywhere: they name the parameter, the value received and what is allowed.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Sequence
from typing import Any, TypeVar, cast

import numpy as np

from ._typing import Shape

#: an option's type: a Literal of its allowed names where the caller's constant says so
_Option = TypeVar("_Option", bound=str)

#: The dtypes the engine computes in. Everything else is promoted to one of them.
COMPUTE_DTYPES = (np.float32, np.float64, np.complex64, np.complex128)


#: The longest spatial axis (padded input, zero-stuffed input or output) specconv computes:
#: the largest FFT length it plans.
MAX_LENGTH = 2**31


def check_option(name: str, value: Any, allowed: Sequence[_Option]) -> _Option:
    """Return ``value`` if it is one of ``allowed``, else raise a ValueError naming them
    (a TypeError if it is no string at all)."""
    if isinstance(value, str) and value in allowed:
        return cast(_Option, value)  # it is one of allowed
    if not isinstance(value, str):
        raise TypeError(
            f"{name} must be a str, one of {', '.join(repr(a) for a in allowed)}, got "
            f"{type(value).__name__} {value!r}."
        )
    options = ", ".join(repr(a) for a in allowed[:-1]) + f" and {allowed[-1]!r}"
    raise ValueError(
        f"Invalid value for the {name!r} parameter. Allowed values are {options}, "
        f"but got {value!r} instead."
    )


def as_array(name: str, value: Any, *, allow_empty: bool = False) -> np.ndarray:
    """Return ``value`` as a numeric ndarray in native byte order (no copy when it already is
    one).

    Masked arrays are refused: the engine would read the values under the mask, so ignoring
    the mask silently changes the answer. Fill them (``np.ma.filled``) or use NaN with
    ``nan_policy``.
    """
    if isinstance(value, np.ma.MaskedArray):
        raise TypeError(
            f"{name} is a masked array; specconv does not honour masks. Pass "
            f"{name}.filled(value) (or NaN for missing samples, see nan_policy) instead."
        )
    if value is None or isinstance(value, (str, bytes, dict, set)):
        raise TypeError(f"{name} must be an array_like of numbers, got {type(value).__name__}.")
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as err:  # ragged nested lists, unconvertible objects
        raise ValueError(
            f"{name} must be an array_like of numbers with a regular shape (not a ragged nested "
            f"list); numpy could not convert it: {err}"
        ) from None
    if arr.dtype.kind not in "biufc":
        raise TypeError(
            f"{name} must be a numeric array (bool, int, float or complex), got dtype {arr.dtype}."
        )
    if arr.size == 0 and not allow_empty:
        raise ValueError(f"{name} must not be empty, got shape {arr.shape}.")
    if not arr.dtype.isnative:  # big-endian data on a little-endian machine: one native copy
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr


def as_dtype(name: str, value: Any) -> np.dtype:
    """``np.dtype(value)``, with an error that names the parameter."""
    try:
        return np.dtype(value)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"{name} must be a numpy dtype (e.g. 'float32'), got {value!r}: {err}"
        ) from None


def result_dtype(*arrays: np.ndarray | None, names: Sequence[str] | None = None) -> np.dtype:
    """The dtype a convolution of ``arrays`` is computed and returned in.

    numpy's ``result_type`` of the inputs, then: bool and integer become float64, float16
    becomes float32 (FFTW has no half precision); float32 stays float32, so single-precision
    inputs use single-precision FFT plans. Extended precision is refused rather than silently
    rounded; ``names`` (one per array) say in the message which array brought it.
    """
    dtype = np.result_type(*[a.dtype for a in arrays if a is not None])
    supported = COMPUTE_DTYPES + (np.float16,)
    if dtype.kind in "biu":
        return np.dtype(np.float64)
    if dtype == np.float16:
        return np.dtype(np.float32)
    if dtype not in COMPUTE_DTYPES:
        culprits = [
            n
            for n, a in zip(names or (), arrays)
            if a is not None and a.dtype.kind not in "biu" and a.dtype not in supported
        ]
        origin = f" (the dtype of {' and '.join(culprits)})" if culprits else ""
        raise TypeError(
            f"dtype {dtype} is not supported; use float32, float64, complex64 or "
            f"complex128{origin}."
        )
    return dtype


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _from_ndarray(name, value):
    """An integer ndarray as the Python int(s) it holds; other arrays are refused."""
    if not isinstance(value, np.ndarray):
        return value
    if value.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an int or a tuple of ints, got an array of {value.dtype}.")
    return value.tolist()


def as_int(name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as a Python int (numpy integers included; bools, floats and strings refused)."""
    value = _from_ndarray(name, value)
    if not _is_int(value):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}.")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}.")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}.")
    return value


def as_bool(name: str, value: Any) -> bool:
    """``value`` as a Python bool: only ``True``/``False`` (numpy's included) are taken."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}.")
    return bool(value)


def as_real(
    name: str, value: Any, *, minimum: float | None = None, positive: bool = False
) -> float:
    """``value`` as a finite Python float (numpy reals included; bools and strings refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}.")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}.")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}.")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}.")
    return value


def as_tuple(
    name: str, value: Any, ndim: int, *, minimum: int = 1, of: str | None = None
) -> tuple[int, ...]:
    """Normalize an int or a sequence of ``ndim`` ints, each ``>= minimum``, to Python ints."""
    value = _from_ndarray(name, value)
    if _is_int(value):
        values = (int(value),) * ndim
    elif isinstance(value, Sequence) and not isinstance(value, str):
        values = tuple(value)
        if not all(_is_int(v) for v in values):
            raise TypeError(
                f"{name} must be an int or a tuple of {ndim} ints (one per spatial "
                f"dimension), got {value!r}."
            )
        if len(values) != ndim:
            whose = f"; {of} has {ndim}" if of else ""
            raise ValueError(
                f"{name} must be an int or a tuple of {ndim} ints (one per spatial "
                f"dimension), got {value!r} ({len(values)} values{whose})."
            )
        values = tuple(int(v) for v in values)
    else:
        raise TypeError(f"{name} must be an int or a tuple of {ndim} ints, got {value!r}.")
    if any(v < minimum for v in values):
        raise ValueError(f"{name} must be >= {minimum} in every dimension, got {value!r}.")
    return values


def as_shape(name: str, value: Any) -> tuple[int, ...]:
    """An array shape: a sequence of ints ``>= 0`` (numpy integers included), as Python ints."""
    value = _from_ndarray(name, value)
    if (
        isinstance(value, str)
        or not isinstance(value, Sequence)
        or not all(_is_int(v) for v in value)
    ):
        raise TypeError(f"{name} must be a shape (a tuple of ints), got {value!r}.")
    if any(v < 0 for v in value):
        raise ValueError(f"{name} must be a shape of sizes >= 0, got {value!r}.")
    return tuple(int(v) for v in value)


def _physical_memory():
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not POSIX: leave it to the allocator
        return None


def check_memory(shape: Shape, itemsize: int, what: str, names: str) -> None:
    """Refuse an array of ``shape`` larger than this machine's physical memory.

    Allocating it would fail late (Linux overcommits: the process is killed while filling
    it) instead of at once with a message that says which parameter asked for it.
    """
    nbytes = math.prod(int(n) for n in shape) * int(itemsize)
    limit = _physical_memory()
    if limit is not None and nbytes > limit:
        raise ValueError(
            f"The {what} would take {nbytes / 2**30:.3g} GiB (shape {tuple(shape)}), more than "
            f"this machine's {limit / 2**30:.3g} GiB of memory; check {names}."
        )


def check_length(shape: Shape, what: str, names: str) -> None:
    """Refuse a spatial ``shape`` with an axis longer than :data:`MAX_LENGTH`.

    ``what`` says which array (e.g. "padded input"), ``names`` which parameters made it so.
    """
    if any(n > MAX_LENGTH for n in shape):
        raise ValueError(
            f"The {what} would have spatial shape {tuple(shape)}, longer than {MAX_LENGTH} "
            f"samples (the longest axis specconv computes); check {names}."
        )


def check_groups(
    groups: Any,
    in_channels: int,
    out_channels: int,
    *,
    weight: np.ndarray | None = None,
    name: str = "weight",
) -> int:
    """Check that ``groups`` is a positive int dividing both channel counts (``weight``, if
    given, is named with its shape in the message: the channel counts come from it)."""
    groups = as_int("groups", groups, minimum=1)
    for label, count in (("in_channels", in_channels), ("out_channels", out_channels)):
        if count % groups:
            origin = "" if weight is None else f" ({name} has shape {weight.shape})"
            raise ValueError(f"{label} ({count}) must be divisible by groups ({groups}){origin}.")
    return groups


def check_finite_weights(
    weight: np.ndarray, bias: np.ndarray | None = None, *, name: str = "weight"
) -> None:
    """Under ``nan_policy="raise"``: refuse non-finite taps or bias values."""
    for label, arr in ((name, weight), ("bias", bias)):
        if arr is not None and not np.isfinite(arr).all():
            count = int(np.count_nonzero(~np.isfinite(arr)))
            raise ValueError(
                f"{label} contains {count} non-finite value(s) (NaN or ±Inf) and "
                f"nan_policy='raise'; a non-finite tap would make its whole output channel NaN."
            )


def check_signal(
    x: np.ndarray, weight_in_channels: int, ndim_spatial: int, *, name: str = "x", groups: int = 1
) -> tuple[np.ndarray, bool]:
    """Return ``x`` as ``(B, C, *spatial)`` plus whether a batch axis was given.

    ``weight_in_channels`` is the channel count the layer expects (``groups`` times the
    weight's input channels per group).
    """
    if x.ndim not in (ndim_spatial + 1, ndim_spatial + 2):
        raise ValueError(
            f"{name} must have shape (C_in, *spatial) or (B, C_in, *spatial) with "
            f"{ndim_spatial} spatial dimension(s), i.e. ndim {ndim_spatial + 1} or "
            f"{ndim_spatial + 2}, got shape {x.shape}."
        )
    batched = x.ndim == ndim_spatial + 2
    xb = x if batched else x[np.newaxis]
    if xb.shape[1] != weight_in_channels:
        raise ValueError(
            f"{name} has {xb.shape[1]} channels (axis {1 if batched else 0} of shape "
            f"{x.shape}) but the weight expects {weight_in_channels} input channels"
            + (
                f" ({weight_in_channels // groups} per group, groups={groups})."
                if groups > 1
                else " (weight.shape[1] × groups, with groups=1)."
            )
        )
    return xb, batched


def as_pads(
    name: str, value: Any, ndim: int, *, of: str | None = None
) -> tuple[tuple[int, int], ...]:
    """Normalize padding to ``((before, after), ...)``: an int, d ints, or d (before, after) pairs."""
    value = _from_ndarray(name, value)
    if (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and len(value) == ndim
        and all(isinstance(v, Sequence) and not isinstance(v, str) for v in value)
    ):
        if any(len(v) != 2 for v in value):
            raise ValueError(
                f"{name} given as pairs needs one (before, after) pair of ints per spatial "
                f"dimension, got {value!r}."
            )
        pairs = tuple(as_tuple(name, tuple(v), 2, minimum=0) for v in value)
        return cast("tuple[tuple[int, int], ...]", pairs)  # as_tuple(..., 2) gives pairs
    return tuple((p, p) for p in as_tuple(name, value, ndim, minimum=0, of=of))
