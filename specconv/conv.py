"""The public functions, in two semantic families.

PyTorch conv-layer semantics -- :func:`conv`, :func:`conv_transpose`: cross-correlation,
weight ``(C_out, C_in/groups, *kernel)``, stride/padding/dilation/groups as ``torch.nn.Conv``.

scipy.signal semantics -- :func:`convolve`, :func:`correlate`: true convolution (or scipy's
correlation), ``mode`` full/same/valid exactly as :func:`scipy.signal.convolve`, summed over
input channels.
"""

from __future__ import annotations

import numpy as np

from . import _correlate
from ._geometry import Geometry
from ._typing import (
    ArrayLike,
    ConvolveMode,
    IntOrTuple,
    Method,
    NanPolicy,
    Padding,
    PaddingMode,
    Pads,
)
from ._validate import (
    as_array,
    as_int,
    check_finite_weights,
    check_groups,
    check_length,
    check_option,
    check_signal,
    result_dtype,
)
from .layers import METHODS, NAN_POLICIES, ONE_CALL, SpectralConv, SpectralConvTranspose

MODES: tuple[ConvolveMode, ...] = ("full", "same", "valid")


def conv(
    x: ArrayLike,
    weight: ArrayLike,
    bias: ArrayLike | None = None,
    *,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: PaddingMode = "zeros",
    method: Method = "auto",
    nan_policy: NanPolicy = "propagate",
) -> np.ndarray:
    """A conv layer with PyTorch ``Conv`` semantics (cross-correlation), any number of dims.

    ``y[b, o] = bias[o] + sum_{c in group(o)} weight[o, c] ⋆ x[b, c]``: a C_out × C_in matrix
    of kernels applied to a C_in-channel signal, computed as a complex matrix at every
    frequency. Numbers agree with ``torch.nn.functional.conv1d/2d/3d``.

    Parameters
    ----------
    x : array_like [shape=(C_in, *spatial) or (B, C_in, *spatial)]
        Never modified.
    weight : array_like [shape=(C_out, C_in/groups, *kernel)]
    bias : array_like [shape=(C_out,)], optional
    stride, dilation : int or tuple of ints, ``>= 1``
    padding : int, tuple of ints, "same" or "valid"
    groups : int
    padding_mode : {"zeros", "reflect", "replicate", "circular"}
    method : {"auto", "fft", "direct"}
    nan_policy : {"propagate", "raise"}
        See :class:`SpectralConv`.

    Returns
    -------
    y : ndarray [shape=(C_out, *out) or (B, C_out, *out)]
        dtype: numpy's result type of x, weight and bias (ints and bools become float64).

    See Also
    --------
    SpectralConv : the layer object, to apply one layer to many signals.
    convolve : scipy.signal semantics (true convolution, full/same/valid).

    Notes
    -----
    The kernel spectra of the last weights seen (up to 512 MB) are kept and reused when
    ``conv`` is called again with equal weights -- equal contents, found by a SHA-256 digest,
    so a weight modified in place is never served stale spectra. ``method="auto"`` counts
    their cost on a weight's first call only: called again with equal weights, it takes the
    FFT method wherever that wins once the spectra are cached.

    Examples
    --------
    >>> import numpy as np
    >>> import specconv
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((2, 16, 5000))            # batch 2, 16 channels
    >>> w = rng.standard_normal((32, 16, 65))              # 16 -> 32 channels, 65 taps
    >>> y = specconv.conv(x, w, padding="same")
    >>> y.shape
    (2, 32, 5000)
    >>> y_direct = specconv.conv(x, w, padding="same", method="direct")
    >>> bool(np.allclose(y, y_direct))
    True
    """
    layer = SpectralConv(
        weight,
        bias,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        padding_mode=padding_mode,
        method=method,
        nan_policy=nan_policy,
        planning=ONE_CALL,
    )
    return layer(x)


