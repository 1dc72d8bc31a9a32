"""EEG with the kernel matrix: filter banks, spatial filters, both in one layer.

A multichannel EEG recording ``(C, n_times)`` is a vector-valued signal. Three kinds of layers
act on it:

* temporal filters: a *filter bank* sends every channel through ``K`` band-pass FIRs -- a
  depthwise multiplier layer (``groups=C``, weight ``(C·K, 1, taps)``) whose numbers equal
  :func:`mne.filter.filter_data` for the same FIR (:func:`filter_bank`, :func:`bandpass_firs`);
* spatial filters: any ``C_out × C_in`` matrix applied at every sample -- re-referencing
  (:func:`rereference_matrix`), a nearest-neighbour surface Laplacian
  (:func:`laplacian_matrix`), MNE's spherical-spline current source density
  (:func:`csd_matrix`);
* their product: :func:`spatiotemporal_layer` composes a spatial matrix and a temporal layer
  into ONE layer (:func:`specconv.kernels.compose`), equal to applying them in turn.

MNE extends the signal beyond its edges by an *odd* reflection (``pad="reflect_limited"``,
its default), which no padding mode of a layer expresses; :func:`apply_like_mne` pads the
MNE way and applies the layer without its own padding. :func:`apply_to_mne` does the same on
MNE objects and returns MNE objects: ``raw.filter`` / ``epochs.filter`` for any layer, with
the same picks, annotation segments and edges, and named channels for filter banks
(:func:`output_names`).

MNE is optional (``pip install "specconv[eeg]"``): only :func:`bandpass_firs`,
:func:`filter_bank`, :func:`montage_positions`, :func:`csd_matrix` and :func:`apply_to_mne`
import it.
"""

from __future__ import annotations

import numbers

import numpy as np

from .._optional import soft_import
from .._validate import as_array, check_memory, check_option
from ..kernels import compose, fir_layer, pointwise, side_pads, without_padding
from ..layers import SpectralConv
from ._eeg_mne import apply_to_mne, band_label, mne_pad, output_names

__all__ = [
    "apply_to_mne",
    "mne_pad",
    "output_names",
    "band_label",
    "bandpass_firs",
    "filter_bank",
    "apply_like_mne",
    "rereference_matrix",
    "laplacian_matrix",
    "montage_positions",
    "csd_matrix",
    "spatiotemporal_layer",
]

PHASES = ("zero", "zero-double", "minimum", "minimum-half")
#: MNE's ``pad`` values a layer's padding mode reproduces exactly
_PAD_MODES = {"constant": "zeros", "edge": "replicate", "wrap": "circular"}


def _mne(purpose):
    return soft_import("mne", "eeg", purpose=purpose)


def _check_bands(bands):
    try:
        bands = [tuple(b) for b in bands]
    except TypeError:
        raise TypeError(
            f"bands must be a sequence of (l_freq, h_freq) pairs, got {bands!r}."
        ) from None
    if not bands or any(len(b) != 2 for b in bands):
        raise ValueError(
            f"bands must be a non-empty sequence of (l_freq, h_freq) pairs, got {bands!r}."
        )
    for lo, hi in bands:
        if lo is None and hi is None:
            raise ValueError("a band needs l_freq or h_freq (got (None, None)).")
    return bands


