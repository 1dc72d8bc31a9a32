"""Checks at the public boundary and the one dtype policy.

Every public function validates its arguments here, so that error messages read the same
everywhere: they name the parameter, the value received and what is allowed.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

#: The dtypes the engine computes in. Everything else is promoted to one of them.
COMPUTE_DTYPES = (np.float32, np.float64, np.complex64, np.complex128)


def check_option(name, value, allowed):
    """Return ``value`` if it is one of ``allowed``, else raise a ValueError naming them."""
    if isinstance(value, str) and value in allowed:
        return value
    options = ", ".join(repr(a) for a in allowed[:-1]) + f" and {allowed[-1]!r}"
    raise ValueError(
        f"Invalid value for the {name!r} parameter. Allowed values are {options}, "
        f"but got {value!r} instead."
    )


def as_array(name, value):
    """Return ``value`` as a numeric ndarray (no copy when it already is one)."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "biufc":
        raise TypeError(
            f"{name} must be a numeric array (bool, int, float or complex), "
            f"got dtype {arr.dtype}."
        )
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {arr.shape}.")
    return arr


def result_dtype(*arrays):
    """The dtype a convolution of ``arrays`` is computed and returned in.

    numpy's ``result_type`` of the inputs, then: bool and integer become float64, float16
    becomes float32 (FFTW has no half precision); float32 stays float32, so single-precision
    inputs use single-precision FFT plans. Extended precision is refused rather than silently
    rounded.
    """
    dtype = np.result_type(*[a.dtype for a in arrays if a is not None])
    if dtype.kind in "biu":
        return np.dtype(np.float64)
    if dtype == np.float16:
        return np.dtype(np.float32)
    if dtype not in COMPUTE_DTYPES:
        raise TypeError(
            f"dtype {dtype} is not supported; use float32, float64, complex64 or complex128."
        )
    return dtype


def as_tuple(name, value, ndim, *, minimum=1):
    """Normalize an int or a sequence of ``ndim`` ints, each ``>= minimum``."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        values = (int(value),) * ndim
    elif isinstance(value, Sequence) and not isinstance(value, str):
        values = tuple(value)
        if len(values) != ndim or not all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values
        ):
            raise ValueError(
                f"{name} must be an int or a tuple of {ndim} ints (one per spatial "
                f"dimension), got {value!r}."
            )
        values = tuple(int(v) for v in values)
    else:
        raise TypeError(f"{name} must be an int or a tuple of {ndim} ints, got {value!r}.")
    if any(v < minimum for v in values):
        raise ValueError(f"{name} must be >= {minimum} in every dimension, got {value!r}.")
    return values


def check_groups(groups, in_channels, out_channels):
    """Check that ``groups`` is a positive int dividing both channel counts."""
    if not isinstance(groups, numbers.Integral) or isinstance(groups, bool):
        raise TypeError(f"groups must be a positive int, got {groups!r}.")
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups}.")
    for label, count in (("in_channels", in_channels), ("out_channels", out_channels)):
        if count % groups:
            raise ValueError(
                f"{label} ({count}) must be divisible by groups ({groups})."
            )
    return int(groups)


def check_signal(x, weight_in_channels, ndim_spatial, *, name="x"):
    """Return ``x`` as ``(B, C, *spatial)`` plus whether a batch axis was given.

    ``weight_in_channels`` is the channel count the layer expects.
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
            f"{x.shape}) but the weight expects {weight_in_channels} input channels."
        )
    return xb, batched


def as_pads(name, value, ndim):
    """Normalize padding to ``((before, after), ...)``: an int, d ints, or d (before, after) pairs."""
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == ndim and all(
        isinstance(v, Sequence) and not isinstance(v, str) for v in value
    ):
        if any(len(v) != 2 for v in value):
            raise ValueError(
                f"{name} given as pairs needs one (before, after) pair of ints per spatial "
                f"dimension, got {value!r}."
            )
        return tuple(as_tuple(name, tuple(v), 2, minimum=0) for v in value)
    return tuple((p, p) for p in as_tuple(name, value, ndim, minimum=0))
