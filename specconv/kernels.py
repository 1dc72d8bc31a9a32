"""Kernel-matrix algebra: conv layers as matrices of kernels, combined like matrices.

A stride-1 :class:`~specconv.SpectralConv` is a ``C_out × C_in`` matrix whose entries are
kernels; at every frequency it is an ordinary complex matrix ``H(f)``
(:meth:`SpectralConv.frequency_response`). This module combines layers the way those matrices
combine, and always returns plain layers:

========================  =====================================================================
composition               :func:`compose` -- ``H2(f) @ H1(f)``, one layer, kernel spans add
sums, scalar multiples    :func:`add`, :func:`scale`; :func:`pointwise` makes a ``1 × 1`` layer
groups                    :func:`to_dense_groups`, :func:`split_groups`, :func:`block_diag`
per-frequency analysis    :func:`svd`, :func:`eig`
inversion                 :func:`inverse` -- regularized (Tikhonov) inverse as an FIR layer
FIR design                :func:`fir_layer` -- causal FIRs (true convolution) as a layer;
                          :func:`from_response` -- any per-frequency matrix as an FIR layer
estimation from data      :func:`estimate_transfer` -- Welch ``H = S_yx S_xx⁻¹``, coherence
========================  =====================================================================

Conventions
-----------
Layers follow PyTorch semantics (cross-correlation). A layer's *offset sequence* ``a[m]`` is
its taps placed at their offsets ``m = k·dilation − pad_left``, so that on an infinitely long
signal ``y[n] = sum_m a[m] x[n + m]`` and ``H(f) = sum_m a[m] exp(+2πi f·m)``. For a causal
filter ``h`` applied by true convolution (``y = h * x``) the offsets are ``m = −t`` and
``H`` is the ordinary DFT of ``h``, which is the convention of :func:`from_response`.

Padding is kept per side: SpectralConv can only express symmetric padding (or "same"), so a
result whose padding is asymmetric gets extra zero taps on one side of its kernel instead
(the offsets, hence the numbers, are unchanged).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from . import fft
from ._geometry import kernel_span
from ._standard_form import StandardForm, at_groups, check_same_ndim, composed_mode
from ._typing import ArrayLike, FirMode, IntOrTuple, PaddingMode, Window
from ._validate import (
    as_array,
    as_bool,
    as_int,
    as_real,
    as_tuple,
    check_groups,
    check_length,
    check_memory,
    check_option,
)
from .layers import (
    PADDING_MODES,
    Layer,
    SpectralConv,
    add,
    check_is_layer,
    compose,
    from_standard_form,
    scale,
    standard_form,
)

__all__ = [
    "compose",
    "composition_is_exact",
    "add",
    "scale",
    "pointwise",
    "as_conv",
    "side_pads",
    "without_padding",
    "fir_layer",
    "to_dense_groups",
    "split_groups",
    "block_diag",
    "svd",
    "eig",
    "inverse",
    "from_response",
    "estimate_transfer",
    "TransferEstimate",
]


# --------------------------------------------------------------------------------------------
# composition


def composition_is_exact(layer2: Layer, layer1: Layer) -> tuple[bool, str]:
    """Whether :func:`compose` of the two layers equals applying them one after another.

    Parameters
    ----------
    layer2, layer1 : SpectralConv
        ``layer1`` is applied first.

    Returns
    -------
    exact : bool
    reason : str
        Empty when exact, else which rule of :func:`compose` fails.

    Examples
    --------
    >>> import numpy as np
    >>> from specconv import SpectralConv
    >>> from specconv.kernels import composition_is_exact
    >>> a = SpectralConv(np.ones((1, 1, 3)), padding=2)
    >>> b = SpectralConv(np.ones((1, 1, 5)), padding=4)
    >>> composition_is_exact(b, a)          # full padding first: exact
    (True, '')
    >>> s = SpectralConv(np.ones((1, 1, 3)), padding="same")
    >>> composition_is_exact(s, s)[0]        # "same" twice: the edges differ
    False
    """
    t1, t2 = standard_form(layer1, "layer1"), standard_form(layer2, "layer2")
    _, exact, reason = composed_mode(t2, t1)
    return exact, reason


# --------------------------------------------------------------------------------------------
# sums, scalar multiples, pointwise layers


def pointwise(matrix: ArrayLike, *, ndim: int = 1, bias: ArrayLike | None = None) -> SpectralConv:
    """A ``1 × 1`` layer applying ``matrix`` at every sample: ``y[:, n] = matrix @ x[:, n]``.

    Spatial filters (re-referencing, Laplacians, coil compression, unmixing) are such layers;
    compose them with temporal layers into one with :func:`compose`.

    Parameters
    ----------
    matrix : array_like [shape=(C_out, C_in)]
    ndim : int
        Number of spatial (signal) dimensions of the layer.
    bias : array_like [shape=(C_out,)], optional

    Returns
    -------
    layer : SpectralConv [kernel_size=(1,) * ndim]

    Examples
    --------
    >>> import numpy as np
    >>> from specconv.kernels import pointwise
    >>> avg_ref = pointwise(np.eye(3) - 1 / 3)        # average reference of 3 channels
    >>> avg_ref(np.array([[1.0, 2.0], [2.0, 2.0], [3.0, 2.0]]))
    array([[-1.,  0.],
           [ 0.,  0.],
           [ 1.,  0.]])
    """
    m = as_array("matrix", matrix)
    if m.ndim != 2:
        raise ValueError(f"matrix must have shape (C_out, C_in), got shape {m.shape}.")
    # numpy arrays have at most 64 axes: the weight has ndim + 2
    ndim = as_int("ndim", ndim, minimum=1, maximum=62)
    return SpectralConv(m.reshape(m.shape + (1,) * ndim), bias)


def as_conv(layer: Layer) -> SpectralConv:
    """The :class:`~specconv.SpectralConv` computing the same as ``layer``.

    A stride-1 :class:`~specconv.SpectralConvTranspose` is a convolution with channels
    swapped and taps flipped; a SpectralConv is returned as an equal new layer.

    Parameters
    ----------
    layer : SpectralConv or SpectralConvTranspose (stride 1)

    Returns
    -------
    conv : SpectralConv

    Examples
    --------
    >>> import numpy as np
    >>> from specconv import SpectralConv
    >>> from specconv.kernels import as_conv
    >>> layer = SpectralConv(np.random.default_rng(0).standard_normal((3, 2, 4)))
    >>> y = np.random.default_rng(1).standard_normal((3, 9))
    >>> bool(np.allclose(as_conv(layer.T)(y), layer.T(y)))
    True
    """
    return from_standard_form(standard_form(layer))


def side_pads(layer: Layer) -> tuple[tuple[int, int], ...]:
    """The layer's padding per axis and side, in samples: ``((left, right), ...)``.

    As the layer stores it: results of this module whose padding is asymmetric hold it as
    symmetric padding plus zero taps at one end of the kernel, and report the symmetric
    padding.

    ``padding="same"`` with an even kernel span puts the extra sample on the right (as
    PyTorch); a stride-1 :class:`~specconv.SpectralConvTranspose` is described as the
    equivalent convolution (see :func:`as_conv`).

    Parameters
    ----------
    layer : SpectralConv

    Returns
    -------
    pads : tuple of (int, int), one pair per spatial axis

    Examples
    --------
    >>> import numpy as np
    >>> from specconv import SpectralConv
    >>> from specconv.kernels import side_pads
    >>> side_pads(SpectralConv(np.ones((1, 1, 4)), padding="same"))
    ((1, 2),)
    """
    return standard_form(layer).pads


def without_padding(layer: SpectralConv) -> SpectralConv:
    """The same taps with no padding: ``without_padding(layer)(np.pad(x, side_pads(layer)))``.

    Apply a layer with an edge extension no padding mode expresses (e.g. MNE's odd
    reflection) by padding the signal yourself and applying this layer.

    Parameters
    ----------
    layer : SpectralConv

    Returns
    -------
    valid : SpectralConv
        ``padding=0``; weight, bias, stride, dilation and groups as ``layer``.

    Examples
    --------
    >>> import numpy as np
    >>> from specconv import SpectralConv
    >>> from specconv.kernels import side_pads, without_padding
    >>> layer = SpectralConv(np.ones((1, 1, 3)), padding=1, padding_mode="replicate")
    >>> x = np.array([[1.0, 2.0, 4.0]])
    >>> padded = np.pad(x, ((0, 0),) + side_pads(layer), mode="edge")
    >>> without_padding(layer)(padded), layer(x)
    (array([[ 4.,  7., 10.]]), array([[ 4.,  7., 10.]]))
    """
    t = standard_form(layer)
    return from_standard_form(t.replace(pads=((0, 0),) * t.ndim))


def _alignment_pads(n_taps, delay, mode):
    if mode == "full":
        return tuple((t - 1, t - 1) for t in n_taps)
    if mode == "causal":
        return tuple((t - 1, 0) for t in n_taps)
    return tuple((t - 1 - D, D) for t, D in zip(n_taps, delay))


def fir_layer(
    h: ArrayLike,
    *,
    mode: FirMode = "full",
    delay: IntOrTuple = 0,
    groups: int = 1,
    bias: ArrayLike | None = None,
    padding_mode: PaddingMode = "zeros",
) -> SpectralConv:
    """A layer applying causal FIRs by true convolution: ``y_o = sum_i h[o, i] * x_i``.

    scipy.signal semantics for the taps (``h`` is not flipped by the caller), returned as a
    PyTorch-semantics :class:`~specconv.SpectralConv` (whose ``weight`` holds the flipped
    taps). Impulse responses, filter banks and designed filters enter the algebra this way.

    Parameters
    ----------
    h : array_like [shape=(C_out, C_in/groups, *taps)]
        Impulse responses, ``h[..., 0]`` at lag 0.
    mode : {"full", "causal", "same"}
        Output alignment. "full": every output of the convolution (``n + taps − 1``, as
        :func:`scipy.signal.convolve` ``mode="full"``). "causal": as long as the input, the
        first ``n`` samples of "full" (as :func:`scipy.signal.lfilter`). "same": as long as
        the input with the response's lag ``delay`` moved to lag 0 (for a linear-phase FIR
        of odd length and ``delay = (taps − 1) // 2`` a zero-phase filter).
    delay : int or tuple of ints
        Only for "same": the lag that becomes lag 0 (default 0).
    groups : int
    bias : array_like [shape=(C_out,)], optional
    padding_mode : {"zeros", "reflect", "replicate", "circular"}
        How the input is extended beyond its edges.

    Returns
    -------
    layer : SpectralConv

    See Also
    --------
    from_response : the same from a per-frequency matrix.
    specconv.convolve : one-off true convolution.

    Examples
    --------
    >>> import numpy as np
    >>> from specconv.kernels import fir_layer
    >>> x = np.array([[1.0, 2.0, 3.0]])
    >>> h = np.array([[[1.0, 0.5]]])
    >>> fir_layer(h)(x), fir_layer(h, mode="causal")(x)
    (array([[1. , 2.5, 4. , 1.5]]), array([[1. , 2.5, 4. ]]))
    """
    h = as_array("h", h)
    if h.ndim < 3:
        raise ValueError(f"h must have shape (C_out, C_in/groups, *taps), got shape {h.shape}.")
    mode = check_option("mode", mode, ("full", "causal", "same"))
    check_option("padding_mode", padding_mode, PADDING_MODES)
    d = h.ndim - 2
    n_taps = h.shape[2:]
    delay = as_tuple("delay", delay, d, minimum=0)
    if any(D >= t for D, t in zip(delay, n_taps)):
        raise ValueError(f"delay {delay} must be smaller than the number of taps {n_taps}.")
    groups = as_int("groups", groups, minimum=1)
    check_groups(groups, h.shape[1] * groups, h.shape[0])
    if bias is not None:
        bias = as_array("bias", bias)
    weight = np.ascontiguousarray(h[(Ellipsis,) + (slice(None, None, -1),) * d])
    pads = _alignment_pads(n_taps, delay, mode)
    return from_standard_form(
        StandardForm(
            weight, int(groups), (1,) * d, pads, padding_mode, bias, (1,) * d, "auto", "propagate"
        )
    )


# --------------------------------------------------------------------------------------------
# groups


def to_dense_groups(layer: SpectralConv) -> SpectralConv:
    """The same layer with ``groups=1``: the block-diagonal kernel matrix written out.

    Parameters
    ----------
    layer : SpectralConv

    Returns
    -------
    dense : SpectralConv [weight shape=(C_out, C_in, *kernel)]
        Zero kernels off the diagonal blocks; the same outputs as ``layer``.

    Examples
    --------
    >>> import numpy as np
    >>> from specconv import SpectralConv
    >>> from specconv.kernels import to_dense_groups
    >>> dw = SpectralConv(np.ones((4, 1, 3)), groups=4, padding=1)   # depthwise, 4 channels
    >>> dense = to_dense_groups(dw)
    >>> dense.groups, dense.weight.shape, dense.weight[:, :, 1]
    (1, (4, 4, 3), array([[1., 0., 0., 0.],
           [0., 1., 0., 0.],
           [0., 0., 1., 0.],
           [0., 0., 0., 1.]]))
    """
    t = standard_form(layer)
    return from_standard_form(t.replace(weight=at_groups(t, 1), groups=1))


def split_groups(layer: SpectralConv) -> list[SpectralConv]:
    """The ``groups`` independent blocks of a grouped layer, as ``groups=1`` layers.

    Block ``g`` maps input channels ``g·C_in/G ... (g+1)·C_in/G − 1`` to the matching output
    channels; :func:`block_diag` reassembles them.

    Parameters
    ----------
    layer : SpectralConv

    Returns
    -------
    blocks : list of SpectralConv
        ``groups`` layers with ``groups=1`` (bias split along).

    Examples
    --------
    >>> import numpy as np
    >>> from specconv import SpectralConv
    >>> from specconv.kernels import split_groups
    >>> layer = SpectralConv(np.ones((6, 2, 3)), groups=2)     # 4 -> 6 channels, 2 blocks
    >>> [(b.in_channels, b.out_channels) for b in split_groups(layer)]
    [(2, 3), (2, 3)]
    """
    t = standard_form(layer)
    co = t.out_channels // t.groups
    out = []
    for g in range(t.groups):
        rows = slice(g * co, (g + 1) * co)
        bias = None if t.bias is None else t.bias[rows]
        out.append(from_standard_form(t.replace(weight=t.weight[rows], groups=1, bias=bias)))
    return out


def block_diag(layers: Sequence[SpectralConv]) -> SpectralConv:
    """One layer whose kernel matrix is block-diagonal with ``layers`` as the blocks.

    When every block has the same shape the result is a grouped layer (``groups`` = the sum
    of the blocks' groups); otherwise it is a ``groups=1`` layer with explicit zero kernels
    off the blocks.

    Parameters
    ----------
    layers : sequence of SpectralConv
        Same kernel size, stride, padding, dilation and padding mode.

    Returns
    -------
    layer : SpectralConv

    Examples
    --------
    >>> import numpy as np
    >>> from specconv import SpectralConv
    >>> from specconv.kernels import block_diag, split_groups
    >>> layer = SpectralConv(np.random.default_rng(0).standard_normal((6, 2, 3)), groups=2)
    >>> again = block_diag(split_groups(layer))
    >>> again.groups, bool(np.array_equal(again.weight, layer.weight))
    (2, True)
    """
    layers = list(layers)
    if not layers:
        raise ValueError("block_diag needs at least one layer.")
    names = [f"layers[{i}]" for i in range(len(layers))]
    taps = [standard_form(layer, n) for layer, n in zip(layers, names)]
    check_same_ndim(taps, names)
    first = taps[0]
    for t, n in zip(taps[1:], names[1:]):
        for attr in ("pads", "dilation", "stride", "mode"):
            if getattr(t, attr) != getattr(first, attr):
                raise ValueError(
                    f"{n} has {attr} {getattr(t, attr)!r} but {names[0]} has "
                    f"{getattr(first, attr)!r}; blocks must share them."
                )
        if t.weight.shape[2:] != first.weight.shape[2:]:
            raise ValueError(
                f"{n} has kernel size {t.weight.shape[2:]} but {names[0]} has "
                f"{first.weight.shape[2:]}."
            )
    dtype = np.result_type(*[t.weight for t in taps])
    if any(t.bias is not None for t in taps):
        bias = np.concatenate(
            [t.bias if t.bias is not None else np.zeros(t.out_channels) for t in taps]
        )
    else:
        bias = None
    per_group = {(t.out_channels // t.groups, t.weight.shape[1]) for t in taps}
    if len(per_group) == 1:
        weight = np.concatenate([t.weight.astype(dtype, copy=False) for t in taps])
        groups = sum(t.groups for t in taps)
    else:
        c_out = sum(t.out_channels for t in taps)
        c_in = sum(t.in_channels for t in taps)
        weight = np.zeros((c_out, c_in) + first.weight.shape[2:], dtype=dtype)
        r = c = 0
        for t in taps:
            weight[r : r + t.out_channels, c : c + t.in_channels] = at_groups(t, 1)
            r, c = r + t.out_channels, c + t.in_channels
        groups = 1
    return from_standard_form(first.replace(weight=weight, groups=groups, bias=bias))


# --------------------------------------------------------------------------------------------
# per-frequency analysis


def _blocks(layer, shape, whole):
    H = layer.frequency_response(shape, whole=whole)
    G = layer.groups
    co, ci = layer.out_channels // G, layer.in_channels // G
    return H, [H[..., g * co : (g + 1) * co, g * ci : (g + 1) * ci] for g in range(G)]


def svd(
    layer: SpectralConv, shape: IntOrTuple, *, whole: bool | None = None, per_group: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Singular value decomposition of the layer's matrix at every frequency.

    ``H(f) = U(f) @ diag(s(f)) @ Vh(f)``, with ``H`` from
    :meth:`SpectralConv.frequency_response`.

    Parameters
    ----------
    layer : SpectralConv
    shape : int or tuple of ints
        DFT shape (at least the kernel span).
    whole : bool, optional
        All frequencies instead of the non-negative half of the last axis (see
        :meth:`SpectralConv.frequency_response`).
    per_group : bool
        Decompose each diagonal block separately (arrays gain a leading group axis). The
        blocks' singular values are those of the whole matrix, without the mixing of blocks
        that equal singular values allow.

    Returns
    -------
    U : ndarray [shape=(*freq, C_out, k)]
    s : ndarray [shape=(*freq, k)], descending, ``k = min(C_out, C_in)``
    Vh : ndarray [shape=(*freq, k, C_in)]

    See Also
    --------
    eig : eigendecomposition of square layers.
    inverse : uses the same decomposition to invert.

    Examples
    --------
    >>> import numpy as np
    >>> from specconv.kernels import pointwise, svd
    >>> U, s, Vh = svd(pointwise(np.diag([3.0, -2.0])), 8)
    >>> s.shape, s[0]
    ((5, 2), array([3., 2.]))
    """
    check_is_layer("layer", layer)
    per_group = as_bool("per_group", per_group)
    H, blocks = _blocks(layer, shape, whole)
    if per_group:
        parts = [np.linalg.svd(b, full_matrices=False) for b in blocks]
        U, s, Vh = (np.stack([p[i] for p in parts]) for i in range(3))
        return U, s, Vh
    U, s, Vh = np.linalg.svd(H, full_matrices=False)
    return U, s, Vh


def eig(
    layer: SpectralConv, shape: IntOrTuple, *, whole: bool | None = None, hermitian: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Eigendecomposition of a square layer's matrix at every frequency.

    ``H(f) @ v[..., :, i] = w[..., i] * v[..., :, i]``.

    Parameters
    ----------
    layer : SpectralConv with ``C_out == C_in``
    shape : int or tuple of ints
    whole : bool, optional
    hermitian : bool
        Use the Hermitian solver (real ascending eigenvalues, unitary ``v``); for layers whose
        per-frequency matrix is Hermitian, e.g. ``compose(layer.T, layer)`` of real weights.

    Returns
    -------
    w : ndarray [shape=(*freq, C)]
    v : ndarray [shape=(*freq, C, C)]

    Examples
    --------
    >>> import numpy as np
    >>> from specconv.kernels import eig, pointwise
    >>> w, v = eig(pointwise(np.array([[2.0, 1.0], [1.0, 2.0]])), 4, hermitian=True)
    >>> np.round(w[0].real, 12)
    array([1., 3.])
    """
    check_is_layer("layer", layer)
    if layer.out_channels != layer.in_channels:
        raise ValueError(
            f"eig needs a square layer, got {layer.in_channels} -> {layer.out_channels} "
            "channels; use svd."
        )
    hermitian = as_bool("hermitian", hermitian)
    H = layer.frequency_response(shape, whole=whole)
    return np.linalg.eigh(H) if hermitian else np.linalg.eig(H)


# --------------------------------------------------------------------------------------------
# FIR design from per-frequency matrices, inversion


def _scipy_window(window, n, name="window", fftbins=False):
    """scipy's window ``window`` (a name or a (name, parameter...) tuple) of ``n`` taps."""
    import scipy.signal

    try:
        return scipy.signal.get_window(window, n, fftbins=fftbins)
    except (TypeError, ValueError, IndexError, KeyError) as err:
        raise ValueError(
            f"{name} must be a window scipy.signal.get_window knows (e.g. 'hann' or "
            f"('tukey', 0.5)), got {window!r}: {err}"
        ) from None


def _window_taps(window, n, name="window"):
    if window is None:
        return np.ones(n)
    if isinstance(window, (str, tuple)):
        return _scipy_window(window, n, name)
    try:
        w = np.asarray(window, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(
            f"{name} must be None, a window name, a tuple or an array of {n} real "
            f"taps, got {window!r}."
        ) from None
    if w.shape != (n,):
        raise ValueError(f"{name} given as an array must have shape ({n},), got {w.shape}.")
    return w


def from_response(
    H: ArrayLike,
    n_taps: IntOrTuple,
    *,
    shape: IntOrTuple | None = None,
    delay: IntOrTuple | None = None,
    window: Window | None = None,
    mode: FirMode = "full",
    groups: int = 1,
    whole: bool = False,
    padding_mode: PaddingMode = "zeros",
) -> SpectralConv:
    """An FIR layer whose matrix approximates ``H(f)`` at every frequency.

    PyTorch conv-layer semantics for the returned layer. ``H`` is sampled on a DFT grid; the
    impulse response ``h = IDFT(H)`` is read at lags ``−delay ... n_taps − 1 − delay``
    (circularly), shifted by ``delay`` to be causal, and windowed.

    Parameters
    ----------
    H : array_like, complex [shape=(*freq, C_out, C_in)]
        In the convention of :meth:`SpectralConv.frequency_response`: ``H`` is the DFT of the
        causal impulse response applied by true convolution. Half spectrum (``rfft`` order on
        the last axis, real taps) unless ``whole``.
    n_taps : int or tuple of ints
        FIR length per axis, at most the DFT length.
    shape : int or tuple of ints, optional
        DFT shape; default: ``freq`` with the last axis ``2·(n − 1)`` for a half spectrum.
    delay : int or tuple of ints, optional
        Modelling delay: how many samples of the response before lag 0 are kept. Default
        ``n_taps // 2`` (centred).
    window : None, str, tuple or array, optional
        Applied to the ``n_taps`` taps (``scipy.signal.get_window`` names, symmetric; per axis
        as an outer product). None: rectangular (plain truncation).
    mode : {"full", "causal", "same"}
        Output alignment of the layer. "full": the causal FIR ``h_D`` by full convolution,
        output ``n + n_taps − 1`` long and delayed by ``delay``. "causal": the first ``n``
        samples of "full" (a real-time filter). "same": the delay removed,
        output as long as the input and aligned with it (an acausal filter; for
        ``delay = n_taps // 2`` this is ``padding="same"``).
    groups : int
        Keep only the ``groups`` diagonal blocks of ``H`` (block-diagonal layer).
    whole : bool
        ``H`` holds every frequency (complex taps).
    padding_mode : str
        The returned layer's padding mode.

    Returns
    -------
    layer : SpectralConv [weight shape=(C_out, C_in/groups, *n_taps)]
        Its taps are the windowed ``h_D`` flipped (cross-correlation): recover the causal FIR
        as ``layer.weight[..., ::-1]``.

    See Also
    --------
    inverse : regularized inverse of a layer, built with this.
    estimate_transfer : measured ``H`` from data.

    Examples
    --------
    >>> import numpy as np
    >>> from specconv.kernels import from_response
    >>> h = np.array([1.0, 0.5, 0.25])
    >>> H = np.fft.rfft(h, 8)[:, None, None]           # a 1 x 1 response on 5 frequencies
    >>> layer = from_response(H, 3, delay=0)
    >>> layer.weight[0, 0, ::-1]                       # the causal FIR again
    array([1.  , 0.5 , 0.25])
    >>> layer(np.array([[1.0, 0.0, 0.0]]))             # full convolution with h
    array([[1.  , 0.5 , 0.25, 0.  , 0.  ]])
    """
    H = as_array("H", H)
    if H.ndim < 3:
        raise ValueError(f"H must have shape (*freq, C_out, C_in), got shape {H.shape}.")
    if not isinstance(whole, (bool, np.bool_)):
        raise TypeError(f"whole must be a bool, got {type(whole).__name__} {whole!r}.")
    if H.dtype.kind not in "fc":
        raise TypeError(f"H must be a float or complex array, got dtype {H.dtype}.")
    mode = check_option("mode", mode, ("full", "causal", "same"))
    check_option("padding_mode", padding_mode, PADDING_MODES)
    d = H.ndim - 2
    freq = H.shape[:d]
    if shape is None:
        shape = freq if whole else freq[:-1] + (2 * (freq[-1] - 1),)
    shape = as_tuple("shape", shape, d)
    check_length(shape, "DFT", "shape")
    expect = shape if whole else shape[:-1] + (shape[-1] // 2 + 1,)
    if freq != expect:
        raise ValueError(
            f"H has frequency axes {freq}, which do not match shape {shape} "
            f"({'whole' if whole else 'half'} spectrum expects {expect})."
        )
    n_taps = as_tuple("n_taps", n_taps, d)
    if any(t > n for t, n in zip(n_taps, shape)):
        raise ValueError(f"n_taps {n_taps} must be at most the DFT shape {shape}.")
    delay = (
        tuple(t // 2 for t in n_taps) if delay is None else as_tuple("delay", delay, d, minimum=0)
    )
    if any(D >= t for D, t in zip(delay, n_taps)):
        raise ValueError(f"delay {delay} must be smaller than n_taps {n_taps}.")
    C_out, C_in = H.shape[-2:]
    G = check_groups(groups, C_in, C_out)
    Hm = np.moveaxis(H, (-2, -1), (0, 1))  # (C_out, C_in, *freq)
    axes = tuple(range(2, 2 + d))
    h = fft.ifftn(Hm, axes=axes) if whole else fft.irfftn(Hm, s=shape, axes=axes)
    for ax, D in zip(axes, delay):
        h = np.roll(h, D, axis=ax)
    h = h[(Ellipsis,) + tuple(slice(0, t) for t in n_taps)]
    if isinstance(window, np.ndarray) and d > 1:
        raise ValueError("window as an array is only supported for 1-D responses.")
    for ax, t in zip(axes, n_taps):
        w = _window_taps(window, t)
        h = h * w.reshape((-1,) + (1,) * (2 + d - 1 - ax))
    co, ci = C_out // G, C_in // G
    blocks = [h[g * co : (g + 1) * co, g * ci : (g + 1) * ci] for g in range(G)]
    weight = np.concatenate(blocks)[(Ellipsis,) + (slice(None, None, -1),) * d]
    pads = _alignment_pads(n_taps, delay, mode)
    return from_standard_form(
        StandardForm(
            np.ascontiguousarray(weight),
            G,
            (1,) * d,
            pads,
            padding_mode,
            None,
            (1,) * d,
            "auto",
            "propagate",
        )
    )


def _freq_grid(shape, whole):
    """Normalised frequencies (cycles/sample) of the DFT grid, one broadcastable array per axis."""
    d = len(shape)
    grids = []
    for ax, n in enumerate(shape):
        f = np.fft.fftfreq(n) if (whole or ax < d - 1) else np.fft.rfftfreq(n)
        grids.append(f.reshape((-1,) + (1,) * (d - 1 - ax)))
    return grids


def _regularization(reg, shape, whole, freq_shape):
    if callable(reg):
        beta = reg(*_freq_grid(shape, whole))
    else:
        beta = reg
    try:
        beta = np.asarray(beta, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(
            f"reg must be a real number, an array of them or a callable returning one, got "
            f"{type(beta).__name__} {beta!r}."
        ) from None
    try:
        beta = np.broadcast_to(beta, freq_shape)
    except ValueError:
        raise ValueError(
            f"reg must be a scalar, an array broadcastable to the frequency grid {freq_shape} "
            f"or a callable of the normalised frequencies, got shape {beta.shape}."
        ) from None
    if np.any(beta < 0) or not np.all(np.isfinite(beta)):
        raise ValueError("reg must be finite and >= 0 at every frequency.")
    return beta


def _pinv_blocks(Hb, beta, rcond):
    """Tikhonov-regularized pseudo-inverse of a stack of matrices via their SVD."""
    U, s, Vh = np.linalg.svd(Hb, full_matrices=False)
    b = beta[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = np.where(b > 0, s / (s * s + b), 0.0)
        cut = rcond * s[..., :1]
        plain = np.where(s > cut, 1.0 / np.where(s > cut, s, 1.0), 0.0)
    gain = np.where(b > 0, gain, plain)
    return (np.conj(np.swapaxes(Vh, -1, -2)) * gain[..., None, :]) @ np.conj(np.swapaxes(U, -1, -2))


def inverse(
    layer: SpectralConv,
    n_taps: IntOrTuple,
    *,
    reg: float | ArrayLike | Callable[..., ArrayLike] = 0.0,
    delay: IntOrTuple | None = None,
    window: Window | None = ("tukey", 0.5),
    nfft: IntOrTuple | None = None,
    mode: FirMode = "full",
    rcond: float = 1e-10,
) -> SpectralConv:
    """A regularized inverse of ``layer`` as an FIR layer (deconvolution, crosstalk cancelling).

    PyTorch conv-layer semantics. At every frequency of an ``nfft`` grid,
    ``G(f) = (H^H H + β(f) I)⁻¹ H^H`` (Tikhonov; for wide ``H`` the equivalent
    ``H^H (H H^H + β I)⁻¹``), computed through the SVD as ``V diag(s / (s² + β)) U^H``; then
    :func:`from_response` turns ``G`` into ``n_taps`` taps with the modelling ``delay`` and
    ``window``. ``β = 0`` gives the Moore-Penrose pseudo-inverse (singular values below
    ``rcond · s_max`` dropped).

    Parameters
    ----------
    layer : SpectralConv
        The system to invert, ``C_out × C_in`` (stride 1).
    n_taps : int or tuple of ints
        Length of the inverse FIR.
    reg : float, array_like or callable
        ``β(f) >= 0`` in units of ``|H|²``: a scalar, an array on the frequency grid, or a
        callable taking the normalised frequencies (cycles/sample; one broadcastable array
        per axis, the last one ``rfftfreq``) and returning ``β``. Typical: small in the band
        to invert, large outside (frequencies where inverting would only boost noise).
    delay : int or tuple of ints, optional
        Modelling delay in samples (default ``n_taps // 2``): an inverse of a non-minimum-phase
        system is acausal; the delay keeps that much of its pre-response.
    window : None, str, tuple or array
        Taper of the FIR taps (see :func:`from_response`). The default, a Tukey window with
        cosine tapers over a quarter of the taps at each end, keeps the response around the
        delay untouched and damps the truncation ripple of responses that do not decay
        within ``n_taps`` (a sharp change of ``reg`` rings); None: rectangular.
    nfft : int or tuple of ints, optional
        Design grid; default: the fast length at least ``max(2·n_taps, span)``.
    mode : {"full", "causal", "same"}
        "full": the causal FIR, output delayed by ``delay``; "causal": its first ``n``
        samples; "same": delay removed, output aligned with the input (see
        :func:`from_response`).
    rcond : float
        Relative cut-off for the pseudo-inverse where ``β = 0``.

    Returns
    -------
    inv : SpectralConv [weight shape=(C_in, C_out/groups, *n_taps)], same groups

    Notes
    -----
    On the design grid ``G(f) H(f) = V diag(s²/(s²+β)) V^H``: the error against the identity
    (times the delay) is at most ``β / (s_min² + β)`` at each frequency, small where
    ``s_min² ≫ β``. Truncating to ``n_taps`` and windowing add an error that shrinks as the
    inverse's impulse response decays within the ``n_taps`` window.

    See Also
    --------
    svd : the singular values that decide where inversion is well-posed.

    Examples
    --------
    >>> import numpy as np
    >>> from specconv import SpectralConv
    >>> from specconv.kernels import compose, inverse
    >>> plant = SpectralConv(np.array([[[0.5, 1.0]]]), padding=1)   # y = x + 0.5 x[n-1], full
    >>> inv = inverse(plant, 64, delay=0, nfft=64, window=None)
    >>> np.round(inv.weight[0, 0, ::-1][:4], 6)                     # 1, -0.5, 0.25, -0.125
    array([ 1.   , -0.5  ,  0.25 , -0.125])
    """
    check_is_layer("layer", layer)
    if any(s != 1 for s in layer.stride):
        raise ValueError(f"inverse needs a stride-1 layer, got stride {layer.stride}.")
    d = layer.ndim
    n_taps = as_tuple("n_taps", n_taps, d)
    check_length([2 * t for t in n_taps], "design grid", "n_taps")
    span = kernel_span(layer.kernel_size, layer.dilation)
    if nfft is None:
        nfft = tuple(fft.next_fast_len(max(2 * t, e)) for t, e in zip(n_taps, span))
    nfft = as_tuple("nfft", nfft, d)
    check_length(nfft, "design grid", "nfft")
    check_memory(
        (layer.out_channels, layer.in_channels) + nfft, 16, "design grid", "n_taps and nfft"
    )
    rcond = as_real("rcond", rcond, minimum=0)
    if rcond > 1:  # relative to the largest singular value: above 1 drops every one
        raise ValueError(f"rcond must be in [0, 1], got {rcond!r}.")
    if any(n < max(e, t) for n, e, t in zip(nfft, span, n_taps)):
        raise ValueError(
            f"nfft {nfft} must be at least the layer's kernel span {span} and n_taps {n_taps}."
        )
    whole = layer.weight.dtype.kind == "c"
    H, blocks = _blocks(layer, nfft, whole)
    beta = _regularization(reg, nfft, whole, H.shape[:d])
    G = layer.groups
    inv = np.zeros(H.shape[:d] + (layer.in_channels, layer.out_channels), dtype=H.dtype)
    co, ci = layer.out_channels // G, layer.in_channels // G
    for g, Hb in enumerate(blocks):
        inv[..., g * ci : (g + 1) * ci, g * co : (g + 1) * co] = _pinv_blocks(Hb, beta, rcond)
    return from_response(
        inv, n_taps, shape=nfft, delay=delay, window=window, mode=mode, groups=G, whole=whole
    )


# --------------------------------------------------------------------------------------------
# estimation from data


@dataclass(frozen=True)
class TransferEstimate:
    """A Welch estimate of a MIMO transfer-function matrix (see :func:`estimate_transfer`).

    Attributes
    ----------
    freqs : ndarray [shape=(F,)]
        Frequencies in the units of ``fs``.
    H : ndarray, complex [shape=(F, C_out, C_in)]
        ``S_yx S_xx⁻¹`` (the H1 estimator), in the convention of
        :meth:`SpectralConv.frequency_response`.
    coherence : ndarray [shape=(F, C_out)]
        Multiple coherence of each output with all inputs, in [0, 1].
    sxx : ndarray [shape=(F, C_in, C_in)]
    syx : ndarray [shape=(F, C_out, C_in)]
    syy : ndarray [shape=(F, C_out)]
        Averaged (unscaled) auto- and cross-spectra ``E[X X^H]``, ``E[Y X^H]``, ``E[|Y|²]``.
    nperseg : int
    fs : float
    whole : bool
        Every frequency (complex signals, ``fftfreq`` order) instead of the half spectrum.
    """

    freqs: np.ndarray
    H: np.ndarray
    coherence: np.ndarray
    sxx: np.ndarray
    syx: np.ndarray
    syy: np.ndarray
    nperseg: int
    fs: float
    whole: bool = False

    def to_layer(
        self,
        n_taps: IntOrTuple,
        *,
        delay: IntOrTuple | None = None,
        window: Window | None = None,
        mode: FirMode = "full",
    ) -> SpectralConv:
        """The estimate as an FIR layer (:func:`from_response` on the ``nperseg`` grid).

        Examples
        --------
        >>> import numpy as np
        >>> from specconv import SpectralConv
        >>> from specconv.kernels import estimate_transfer
        >>> rng = np.random.default_rng(0)
        >>> true = SpectralConv(np.array([[[0.0, 1.0, 0.5]]]), padding="same")
        >>> x = rng.standard_normal((1, 4096))
        >>> est = estimate_transfer(x, true(x), nperseg=128)
        >>> np.round(est.to_layer(3, mode="same").weight, 2)
        array([[[0. , 1. , 0.5]]])
        """
        return from_response(
            self.H,
            n_taps,
            shape=self.nperseg,
            delay=delay,
            window=window,
            mode=mode,
            whole=self.whole,
        )


def _segments(a, nperseg, step, win, detrend, whole):
    """Windowed segment spectra of ``a`` (B, C, N) as (B·S, F, C)."""
    starts = np.arange(0, a.shape[-1] - nperseg + 1, step)
    seg = np.lib.stride_tricks.sliding_window_view(a, nperseg, axis=-1)[..., starts, :]
    if detrend:
        seg = seg - seg.mean(axis=-1, keepdims=True)
    seg = seg * win
    spec = fft.fftn(seg, axes=(-1,)) if whole else fft.rfftn(seg, axes=(-1,))  # (B, C, S, F)
    spec = np.moveaxis(spec, 1, -1)  # (B, S, F, C)
    return spec.reshape((-1,) + spec.shape[2:])


def estimate_transfer(
    x: ArrayLike,
    y: ArrayLike,
    *,
    nperseg: int = 256,
    noverlap: int | None = None,
    window: Window = "hann",
    fs: float = 1.0,
    reg: float = 0.0,
    detrend: bool = False,
) -> TransferEstimate:
    """Estimate the MIMO transfer-function matrix ``H(f) = S_yx(f) S_xx(f)⁻¹`` (Welch).

    ``x`` and ``y`` are cut into overlapping windowed segments; the cross-spectral matrices
    are averaged over the segments (and the batch); ``H`` is the H1 estimator, unbiased by
    noise on ``y``. The multiple coherence ``γ²_o = (H S_xx H^H)_oo / S_yy,oo`` tells how much
    of each output is explained linearly by all inputs together.

    Parameters
    ----------
    x : array_like [shape=(C_in, N) or (B, C_in, N)]
        The inputs; at least ``C_in`` segments are needed (more for a stable estimate).
        Complex ``x`` or ``y`` give every frequency (``whole``) and complex taps.
    y : array_like [shape=(C_out, N) or (B, C_out, N)]
        The outputs, sample-aligned with ``x`` (same ``N`` and batch).
    nperseg : int
        Segment length: the frequency resolution and the longest FIR recoverable.
    noverlap : int, optional
        Default ``nperseg // 2``.
    window : str, tuple or array
        Segment window (``scipy.signal.get_window``, periodic).
    fs : float
        Sampling rate, only for ``freqs``.
    reg : float
        Diagonal loading ``reg · trace(S_xx)/C_in`` added to ``S_xx`` (for ill-conditioned,
        e.g. correlated, inputs). 0 by default.
    detrend : bool
        Remove each segment's mean first.

    Returns
    -------
    estimate : TransferEstimate
        ``.H``, ``.coherence``, the spectra, and ``.to_layer(n_taps, ...)`` for an FIR layer.

    Notes
    -----
    For a system with an FIR of ``L`` taps the segment edges bias the H1 estimate by roughly
    ``L / nperseg`` (leakage from samples outside each window); use ``nperseg`` well above
    the system's length.

    Examples
    --------
    >>> import numpy as np
    >>> from specconv import SpectralConv
    >>> from specconv.kernels import estimate_transfer
    >>> rng = np.random.default_rng(0)
    >>> mix = SpectralConv(np.array([[[1.0], [0.5]], [[0.0], [2.0]]]))   # a 2 x 2 matrix
    >>> x = rng.standard_normal((2, 2048))
    >>> est = estimate_transfer(x, mix(x), nperseg=64)
    >>> np.round(est.H[5].real, 6) + 0.0, bool(np.allclose(est.coherence, 1))
    (array([[1. , 0.5],
           [0. , 2. ]]), True)
    """
    x = as_array("x", x)
    y = as_array("y", y)
    if x.ndim not in (2, 3) or y.ndim != x.ndim:
        raise ValueError(
            f"x and y must both have shape (C, N) or (B, C, N), got {x.shape} and {y.shape}."
        )
    if x.shape[-1] != y.shape[-1] or x.shape[:-2] != y.shape[:-2]:
        raise ValueError(
            f"x and y must have the same length and batch, got shapes {x.shape} and {y.shape}."
        )
    nperseg = as_int("nperseg", nperseg)
    detrend = as_bool("detrend", detrend)
    fs = as_real("fs", fs, positive=True)
    reg = as_real("reg", reg, minimum=0)
    if nperseg < 2 or nperseg > x.shape[-1]:
        raise ValueError(
            f"nperseg must be an int between 2 and the signal length {x.shape[-1]}, got "
            f"{nperseg!r}."
        )
    noverlap = nperseg // 2 if noverlap is None else as_int("noverlap", noverlap)
    if not 0 <= noverlap < nperseg:
        raise ValueError(f"noverlap must be an int in [0, nperseg), got {noverlap!r}.")
    if isinstance(window, (str, tuple)):
        win = _scipy_window(window, nperseg, fftbins=True)
    else:
        win = _window_taps(window, nperseg)
    step = nperseg - noverlap
    xb, yb = (x, y) if x.ndim == 3 else (x[None], y[None])
    whole = x.dtype.kind == "c" or y.dtype.kind == "c"
    X = _segments(xb, nperseg, step, win, detrend, whole)
    Y = _segments(yb, nperseg, step, win, detrend, whole)
    n_seg = X.shape[0]
    C_in = X.shape[-1]
    if n_seg < C_in:
        raise ValueError(
            f"only {n_seg} segment(s) for {C_in} inputs: S_xx is singular; use a shorter "
            "nperseg or more data."
        )
    sxx = np.einsum("sfi,sfj->fij", X, X.conj()) / n_seg
    syx = np.einsum("sfo,sfj->foj", Y, X.conj()) / n_seg
    syy = np.einsum("sfo,sfo->fo", Y, Y.conj()).real / n_seg
    a = sxx
    if reg:
        load = reg * np.trace(sxx, axis1=-2, axis2=-1).real / C_in
        a = sxx + load[:, None, None] * np.eye(C_in)
    # H S_xx = S_yx  <=>  S_xx^H H^H = S_yx^H, and S_xx is Hermitian
    H = np.conj(np.swapaxes(np.linalg.solve(a, np.conj(np.swapaxes(syx, -1, -2))), -1, -2))
    explained = np.einsum("foj,foj->fo", H, syx.conj()).real
    with np.errstate(divide="ignore", invalid="ignore"):
        coh = np.where(syy > 0, explained / syy, 0.0)
    coh = np.clip(coh, 0.0, 1.0)
    freqs = (np.fft.fftfreq if whole else np.fft.rfftfreq)(nperseg, d=1.0 / fs)
    return TransferEstimate(freqs, H, coh, sxx, syx, syy, int(nperseg), float(fs), whole)
