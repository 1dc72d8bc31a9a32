"""Conv layers as objects: validated once, kernel spectra cached per FFT shape.

:class:`SpectralConv` follows PyTorch's ``Conv1d/2d/3d`` semantics (cross-correlation) in any
number of spatial dimensions; :class:`SpectralConvTranspose` follows ``ConvTranspose``. Apply
one to many signals of one shape and its kernels are transformed once.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import numbers
from collections.abc import Sequence
from typing import Any, Literal, TypeAlias

import numpy as np

from . import _correlate, _costmodel, _direct, _polyphase, _standard_form, fft
from ._geometry import Geometry, kernel_span
from ._standard_form import StandardForm
from ._typing import (
    ArrayLike,
    IntOrTuple,
    Method,
    NanPolicy,
    NumpyPadMode,
    Padding,
    PaddingMode,
    Pads,
    Shape,
)
from ._validate import (
    as_array,
    as_int,
    as_pads,
    as_tuple,
    check_finite_weights,
    check_groups,
    check_length,
    check_memory,
    check_option,
    check_signal,
    result_dtype,
)
from ._workers import run_parallel

PADDING_MODES: tuple[PaddingMode, ...] = ("zeros", "reflect", "replicate", "circular")
METHODS: tuple[Method, ...] = ("auto", "fft", "direct")
NAN_POLICIES: tuple[NanPolicy, ...] = ("propagate", "raise")
#: numpy.pad's name of every padding mode
NUMPY_PAD_MODE: dict[str, NumpyPadMode] = {
    "zeros": "constant",
    "reflect": "reflect",
    "replicate": "edge",
    "circular": "wrap",
}


def _conj(weight):
    """The conjugated weight (the real weight itself: no copy)."""
    return np.conj(weight) if weight.dtype.kind == "c" else weight


def check_padding_fits(mode: str, pads: Sequence[Sequence[int]], shape: Shape) -> None:
    """ValueError unless padding ``mode`` can pad spatial ``shape`` by ``pads`` (reflect needs
    padding smaller than the input, circular at most as large)."""
    for axis, ((a, b), n) in enumerate(zip(pads, shape)):
        if mode == "reflect" and max(a, b) >= n:
            raise ValueError(
                f"padding_mode='reflect' needs padding smaller than the input size: got "
                f"padding {max(a, b)} for spatial axis {axis} of size {n}."
            )
        if mode == "circular" and max(a, b) > n:
            raise ValueError(
                f"padding_mode='circular' needs padding at most the input size: got "
                f"padding {max(a, b)} for spatial axis {axis} of size {n}."
            )


def _check_out(out, shape, dtype, x):
    """``out`` if it can take a result of ``shape`` and ``dtype`` computed from ``x``."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy array, got {type(out).__name__}.")
    if out.shape != shape or out.dtype != dtype:
        raise ValueError(
            f"out must have the result's shape {shape} and dtype {dtype}, got shape {out.shape} "
            f"and dtype {out.dtype}."
        )
    if not (out.flags.c_contiguous and out.flags.writeable):
        raise ValueError("out must be C-contiguous and writeable.")
    if isinstance(x, np.ndarray) and np.may_share_memory(out, x):
        raise ValueError("out shares memory with x: the result would overwrite its own input.")
    return out


def _frozen(arr, copy=True):
    arr = np.array(arr, copy=True) if copy else arr.view()
    arr.flags.writeable = False
    return arr


@dataclasses.dataclass(frozen=True)
class Planning:
    """How a layer object is used, which steers what it keeps and how it plans.

    The defaults suit a layer made once and applied many times. specconv's functions make
    their one-call layers with :data:`ONE_CALL`; the out-of-core path plans its chunks'
    layer for one shape applied many times.
    """

    #: read the weight in place instead of keeping a frozen copy: layers that live inside one
    #: call (as numpy functions do, a copy of a large weight costs a few percent of the call),
    #: or whose weight is already a frozen copy
    borrow_weight: bool = False
    #: keep kernel spectra in the functions' shared, bounded cache rather than the layer's own
    shared_spectra: bool = False
    #: plan for many signals of one shape: the one-off kernel spectra are left out of the cost
    spectra_cached: bool = False
    #: bytes the kernel spectra may take (None: the cost model's default)
    spectra_budget: int | None = None

    @property
    def choose_options(self) -> dict[str, Any]:
        """Keyword arguments of ``_costmodel.choose`` for this use."""
        return {"spectra_cached": self.spectra_cached, "spectra_budget": self.spectra_budget}


#: the use of a layer made inside one call of a function (conv, conv_transpose)
ONE_CALL = Planning(borrow_weight=True, shared_spectra=True)


