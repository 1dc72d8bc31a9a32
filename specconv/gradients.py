"""Gradients of conv layers: the weight and bias gradients, and the layers' vector-Jacobian
product.

PyTorch conv-layer semantics. For ``y = conv(x, w)`` with stride s and dilation d, the gradient
of a loss with respect to the weight, given the upstream gradient ``g = dL/dy``, is::

    dw[o, c, k] = sum_b sum_n g[b, o, n] · conj(xpad[b, group(o)·C_in/G + c, n·s + k·d])

(``conj`` as PyTorch's autograd for complex tensors). It is a correlation of the padded input
with the upstream gradient, summed over the batch, evaluated at the K lags ``k·d``. Two
methods compute it exactly:

direct
    torch's formulation: the correlation of ``conj(xpad)``, batch as channels, with ``g`` as
    the kernel (dilation s, stride d), by specconv's direct method.
fft
    In the frequency domain the weight gradient at every frequency is the outer product
    ``sum over batch and tiles of conj(G(f)) X(f)ᵀ`` -- a ``C_out × C_in/G`` matrix per
    frequency, accumulated by BLAS over overlap-save tiles of the output, and transformed
    back once per weight entry. A tile of ``L`` outputs reads ``L + Q - 1`` input samples
    (``Q`` lags); the transform length ``N = L + Q - 1`` is picked by a cost model under a
    memory bound, as the forward pass's tiles are. A stride splits the input into its s
    polyphase components: each is a stride-1 correlation with the same ``g`` at the lags of
    the taps in its residue class, so no stuffed zero is transformed.

"auto" picks between them with the cost model of :mod:`specconv._costmodel`: the direct
method's model for the equivalent correlation, and the operation counts above priced with the
same per-operation times.

A forward pass's spectra: ``y, pullback = vjp(layer, x)`` runs the layer with its FFT engine
keeping the spectra of its input tiles; ``pullback``'s weight gradient then transforms only
the upstream gradient, at the forward pass's tiling (see :class:`Pullback`).
"""

from __future__ import annotations

import functools
import itertools
import math
import numbers
from typing import Any

import numpy as np

from . import _blas, _costmodel, _direct, _engine, _workers, fft
from ._geometry import Geometry
from ._typing import ArrayLike, IntOrTuple, Method, Padding, PaddingMode, Pads, Shape
from ._validate import as_array, check_option, check_signal, result_dtype
from .layers import (
    METHODS,
    NUMPY_PAD_MODE,
    ONE_CALL,
    Layer,
    SpectralConv,
    SpectralConvTranspose,
    check_padding_fits,
)
from .linop import adjoint, output_shape

__all__ = ["Pullback", "bias_grad", "conv_transpose_weight_grad", "conv_weight_grad", "vjp"]

#: Bytes of the per-frequency accumulator ``C_out × C_in/G`` (the forward pass's bound on its
#: kernel spectra, which have the same shape).
ACCUMULATOR_BUDGET = _costmodel.SPECTRA_BUDGET
#: Bytes of tile spectra per chunk (the forward pass's chunk bound).
CHUNK_BUDGET = _costmodel.CHUNK_BUDGET
#: Bytes of input spectra ``vjp(layer, x)`` keeps by default for its pullback. The spectra of
#: the forward pass's tiles take about ``N / step`` times the input's bytes (tile length over
#: the outputs' step, real or complex), so inputs up to a few hundred MB keep theirs.
SAVED_SPECTRA_BUDGET = 2**30


def _weight_shape(weight_shape):
    shape = tuple(weight_shape) if not isinstance(weight_shape, (str, bytes)) else ()
    if len(shape) < 3 or not all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) and int(v) >= 1 for v in shape
    ):
        raise ValueError(
            f"weight_shape must be a tuple of at least 3 positive ints (C_out, C_in/groups, "
            f"*kernel) (ConvTranspose: (C_in, C_out/groups, *kernel)), got {weight_shape!r}."
        )
    return tuple(int(v) for v in shape)


def _placeholder(weight_shape):
    # zero strides: validation reads only the shape, so no weight-sized array is made
    return np.broadcast_to(np.zeros((), dtype=np.float64), weight_shape)


def _check_grad_output(grad_output, batch, channels, out, batched):
    g = as_array("grad_output", grad_output)
    expected = ((batch,) if batched else ()) + (channels,) + tuple(out)
    if g.shape != expected:
        raise ValueError(
            f"grad_output must have the layer's output shape {expected} for this x, got {g.shape}."
        )
    return g if batched else g[np.newaxis]


# --------------------------------------------------------------------------------------------
# public functions