def conv_transpose(
    x: ArrayLike,
    weight: ArrayLike,
    bias: ArrayLike | None = None,
    *,
    stride: IntOrTuple = 1,
    padding: Pads = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
    method: Method = "auto",
    nan_policy: NanPolicy = "propagate",
) -> np.ndarray:
    """A transposed conv layer with PyTorch ``ConvTranspose`` semantics.

    The transpose of :func:`conv` with respect to x (for real weights the exact adjoint:
    ``<conv(x, w), y> = <x, conv_transpose(y, w)>``); at every frequency the conjugate
    transpose of the conv layer's matrix. Numbers agree with
    ``torch.nn.functional.conv_transpose1d/2d/3d``.

    Parameters
    ----------
    x : array_like [shape=(C_in, *spatial) or (B, C_in, *spatial)]
    weight : array_like [shape=(C_in, C_out/groups, *kernel)]
    bias : array_like [shape=(C_out,)], optional
    stride, padding, output_padding, groups, dilation : as PyTorch
    method, nan_policy : see :class:`SpectralConv`

    Returns
    -------
    y : ndarray [shape=(C_out, *out) or (B, C_out, *out)]
        ``out = (n − 1)·stride − 2·padding + dilation·(kernel − 1) + output_padding + 1``.

    See Also
    --------
    SpectralConvTranspose : the layer object (``output_size`` picks the output padding).

    Examples
    --------
    >>> import numpy as np
    >>> import specconv
    >>> rng = np.random.default_rng(0)
    >>> x, w = rng.standard_normal((4, 100)), rng.standard_normal((8, 4, 9))
    >>> y = rng.standard_normal((8, 46))
    >>> lhs = np.vdot(specconv.conv(x, w, stride=2), y)
    >>> rhs = np.vdot(x, specconv.conv_transpose(y, w, stride=2, output_padding=1))
    >>> bool(np.isclose(lhs, rhs))
    True
    """
    layer = SpectralConvTranspose(
        weight,
        bias,
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        groups=groups,
        dilation=dilation,
        method=method,
        nan_policy=nan_policy,
        planning=ONE_CALL,
    )
    return layer(x)


def convolve(
    x: ArrayLike,
    h: ArrayLike,
    *,
    mode: ConvolveMode = "full",
    groups: int = 1,
    method: Method = "auto",
    nan_policy: NanPolicy = "propagate",
) -> np.ndarray:
    """Multichannel convolution with scipy.signal semantics: ``y_i = sum_j h_ij * x_j``.

    True convolution (the kernel is flipped), over every spatial axis, with ``mode`` exactly as
    :func:`scipy.signal.convolve`; each output channel sums over its input channels.

    Parameters
    ----------
    x : array_like [shape=(C_in, *spatial) or (B, C_in, *spatial)]
    h : array_like [shape=(C_out, C_in/groups, *kernel)]
    mode : {"full", "same", "valid"}
        "full": every overlap (n + k − 1); "same": the centre of "full", as long as x, as
        scipy centres it; "valid": complete overlaps only (for "valid" the kernel must be no
        larger than x in every axis, or larger in every axis, as in scipy).
    groups : int
        Block-diagonal kernel matrix: output group g sees only input group g.
    method : {"auto", "fft", "direct"}
    nan_policy : {"propagate", "raise"}
        As for :class:`SpectralConv`: non-finite samples of x stay local under "propagate",
        but a non-finite tap in ``h[i]`` makes the whole output channel ``i`` NaN; "raise"
        refuses non-finite x or h with a ValueError.

    Returns
    -------
    y : ndarray [shape=(C_out, *out) or (B, C_out, *out)]

    See Also
    --------
    correlate : scipy.signal.correlate semantics.
    conv : PyTorch semantics (cross-correlation, stride, padding modes).

    Examples
    --------
    >>> import numpy as np
    >>> import scipy.signal
    >>> import specconv
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((2, 300))                  # a stereo signal
    >>> h = rng.standard_normal((2, 2, 50))                # a 2 x 2 true-stereo reverb
    >>> y = specconv.convolve(x, h)
    >>> ref = [sum(scipy.signal.convolve(x[j], h[i, j]) for j in range(2)) for i in range(2)]
    >>> bool(np.allclose(y, ref))
    True
    """
    h = _check_kernels(h)
    # convolution is correlation with the kernels flipped on every spatial axis
    taps = h[(Ellipsis,) + (slice(None, None, -1),) * (h.ndim - 2)]
    return _scipy_family(x, taps, mode, groups, method, nan_policy)