def bandpass_firs(
    sfreq,
    bands,
    *,
    phase="zero",
    filter_length="auto",
    l_trans_bandwidth="auto",
    h_trans_bandwidth="auto",
    fir_window="hamming",
    fir_design="firwin",
):
    """MNE's FIR for each band, on a common length, as applied by :func:`mne.filter.filter_data`.

    Each FIR comes from :func:`mne.filter.create_filter` with the given options; for
    ``phase="zero-double"`` it is the FIR convolved with its reverse (what MNE applies).
    Shorter FIRs are zero-padded so all share one length and one alignment: centred for the
    zero-phase kinds, at the end for the minimum-phase (causal) kinds.

    Parameters
    ----------
    sfreq : float
        Sampling rate in Hz.
    bands : sequence of (l_freq, h_freq)
        Pass bands in Hz; ``None`` for one edge gives a high-pass (``(l, None)``) or a
        low-pass (``(None, h)``).
    phase : {"zero", "zero-double", "minimum", "minimum-half"}
    filter_length, l_trans_bandwidth, h_trans_bandwidth, fir_window, fir_design
        As :func:`mne.filter.create_filter`.

    Returns
    -------
    firs : ndarray [shape=(n_bands, taps)]
        ``firs[b]`` is applied by true convolution.
    delay : int
        The lag MNE moves to lag 0: ``(taps − 1) // 2`` for zero phase, 0 for minimum phase.

    Examples
    --------
    >>> from specconv.apps.eeg import bandpass_firs
    >>> firs, delay = bandpass_firs(250.0, [(8, 13), (13, 30)])
    >>> firs.shape, delay
    ((2, 413), 206)
    """
    mne = _mne("designing FIR filters with MNE")
    phase = check_option("phase", phase, PHASES)
    bands = _check_bands(bands)
    firs = []
    for lo, hi in bands:
        h = mne.filter.create_filter(
            None,
            float(sfreq),
            lo,
            hi,
            filter_length=filter_length,
            l_trans_bandwidth=l_trans_bandwidth,
            h_trans_bandwidth=h_trans_bandwidth,
            method="fir",
            phase=phase,
            fir_window=fir_window,
            fir_design=fir_design,
            verbose=False,
        )
        if phase == "zero-double":
            h = np.convolve(h, h[::-1])
        firs.append(np.asarray(h, dtype=float))
    taps = max(len(h) for h in firs)
    zero_phase = phase.startswith("zero")
    out = np.zeros((len(firs), taps))
    for b, h in enumerate(firs):
        # zero-phase FIRs have odd lengths, so centring them keeps their centres aligned
        start = (taps - len(h)) // 2 if zero_phase else 0
        out[b, start : start + len(h)] = h
    return out, ((taps - 1) // 2 if zero_phase else 0)


def filter_bank(
    sfreq,
    bands,
    n_channels,
    *,
    phase="zero",
    pad="constant",
    filter_length="auto",
    l_trans_bandwidth="auto",
    h_trans_bandwidth="auto",
    fir_window="hamming",
    fir_design="firwin",
):
    """A filter-bank layer: every channel through every band's FIR (MNE's design).

    A depthwise multiplier layer, PyTorch conv semantics: ``groups = n_channels``, weight
    ``(n_channels · n_bands, 1, taps)``. Output channel ``c · n_bands + b`` is channel ``c``
    filtered by band ``b``. The output is as long as the input and aligned as MNE aligns it
    (zero-phase: no delay; minimum phase: causal). Its numbers equal
    ``mne.filter.filter_data(x, sfreq, l_freq, h_freq, method="fir", phase=phase, pad=pad)``
    for each band.

    Parameters
    ----------
    sfreq : float
    bands : sequence of (l_freq, h_freq)
        See :func:`bandpass_firs`.
    n_channels : int
    phase : {"zero", "zero-double", "minimum", "minimum-half"}
    pad : {"constant", "edge", "wrap"}
        MNE's edge extension, as the layer's padding mode ("zeros", "replicate",
        "circular"). For MNE's default odd reflection ("reflect_limited") build the bank with
        any of these and apply it with :func:`apply_like_mne`.
    filter_length, l_trans_bandwidth, h_trans_bandwidth, fir_window, fir_design
        As :func:`mne.filter.create_filter`.

    Returns
    -------
    layer : SpectralConv [in_channels=n_channels, out_channels=n_channels·n_bands]

    See Also
    --------
    spatiotemporal_layer : compose the bank with a spatial filter into one layer.
    apply_like_mne : apply with MNE's default odd-reflection edges.

    Examples
    --------
    >>> import numpy as np
    >>> from specconv.apps.eeg import filter_bank
    >>> bank = filter_bank(250.0, [(4, 8), (8, 13), (13, 30)], n_channels=2)
    >>> bank.groups, bank.weight.shape
    (2, (6, 1, 413))
    >>> bank(np.zeros((2, 1000))).shape
    (6, 1000)
    """
    if (
        not isinstance(n_channels, numbers.Integral)
        or isinstance(n_channels, bool)
        or n_channels < 1
    ):
        raise ValueError(f"n_channels must be a positive int, got {n_channels!r}.")
    if pad in ("reflect_limited", "reflect"):
        raise ValueError(
            f"pad={pad!r} (MNE's odd reflection) is no padding mode of a layer: build the bank "
            "with pad='constant' and apply it with apply_like_mne(layer, x, pad="
            f"{pad!r})."
        )
    pad = check_option("pad", pad, tuple(_PAD_MODES))
    firs, delay = bandpass_firs(
        sfreq,
        bands,
        phase=phase,
        filter_length=filter_length,
        l_trans_bandwidth=l_trans_bandwidth,
        h_trans_bandwidth=h_trans_bandwidth,
        fir_window=fir_window,
        fir_design=fir_design,
    )
    h = np.tile(firs, (int(n_channels), 1))[:, np.newaxis, :]  # (C·K, 1, taps), channel-major
    mode = "same" if phase.startswith("zero") else "causal"
    return fir_layer(
        h, mode=mode, delay=delay, groups=int(n_channels), padding_mode=_PAD_MODES[pad]
    )


def apply_like_mne(layer, x, *, pad="reflect_limited"):
    """Apply a 1-D layer with MNE's edge extension instead of the layer's own padding.

    The signal is extended by the layer's padding (:func:`specconv.kernels.side_pads`) the
    way :func:`mne.filter.filter_data` extends it, then the layer runs without padding. With
    a :func:`filter_bank` this reproduces ``filter_data`` with the same ``pad``, including its
    default odd reflection; with a :func:`spatiotemporal_layer` it also holds, since MNE's
    extensions are per-sample linear maps that commute with channel mixing.

    Parameters
    ----------
    layer : SpectralConv
        One spatial dimension, stride 1.
    x : array_like [shape=(C_in, n_times) or (B, C_in, n_times)]
    pad : {"reflect_limited", "reflect", "constant", "edge", "wrap", ...}
        MNE's ``pad``: "reflect_limited" (default) and "reflect" are odd reflections
        (``2·x[0] − x[k]``; "reflect_limited" puts zeros beyond one signal length); any other
        value is a :func:`numpy.pad` mode. As MNE, at most ``n_times − 1`` samples are
        extended per side; the layer sees zeros beyond.

    Returns
    -------
    y : ndarray [shape=(C_out, n_times') or (B, C_out, n_times')]

    Examples
    --------
    >>> import numpy as np
    >>> from specconv.kernels import fir_layer
    >>> from specconv.apps.eeg import apply_like_mne
    >>> smooth = fir_layer(np.full((1, 1, 3), 1 / 3), mode="same", delay=1)
    >>> x = np.array([[1.0, 2.0, 3.0, 4.0]])
    >>> apply_like_mne(smooth, x)        # a ramp stays a ramp under odd reflection
    array([[1., 2., 3., 4.]])
    """
    if not isinstance(layer, SpectralConv):
        raise TypeError(f"layer must be a SpectralConv, got {type(layer).__name__}.")
    if layer.ndim != 1:
        raise ValueError(f"apply_like_mne needs a 1-D layer, got {layer.ndim} spatial dims.")
    if not isinstance(pad, str):
        raise TypeError(f"pad must be a str, got {pad!r}.")
    x = as_array("x", x)
    ((lo, hi),) = side_pads(layer)
    padded = mne_pad(x, lo, hi, pad)
    return without_padding(layer)(padded)


# -- spatial filters -------------------------------------------------------------------------


def rereference_matrix(n_channels, ref="average"):
    """The re-referencing matrix ``R``: ``R @ x`` subtracts the reference from every channel.

    Parameters
    ----------
    n_channels : int
    ref : "average", int or sequence of int
        "average": the mean of all channels (common average reference); indices: the mean of
        those channels (one index: a single-channel reference, which becomes zero).

    Returns
    -------
    R : ndarray [shape=(n_channels, n_channels)]
        ``I − 1 wᵀ`` with ``w`` the reference weights; as a layer: ``pointwise(R)``.

    Examples
    --------
    >>> from specconv.apps.eeg import rereference_matrix
    >>> rereference_matrix(3, ref=2)
    array([[ 1.,  0., -1.],
           [ 0.,  1., -1.],
           [ 0.,  0.,  0.]])
    """
    if (
        not isinstance(n_channels, numbers.Integral)
        or isinstance(n_channels, bool)
        or n_channels < 1
    ):
        raise ValueError(f"n_channels must be a positive int, got {n_channels!r}.")
    n_channels = int(n_channels)
    check_memory((n_channels, n_channels), 8, "matrix", "n_channels")
    w = np.zeros(n_channels)
    if isinstance(ref, str):
        check_option("ref", ref, ("average",))
        w[:] = 1.0 / n_channels
    else:
        try:
            idx = np.atleast_1d(np.asarray(ref))
        except (TypeError, ValueError):  # ragged lists
            idx = np.array([], dtype=float)
        if (
            idx.dtype.kind not in "iu"
            or idx.ndim != 1
            or idx.size == 0
            or np.any((idx < 0) | (idx >= n_channels))
        ):
            raise ValueError(
                f"ref must be 'average' or channel indices in [0, {n_channels}), got {ref!r}."
            )
        np.add.at(w, idx, 1.0 / idx.size)
    return np.eye(n_channels) - np.outer(np.ones(n_channels), w)


def laplacian_matrix(positions, n_neighbors=4):
    """A nearest-neighbour (Hjorth) surface Laplacian: each channel minus its neighbours' mean.

    Parameters
    ----------
    positions : array_like [shape=(C, 3)]
        Electrode positions (any unit), e.g. from :func:`montage_positions`.
    n_neighbors : int
        Neighbours per channel, by Euclidean distance (4 on a 10-20 montage).

    Returns
    -------
    L : ndarray [shape=(C, C)]
        Rows sum to zero, so ``L`` is reference-free.

    See Also
    --------
    csd_matrix : MNE's spherical-spline current source density (a smoother Laplacian).

    Examples
    --------
    >>> import numpy as np
    >>> from specconv.apps.eeg import laplacian_matrix
    >>> pos = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0]], float)   # a line
    >>> laplacian_matrix(pos, n_neighbors=2)[1]
    array([-0.5,  1. , -0.5,  0. ])
    """
    pos = as_array("positions", positions)
    if pos.dtype.kind == "c":
        raise TypeError(f"positions must be real coordinates, got dtype {pos.dtype}.")
    pos = pos.astype(float)
    if pos.ndim != 2 or pos.shape[1] != 3 or pos.shape[0] < 2:
        raise ValueError(f"positions must have shape (C, 3) with C >= 2, got {pos.shape}.")
    C = pos.shape[0]
    if not isinstance(n_neighbors, numbers.Integral) or not 1 <= n_neighbors < C:
        raise ValueError(f"n_neighbors must be an int in [1, {C - 1}], got {n_neighbors!r}.")
    dist = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    np.fill_diagonal(dist, np.inf)
    near = np.argsort(dist, axis=1, kind="stable")[:, :n_neighbors]
    L = np.eye(C)
    np.put_along_axis(L, near, -1.0 / n_neighbors, axis=1)
    return L


def _default_montage(mne):
    names = mne.channels.get_builtin_montages()
    # 'standard_1020' is deprecated in recent MNE in favour of the same 'colin27_1020'
    return "colin27_1020" if "colin27_1020" in names else "standard_1020"


def montage_positions(ch_names, montage=None):
    """Electrode positions of ``ch_names`` on a built-in MNE montage (case-insensitive).

    Parameters
    ----------
    ch_names : sequence of str
    montage : str, optional
        A name from :func:`mne.channels.get_builtin_montages`; default the 10-20 montage
        ("colin27_1020", formerly "standard_1020").

    Returns
    -------
    positions : ndarray [shape=(C, 3)], metres in MNE's head frame

    Examples
    --------
    >>> from specconv.apps.eeg import montage_positions
    >>> montage_positions(["Cz", "Fz", "Pz"]).shape
    (3, 3)
    """
    mne = _mne("electrode positions")
    name = _default_montage(mne) if montage is None else montage
    pos = mne.channels.make_standard_montage(name).get_positions()["ch_pos"]
    lookup = {k.lower(): v for k, v in pos.items()}
    missing = [c for c in ch_names if c.lower() not in lookup]
    if missing:
        raise ValueError(f"channels {missing} are not on the montage {name!r}.")
    return np.array([lookup[c.lower()] for c in ch_names], dtype=float)


def csd_matrix(info, **kwargs):
    """MNE's current source density (spherical-spline surface Laplacian) as a ``C × C`` matrix.

    :func:`mne.preprocessing.compute_current_source_density` is linear in the data; this
    applies it to the identity, so ``csd_matrix(info) @ data`` equals its output on the EEG
    channels of ``info`` (which need positions, e.g. ``raw.set_montage(...)``).

    Parameters
    ----------
    info : mne.Info
        EEG channels with positions; non-EEG channels are dropped.
    **kwargs
        Passed to ``compute_current_source_density`` (``sphere``, ``lambda2``,
        ``stiffness``, ``n_legendre_terms``).

    Returns
    -------
    M : ndarray [shape=(C_eeg, C_eeg)]

    Examples
    --------
    >>> import mne
    >>> import numpy as np
    >>> from specconv.apps.eeg import csd_matrix
    >>> info = mne.create_info(["Fz", "Cz", "Pz", "C3", "C4", "F3", "F4"], 250.0, "eeg")
    >>> info = info.set_montage("colin27_1020")
    >>> M = csd_matrix(info, sphere=(0.0, 0.0, 0.0, 0.095))   # a fixed head sphere (metres)
    >>> M.shape, bool(np.allclose(M.sum(axis=1), 0, atol=1e-6 * np.abs(M).max()))
    ((7, 7), True)
    """
    mne = _mne("the current source density")
    picks = mne.pick_types(info, eeg=True, exclude=[])
    eeg_info = mne.pick_info(info, picks)
    n = len(picks)
    probe = mne.EvokedArray(np.eye(n), eeg_info, verbose=False)
    out = mne.preprocessing.compute_current_source_density(probe, verbose=False, **kwargs)
    return np.array(out.data)


def spatiotemporal_layer(spatial, temporal):
    """ONE layer applying a spatial filter, then a temporal layer: ``temporal(spatial @ x)``.

    The ``C_out × C_in`` matrix (a ``1 × 1`` layer) composed with the temporal layer by
    :func:`specconv.kernels.compose`: exact for every padding mode of the temporal layer,
    since padding commutes with per-sample channel mixing.

    Parameters
    ----------
    spatial : array_like [shape=(C_mid, C_in)] or SpectralConv
        A matrix (re-reference, Laplacian, CSD, unmixing, ...) or a pointwise layer.
    temporal : SpectralConv
        A layer on ``C_mid`` channels, e.g. a :func:`filter_bank`.

    Returns
    -------
    layer : SpectralConv [in_channels=C_in]
        ``groups=1``: each output mixes the channels the spatial filter mixes.

    Examples
    --------
    >>> import numpy as np
    >>> from specconv.kernels import fir_layer
    >>> from specconv.apps.eeg import rereference_matrix, spatiotemporal_layer
    >>> rng = np.random.default_rng(0)
    >>> smooth = fir_layer(np.full((3, 1, 5), 0.2), mode="same", delay=2, groups=3)
    >>> R = rereference_matrix(3)
    >>> one = spatiotemporal_layer(R, smooth)
    >>> x = rng.standard_normal((3, 100))
    >>> bool(np.allclose(one(x), smooth(R @ x)))
    True
    """
    if not isinstance(temporal, SpectralConv):
        raise TypeError(f"temporal must be a SpectralConv, got {type(temporal).__name__}.")
    if not isinstance(spatial, SpectralConv):
        spatial = pointwise(spatial, ndim=temporal.ndim)
    return compose(temporal, spatial)