def conv_weight_grad(
    x: ArrayLike,
    weight_shape: Shape,
    grad_output: ArrayLike,
    *,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: PaddingMode = "zeros",
    method: Method = "auto",
) -> np.ndarray:
    """The gradient of a loss with respect to a conv layer's weight, PyTorch semantics.

    Equal to ``torch.nn.grad.conv{1,2,3}d_weight(x, weight_shape, grad_output, ...)`` (and to
    torch's autograd, also for complex tensors and padding modes), in any number of dims.

    Parameters
    ----------
    x : array_like [shape=(C_in, *spatial) or (B, C_in, *spatial)]
        The layer's input.
    weight_shape : tuple of ints
        ``(C_out, C_in/groups, *kernel)``.
    grad_output : array_like [shape=(C_out, *out) or (B, C_out, *out)]
        The upstream gradient ``dL/dy``, of the layer's output shape for ``x``.
    stride, padding, dilation, groups, padding_mode : as :class:`~specconv.SpectralConv`
    method : {"auto", "fft", "direct"}
        "fft": per-frequency outer products over overlap-save tiles; "direct": the
        correlation by specconv's direct method; "auto" picks by the cost model.

    Returns
    -------
    grad_weight : ndarray [shape=weight_shape]
        dtype by :func:`specconv.result_dtype` of ``x`` and ``grad_output``.

    See Also
    --------
    conv_transpose_weight_grad : the same for the transposed layer.
    vjp : the input, weight and bias gradients in one call.

    Notes
    -----
    ``dw[o, c, k] = sum_b sum_n g[b, o, n] conj(xpad[b, c', n·s + k·d])``; see the module
    docstring for the two methods. Memory: one padded copy of ``x``, the accumulator
    ``C_out × C_in/G`` per frequency of a tile (bounded like the forward pass's kernel
    spectra) and one chunk of tile spectra.

    Examples
    --------
    >>> import numpy as np
    >>> import specconv
    >>> rng = np.random.default_rng(0)
    >>> x, w = rng.standard_normal((2, 3, 200)), rng.standard_normal((4, 3, 9))
    >>> g = rng.standard_normal((2, 4, 96))             # dL/dy for y = conv(x, w, stride=2)
    >>> dw = specconv.conv_weight_grad(x, w.shape, g, stride=2)
    >>> dw.shape
    (4, 3, 9)
    >>> # the directional derivative of <y, g> along v is <dw, v>
    >>> v = rng.standard_normal(w.shape)
    >>> lhs = np.vdot(g, specconv.conv(x, v, stride=2))
    >>> bool(np.isclose(lhs, np.vdot(dw, v)))
    True
    """
    weight_shape = _weight_shape(weight_shape)
    method = check_option("method", method, METHODS)
    # a layer that validates the options for the weight shape, reading no weight of its own
    layer = SpectralConv(
        _placeholder(weight_shape),
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        padding_mode=padding_mode,
        planning=ONE_CALL,
    )
    x = as_array("x", x)
    xb, batched = check_signal(x, layer.in_channels, layer.ndim)
    out = output_shape(layer, xb.shape[2:])
    pads = layer.pads
    if any(p != (0, 0) for p in pads):
        check_padding_fits(layer.padding_mode, pads, xb.shape[2:])  # as the forward pass
        xb = np.pad(xb, ((0, 0), (0, 0)) + pads, mode=NUMPY_PAD_MODE[layer.padding_mode])
    g = _check_grad_output(grad_output, xb.shape[0], layer.out_channels, out, batched)
    dtype = result_dtype(xb, g)
    return _weight_grad(
        xb, g, layer.kernel_size, layer.stride, layer.dilation, layer.groups, dtype, method
    )