class _Layer:
    """What both layer kinds share: weight, bias, options, the spectra cache."""

    def __init__(
        self, weight, bias, *, stride, dilation, groups, method, nan_policy, transposed, planning
    ):
        weight = as_array("weight", weight)
        if weight.ndim < 3:
            raise ValueError(
                "weight must have shape (C_out, C_in/groups, *kernel) (ConvTranspose: "
                f"(C_in, C_out/groups, *kernel)) with at least one spatial axis, got shape "
                f"{weight.shape}."
            )
        d = weight.ndim - 2
        self.ndim = d
        self.kernel_size = weight.shape[2:]
        groups = as_int("groups", groups, minimum=1)  # a numpy int would overflow below
        if transposed:
            in_channels, out_channels = weight.shape[0], weight.shape[1] * groups
        else:
            out_channels, in_channels = weight.shape[0], weight.shape[1] * groups
        self.groups = check_groups(groups, in_channels, out_channels, weight=weight)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.stride = as_tuple("stride", stride, d, of="weight")
        self.dilation = as_tuple("dilation", dilation, d, of="weight")
        self.method = check_option("method", method, METHODS)
        self.nan_policy = check_option("nan_policy", nan_policy, NAN_POLICIES)
        if bias is not None:
            bias = as_array("bias", bias)
            if bias.shape != (out_channels,):
                source = "weight.shape[1] × groups" if transposed else "weight.shape[0]"
                raise ValueError(
                    f"bias must have shape (C_out,) = ({out_channels},), got {bias.shape} "
                    f"(C_out = {source}, groups={groups})."
                )
            bias = _frozen(bias)
        if self.nan_policy == "raise":
            check_finite_weights(weight, bias)
        if planning is None:
            planning = Planning()
        elif not isinstance(planning, Planning):
            raise TypeError(f"planning must be a specconv.layers.Planning, got {planning!r}.")
        self.planning = planning
        self.weight = _frozen(weight, copy=not planning.borrow_weight)
        self.bias = bias
        self._cache = (
            _correlate.SHARED_SPECTRA if planning.shared_spectra else _correlate.SpectraCache()
        )
        self._digest = None  # of the (frozen) weight the layer correlates with, once needed

    @property
    def kernel_span(self) -> tuple[int, ...]:
        """Extent of the dilated kernel per spatial axis: ``dilation · (kernel − 1) + 1``."""
        return kernel_span(self.kernel_size, self.dilation)

    def _weight_digest(self, weight):
        """The digest of ``weight`` (the layer's own, frozen or borrowed for one call)."""
        if self._digest is None:
            self._digest = _correlate.weight_digest(weight)
        return self._digest

    def _reused(self, weight):
        """Whether the layer's spectra cache saw ``weight`` before (it remembers it now)."""
        return self._cache.seen(self._weight_digest(weight))

    def _choice(self, choose, weight):
        """``choose(**options)`` with the planning's options, but the FFT once it would win
        with the kernel spectra left out of the cost and ``weight`` is applied again.

        Spectra are computed once per weight and cached: a weight applied again makes them
        worth paying. The weight is hashed only where that changes the method; an FFT
        tiling already chosen stays (its spectra are cached by then).
        """
        options = self.planning.choose_options
        first = choose(**options)
        if first.method == "fft" or options["spectra_cached"]:
            return first
        again = choose(**{**options, "spectra_cached": True})
        if again.method == "fft" and self._reused(weight):
            return again
        return first

    def _run(self, xb, weight, geom, pads, dtype, out=None, keep=None):
        """Correlate (see ``_correlate.correlate``, also for ``keep``) and add the bias."""
        # choose() is memoised: repeated calls get the same tiling and hit the cached spectra
        choice = self._choice(
            functools.partial(
                _correlate.choose, geom, pads, self.method, dtype.itemsize, fft.get_num_threads()
            ),
            weight,
        )
        if choice.method == "fft":
            self._weight_digest(weight)
        y = _correlate.correlate(
            xb,
            weight,
            geom,
            pads,
            dtype,
            method=self.method,
            nan_policy=self.nan_policy,
            cache=self._cache,
            choice=choice,
            digest=self._digest,
            out=out,
            keep=keep,
        )
        if self.bias is not None:
            y += self.bias.reshape((-1,) + (1,) * self.ndim)
        return y

    def _check_x(self, x):
        x = as_array("x", x)
        xb, batched = check_signal(x, self.in_channels, self.ndim, groups=self.groups)
        return xb, batched, result_dtype(xb, self.weight, self.bias, names=("x", "weight", "bias"))


