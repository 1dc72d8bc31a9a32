"""A layer as a linear operator with its exact adjoint, for iterative solvers.

PyTorch conv-layer semantics. A layer bound to an input shape is a matrix
``A : C^{prod(input_shape)} -> C^{prod(output_shape)}``; :class:`LayerOperator` is that matrix as
a :class:`scipy.sparse.linalg.LinearOperator`, so that ``lsqr``, ``cg`` (on ``A^H A``) and
``gmres`` solve multichannel deconvolution with specconv's FFT engine doing every product.

The adjoint ``A^H`` is the transposed layer of the conjugated weight (the layer's ``.H``),
applied with the ``output_size`` of the input, composed with the adjoint of the padding
operator when ``padding_mode`` is not "zeros": reflect, replicate and circular padding copy
input samples into the pad, so their adjoint adds the pad back onto the samples it copied.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse
from scipy.sparse.linalg import LinearOperator

from ._typing import ArrayLike, DTypeLike, Shape
from ._validate import as_tuple, result_dtype
from .layers import NUMPY_PAD_MODE, Layer, SpectralConv, SpectralConvTranspose

__all__ = ["LayerOperator", "adjoint", "aslinearoperator"]


def _check_layer(layer):
    if not isinstance(layer, (SpectralConv, SpectralConvTranspose)):
        raise TypeError(
            f"layer must be a SpectralConv or SpectralConvTranspose, got {type(layer).__name__}."
        )


def _pad_adjoint(z, pads, n, mode):
    """The adjoint of ``np.pad(x, pads, mode)`` over the trailing axes: ``z`` padded -> ``n``.

    Every padded sample is a copy of one input sample; ``np.pad`` of the indices says which,
    and the adjoint sums each padded sample back onto its source (a 0/1 sparse matrix per
    axis, applied axis by axis in reverse order as the padding is applied axis by axis).
    """
    d = len(n)
    for axis in reversed(range(d)):
        a, b = pads[axis]
        if a == 0 and b == 0:
            continue
        source = np.pad(np.arange(n[axis]), (a, b), mode=NUMPY_PAD_MODE[mode])
        fold = scipy.sparse.csr_matrix(
            (np.ones(len(source)), (np.arange(len(source)), source)),
            shape=(len(source), n[axis]),
        )
        ax = z.ndim - d + axis
        moved = np.moveaxis(z, ax, -1)
        flat = moved.reshape(-1, moved.shape[-1])
        out = np.asarray(fold.T @ flat.T).T.astype(z.dtype, copy=False)
        z = np.moveaxis(out.reshape(moved.shape[:-1] + (n[axis],)), -1, ax)
    return np.ascontiguousarray(z)


def adjoint(layer: Layer, y: ArrayLike, input_shape: Shape) -> np.ndarray:
    """Apply the adjoint ``A^H`` of a layer's linear part (its bias left out) to ``y``.

    PyTorch conv-layer semantics. ``A`` is the layer applied to inputs of spatial shape
    ``input_shape``; ``<A x, y> = <x, A^H y>`` for every stride, padding, dilation, groups and
    padding mode, real or complex weights (``np.vdot`` conjugates its first argument).

    Parameters
    ----------
    layer : SpectralConv or SpectralConvTranspose
    y : array_like [shape=(C_out, *out) or (B, C_out, *out)]
        ``out`` the layer's output shape for inputs of spatial shape ``input_shape``.
    input_shape : tuple of d ints
        The spatial shape of the layer's input (a strided layer maps several to one output
        shape, so it is needed).

    Returns
    -------
    x : ndarray [shape=(C_in, *input_shape) or (B, C_in, *input_shape)]

    See Also
    --------
    aslinearoperator : the layer and its adjoint as one scipy LinearOperator.
    SpectralConv.H : the adjoint as a layer (zero padding only).

    Examples
    --------
    >>> import numpy as np
    >>> from specconv import SpectralConv
    >>> from specconv.linop import adjoint
    >>> rng = np.random.default_rng(0)
    >>> layer = SpectralConv(rng.standard_normal((3, 2, 5)), stride=2, padding=2,
    ...                      padding_mode="reflect")
    >>> x, y = rng.standard_normal((2, 20)), rng.standard_normal((3, 10))
    >>> bool(np.isclose(np.vdot(layer(x), y), np.vdot(x, adjoint(layer, y, (20,)))))
    True
    """
    _check_layer(layer)
    d = layer.ndim
    n = as_tuple("input_shape", tuple(input_shape)[-d:], d)
    return _apply_adjoint(layer, _adjoint_layer(layer), y, n)


def _apply_adjoint(layer, H, y, n):
    """``A^H y`` for inputs of spatial shape ``n``, ``H`` being ``_adjoint_layer(layer)``."""
    if isinstance(layer, SpectralConvTranspose):
        # the conv of the conjugated weight maps the transposed layer's output back; with
        # output_padding >= stride (allowed when dilation > stride) it yields extra samples
        # that no input reaches: the adjoint ignores them
        x = H(y)
        return np.ascontiguousarray(x[(Ellipsis,) + tuple(slice(0, m) for m in n)])
    if layer.padding_mode == "zeros":
        return H(y, output_size=n)
    pads = layer.pads
    padded = tuple(m + a + b for m, (a, b) in zip(n, pads))
    return _pad_adjoint(H(y, output_size=padded), pads, n, layer.padding_mode)


def _adjoint_layer(layer):
    """The layer computing ``A^H``: ``layer.H``, or for padding modes other than zeros the
    adjoint of the unpadded conv (the padding's adjoint is applied after it)."""
    if isinstance(layer, SpectralConvTranspose) or layer.padding_mode == "zeros":
        return layer.H
    w = np.conj(layer.weight) if layer.weight.dtype.kind == "c" else layer.weight
    return SpectralConvTranspose(
        w,
        stride=layer.stride,
        dilation=layer.dilation,
        groups=layer.groups,
        method=layer.method,
        nan_policy=layer.nan_policy,
    )


def output_shape(layer: Layer, input_shape: Shape) -> tuple[int, ...]:
    """The spatial output shape of ``layer`` for inputs of spatial shape ``input_shape``.

    Examples
    --------
    >>> import numpy as np
    >>> from specconv import SpectralConv
    >>> from specconv.linop import output_shape
    >>> output_shape(SpectralConv(np.ones((1, 1, 5)), stride=2), (20,))
    (8,)
    """
    _check_layer(layer)
    d = layer.ndim
    n = as_tuple("input_shape", tuple(input_shape)[-d:], d)
    span = tuple(dl * (k - 1) + 1 for k, dl in zip(layer.kernel_size, layer.dilation))
    pads = layer.pads
    if isinstance(layer, SpectralConvTranspose):
        out = tuple(
            (m - 1) * s - a - b + e + op
            for m, s, (a, b), e, op in zip(n, layer.stride, pads, span, layer.output_padding)
        )
    else:
        out = tuple(
            (m + a + b - e) // s + 1 for m, s, (a, b), e in zip(n, layer.stride, pads, span)
        )
    if any(o < 1 for o in out):
        raise ValueError(
            f"input_shape {n} gives an empty output {out} for this layer (kernel span "
            f"{span}, padding {layer.padding!r})."
        )
    return out


class LayerOperator(LinearOperator):
    """A layer's linear part on inputs of one shape, as a scipy ``LinearOperator``.

    PyTorch conv-layer semantics. Vectors are the layer's input and output arrays flattened
    in C order; ``matvec`` applies the layer (without its bias), ``rmatvec`` the exact
    adjoint (see :func:`adjoint`), and ``matmat``/``rmatmat`` apply them to all columns in
    one batched call. Build it with :func:`aslinearoperator`.

    Attributes
    ----------
    layer : SpectralConv or SpectralConvTranspose
    input_shape, output_shape : tuple of ints
        Full array shapes, ``(C, *spatial)`` or ``(B, C, *spatial)``.
    """

    def __init__(self, layer: Layer, input_shape: Shape, dtype: DTypeLike | None = None) -> None:
        _check_layer(layer)
        d = layer.ndim
        input_shape = tuple(input_shape)
        if len(input_shape) not in (d + 1, d + 2) or input_shape[-d - 1] != layer.in_channels:
            raise ValueError(
                f"input_shape must be (C_in, *spatial) or (B, C_in, *spatial) with C_in = "
                f"{layer.in_channels} and {d} spatial dimension(s), got {input_shape!r}."
            )
        as_tuple("input_shape", input_shape, len(input_shape))
        out = output_shape(layer, input_shape[-d:])
        self.layer = layer
        self.input_shape = input_shape
        self.output_shape = input_shape[: -d - 1] + (layer.out_channels,) + out
        if dtype is None:
            dtype = result_dtype(layer.weight)
        # built once: layers cache their kernel spectra, so a solver's iterations reuse them
        self._forward_layer = layer if layer.bias is None else _without_bias(layer)
        self._adjoint_layer = _adjoint_layer(layer)
        super().__init__(np.dtype(dtype), (math.prod(self.output_shape), math.prod(input_shape)))

    def _columns(self, X, shape):
        """``X`` (N, k) -> a batch of k arrays of ``shape`` (the batch axis folded in)."""
        k = X.shape[1]
        cols = np.ascontiguousarray(X.T).reshape((k,) + shape)
        d = self.layer.ndim
        return cols.reshape((-1,) + shape[-d - 1 :]), k

    def _matmat(self, X):
        cols, k = self._columns(X, self.input_shape)
        y = self._forward_layer(cols)
        return y.reshape(k, -1).T

    def _rmatmat(self, Y):
        cols, k = self._columns(Y, self.output_shape)
        x = _apply_adjoint(
            self.layer, self._adjoint_layer, cols, self.input_shape[-self.layer.ndim :]
        )
        return x.reshape(k, -1).T

    def _matvec(self, x):
        return self._matmat(np.reshape(x, (-1, 1))).reshape(-1)

    def _rmatvec(self, y):
        return self._rmatmat(np.reshape(y, (-1, 1))).reshape(-1)

    def __repr__(self) -> str:
        return (
            f"<{self.shape[0]}x{self.shape[1]} LayerOperator of {self.layer!r} on inputs "
            f"of shape {self.input_shape} with dtype={self.dtype}>"
        )


def _without_bias(layer):
    if isinstance(layer, SpectralConvTranspose):
        return SpectralConvTranspose(
            layer.weight,
            stride=layer.stride,
            padding=layer.pads,
            output_padding=layer.output_padding,
            groups=layer.groups,
            dilation=layer.dilation,
            method=layer.method,
            nan_policy=layer.nan_policy,
        )
    return SpectralConv(
        layer.weight,
        stride=layer.stride,
        padding=layer.pads,
        dilation=layer.dilation,
        groups=layer.groups,
        padding_mode=layer.padding_mode,
        method=layer.method,
        nan_policy=layer.nan_policy,
    )


def aslinearoperator(
    layer: Layer, input_shape: Shape, *, dtype: DTypeLike | None = None
) -> LayerOperator:
    """The layer's linear part on inputs of ``input_shape`` as a scipy ``LinearOperator``.

    PyTorch conv-layer semantics. ``A @ x.ravel()`` equals ``layer(x).ravel()`` without the
    bias, and ``A.H @ y.ravel()`` applies the exact adjoint, for every stride, padding,
    dilation, groups and padding mode, real or complex weights. Solvers of
    :mod:`scipy.sparse.linalg` then deconvolve: ``lsqr(A, y.ravel())`` finds the
    least-squares input of a known multichannel system.

    Parameters
    ----------
    layer : SpectralConv or SpectralConvTranspose
        A layer with a bias is an affine map: the operator is its linear part (subtract the
        bias from the data before solving).
    input_shape : tuple of ints
        ``(C_in, *spatial)`` or ``(B, C_in, *spatial)``.
    dtype : numpy dtype, optional
        Default: the layer's weight dtype (ints as float64). Solvers use it for their work
        vectors; complex inputs through a real operator also work.

    Returns
    -------
    A : LayerOperator
        ``A.shape == (prod(output_shape), prod(input_shape))``; ``A.input_shape``,
        ``A.output_shape`` give the array shapes.

    See Also
    --------
    adjoint : the adjoint applied to an array.
    specconv.kernels.inverse : a regularised FIR inverse (one filter, no iterations).

    Notes
    -----
    ``lsqr(A, y, damp=λ)`` solves the Tikhonov problem ``min ‖A x − y‖² + λ² ‖x‖²`` that
    :func:`specconv.kernels.inverse` with ``reg=λ²`` solves per frequency on a periodic
    signal; the operator solves it on the finite signal, edges included.

    A solver's vector operations run in numpy's BLAS between the products. A multithreaded
    OpenBLAS keeps its threads spinning after each one; on a machine whose cores are busy
    with other work they then compete with specconv's FFT threads, and running the solver
    inside ``threadpoolctl.threadpool_limits(1, user_api="blas")`` helps (on an idle machine
    it makes no difference; see benchmarks/RESULTS.md).

    Examples
    --------
    >>> import numpy as np
    >>> from scipy.sparse.linalg import lsqr
    >>> import specconv
    >>> rng = np.random.default_rng(0)
    >>> layer = specconv.SpectralConv(rng.standard_normal((3, 2, 9)))   # 2 -> 3 channels
    >>> A = specconv.aslinearoperator(layer, (2, 200))
    >>> A.shape
    (576, 400)
    >>> x = rng.standard_normal((2, 200))
    >>> x_hat = lsqr(A, layer(x).ravel(), atol=1e-12, btol=1e-12, iter_lim=500)[0]
    >>> bool(np.allclose(x_hat.reshape(2, 200), x, atol=1e-6))
    True
    """
    return LayerOperator(layer, input_shape, dtype)