def conv_transpose_weight_grad(
    x: ArrayLike,
    weight_shape: Shape,
    grad_output: ArrayLike,
    *,
    stride: IntOrTuple = 1,
    padding: Pads = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
    method: Method = "auto",
) -> np.ndarray:
    """The gradient of a loss with respect to a transposed conv layer's weight.

    PyTorch ``ConvTranspose`` semantics: equal to torch's autograd of
    ``conv_transpose{1,2,3}d`` with respect to its weight, in any number of dims.

    Parameters
    ----------
    x : array_like [shape=(C_in, *spatial) or (B, C_in, *spatial)]
    weight_shape : tuple of ints
        ``(C_in, C_out/groups, *kernel)``.
    grad_output : array_like [shape=(C_out, *out) or (B, C_out, *out)]
    stride, padding, output_padding, groups, dilation : as
        :class:`~specconv.SpectralConvTranspose`
    method : {"auto", "fft", "direct"}

    Returns
    -------
    grad_weight : ndarray [shape=weight_shape]

    See Also
    --------
    conv_weight_grad : for :func:`specconv.conv`.

    Notes
    -----
    The transposed layer scatters ``w[i, o, k] x[b, i, n]`` to full-output sample
    ``n·s + k·d``; its weight gradient is ``conv_weight_grad`` with the roles of the input and
    the upstream gradient exchanged (the upstream gradient zero-padded back to the full
    output), conjugated.

    Examples
    --------
    >>> import numpy as np
    >>> import specconv
    >>> rng = np.random.default_rng(0)
    >>> x, w = rng.standard_normal((3, 50)), rng.standard_normal((3, 2, 4))
    >>> g = rng.standard_normal((2, 102))               # dL/dy, y = conv_transpose(x, w, stride=2)
    >>> dw = specconv.conv_transpose_weight_grad(x, w.shape, g, stride=2)
    >>> v = rng.standard_normal(w.shape)
    >>> bool(np.isclose(np.vdot(g, specconv.conv_transpose(x, v, stride=2)), np.vdot(dw, v)))
    True
    """
    weight_shape = _weight_shape(weight_shape)
    method = check_option("method", method, METHODS)
    layer = SpectralConvTranspose(
        _placeholder(weight_shape),
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        groups=groups,
        dilation=dilation,
        planning=ONE_CALL,
    )
    x = as_array("x", x)
    xb, batched = check_signal(x, layer.in_channels, layer.ndim)
    out = output_shape(layer, xb.shape[2:])
    g = _check_grad_output(grad_output, xb.shape[0], layer.out_channels, out, batched)
    dtype = result_dtype(xb, g)
    # the full output (before cropping ``padding``): (m - 1)·s + span samples per axis
    full = tuple((m - 1) * s + e for m, s, e in zip(xb.shape[2:], layer.stride, layer.kernel_span))
    gp = np.zeros(g.shape[:2] + full, dtype=g.dtype)
    src, dst = [], []
    for (a, _), o, f in zip(layer.pads, out, full):
        length = min(o, f - a)  # output_padding beyond the full output reads nothing
        src.append(slice(0, length))
        dst.append(slice(a, a + length))
    gp[(Ellipsis,) + tuple(dst)] = g[(Ellipsis,) + tuple(src)]
    dw = _weight_grad(
        gp, xb, layer.kernel_size, layer.stride, layer.dilation, layer.groups, dtype, method
    )
    return np.conj(dw) if dw.dtype.kind == "c" else dw


def bias_grad(grad_output: ArrayLike, ndim: int) -> np.ndarray:
    """The gradient with respect to the bias: ``grad_output`` summed over batch and space.

    Parameters
    ----------
    grad_output : array_like [shape=(C_out, *out) or (B, C_out, *out)]
    ndim : int
        The number of spatial dimensions ``d``.

    Returns
    -------
    grad_bias : ndarray [shape=(C_out,)]

    Examples
    --------
    >>> import numpy as np
    >>> from specconv.gradients import bias_grad
    >>> bias_grad(np.ones((2, 3, 10)), 1)
    array([20., 20., 20.])
    """
    g = as_array("grad_output", grad_output)
    if not isinstance(ndim, numbers.Integral) or ndim < 1 or g.ndim not in (ndim + 1, ndim + 2):
        raise ValueError(
            f"grad_output must have shape (C_out, *out) or (B, C_out, *out) with ndim={ndim!r} "
            f"spatial dimension(s), got shape {g.shape}."
        )
    axes = tuple(range(g.ndim - ndim, g.ndim)) + ((0,) if g.ndim == ndim + 2 else ())
    return g.sum(axis=axes, dtype=result_dtype(g))


# --------------------------------------------------------------------------------------------
# the vector-Jacobian product