class SpectralConv(_Layer):
    """A conv layer with PyTorch ``Conv`` semantics (cross-correlation), in the frequency domain.

    ``y[b, o] = bias[o] + sum_{c in group(o)} weight[o, c] ⋆ x[b, c]`` for any number of
    spatial dimensions ``d = weight.ndim - 2``. Validates once; caches the kernel spectra per
    FFT shape, so applying it to many signals of one shape transforms the kernels once.

    Parameters
    ----------
    weight : array_like [shape=(C_out, C_in/groups, *kernel)]
        Real or complex kernels, never modified (the layer keeps a read-only copy).
    bias : array_like [shape=(C_out,)], optional
    stride, dilation : int or tuple of d ints, ``>= 1``
    padding : int, tuple of d ints, tuple of d (before, after) pairs, "same" or "valid"
        As PyTorch: ``p`` samples on both sides; pairs pad each side on its own (as
        ``torch.nn.functional.pad``). "same" keeps the length (stride 1 only; an even kernel
        span puts the extra sample on the right, as PyTorch does).
    groups : int
        Splits the channels into ``groups`` independent blocks: the kernel matrix is
        block-diagonal. ``groups == C_in`` is depthwise.
    padding_mode : {"zeros", "reflect", "replicate", "circular"}
    method : {"auto", "fft", "direct"}
        "auto" picks the direct method or overlap-save FFT tiles with a cost model.
    nan_policy : {"propagate", "raise"}
        "propagate" keeps non-finite input local: an output is NaN exactly where the kernel's
        receptive field covers a non-finite input; every other output is unaffected. A
        non-finite tap in ``weight[o]`` (or ``bias[o]``) is not local: it makes the whole
        output channel ``o`` NaN (every output multiplies it, zero padding included).
        "raise" raises a ValueError for non-finite input, weight or bias.

    planning : Planning, optional
        How the layer is used (see :class:`Planning`); the default suits a layer applied to
        many signals.

    Attributes
    ----------
    in_channels, out_channels, groups, kernel_size, stride, dilation, padding : as given
    pads : tuple of (before, after) pairs
        The padding per side of every spatial axis ("same" and "valid" resolved).
    kernel_span : tuple of int
        Extent of the dilated kernel per spatial axis.
    T : SpectralConvTranspose
        The transposed layer (the adjoint with respect to x, for real weights).
    H : SpectralConvTranspose
        The adjoint (conjugate transpose), also for complex weights.

    See Also
    --------
    conv : the same as a function, for one-off calls.
    SpectralConvTranspose : the transposed layer.

    Examples
    --------
    >>> import numpy as np
    >>> from specconv import SpectralConv
    >>> rng = np.random.default_rng(0)
    >>> layer = SpectralConv(rng.standard_normal((8, 4, 31)), padding="same")
    >>> x = rng.standard_normal((4, 1000))          # 4 channels, 1000 samples
    >>> layer(x).shape
    (8, 1000)
    >>> H = layer.frequency_response(1000)           # one 8 x 4 matrix per frequency
    >>> H.shape
    (501, 8, 4)
    """

    padding: Literal["same", "valid"] | tuple[int, ...] | tuple[tuple[int, int], ...]

    def __init__(
        self,
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
        planning: Planning | None = None,
    ) -> None:
        super().__init__(
            weight,
            bias,
            stride=stride,
            dilation=dilation,
            groups=groups,
            method=method,
            nan_policy=nan_policy,
            transposed=False,
            planning=planning,
        )
        self.padding_mode = check_option("padding_mode", padding_mode, PADDING_MODES)
        d = self.ndim
        span = self.kernel_span
        if isinstance(padding, str):
            check_option("padding", padding, ("same", "valid"))
            if padding == "same" and any(s != 1 for s in self.stride):
                raise ValueError(
                    f"padding='same' is only supported with stride 1, got stride {stride!r}."
                )
            self.padding = padding
            if padding == "valid":
                self.pads = ((0, 0),) * d
            else:
                self.pads = tuple(((e - 1) // 2, e - 1 - (e - 1) // 2) for e in span)
        else:
            self.pads = as_pads("padding", padding, d, of="weight")
            symmetric = all(a == b for a, b in self.pads)
            self.padding = tuple(a for a, _ in self.pads) if symmetric else self.pads

    def __repr__(self) -> str:
        return (
            f"SpectralConv(in_channels={self.in_channels}, out_channels={self.out_channels}, "
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding!r}, "
            f"dilation={self.dilation}, groups={self.groups}, padding_mode={self.padding_mode!r}, "
            f"bias={self.bias is not None}, method={self.method!r})"
        )

    def __call__(self, x: ArrayLike, *, out: np.ndarray | None = None) -> np.ndarray:
        """Apply the layer.

        Parameters
        ----------
        x : array_like [shape=(C_in, *spatial) or (B, C_in, *spatial)]
        out : ndarray, optional
            Where to write the result, as numpy's ``out=``: C-contiguous, writeable, of the
            result's shape and dtype, sharing no memory with ``x``. Saves allocating the
            output when the layer is applied to many signals of one shape.

        Returns
        -------
        y : ndarray [shape=(C_out, *out) or (B, C_out, *out)]
            The output length exactly as PyTorch computes it; dtype by
            :func:`specconv.result_dtype`. ``out`` itself when given.
        """
        return self._apply(x, out)

    def _apply(self, x, out=None, keep=None):
        """``self(x, out=out)``; ``keep``: see ``_correlate.correlate`` (used by
        :func:`specconv.vjp` to keep the input spectra for the weight gradient)."""
        xb, batched, dtype = self._check_x(x)
        pads = self.pads
        if self.padding_mode != "zeros" and any(p != (0, 0) for p in pads):
            xb = self._pad_by_mode(xb, pads)
            pads = ((0, 0),) * self.ndim
        padded = tuple(n + a + b for n, (a, b) in zip(xb.shape[2:], pads))
        geom = Geometry(
            xb.shape[0],
            self.in_channels,
            self.out_channels,
            self.groups,
            self.kernel_size,
            self.dilation,
            self.stride,
            padded,
            dtype.kind == "c",
        )
        if any(e > p for e, p in zip(geom.span, padded)):
            raise ValueError(
                f"The kernel (span {geom.span} with dilation {self.dilation}) is larger than "
                f"the padded input {padded} (input {xb.shape[2:]}, padding {self.padding!r})."
            )
        check_length(padded, "padded input", "padding")
        itemsize = dtype.itemsize
        check_memory(xb.shape[:2] + padded, itemsize, "padded input", "padding")
        check_memory(
            (xb.shape[0], self.out_channels) + geom.out_shape,
            itemsize,
            "output",
            "padding, stride and dilation",
        )
        # a stride beyond the last window start leaves one output per axis, whatever its size:
        # take the smallest such stride, so no work scales with the stride's magnitude
        stride = tuple(min(s, p - e + 1) for s, p, e in zip(self.stride, padded, geom.span))
        if stride != self.stride:
            geom = dataclasses.replace(geom, stride=stride)
        if out is not None:
            shape = (xb.shape[0], self.out_channels) + geom.out_shape
            out = _check_out(out, shape if batched else shape[1:], dtype, x)
            if not batched:
                out = out[np.newaxis]
        y = self._run(xb, self.weight, geom, pads, dtype, out, keep)
        return y if batched else y[0]

    def _pad_by_mode(self, xb, pads):
        check_padding_fits(self.padding_mode, pads, xb.shape[2:])
        return np.pad(xb, ((0, 0), (0, 0)) + pads, mode=NUMPY_PAD_MODE[self.padding_mode])

    def _transposed(self, weight):
        """The transposed layer of ``weight`` with this layer's options (no bias)."""
        return SpectralConvTranspose(
            weight,
            stride=self.stride,
            padding=self.pads,
            dilation=self.dilation,
            groups=self.groups,
            method=self.method,
            nan_policy=self.nan_policy,
        )

    def unpadded(self, *, planning: Planning | None = None) -> SpectralConv:
        """This layer with ``padding=0``, every other option and the bias kept: for signals
        padded beforehand (the chunked runners pad each chunk from its neighbours).

        Parameters
        ----------
        planning : Planning, optional
            How the new layer is used (default: as this layer).

        Returns
        -------
        SpectralConv

        Examples
        --------
        >>> import numpy as np
        >>> from specconv import SpectralConv
        >>> layer = SpectralConv(np.ones((1, 1, 3)), padding=1)
        >>> x = np.array([[1.0, 2.0, 4.0]])
        >>> layer.unpadded()(np.pad(x, ((0, 0), (1, 1)))), layer(x)
        (array([[3., 7., 6.]]), array([[3., 7., 6.]]))
        """
        return SpectralConv(
            self.weight,
            self.bias,
            stride=self.stride,
            padding=0,
            dilation=self.dilation,
            groups=self.groups,
            method=self.method,
            nan_policy=self.nan_policy,
            planning=self.planning if planning is None else planning,
        )

    @property
    def T(self) -> SpectralConvTranspose:
        """The transposed layer: same weight, stride, padding, dilation and groups; no bias."""
        if self.padding_mode != "zeros":
            raise ValueError(
                f"The transpose of a layer with padding_mode={self.padding_mode!r} is not a "
                "ConvTranspose layer (only zero padding is); use padding_mode='zeros'."
            )
        return self._transposed(self.weight)

    @property
    def H(self) -> SpectralConvTranspose:
        """The adjoint layer (conjugate transpose): ``<self(x), y> = <x, self.H(y)>``.

        The transposed layer of the conjugated weight: equal to :attr:`T` for real weights,
        the true adjoint for complex ones (``np.vdot`` conjugates its first argument). No
        bias. A strided layer maps several input lengths to one output length: call the
        adjoint with ``output_size`` to pick the input's. Zero padding only; for the other
        padding modes the adjoint also folds the pad back onto the samples it copied, which
        :func:`specconv.aslinearoperator` does.

        Examples
        --------
        >>> import numpy as np
        >>> from specconv import SpectralConv
        >>> rng = np.random.default_rng(0)
        >>> w = rng.standard_normal((3, 2, 5)) + 1j * rng.standard_normal((3, 2, 5))
        >>> layer = SpectralConv(w, stride=2, padding=((1, 3),))
        >>> x = rng.standard_normal((2, 21)) + 1j * rng.standard_normal((2, 21))
        >>> y = rng.standard_normal((3, 11)) + 1j * rng.standard_normal((3, 11))
        >>> bool(np.isclose(np.vdot(layer(x), y), np.vdot(x, layer.H(y, output_size=(21,)))))
        True
        """
        if self.padding_mode != "zeros":
            raise ValueError(
                f"The adjoint of a layer with padding_mode={self.padding_mode!r} is not a "
                "ConvTranspose layer (it also folds the padding back); use "
                "specconv.aslinearoperator(layer, input_shape) or specconv.linop.adjoint."
            )
        return self._transposed(_conj(self.weight))

    # the kernel-matrix algebra (functions at the end of this module)
    def __matmul__(self, other: Layer) -> SpectralConv:
        """``a @ b`` is the one layer equal to applying ``b`` then ``a`` (kernels.compose)."""
        return compose(self, other)

    def __add__(self, other: Layer) -> SpectralConv:
        return add(self, other)

    def __sub__(self, other: Layer) -> SpectralConv:
        return add(self, scale(other, -1))

    def __mul__(self, alpha: complex | np.number) -> SpectralConv:
        return scale(self, alpha)

    __rmul__ = __mul__

    def __neg__(self) -> SpectralConv:
        return self * -1

    def frequency_response(self, shape: IntOrTuple, *, whole: bool | None = None) -> np.ndarray:
        """The layer's C_out × C_in complex matrix at every frequency of a length-``shape`` DFT.

        This is the object the layer *is*: with stride 1 and circular padding,
        ``layer(x)`` equals the inverse DFT of ``H[f] @ X[f]`` at every frequency ``f``
        (the padding's shift is included in the phase). Groups appear as a block-diagonal
        matrix.

        Parameters
        ----------
        shape : int or tuple of d ints
            DFT length per spatial axis (at least the kernel span).
        whole : bool, optional
            Return every frequency (``fftn`` order) instead of the non-negative half of the last
            axis (``rfftn`` order). Default: half for real weights, whole for complex ones.

        Returns
        -------
        H : ndarray, complex [shape=(*freq, C_out, C_in)]

        Examples
        --------
        >>> import numpy as np
        >>> from specconv import SpectralConv
        >>> w = np.array([[[1.0, 1.0]], [[1.0, -1.0]]])   # 2 outputs: sum and difference
        >>> H = SpectralConv(w).frequency_response(4)
        >>> np.round(np.abs(H[:, :, 0]), 6)                 # |H| at f = 0, 1/4, 1/2
        array([[2.      , 0.      ],
               [1.414214, 1.414214],
               [0.      , 2.      ]])
        """
        return _frequency_response(self, shape, whole, transposed=False)


class SpectralConvTranspose(_Layer):
    """A transposed conv layer with PyTorch ``ConvTranspose`` semantics.

    The transpose (for real weights the adjoint) of :class:`SpectralConv` with respect to its
    input: ``<conv(x), y> = <x, conv_transpose(y)>``. It is not an inverse. For complex
    weights it is the transpose, as in PyTorch; the adjoint is the layer of ``weight.conj()``.

    Parameters
    ----------
    weight : array_like [shape=(C_in, C_out/groups, *kernel)]
    bias : array_like [shape=(C_out,)], optional
    stride, dilation : int or tuple of d ints, ``>= 1``
    padding : int, tuple of d ints, or tuple of d (before, after) pairs, ``>= 0``
        As PyTorch: removes ``padding`` samples from both ends of the full output (pairs: from
        each end on its own, the transpose of a :class:`SpectralConv` padded by pairs).
    output_padding : int or tuple of d ints
        Extra samples on the right of the output, smaller than ``max(stride, dilation)``.
    groups : int
    method, nan_policy, planning : as for :class:`SpectralConv`

    Attributes
    ----------
    pads : tuple of (before, after) pairs
        What is removed from each end of the full output, per spatial axis.
    kernel_span : tuple of int
        Extent of the dilated kernel per spatial axis.

    See Also
    --------
    conv_transpose : the same as a function.

    Examples
    --------
    >>> import numpy as np
    >>> from specconv import SpectralConvTranspose
    >>> up = SpectralConvTranspose(np.ones((3, 2, 4)), stride=2)   # 3 -> 2 channels, x2
    >>> up(np.ones((3, 10))).shape
    (2, 22)
    """

    padding: tuple[int, ...] | tuple[tuple[int, int], ...]  # pairs when asymmetric

    def __init__(
        self,
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
        planning: Planning | None = None,
    ) -> None:
        super().__init__(
            weight,
            bias,
            stride=stride,
            dilation=dilation,
            groups=groups,
            method=method,
            nan_policy=nan_policy,
            transposed=True,
            planning=planning,
        )
        d = self.ndim
        self.pads = as_pads("padding", padding, d, of="weight")
        symmetric = all(a == b for a, b in self.pads)
        self.padding = tuple(a for a, _ in self.pads) if symmetric else self.pads
        self.output_padding = as_tuple("output_padding", output_padding, d, minimum=0, of="weight")
        for op, s, dl in zip(self.output_padding, self.stride, self.dilation):
            if op >= max(s, dl):
                raise ValueError(
                    f"output_padding must be smaller than max(stride, dilation) in every "
                    f"dimension, got output_padding {output_padding!r} with stride "
                    f"{stride!r} and dilation {dilation!r}."
                )
        # the equivalent forward correlation: per group, channels swapped, taps flipped
        G, ci, co = self.groups, self.in_channels // self.groups, self.out_channels // self.groups
        w = self.weight.reshape((G, ci, co) + self.kernel_size)
        w = w.transpose((0, 2, 1) + tuple(range(3, 3 + d)))[
            (Ellipsis,) + (slice(None, None, -1),) * d
        ]
        self._forward_weight = _frozen(w.reshape((self.out_channels, ci) + self.kernel_size))

    def __repr__(self) -> str:
        return (
            f"SpectralConvTranspose(in_channels={self.in_channels}, "
            f"out_channels={self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, "
            f"output_padding={self.output_padding}, dilation={self.dilation}, "
            f"groups={self.groups}, bias={self.bias is not None}, method={self.method!r})"
        )

    def __call__(self, x: ArrayLike, output_size: IntOrTuple | None = None) -> np.ndarray:
        """Apply the layer.

        Parameters
        ----------
        x : array_like [shape=(C_in, *spatial) or (B, C_in, *spatial)]
        output_size : int or sequence of ints, optional
            The spatial output shape, as PyTorch's ``output_size``: picks the output padding
            (e.g. to invert the shape of a strided :class:`SpectralConv`). d ints, or d + 1 or
            d + 2 whose last d are used (PyTorch's full shapes); an int is the same size in
            every dimension.

        Returns
        -------
        y : ndarray [shape=(C_out, *out) or (B, C_out, *out)]
        """
        xb, batched, dtype = self._check_x(x)
        d = self.ndim
        n = xb.shape[2:]
        span = self.kernel_span
        base = tuple(
            (m - 1) * s - a - b + e for m, s, (a, b), e in zip(n, self.stride, self.pads, span)
        )
        extra = self.output_padding
        if output_size is not None:
            output_size = _spatial_output_size(output_size, d)
            extra = tuple(o - b for o, b in zip(output_size, base))
            # the range of output_padding: PyTorch's output_size stops at stride − 1
            if any(e < 0 or e >= max(s, dl) for e, s, dl in zip(extra, self.stride, self.dilation)):
                raise ValueError(
                    f"output_size {output_size} is not reachable: with this input the "
                    f"output is {base} plus less than max(stride, dilation) per dimension."
                )
        if any(b + e < 1 for b, e in zip(base, extra)):
            raise ValueError(
                f"The output would be empty: input {n} with padding {self.padding} gives "
                f"spatial shape {tuple(b + e for b, e in zip(base, extra))}."
            )
        check_length(
            [b + e for b, e in zip(base, extra)],
            "output",
            "stride, padding, dilation and output_padding",
        )
        # a correlation of the input, zero-stuffed by the stride, with the forward kernel
        pads = tuple((e - 1 - a, e - 1 - b + op) for e, (a, b), op in zip(span, self.pads, extra))
        stuffed = tuple((m - 1) * s + 1 for m, s in zip(n, self.stride))
        check_length(
            [m + a + b for m, (a, b) in zip(stuffed, pads)],
            "zero-stuffed input",
            "stride and dilation",
        )
        check_memory(
            (xb.shape[0], self.out_channels) + tuple(b + e for b, e in zip(base, extra)),
            dtype.itemsize,
            "output",
            "stride, padding, dilation and output_padding",
        )
        check_memory(xb.shape[:2] + stuffed, dtype.itemsize, "zero-stuffed input", "stride")
        geom = Geometry(
            xb.shape[0],
            self.in_channels,
            self.out_channels,
            self.groups,
            self.kernel_size,
            self.dilation,
            (1,) * d,
            tuple(m + a + b for m, (a, b) in zip(stuffed, pads)),
            dtype.kind == "c",
        )
        # an axis of one input sample has nothing to interleave: its stride changes nothing
        # (so no work grows with the stride's magnitude)
        stride = tuple(1 if m == 1 else st for m, st in zip(n, self.stride))
        if any(st > 1 for st in stride):
            y = self._apply_strided(xb, geom, pads, dtype, stride)
            return y if batched else y[0]
        y = self._run(xb, self._forward_weight, geom, pads, dtype)
        return y if batched else y[0]

    def _apply_strided(self, xb, geom, pads, dtype, stride):
        """A strided layer by its output phases: by the direct method (:meth:`_apply_phases`)
        or as one stride-1 layer of the phases at the input rate by the FFT engine
        (``_polyphase``), whichever the cost model prices lower (``method="auto"``)."""
        n = xb.shape[2:]
        workers = fft.get_num_threads()
        parts = self._output_phases(geom, n, [a for a, _ in pads], stride)
        plan, direct = None, self.method == "direct"
        options = self.planning.choose_options
        plan_of = functools.partial(
            _polyphase.transposed_plan, geom, stride, pads, n, "fft", dtype.itemsize, workers
        )
        if not direct:
            plan = plan_of(**options)
        if self.method == "auto" and plan is not None:
            interleaved = _direct.interleaved_taps(parts, dtype)
            if interleaved is not None:  # all phases in one pass, written in place
                phase, *_, union = interleaved
                seconds = _costmodel.interleaved_cost(
                    phase, len(parts), len(union), geom.out_shape[-1], dtype.itemsize, workers
                )
            else:  # the phases, and copying each into its interleaved place
                seconds = _polyphase.copy_seconds(
                    math.prod(geom.out_shape) * xb.shape[0] * self.out_channels,
                    dtype.itemsize,
                    geom.is_complex,
                    workers,
                ) + sum(
                    _costmodel.direct_cost(part, dtype.itemsize, workers)
                    for *_, part in parts
                    if part is not None
                )
            direct = seconds <= plan.seconds
            if direct and not options["spectra_cached"]:  # as in _choice
                again = plan_of(**{**options, "spectra_cached": True})
                if seconds > again.seconds and self._reused(self._forward_weight):
                    plan, direct = again, False
        if direct:
            return self._apply_phases(xb, parts, geom.out_shape, dtype, stride, geom, pads)
        if plan is not None:
            self._weight_digest(self._forward_weight)
        y = _correlate.correlate_transposed(
            xb,
            self._forward_weight,
            plan,
            geom,
            pads,
            stride,
            dtype,
            nan_policy=self.nan_policy,
            cache=self._cache,
            digest=self._digest,
        )
        if self.bias is not None:
            y += self.bias.reshape((-1,) + (1,) * self.ndim)
        return y

    def _output_phases(self, geom, n, before, stride):
        """The stride-1 correlations of the input itself that make the output's phases.

        ``geom`` correlates the input zero-stuffed by the stride s and padded by ``before``
        with the forward kernel: output ``r + s·j`` reads only the taps ``k`` with
        ``r + k·d - before ≡ 0 (mod s)``, at input sample ``j + (r + k·d - before) / s``. So
        output phase r is a stride-1 correlation of the input with those taps, evenly
        spaced: s^d times fewer samples than the stuffed input, and no multiply-add by a
        stuffed zero. Returns ``(phase, taps, pads, geometry)`` per output
        phase; the geometry is None where no tap reaches the phase.
        """
        per_axis = []
        for K, dl, s, m, p, size in zip(
            geom.kernel, geom.dilation, stride, n, before, geom.out_shape
        ):
            axis = []
            for r in range(min(s, size)):
                taps, spacing = _direct.residue_taps(K, dl, s, p - r)
                first = (r + taps[0] * dl - p) // s if taps else 0  # input sample of taps[0]
                need = -(-(size - r) // s) + (len(taps) - 1) * spacing
                axis.append((r, taps, spacing, (-first, need + first - m), need))
            per_axis.append(axis)
        parts = []
        for combo in itertools.product(*per_axis):
            phase, taps, spacing, pads, padded = zip(*combo)
            part = (
                dataclasses.replace(
                    geom, kernel=tuple(map(len, taps)), dilation=spacing, padded=padded
                )
                if all(taps)
                else None
            )
            parts.append((phase, taps, pads, part))
        return parts

    def _apply_phases(self, xb, parts, out_shape, dtype, stride, geom, pads):
        """The output by the direct method: every phase (see :meth:`_output_phases`) in one
        pass of the compiled loop where :func:`~specconv._direct.transposed_depthwise` applies,
        else phase by phase. ``geom`` and ``pads``: the equivalent correlation of the stuffed
        input (see :func:`~specconv._correlate.correlate_transposed`), for non-finite input.
        """
        x, bad = _correlate.split_nonfinite(xb, self.nan_policy)
        workers = fft.get_num_threads()
        y = _direct.transposed_depthwise(
            x, self._forward_weight, parts, out_shape[-1], dtype, workers
        )
        if y is None:
            y = np.empty((xb.shape[0], self.out_channels) + tuple(out_shape), dtype)
            C = self.out_channels
            shares = [slice(C * k // workers, C * (k + 1) // workers) for k in range(workers)]
            for phase, taps, phase_pads, phase_geom in parts:
                target = y[(Ellipsis,) + tuple(slice(r, None, s) for r, s in zip(phase, stride))]
                if phase_geom is None:  # no tap reaches these outputs
                    target[...] = 0
                    continue
                taps = tuple(map(_direct.evenly_spaced, taps))
                weight = self._forward_weight[(slice(None), slice(None)) + taps]
                part = _correlate.correlate(
                    x, weight, phase_geom, phase_pads, dtype, method="direct", nan_policy="raise"
                )
                # strided: the one pass that interleaves the phases, and the first touch of
                # the output's pages; split over the threads (numpy copies without the GIL)
                run_parallel([lambda c=c: np.copyto(target[:, c], part[:, c]) for c in shares])
        if self.bias is not None:
            y += self.bias.reshape((-1,) + (1,) * self.ndim)
        if bad is not None:
            _correlate.mark_nonfinite_transposed(y, bad, geom, pads, stride)
        return y

    def _transposed(self, weight):
        """The transposed layer of ``weight`` with this layer's options (no bias)."""
        return SpectralConv(
            weight,
            stride=self.stride,
            padding=self.pads,
            dilation=self.dilation,
            groups=self.groups,
            method=self.method,
            nan_policy=self.nan_policy,
        )

    @property
    def T(self) -> SpectralConv:
        """The transposed layer (a :class:`SpectralConv`): same weight and options, no bias."""
        return self._transposed(self.weight)

    @property
    def H(self) -> SpectralConv:
        """The adjoint layer (a :class:`SpectralConv` of the conjugated weight), no bias.

        Equal to :attr:`T` for real weights. Its output may be longer than this layer's input
        when ``output_padding >= stride`` (possible with dilation > stride); the first
        samples are the adjoint's.

        Examples
        --------
        >>> import numpy as np
        >>> from specconv import SpectralConvTranspose
        >>> rng = np.random.default_rng(0)
        >>> w = rng.standard_normal((2, 3, 4)) + 1j * rng.standard_normal((2, 3, 4))
        >>> up = SpectralConvTranspose(w, stride=2)
        >>> x, y = rng.standard_normal((2, 10)), rng.standard_normal((3, 22))
        >>> bool(np.isclose(np.vdot(up(x), y), np.vdot(x, up.H(y))))
        True
        """
        return self._transposed(_conj(self.weight))

    def frequency_response(self, shape: IntOrTuple, *, whole: bool | None = None) -> np.ndarray:
        """Per-frequency C_out × C_in matrices (stride 1), as :meth:`SpectralConv.frequency_response`.

        For real weights this is the conjugate transpose of the forward layer's response.

        Examples
        --------
        >>> import numpy as np
        >>> from specconv import SpectralConv
        >>> layer = SpectralConv(np.random.default_rng(1).standard_normal((3, 2, 5)), padding=2)
        >>> H, HT = layer.frequency_response(16), layer.T.frequency_response(16)
        >>> np.allclose(HT, H.conj().swapaxes(-1, -2))
        True
        """
        return _frequency_response(self, shape, whole, transposed=True)


def _spatial_output_size(output_size, d):
    """``output_size`` as d ints: an int, d ints, or PyTorch's d + 1 / d + 2 (last d used)."""
    if isinstance(output_size, np.ndarray) and output_size.ndim == 1:
        output_size = output_size.tolist()
    if isinstance(output_size, (list, tuple)) and len(output_size) in (d + 1, d + 2):
        output_size = output_size[-d:]
    return as_tuple("output_size", output_size, d)


def _frequency_response(layer, shape, whole, transposed):
    d = layer.ndim
    shape = as_tuple("shape", shape, d)
    check_length(shape, "DFT", "shape")
    check_memory((layer.out_channels, layer.in_channels) + shape, 16, "frequency response", "shape")
    if whole is not None and not isinstance(whole, (bool, np.bool_)):
        raise TypeError(f"whole must be None or a bool, got {type(whole).__name__} {whole!r}.")
    span = layer.kernel_span
    if any(e > n for e, n in zip(span, shape)):
        raise ValueError(f"shape {shape} must be at least the kernel span {span}.")
    is_complex = layer.weight.dtype.kind == "c"
    whole = is_complex if whole is None else bool(whole)
    if not whole and is_complex:
        raise ValueError("whole=False (one-sided spectrum) needs real weights.")
    pads = layer.pads
    # the taps at their circular offsets k·dilation − padding
    a = np.zeros(layer.weight.shape[:2] + shape, dtype=np.result_type(layer.weight, np.float64))
    idx = tuple(
        (np.arange(k) * dl - p) % n
        for k, dl, (p, _), n in zip(layer.kernel_size, layer.dilation, pads, shape)
    )
    a[(Ellipsis,) + np.ix_(*idx)] = layer.weight
    axes = tuple(range(2, 2 + d))
    if transposed:  # sum_m a[m] e^{-2πi f m / L}
        spec = fft.fftn(a, axes=axes) if whole else fft.rfftn(a, axes=axes)
    elif whole:  # sum_m a[m] e^{+2πi f m / L}
        spec = fft.ifftn(a, axes=axes) * math.prod(shape)
    else:
        spec = fft.rfftn(a, axes=axes).conj()
    G = layer.groups
    blocks = spec.reshape((G, -1) + spec.shape[1:])  # (G, rows of a block, cols, *freq)
    if transposed:  # the stored weight is (C_in, C_out/groups): its blocks are transposed
        blocks = blocks.swapaxes(1, 2)
    r, c = blocks.shape[1:3]
    H = np.zeros(spec.shape[2:] + (layer.out_channels, layer.in_channels), dtype=spec.dtype)
    for g in range(G):
        H[..., g * r : (g + 1) * r, g * c : (g + 1) * c] = np.moveaxis(blocks[g], (0, 1), (-2, -1))
    return H


# --------------------------------------------------------------------------------------------
# the standard form, and the kernel-matrix arithmetic the operators above use
# (specconv.kernels re-exports compose, add and scale with the rest of the algebra)


#: Either layer kind (the functions below take a stride-1 SpectralConvTranspose as its conv).
Layer: TypeAlias = SpectralConv | SpectralConvTranspose


def check_is_layer(name: str, layer: object) -> None:
    """TypeError unless ``layer`` is a SpectralConv or SpectralConvTranspose."""
    if not isinstance(layer, (SpectralConv, SpectralConvTranspose)):
        raise TypeError(
            f"{name} must be a SpectralConv (or a stride-1 SpectralConvTranspose), got "
            f"{type(layer).__name__}."
        )


def standard_form(layer: Layer, name: str = "layer") -> StandardForm:
    """The :class:`~specconv._standard_form.StandardForm` of ``layer`` (a stride-1
    SpectralConvTranspose becomes the equal conv); ``name`` is the parameter in messages."""
    check_is_layer(name, layer)
    if isinstance(layer, SpectralConvTranspose):
        if any(s != 1 for s in layer.stride):
            raise ValueError(
                f"{name} is a SpectralConvTranspose with stride {layer.stride}; only stride-1 "
                "transposed layers are convolutions (a strided one upsamples)."
            )
        d = layer.ndim
        span = layer.kernel_span
        pads = tuple(
            (e - 1 - lo, e - 1 - hi + op)
            for e, (lo, hi), op in zip(span, layer.pads, layer.output_padding)
        )
        if any(lo < 0 or hi < 0 for lo, hi in pads):
            raise ValueError(
                f"{name} is a SpectralConvTranspose whose padding {layer.padding} exceeds "
                f"dilation·(kernel − 1) = {tuple(e - 1 for e in span)}: it crops its output, "
                "which no conv layer with non-negative padding expresses."
            )
        G = layer.groups
        ci, co = layer.in_channels // G, layer.out_channels // G
        w = layer.weight.reshape((G, ci, co) + layer.kernel_size)
        w = w.transpose((0, 2, 1) + tuple(range(3, 3 + d)))
        w = w[(Ellipsis,) + (slice(None, None, -1),) * d]
        w = w.reshape((layer.out_channels, ci) + layer.kernel_size)
        return StandardForm(
            np.ascontiguousarray(w),
            G,
            tuple(layer.dilation),
            pads,
            "zeros",
            layer.bias,
            (1,) * d,
            layer.method,
            layer.nan_policy,
        )
    return StandardForm(
        layer.weight,
        layer.groups,
        tuple(layer.dilation),
        layer.pads,  # "same", "valid" and (before, after) pairs, resolved at construction
        layer.padding_mode,
        layer.bias,
        tuple(layer.stride),
        layer.method,
        layer.nan_policy,
    )


def from_standard_form(t: StandardForm) -> SpectralConv:
    """The SpectralConv of a standard form (asymmetric pads become zero taps)."""
    weight, padding, dilation = _standard_form.expressible(t)
    return SpectralConv(
        weight,
        t.bias,
        stride=t.stride,
        padding=padding,
        dilation=dilation,
        groups=t.groups,
        padding_mode=t.mode,
        method=t.method,
        nan_policy=t.nan_policy,
    )


def compose(*layers: Layer, exact: bool = True) -> SpectralConv:
    """One layer equal to applying ``layers`` right to left: ``compose(l2, l1)(x) == l2(l1(x))``.

    PyTorch conv-layer semantics (cross-correlation). At every frequency the result's matrix
    is the product ``H2(f) @ H1(f)``; in time the kernel spans add
    (``span = span1 + span2 − 1``) and the pads add side by side.

    Parameters
    ----------
    *layers : SpectralConv
        Two or more layers, the last applied first (matrix order). Stride-1
        :class:`~specconv.SpectralConvTranspose` layers are accepted (as the equivalent
        convolution), so ``compose(layer.T, layer)`` is the normal operator.
    exact : bool
        Refuse (ValueError) a pair whose composition is not exactly sequential application
        at the signal edges (see Notes). With ``exact=False`` the returned layer agrees with
        sequential application except within the second layer's padding of the edges.

    Returns
    -------
    layer : SpectralConv
        Groups: ``gcd`` of the groups (the coarsest common block structure). Dilation: kept
        where all layers share it, else 1. Stride: the last-applied layer's.

    Raises
    ------
    ValueError
        Channel counts that do not chain, a strided layer other than the last one, or an
        inexact pair with ``exact=True``.

    See Also
    --------
    composition_is_exact : check a pair beforehand.
    add, scale : the other matrix operations.

    Notes
    -----
    Sequential application pads the *intermediate* signal, so composing is exact only when
    that padding equals what the composed layer sees. The rule, checked per axis and side,
    for ``layer2 ∘ layer1``:

    * ``layer2`` does not pad that side (e.g. ``padding="valid"``): always exact; the result
      inherits ``layer1``'s padding and mode. Any number of layers composed with padding 0
      after the first is exact.
    * ``layer1`` is pointwise (``1 × 1`` kernel, no padding): exact for every padding mode of
      ``layer2`` (padding commutes with channel mixing), except zero padding after a non-zero
      bias.
    * both pad with zeros and ``layer1`` pads that side by at least
      ``dilation·(kernel − 1)`` ("full" padding): ``layer1``'s output already holds every
      non-zero sample, so the zeros ``layer2`` adds are the true continuation. Needs
      ``layer1`` without bias. E.g. two full-padded layers compose to the full-padded layer
      of the convolved kernels.
    * both circular and ``layer1`` keeps the length (pads totalling ``dilation·(kernel−1)``):
      the intermediate signal is periodic with the input's period.

    Everything else -- e.g. two ``padding="same"`` zero-padded layers -- differs within the
    padding of the edges and needs ``exact=False``. The composed pads are the sums of the
    pads; the circular mode needs them to stay at most the input length when applied.

    Examples
    --------
    >>> import numpy as np
    >>> from specconv import SpectralConv
    >>> from specconv.kernels import compose
    >>> rng = np.random.default_rng(0)
    >>> l1 = SpectralConv(rng.standard_normal((4, 3, 5)), padding=4)     # full padding
    >>> l2 = SpectralConv(rng.standard_normal((2, 4, 7)), padding=6)
    >>> both = compose(l2, l1)
    >>> both.kernel_size, both.padding
    ((11,), (10,))
    >>> x = rng.standard_normal((3, 100))
    >>> bool(np.allclose(both(x), l2(l1(x))))
    True
    """
    if len(layers) < 2:
        raise ValueError(f"compose needs at least two layers, got {len(layers)}.")
    if not isinstance(exact, bool):
        raise TypeError(f"exact must be a bool, got {exact!r}.")
    names = [f"layers[{i}]" for i in range(len(layers))]
    forms = [standard_form(layer, n) for layer, n in zip(layers, names)]
    return from_standard_form(_standard_form.compose_forms(forms, names, exact))


def add(*layers: Layer) -> SpectralConv:
    """One layer equal to the sum of ``layers``: ``add(a, b)(x) == a(x) + b(x)``.

    PyTorch conv-layer semantics. At every frequency the result's matrix is
    ``H_a(f) + H_b(f)``. Exact at the edges too: padding (of one mode) extends the input the
    same way whatever its amount, so the layers only need the same output length.

    Parameters
    ----------
    *layers : SpectralConv
        One or more layers with equal channel counts, stride, output length
        (``pad_left + pad_right − span`` per axis) and padding mode (layers without padding
        fit any mode).

    Returns
    -------
    layer : SpectralConv
        Offsets: the union of the layers' offsets; groups: their gcd; biases summed.

    See Also
    --------
    scale : scalar multiples; ``add(a, scale(b, -1))`` is ``a − b``.
    compose : products.

    Examples
    --------
    >>> import numpy as np
    >>> from specconv import SpectralConv
    >>> from specconv.kernels import add
    >>> rng = np.random.default_rng(0)
    >>> a = SpectralConv(rng.standard_normal((2, 2, 3)), padding="same")
    >>> b = SpectralConv(rng.standard_normal((2, 2, 7)), padding="same")
    >>> x = rng.standard_normal((2, 50))
    >>> bool(np.allclose(add(a, b)(x), a(x) + b(x)))
    True
    """
    if not layers:
        raise ValueError("add needs at least one layer.")
    names = [f"layers[{i}]" for i in range(len(layers))]
    forms = [standard_form(layer, n) for layer, n in zip(layers, names)]
    return from_standard_form(_standard_form.add_forms(forms, names))


def scale(layer: Layer, alpha: complex | np.number) -> SpectralConv:
    """The layer times a scalar: ``scale(layer, a)(x) == a * layer(x)`` (bias scaled too).

    Parameters
    ----------
    layer : SpectralConv
    alpha : int, float or complex

    Returns
    -------
    layer : SpectralConv

    Examples
    --------
    >>> import numpy as np
    >>> from specconv import SpectralConv
    >>> from specconv.kernels import scale
    >>> layer = SpectralConv(np.ones((1, 1, 2)), bias=np.ones(1))
    >>> scale(layer, -2)(np.arange(4.0)[None])
    array([[ -4.,  -8., -12.]])
    """
    t = standard_form(layer)
    if not isinstance(alpha, numbers.Number) or isinstance(alpha, bool):
        raise TypeError(f"alpha must be a real or complex scalar, got {alpha!r}.")
    bias = None if t.bias is None else t.bias * alpha
    return from_standard_form(t.replace(weight=t.weight * alpha, bias=bias))