def correlate(
    x: ArrayLike,
    h: ArrayLike,
    *,
    mode: ConvolveMode = "full",
    groups: int = 1,
    method: Method = "auto",
    nan_policy: NanPolicy = "propagate",
) -> np.ndarray:
    """Multichannel cross-correlation with scipy.signal semantics.

    ``y_i = sum_j correlate(x_j, h_ij)`` as :func:`scipy.signal.correlate` (which conjugates
    complex ``h``), with ``mode`` full/same/valid exactly as scipy.

    Parameters
    ----------
    x : array_like [shape=(C_in, *spatial) or (B, C_in, *spatial)]
    h : array_like [shape=(C_out, C_in/groups, *kernel)]
    mode, groups, method, nan_policy : see :func:`convolve`

    Returns
    -------
    y : ndarray [shape=(C_out, *out) or (B, C_out, *out)]

    See Also
    --------
    convolve : true convolution.
    conv : PyTorch's cross-correlation (no conjugation, stride and padding).

    Examples
    --------
    >>> import numpy as np
    >>> import scipy.signal
    >>> import specconv
    >>> rng = np.random.default_rng(0)
    >>> x, h = rng.standard_normal((3, 40)), rng.standard_normal((1, 3, 7))
    >>> y = specconv.correlate(x, h, mode="same")
    >>> ref = sum(scipy.signal.correlate(x[j], h[0, j], mode="same") for j in range(3))
    >>> bool(np.allclose(y[0], ref))
    True
    """
    h = _check_kernels(h)
    # scipy.signal.correlate conjugates complex kernels
    taps = np.conj(h) if h.dtype.kind == "c" else h
    return _scipy_family(x, taps, mode, groups, method, nan_policy)


def _check_kernels(h):
    h = as_array("h", h)
    if h.ndim < 3:
        raise ValueError(f"h must have shape (C_out, C_in/groups, *kernel), got shape {h.shape}.")
    return h


def _scipy_family(x, taps, mode, groups, method, nan_policy):
    """Valid-correlation form of scipy's modes: ``taps`` are the correlation taps."""
    mode = check_option("mode", mode, MODES)
    method = check_option("method", method, METHODS)
    nan_policy = check_option("nan_policy", nan_policy, NAN_POLICIES)
    if nan_policy == "raise":
        check_finite_weights(taps, name="h")
    x = as_array("x", x)
    d = taps.ndim - 2
    groups = as_int("groups", groups, minimum=1)
    out_channels, in_channels = taps.shape[0], taps.shape[1] * groups
    groups = check_groups(groups, in_channels, out_channels, weight=taps, name="h")
    xb, batched = check_signal(x, in_channels, d, groups=groups)
    n, k = xb.shape[2:], taps.shape[2:]
    if mode == "full":
        pads = tuple((m - 1, m - 1) for m in k)
    elif mode == "same":
        pads = tuple((m - 1 - (m - 1) // 2, (m - 1) // 2) for m in k)
    elif all(m <= a for m, a in zip(k, n)):
        pads = ((0, 0),) * d
    elif all(m >= a for m, a in zip(k, n)):  # scipy swaps the roles: the signal slides
        pads = tuple((m - a, m - a) for m, a in zip(k, n))
    else:
        raise ValueError(
            f"For mode='valid', the kernel {k} must be no larger than x {n} in every spatial "
            f"dimension, or at least as large in every dimension."
        )
    dtype = result_dtype(xb, taps, names=("x", "h"))
    padded = tuple(m + a + b for m, (a, b) in zip(n, pads))
    check_length(padded, "padded input", "the shapes of x and h")
    geom = Geometry(
        xb.shape[0],
        in_channels,
        out_channels,
        groups,
        k,
        (1,) * d,
        (1,) * d,
        padded,
        dtype.kind == "c",
    )
    y = _correlate.correlate(xb, taps, geom, pads, dtype, method=method, nan_policy=nan_policy)
    return y if batched else y[0]