def vjp(
    layer: Layer,
    x: ArrayLike,
    grad_output: ArrayLike | None = None,
    *,
    method: Method = "auto",
    max_saved_bytes: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | tuple[np.ndarray, Pullback]:
    """The gradients of a loss with respect to a layer's input, weight and bias, given its
    gradient ``grad_output`` with respect to the output (a vector-Jacobian product).

    PyTorch semantics, as torch's autograd (complex tensors included): ``grad_x`` is the
    adjoint applied to ``grad_output`` (padding modes folded back, see
    :func:`specconv.linop.adjoint`), ``grad_weight`` is :func:`conv_weight_grad` (or
    :func:`conv_transpose_weight_grad` for a transposed layer), ``grad_bias`` the sum over
    batch and space.

    Two forms, as ``jax.vjp``: ``vjp(layer, x, grad_output)`` returns the three gradients;
    ``vjp(layer, x)`` runs the forward pass and returns ``(y, pullback)``, where
    ``pullback(grad_output)`` returns them, reusing the forward pass's input spectra for the
    weight gradient when it kept them (see :class:`Pullback`).

    Parameters
    ----------
    layer : SpectralConv or SpectralConvTranspose
    x : array_like [shape=(C_in, *spatial) or (B, C_in, *spatial)]
        The input of the forward pass.
    grad_output : array_like [shape=(C_out, *out) or (B, C_out, *out)], optional
        Without it, the forward pass is run and ``(y, pullback)`` returned.
    method : {"auto", "fft", "direct"}
        For the weight gradient (the input gradient uses the layer's own method).
    max_saved_bytes : int, optional
        Without ``grad_output``: the most bytes of input spectra the forward pass keeps
        (default :data:`SAVED_SPECTRA_BUDGET`; 0 keeps none).

    Returns
    -------
    grad_x, grad_weight, grad_bias : ndarray, ndarray, ndarray or None
        With ``grad_output``: of ``x``'s shape, the weight's shape and ``(C_out,)`` (None
        for a layer without bias).
    y, pullback : ndarray, Pullback
        Without ``grad_output``: ``layer(x)``, and the function ``pullback(grad_output)``
        that returns the three gradients.

    See Also
    --------
    conv_weight_grad : the weight gradient alone, from ``x``.

    Examples
    --------
    >>> import numpy as np
    >>> import specconv
    >>> rng = np.random.default_rng(0)
    >>> layer = specconv.SpectralConv(rng.standard_normal((4, 2, 5)), np.zeros(4),
    ...                               padding="same")
    >>> x = rng.standard_normal((2, 100))
    >>> gx, gw, gb = specconv.vjp(layer, x, 2 * layer(x))    # loss = ||layer(x)||²
    >>> gx.shape, gw.shape, gb.shape
    ((2, 100), (4, 2, 5), (4,))
    >>> y, pullback = specconv.vjp(layer, x)                 # the forward pass, then
    >>> gx2, gw2, gb2 = pullback(2 * y)                       # the same gradients
    >>> bool(np.allclose(gw2, gw))
    True
    """
    if not isinstance(layer, (SpectralConv, SpectralConvTranspose)):
        raise TypeError(
            f"layer must be a SpectralConv or SpectralConvTranspose, got {type(layer).__name__}."
        )
    method = check_option("method", method, METHODS)
    x = as_array("x", x)
    if grad_output is None:
        if max_saved_bytes is None:
            max_saved_bytes = SAVED_SPECTRA_BUDGET
        if not isinstance(max_saved_bytes, numbers.Integral) or max_saved_bytes < 0:
            raise ValueError(
                f"max_saved_bytes must be a non-negative int, got {max_saved_bytes!r}."
            )
        keeper = _Keeper(int(max_saved_bytes))
        if isinstance(layer, SpectralConv):
            y = layer._apply(x, keep=keeper)
        else:
            y = layer(x)
        return y, Pullback(layer, x, keeper if keeper.spectra is not None else None, method)
    return Pullback(layer, x, None, method)(grad_output)


class _Keeper:
    """Takes the forward pass's input spectra (the ``keep`` of ``_correlate.correlate``) if
    they fit in ``max_bytes``."""

    def __init__(self, max_bytes):
        self.max_bytes = max_bytes
        self.spectra = self.geom = self.tiling = self.dtype = None

    def __call__(self, geom, pads, tiling, dtype):
        G = geom.groups
        cdtype = np.result_type(dtype, np.complex64)
        shape = (geom.batch, G, geom.in_channels // G) + tuple(tiling.tiles)
        shape += _engine.spectral_shape(tiling.fft_shape, geom.is_complex)
        if math.prod(shape) * cdtype.itemsize > self.max_bytes:
            return None
        self.spectra = np.empty(shape, cdtype)
        self.geom, self.tiling, self.dtype = geom, tiling, np.dtype(dtype)
        return self.spectra


class Pullback:
    """The vector-Jacobian product of a layer at one input: ``pullback(grad_output)``.

    Made by ``vjp(layer, x)``. It holds ``x`` (not a copy: a weight gradient that recomputes
    the spectra reads ``x`` as it is then) and, where the forward pass kept them, the
    spectra of the input's tiles, which the weight gradient then reuses instead of
    transforming ``x`` again (the upstream gradient is transformed at the forward pass's
    tiling). They are kept when the forward pass ran :class:`~specconv.SpectralConv`'s FFT
    engine on the input itself (not the direct method, not a strided layer's polyphase
    plan, not a transposed layer), the input is finite, and they take at most
    ``max_saved_bytes`` (:data:`SAVED_SPECTRA_BUDGET` by default: about ``N / step`` times
    the input's size). Otherwise, and where ``grad_output``'s dtype would change the
    result's precision or ``method="direct"`` is asked for, the weight gradient is computed
    from ``x`` as by :func:`conv_weight_grad`.

    Attributes
    ----------
    saved_bytes : int
        Bytes of input spectra held (0: the weight gradient recomputes them).

    Examples
    --------
    >>> import numpy as np
    >>> import specconv
    >>> rng = np.random.default_rng(0)
    >>> layer = specconv.SpectralConv(rng.standard_normal((8, 8, 301)), method="fft")
    >>> x = rng.standard_normal((8, 5000))
    >>> y, pullback = specconv.vjp(layer, x)
    >>> pullback.saved_bytes > 0
    True
    >>> gx, gw, gb = pullback(np.ones_like(y))
    >>> bool(np.allclose(gw, specconv.conv_weight_grad(x, layer.weight.shape, np.ones_like(y))))
    True
    """

    def __init__(
        self, layer: Layer, x: np.ndarray, saved: Any = None, method: Method = "auto"
    ) -> None:
        # saved: (spectra, (geom, tiling, dtype)) as from saved_spectra(), or a _Keeper
        if isinstance(saved, tuple):
            keeper = _Keeper(saved[0].nbytes)
            keeper.spectra = saved[0]
            keeper.geom, keeper.tiling, keeper.dtype = saved[1]
            saved = keeper
        self.layer, self._x, self._saved, self._method = layer, x, saved, method

    def __repr__(self) -> str:
        return f"Pullback({self.layer!r}, saved_bytes={self.saved_bytes})"

    @property
    def saved_bytes(self) -> int:
        spectra = None if self._saved is None else self._saved.spectra
        return 0 if spectra is None else spectra.nbytes

    def saved_spectra(self) -> tuple[Any, tuple] | None:
        """``(spectra, how)``: the kept input spectra and how the forward pass tiled (to make
        a Pullback again, ``Pullback(layer, x, (spectra, how))``, as the torch drop-in does
        after saving the spectra as a tensor), or None."""
        saved = self._saved
        if saved is None:
            return None
        return saved.spectra, (saved.geom, saved.tiling, saved.dtype)

    def __call__(self, grad_output: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """``(grad_x, grad_weight, grad_bias)`` for ``grad_output`` (see :func:`vjp`)."""
        return (
            self.input_grad(grad_output),
            self.weight_grad(grad_output),
            self.bias_grad(grad_output),
        )

    def _check(self, grad_output):
        """``grad_output`` as a batched array, if it has the layer's output shape for x."""
        layer, x = self.layer, self._x
        batched = x.ndim == layer.ndim + 2
        out = output_shape(layer, x.shape[-layer.ndim :])
        return _check_grad_output(
            grad_output, x.shape[0] if batched else 1, layer.out_channels, out, batched
        )

    def input_grad(self, grad_output: ArrayLike) -> np.ndarray:
        """The gradient with respect to the input: the layer's adjoint of ``grad_output``."""
        self._check(grad_output)
        return adjoint(self.layer, grad_output, self._x.shape[-self.layer.ndim :])

    def bias_grad(self, grad_output: ArrayLike) -> np.ndarray | None:
        """The gradient with respect to the bias (None for a layer without bias)."""
        return None if self.layer.bias is None else bias_grad(grad_output, self.layer.ndim)

    def weight_grad(self, grad_output: ArrayLike) -> np.ndarray:
        """The gradient with respect to the weight, from the kept spectra if there are."""
        layer, x = self.layer, self._x
        saved = self._saved
        if saved is not None and self._method != "direct":
            g = self._check(grad_output)
            if result_dtype(x, g) == saved.dtype:
                return _saved_weight_grad(saved, g)
        if isinstance(layer, SpectralConvTranspose):
            return conv_transpose_weight_grad(
                x,
                layer.weight.shape,
                grad_output,
                stride=layer.stride,
                padding=layer.pads,
                output_padding=layer.output_padding,
                groups=layer.groups,
                dilation=layer.dilation,
                method=self._method,
            )
        return conv_weight_grad(
            x,
            layer.weight.shape,
            grad_output,
            stride=layer.stride,
            padding=layer.pads,
            dilation=layer.dilation,
            groups=layer.groups,
            padding_mode=layer.padding_mode,
            method=self._method,
        )


# --------------------------------------------------------------------------------------------
# the two methods, and the weight gradient from a forward pass's spectra


def _weight_grad(xp, g, kernel, stride, dilation, groups, dtype, method):
    """``dw[o, c, k] = sum_b sum_n g[b, o, n] conj(xp[b, c', n·s + k·d])`` for the padded
    ``xp`` (B, C_in, *P) and ``g`` (B, C_out, *out)."""
    out = g.shape[2:]
    # only the samples some output reads
    used = tuple(
        s * (o - 1) + dl * (k - 1) + 1 for s, o, dl, k in zip(stride, out, dilation, kernel)
    )
    xp = xp[(Ellipsis,) + tuple(slice(0, u) for u in used)]
    B, C_in, C_out = xp.shape[0], xp.shape[1], g.shape[1]
    dtype = np.dtype(dtype)
    if method == "auto":
        method = _choose(B, C_in, C_out, groups, kernel, stride, dilation, out, used, dtype)
    if method == "direct":
        return _direct_grad(xp, g, kernel, stride, dilation, groups, dtype)
    return _fft_grad(xp, g, kernel, stride, dilation, groups, dtype)


def _equivalent_geometry(B, C_in, C_out, groups, kernel, stride, dilation, out, used, dtype):
    """The correlation of the direct method: batch as channels, ``g`` as the kernel."""
    return Geometry(
        C_in // groups,
        groups * B,
        C_out,
        groups,
        tuple(out),
        tuple(stride),
        tuple(dilation),
        tuple(used),
        dtype.kind == "c",
    )


def _direct_grad(xp, g, kernel, stride, dilation, groups, dtype):
    B, C_in = xp.shape[:2]
    C_out = g.shape[1]
    G, ci, co = groups, C_in // groups, C_out // groups
    d = len(kernel)
    sp = tuple(range(3, 3 + d))
    # signals: (ci, G·B, *P), channel g·B + b; kernels: (C_out, B, *out)
    xs = xp.reshape((B, G, ci) + xp.shape[2:]).transpose((2, 1, 0) + sp)
    xs = np.conj(xs) if xs.dtype.kind == "c" else xs
    xs = np.ascontiguousarray(xs, dtype=dtype).reshape((ci, G * B) + xp.shape[2:])
    ks = g.reshape((B, G, co) + g.shape[2:]).transpose((1, 2, 0) + sp)
    ks = np.ascontiguousarray(ks, dtype=dtype).reshape((C_out, B) + g.shape[2:])
    from .conv import conv

    r = conv(xs, ks, stride=dilation, dilation=stride, groups=G, method="direct")
    r = r[(Ellipsis,) + tuple(slice(0, k) for k in kernel)]  # (ci, C_out, *K)
    return np.ascontiguousarray(np.moveaxis(r, 0, 1))


def _lag_plan(kernel, stride, dilation):
    """Per axis and residue r of the stride: the taps k with k·d ≡ r (mod s), their first
    lag ``q0`` in strides, the lag spacing and the number of lags ``Q`` to compute."""
    plan = []
    for K, s, dl in zip(kernel, stride, dilation):
        axis = []
        for r in range(s):
            taps, spacing = _direct.residue_taps(K, dl, s, r)
            if taps:
                q0 = (taps[0] * dl - r) // s
                axis.append((r, taps, q0, spacing, (len(taps) - 1) * spacing + 1))
        plan.append(axis)
    return plan


def _fft_tiles(out, lags, B, C_in, C_out, groups, is_complex, itemsize):
    """The transform shape ``N`` (per axis) minimising the modelled time, and its cost."""
    d = len(out)
    per_axis = {1: 24, 2: 8}.get(d, 5)
    axes = []
    for o, q in zip(out, lags):
        # FFTW's fastest lengths (as the forward pass's tiles), up to one tile for everything
        lengths = [
            n
            for n in fft.fast_lengths(q + min(o, q), 2 * (o + q) + 16)
            if _costmodel.is_tile_length(n)
        ]
        whole = next(n for n in lengths if n >= o + q - 1)
        cands = [n for n in lengths if n <= whole]
        hi = whole
        if len(cands) > per_axis:  # evenly spaced in log: the cost is smooth in N
            idx = np.unique(np.geomspace(1, len(cands), per_axis).astype(int) - 1)
            cands = [cands[i] for i in idx] + ([hi] if cands[-1] != hi else [])
        axes.append(sorted(set(cands)))
    G = groups
    ci, co = C_in // G, C_out // G
    cx = 2 if is_complex else 1
    c = _costmodel.machine(_costmodel.precision(itemsize, is_complex), fft.get_num_threads())
    best = None
    for N in itertools.product(*axes):
        F = math.prod(_engine.spectral_shape(N, is_complex))
        if C_out * ci * F * 2 * itemsize > ACCUMULATOR_BUDGET and best is not None:
            continue
        n = math.prod(N)
        # an axis but the last whose length takes FFTW more than one codelet costs more passes
        stages = math.log2(max(n, 2)) + c.STRIDED_PASS * sum(
            not _costmodel.one_codelet(m) for m in N[:-1]
        )
        t_n = c.T_FFT * cx * n * stages + c.T_COPY * n
        tiles = math.prod(-(-o // (m - q + 1)) for o, m, q in zip(out, N, lags))
        cost = (
            tiles * B * ((C_in + C_out) * t_n + G * co * ci * F * c.T_CMAC_MATMUL)
            + C_out * ci * t_n
        )
        if best is None or cost < best[0]:
            best = (cost, N)
    return best[1], best[0]  # type: ignore[index]  # the first candidate always sets best


def _choose(B, C_in, C_out, groups, kernel, stride, dilation, out, used, dtype):
    geom = _equivalent_geometry(B, C_in, C_out, groups, kernel, stride, dilation, out, used, dtype)
    direct = _costmodel.direct_cost(geom, dtype.itemsize, fft.get_num_threads())
    plan = _lag_plan(kernel, stride, dilation)
    phases = math.prod(len(a) for a in plan)
    lags = [max(q for *_, q in a) for a in plan]
    _, cost = _fft_tiles(out, lags, B, C_in, C_out, groups, dtype.kind == "c", dtype.itemsize)
    return "direct" if direct <= phases * cost else "fft"


def _fft_grad(xp, g, kernel, stride, dilation, groups, dtype):
    C_out = g.shape[1]
    ci = xp.shape[1] // groups
    out = g.shape[2:]
    is_complex = dtype.kind == "c"
    plan = _lag_plan(kernel, stride, dilation)
    lags = tuple(max(q for *_, q in a) for a in plan)
    N, _ = _fft_tiles(
        out, lags, xp.shape[0], xp.shape[1], C_out, groups, is_complex, dtype.itemsize
    )
    dw = np.empty((C_out, ci) + tuple(kernel), dtype=dtype)
    gx = np.asarray(g, dtype=dtype)
    for combo in itertools.product(*plan):
        # the polyphase component of this residue, from its first lag on
        sel = tuple(slice(r + q0 * s, None, s) for (r, _, q0, _, _), s in zip(combo, stride))
        phase = np.asarray(xp[(Ellipsis,) + sel], dtype=dtype)
        r = _correlate_lags(phase, gx, lags, N, groups, dtype)  # (C_out, ci, *lags)
        take = tuple(slice(0, (len(taps) - 1) * sp + 1, sp) for _, taps, _, sp, _ in combo)
        dw[(slice(None), slice(None)) + np.ix_(*[taps for _, taps, *_ in combo])] = r[
            (slice(None), slice(None)) + take
        ]
    return dw


def _accumulate(acc, Gm, Xm, a, b):
    acc[a:b] += np.matmul(Gm[a:b], Xm[a:b])


def _accumulate_chunk(acc, X, Gs, Xm=None):
    """``acc[f, g] += conj(G_f) X_fᵀ`` over a chunk's units: ``X`` (units, G, ci, F) and
    ``Gs`` (units, G, co, F) spectra, ``acc`` (F, G, co, ci); or ``Xm``, ``X`` already in
    the matmul layout (F, G, units, ci)."""
    F = acc.shape[0]
    # one batched matmul per frequency block
    if Xm is None:
        Xm = np.ascontiguousarray(X.transpose(3, 1, 0, 2))  # (F, G, units, ci)
    Gm = np.ascontiguousarray(np.conj(Gs).transpose(3, 1, 2, 0))  # (F, G, co, units)
    workers = fft.get_num_threads()
    bounds = [F * k // workers for k in range(workers + 1)]
    with _blas.limit(1):  # small matmuls: single-threaded BLAS on parallel blocks
        _workers.run_parallel(
            [
                functools.partial(_accumulate, acc, Gm, Xm, a, b)
                for a, b in itertools.pairwise(bounds)
                if b > a
            ]
        )


def _even_chunk(n_units, per_unit):
    """Units per chunk of tile spectra within ``CHUNK_BUDGET``, in even chunks (fewer plans)."""
    chunk = max(1, CHUNK_BUDGET // per_unit)
    return -(-n_units // -(-n_units // chunk))


def _lags_from_acc(acc, N, lags, dtype):
    """The accumulated ``acc`` (F, G, co, ci) back to lags: ``r`` (C_out, ci, *lags), scaled
    by ``1/prod(N)`` -- one transposing copy, one batch of inverse transforms."""
    F, G, co, ci = acc.shape
    d = len(N)
    is_complex = np.dtype(dtype).kind == "c"
    cdtype = acc.dtype
    spec = _engine.spectral_shape(N, is_complex)
    M = fft.aligned_empty((G * co * ci,) + spec, cdtype)
    M.reshape(-1, F)[...] = acc.reshape(F, -1).T
    del acc
    axes = tuple(range(1, 1 + d))
    if is_complex:
        r = fft.execute(M, fft.aligned_empty(M.shape, cdtype), axes, inverse=True)
        r = np.conj(r)
    else:  # c2r overwrites M, which is ours
        r = fft.execute(M, fft.aligned_empty((G * co * ci,) + tuple(N), dtype), axes, inverse=True)
    r = r[(Ellipsis,) + tuple(slice(0, q) for q in lags)] * (1.0 / math.prod(N))
    return np.ascontiguousarray(r.reshape((G * co, ci) + tuple(lags)), dtype=dtype)


def _correlate_lags(x, g, lags, N, groups, dtype):
    """``r[o, c, q] = sum_b sum_n g[b, o, n] conj(x[b, c', n + q])`` for ``q < lags``, by
    per-frequency outer products over tiles of ``N`` samples (``N - lags + 1`` outputs)."""
    d = len(lags)
    B, C_in = x.shape[:2]
    C_out = g.shape[1]
    G, ci, co = groups, C_in // groups, C_out // groups
    out = g.shape[2:]
    is_complex = dtype.kind == "c"
    cdtype = np.result_type(dtype, np.complex64)
    steps = tuple(m - q + 1 for m, q in zip(N, lags))
    counts = tuple(-(-o // st) for o, st in zip(out, steps))
    spec = _engine.spectral_shape(N, is_complex)
    F = math.prod(spec)
    axes = tuple(range(2, 2 + d))
    units = [(t, b) for t in itertools.product(*(range(c) for c in counts)) for b in range(B)]
    chunk = _even_chunk(len(units), (C_in + C_out) * F * cdtype.itemsize)
    acc = np.zeros((F, G, co, ci), dtype=cdtype)
    for start in range(0, len(units), chunk):
        part = units[start : start + chunk]
        # tiles straight into the transforms' aligned buffers: no copy on the way in
        xt = fft.aligned_empty((len(part), C_in) + tuple(N), dtype)
        gt = fft.aligned_empty((len(part), C_out) + tuple(N), dtype)
        xt[...] = 0
        gt[...] = 0
        for u, (t, b) in enumerate(part):
            lo = [ti * st for ti, st in zip(t, steps)]
            xs = tuple(slice(a, min(a + m, n)) for a, m, n in zip(lo, N, x.shape[2:]))
            gs = tuple(slice(a, min(a + st, o)) for a, st, o in zip(lo, steps, out))
            xv, gv = x[(b, slice(None)) + xs], g[(b, slice(None)) + gs]
            xt[(u, slice(None)) + tuple(slice(0, n) for n in xv.shape[1:])] = xv
            gt[(u, slice(None)) + tuple(slice(0, n) for n in gv.shape[1:])] = gv
        X = fft.execute(xt, fft.aligned_empty(xt.shape[:2] + spec, cdtype), axes)
        Gs = fft.execute(gt, fft.aligned_empty(gt.shape[:2] + spec, cdtype), axes)
        del xt, gt
        _accumulate_chunk(acc, X.reshape(len(part), G, ci, F), Gs.reshape(len(part), G, co, F))
        del X, Gs
    return _lags_from_acc(acc, N, lags, dtype)


def _saved_weight_grad(saved, g):
    """The weight gradient from the forward pass's input spectra (a :class:`_Keeper`'s) and
    the batched upstream gradient ``g`` (B, C_out, *out).

    The forward pass's tile ``t`` covers padded-input samples ``t·S .. t·S + N`` and computes
    the ``S/s`` outputs from ``t·S/s`` on (``S`` its step, ``s`` the stride). Their upstream
    gradient, placed at every s-th sample of a length-``N`` tile, correlated with the tile
    gives the tile's share of ``dw`` at every lag below the kernel span: no lag wraps around,
    as ``S - s + span <= N``.
    """
    geom, tiling, dtype = saved.geom, saved.tiling, saved.dtype
    X = saved.spectra  # (B, G, ci, *tiles, *freq)
    B, G, ci = X.shape[:3]
    C_out = geom.out_channels
    co = C_out // G
    N, d = tiling.fft_shape, geom.ndim
    spec = _engine.spectral_shape(N, geom.is_complex)
    F, T = math.prod(spec), math.prod(tiling.tiles)
    cdtype = X.dtype
    per_tile = tuple(st // s for st, s in zip(tiling.step, geom.stride))  # outputs per tile
    Xf = X.reshape(B, G, ci, T, F)
    tiles = list(itertools.product(*(range(c) for c in tiling.tiles)))
    # chunks of whole tiles (every signal's): their spectra take one copy into matmul layout
    per_chunk = -(-_even_chunk(T * B, (ci * G + 2 * C_out) * F * cdtype.itemsize) // B)
    acc = np.zeros((F, G, co, ci), dtype=cdtype)
    axes = tuple(range(2, 2 + d))
    for k0 in range(0, T, per_chunk):
        ks = range(k0, min(T, k0 + per_chunk))
        gt = fft.aligned_empty((len(ks) * B, C_out) + tuple(N), dtype)
        gt[...] = 0
        for u, (k, b) in enumerate(itertools.product(ks, range(B))):
            lo = [t * p for t, p in zip(tiles[k], per_tile)]
            gv = g[
                (b, slice(None))
                + tuple(slice(a, min(a + p, o)) for a, p, o in zip(lo, per_tile, g.shape[2:]))
            ]
            gt[
                (u, slice(None))
                + tuple(slice(0, n * s, s) for n, s in zip(gv.shape[1:], geom.stride))
            ] = gv
        Gs = fft.execute(gt, fft.aligned_empty(gt.shape[:2] + spec, cdtype), axes)
        del gt
        # (B, G, ci, tiles, F) -> (F, G, tiles · B, ci), units in the order of gt's
        Xm = np.ascontiguousarray(Xf[:, :, :, ks.start : ks.stop].transpose(4, 1, 3, 0, 2))
        Xm = Xm.reshape(F, G, len(ks) * B, ci)
        _accumulate_chunk(acc, None, Gs.reshape(len(ks) * B, G, co, F), Xm)
        del Gs, Xm
    r = _lags_from_acc(acc, N, geom.span, dtype)  # (C_out, ci, *span)
    return np.ascontiguousarray(
        r[
            (Ellipsis,)
            + tuple(slice(0, k * dl - dl + 1, dl) for k, dl in zip(geom.kernel, geom.dilation))
        ]
    )
