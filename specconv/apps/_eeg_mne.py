"""MNE in, MNE out: apply a layer to a Raw, Epochs or Evoked as ``inst.filter`` would.

:func:`apply_to_mne` is the MNE-native entry point of :mod:`specconv.apps.eeg`. It follows
``raw.filter`` / ``epochs.filter`` step by step, so that a layer holding the same FIR gives the
same numbers:

* picks: by default every data channel, bad ones included (MNE's ``"data_or_ica"``, no
  exclusion); other channels (stim, misc) pass through untouched;
* Raw: the good segments between ``skip_by_annotation`` annotations are filtered one by
  one, each extended at its edges as ``filter_data`` extends it (``pad``, by default the odd
  reflection "reflect_limited" for Raw and "edge" for Epochs/Evoked, limited to the segment's
  length minus one, zeros beyond); samples inside skipped annotations are left as they are;
* Epochs/Evoked: every epoch separately, the same edge extension.

When the layer changes the channel count, the output channels get meaningful names and
channel info (see :func:`output_names` and :func:`apply_to_mne`'s Notes).

MNE's private API is used in one place only, :func:`_good_segments`, with a version guard and
a public-API fallback.
"""

from __future__ import annotations

import contextlib
import logging
import warnings

import numpy as np

from .._optional import soft_import
from .._validate import check_option
from ..io._mne_compat import annotation_segments
from ..kernels import side_pads, without_padding
from ..layers import SpectralConv

__all__ = ["apply_to_mne", "band_label", "output_names"]

#: Default skip_by_annotation of ``raw.filter``.
SKIP_DEFAULT = ("edge", "bad_acq_skip")
#: Edge extensions the out-of-core path (``preload=False``) computes from a segment's ends.
_STREAMABLE_PADS = ("reflect_limited", "reflect", "edge", "constant", "wrap")
#: Channel-info fields that travel from the channel an output derives from.
_CH_FIELDS = ("loc", "unit", "unit_mul", "coord_frame", "kind", "coil_type")
#: Info fields describing the recording, carried to a rebuilt Info when they can be set.
_RECORDING_FIELDS = (
    "line_freq",
    "description",
    "experimenter",
    "subject_info",
    "device_info",
    "dev_head_t",
)


def _mne(purpose="MNE objects"):
    return soft_import("mne", "eeg", purpose=purpose)


# -- names ------------------------------------------------------------------------------------
def band_label(band):
    """A short label for a pass band: ``"8-13Hz"``, ``"lp4Hz"`` (low-pass), ``"hp30Hz"``.

    Parameters
    ----------
    band : (l_freq, h_freq) or str
        A band as :func:`specconv.apps.eeg.filter_bank` takes it; a str is its own label.

    Returns
    -------
    str

    Examples
    --------
    >>> from specconv.apps.eeg import band_label
    >>> band_label((8, 13)), band_label((None, 4.5)), band_label((30, None)), band_label("alpha")
    ('8-13Hz', 'lp4.5Hz', 'hp30Hz', 'alpha')
    """
    if isinstance(band, str):
        return band
    try:
        lo, hi = band
    except (TypeError, ValueError):
        raise TypeError(f"a band must be a (l_freq, h_freq) pair or a str, got {band!r}.") from None
    if lo is None and hi is None:
        raise ValueError("a band needs l_freq or h_freq (got (None, None)).")
    if lo is None:
        return f"lp{hi:g}Hz"
    if hi is None:
        return f"hp{lo:g}Hz"
    return f"{lo:g}-{hi:g}Hz"


def _sources(layer):
    """For each output channel, the input channels its weights read (non-zero taps)."""
    w = np.asarray(layer.weight)
    per_group_out = layer.out_channels // layer.groups
    cin_g = layer.in_channels // layer.groups
    used = np.any(w.reshape(w.shape[0], cin_g, -1) != 0, axis=-1)  # (C_out, C_in/groups)
    return [
        tuple(int(o // per_group_out * cin_g + i) for i in np.flatnonzero(used[o]))
        for o in range(layer.out_channels)
    ]


def output_names(layer, ch_names, *, bands=None, names=None):
    """The names of a layer's output channels, by the rule :func:`apply_to_mne` uses.

    * ``names`` given: those (one per output channel, unique);
    * a depthwise layer (``groups == C_in``, e.g. a :func:`~specconv.apps.eeg.filter_bank`)
      with ``K = C_out / C_in`` outputs per channel: ``"<channel>-<band>"``, the band's
      :func:`band_label` from ``bands`` (``K`` of them), else its index ``0 .. K-1``;
    * the same number of channels out as in (and no ``bands``): the input names;
    * otherwise (a layer mixing channels into a new count): ``names`` is required.

    Parameters
    ----------
    layer : SpectralConv
    ch_names : sequence of str
        The input channels, ``C_in`` of them.
    bands : sequence of (l_freq, h_freq) or str, optional
        Labels of a depthwise layer's ``K`` outputs per channel, in order.
    names : sequence of str, optional
        Explicit output names.

    Returns
    -------
    tuple of str

    Examples
    --------
    >>> from specconv.apps.eeg import filter_bank, output_names
    >>> bands = [(8, 13), (13, 30)]
    >>> bank = filter_bank(250.0, bands, n_channels=2)
    >>> output_names(bank, ["C3", "C4"], bands=bands)
    ('C3-8-13Hz', 'C3-13-30Hz', 'C4-8-13Hz', 'C4-13-30Hz')
    >>> output_names(bank, ["C3", "C4"], bands=["alpha", "beta"])
    ('C3-alpha', 'C3-beta', 'C4-alpha', 'C4-beta')
    """
    if not isinstance(layer, SpectralConv):
        raise TypeError(f"layer must be a SpectralConv, got {type(layer).__name__}.")
    ch_names = [str(c) for c in ch_names]
    c_in, c_out = layer.in_channels, layer.out_channels
    if len(ch_names) != c_in:
        raise ValueError(
            f"ch_names has {len(ch_names)} names but the layer takes {c_in} input channels."
        )
    if names is not None:
        if isinstance(names, str) or not all(isinstance(n, str) for n in names):
            raise TypeError(f"names must be a sequence of str, got {names!r}.")
        names = tuple(names)
        if len(names) != c_out:
            raise ValueError(
                f"names has {len(names)} names but the layer gives {c_out} output channels."
            )
        if len(set(names)) != len(names):
            raise ValueError(f"names must be unique, got {names!r}.")
        return names
    if layer.groups == c_in:
        k = c_out // c_in
        if bands is None:
            if k == 1:
                return tuple(ch_names)
            labels = [str(b) for b in range(k)]
        else:
            labels = [band_label(b) for b in bands]
            if len(labels) != k:
                raise ValueError(
                    f"bands has {len(labels)} labels but the layer gives {k} outputs per channel."
                )
        return tuple(f"{c}-{lab}" for c in ch_names for lab in labels)
    if bands is not None:
        raise ValueError(
            f"bands labels the outputs of a depthwise layer (groups == {c_in} input channels),"
            f" but this layer has groups={layer.groups}; pass names=... instead."
        )
    if c_out == c_in:
        return tuple(ch_names)
    raise ValueError(
        f"the layer mixes {c_in} channels into {c_out}: name its outputs with names=[...] "
        f"({c_out} names)."
    )


# -- MNE's segments and edges ----------------------------------------------------------------
def _good_segments(raw, skip_by_annotation):
    """``(starts, stops)`` of the segments ``raw.filter`` filters one by one.

    Within the MNE versions :mod:`specconv.io._mne_compat` was tested with, MNE's own rule
    (its private ``_annotations_starts_stops``); outside them, the same rule from public API
    (annotation onsets relative to the first sample, rounded to samples; zero-length
    annotations split a segment).
    """
    if isinstance(skip_by_annotation, str):
        kinds = [skip_by_annotation]
    elif isinstance(skip_by_annotation, (list, tuple)) and all(
        isinstance(k, str) for k in skip_by_annotation
    ):
        kinds = list(skip_by_annotation)
    else:
        raise TypeError(
            f"skip_by_annotation must be a str or a list/tuple of str, got {skip_by_annotation!r}."
        )
    segments = annotation_segments(raw, kinds)
    return _segments_public(raw, kinds) if segments is None else segments


def _segments_public(raw, kinds):
    annot = raw.annotations
    cuts = [
        (onset - raw.first_time, onset - raw.first_time + duration)
        for onset, duration, desc in zip(annot.onset, annot.duration, annot.description)
        if any(desc.upper().startswith(k.upper()) for k in kinds)
    ]
    keep = np.ones(raw.n_times, bool)
    extra = []
    for t0, t1 in cuts:
        a, b = raw.time_as_index([t0, t1], use_rounding=True)
        keep[a:b] = False
        if a == b:
            extra.append(int(a))
    edges = np.diff(np.concatenate([[0], keep.astype(int), [0]]))
    starts, stops = np.flatnonzero(edges > 0), np.flatnonzero(edges < 0)
    return np.sort(np.concatenate([starts, extra])).astype(int), np.sort(
        np.concatenate([stops, extra])
    ).astype(int)


def mne_pad(x, lo, hi, pad):
    """Extend the last axis as :func:`mne.filter.filter_data` does before its FIR.

    MNE extends a signal of ``n`` samples by at most ``n − 1`` samples per side with ``pad``
    (an odd reflection for "reflect_limited" and "reflect", else a :func:`numpy.pad` mode);
    the FIR sees zeros beyond.

    Parameters
    ----------
    x : ndarray, (..., n)
    lo, hi : int
        Samples to add before and after.
    pad : str
        MNE's ``pad`` parameter.

    Returns
    -------
    ndarray, (..., lo + n + hi)

    Examples
    --------
    >>> import numpy as np
    >>> from specconv.apps.eeg import mne_pad
    >>> mne_pad(np.array([1.0, 2.0, 4.0]), 2, 3, "reflect_limited")
    array([-2.,  0.,  1.,  2.,  4.,  6.,  7.,  0.])
    """
    n = x.shape[-1]
    el, er = min(lo, n - 1), min(hi, n - 1)
    if pad == "reflect_limited":
        pad = "reflect"
    kwargs = {"reflect_type": "odd"} if pad == "reflect" else {}
    try:
        x = np.pad(x, ((0, 0),) * (x.ndim - 1) + ((el, er),), mode=pad, **kwargs)
    except ValueError as err:
        raise ValueError(f"Invalid value for the 'pad' parameter: {err}") from None
    if el < lo or er < hi:
        x = np.pad(x, ((0, 0),) * (x.ndim - 1) + ((lo - el, hi - er),))
    return x


class _PaddedSegment:
    """Samples ``start .. stop`` of a Raw's picked channels, extended as MNE extends them,
    read from the Raw on demand: an array-like source for :func:`specconv.outofcore.apply`."""

    def __init__(self, raw, picks, start, stop, lo, hi, pad):
        self.raw, self.picks, self.start, self.n = raw, picks, int(start), int(stop - start)
        self.lo = lo
        self.shape = (len(picks), lo + self.n + hi)
        self.dtype = np.dtype(np.float64)
        # the extensions depend on at most lo + 1 samples at the start and hi + 1 at the end
        # (the far end too, for "wrap"): pad those alone, keep the two edge blocks
        if self.n > lo + hi + 2:
            head = self._data(0, lo + 1)
            tail = self._data(self.n - hi - 1, self.n)
            ends = mne_pad(np.concatenate([head, tail], axis=1), lo, hi, pad)
            self.left, self.right = ends[:, :lo], ends[:, ends.shape[1] - hi :]
        else:
            whole = mne_pad(self._data(0, self.n), lo, hi, pad)
            self.left, self.right = whole[:, :lo], whole[:, lo + self.n :]

    def _data(self, a, b):
        return self.raw.get_data(picks=self.picks, start=self.start + a, stop=self.start + b)

    def __getitem__(self, index):
        a, b = index[1].start, index[1].stop
        lo, n = self.lo, self.n
        parts = []
        if a < lo:
            parts.append(self.left[:, a : min(b, lo)])
        if b > lo and a < lo + n:
            parts.append(self._data(max(a, lo) - lo, min(b, lo + n) - lo))
        if b > lo + n:
            parts.append(self.right[:, max(a, lo + n) - lo - n : b - lo - n])
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


# -- the entry point -------------------------------------------------------------------------
def _check_layer(layer, n_picks):
    if not isinstance(layer, SpectralConv):
        raise TypeError(f"layer must be a SpectralConv, got {type(layer).__name__}.")
    if layer.ndim != 1:
        raise ValueError(f"layer must be 1-D (time) to filter MNE data, got {layer.ndim}-D.")
    if layer.stride != (1,):
        raise ValueError(
            f"layer must have stride 1 (MNE objects keep their sampling), got {layer.stride}."
        )
    if np.iscomplexobj(layer.weight) or (layer.bias is not None and np.iscomplexobj(layer.bias)):
        raise ValueError("layer must be real: MNE data are real.")
    if layer.in_channels != n_picks:
        raise ValueError(
            f"the layer takes {layer.in_channels} input channels but picks selected {n_picks}."
        )
    ((lo, hi),) = side_pads(layer)
    span = layer.dilation[0] * (layer.kernel_size[0] - 1) + 1
    if lo + hi != span - 1:
        raise ValueError(
            f"layer must keep the signal's length (padding='same'-like: {span - 1} samples of "
            f"padding in all for a span of {span}), got padding ({lo}, {hi}); e.g. "
            "fir_layer(h, mode='same') or filter_bank(...)."
        )
    return lo, hi, span


def _picks(mne, inst, picks):
    """Indices of the picked channels: MNE's rule for ``inst.filter`` (data, bads kept)."""
    proxy = mne.io.RawArray(np.zeros((len(inst.ch_names), 1)), inst.info, verbose=False)
    names = proxy.pick("data" if picks is None else picks, exclude=()).ch_names
    return np.array([inst.ch_names.index(n) for n in names], dtype=int)


def _filter(layer, x, lo, hi, pad):
    """The layer on ``x`` (..., C, n) with MNE's edges (length and alignment kept)."""
    return np.asarray(without_padding(layer)(mne_pad(x, lo, hi, pad)), dtype=np.float64)


def _channel_info(mne, inst, picks, layer, out_names):
    """A new Info: the layer's outputs, then the channels not picked (see Notes)."""
    info = inst.info
    kept = [i for i in range(len(inst.ch_names)) if i not in set(picks.tolist())]
    names = list(out_names) + [inst.ch_names[i] for i in kept]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise ValueError(
            f"output channel names {clash} are not unique (against the channels not picked); "
            "pass names=... ."
        )
    types = info.get_channel_types()
    src_of, out_types = [], []
    for srcs in _sources(layer):
        srcs = [int(picks[s]) for s in srcs]
        kinds = {types[s] for s in srcs}
        src_of.append(srcs[0] if len(srcs) == 1 else None)
        out_types.append(kinds.pop() if len(kinds) == 1 else "misc")
    src_of += kept
    new = mne.create_info(names, info["sfreq"], out_types + [types[i] for i in kept])
    for ch, src in zip(new["chs"], src_of):
        if src is not None:
            for field in _CH_FIELDS:
                value = info["chs"][src][field]
                ch[field] = value.copy() if isinstance(value, np.ndarray) else value
    new.set_meas_date(info["meas_date"])
    for key in _RECORDING_FIELDS:
        if info.get(key) is not None:
            try:
                new[key] = info[key]
            except (RuntimeError, KeyError, TypeError, ValueError):
                pass  # a field this MNE version locks: the recording facts are best effort
    new["bads"] = [
        n for n, s in zip(names, src_of) if s is not None and inst.ch_names[s] in info["bads"]
    ]
    derived = {}
    for n, s in zip(names, src_of):
        if s is not None:
            derived.setdefault(inst.ch_names[s], []).append(n)
    return new, kept, derived


def _annotations(mne, annot, derived):
    """Annotations for the new channels: channel-specific ones follow their channels to the
    outputs derived from them (and become global when none is left)."""
    if annot is None or len(annot) == 0:
        return annot
    chs = [tuple(n for o in old for n in derived.get(o, ())) for old in annot.ch_names]
    return mne.Annotations(
        annot.onset, annot.duration, annot.description, orig_time=annot.orig_time, ch_names=chs
    )


def apply_to_mne(
    layer,
    inst,
    *,
    picks=None,
    names=None,
    bands=None,
    skip_by_annotation=SKIP_DEFAULT,
    pad=None,
    copy=True,
    memory_budget=None,
    verbose=None,
):
    """Apply a 1-D layer to an MNE Raw, Epochs or Evoked; return the same kind of object.

    PyTorch conv semantics for the layer (it is applied as ``layer(x)`` would be, but with
    MNE's edge extension instead of the layer's padding). With a layer holding the FIR of
    ``inst.filter(l_freq, h_freq, method="fir", phase="zero", ...)`` (e.g. a
    :func:`~specconv.apps.eeg.filter_bank` with one band) the numbers equal ``inst.filter``:
    same picks, same segments between ``skip_by_annotation`` annotations, same edges.

    Parameters
    ----------
    layer : SpectralConv
        1-D, stride 1, keeping the length (``mode="same"``/``"causal"`` FIR layers, filter
        banks, spatial matrices, their compositions); ``in_channels`` = number of picks.
    inst : mne.io.Raw | mne.Epochs | mne.Evoked
        A Raw may be read with ``preload=False``: it is then read segment by segment in
        bounded memory through :func:`specconv.outofcore.apply`.
    picks : str | list | slice | None
        Channels, as ``inst.filter`` takes them; default every data channel, bad ones
        included. Channels not picked pass through unchanged.
    names : sequence of str, optional
        Names of the output channels (see :func:`output_names`); needed when the layer mixes
        channels into a new count.
    bands : sequence of (l_freq, h_freq) or str, optional
        For a filter bank: its bands, naming the outputs ``"<channel>-<band>"``.
    skip_by_annotation : str | list of str
        Raw only: annotations whose description starts with one of these (case-insensitive)
        split the recording into segments filtered separately, as ``raw.filter`` does;
        ``()`` filters the recording as one segment.
    pad : str, optional
        MNE's edge extension: "reflect_limited" (default for Raw, as ``raw.filter``), "edge"
        (default for Epochs and Evoked, as ``epochs.filter``), "reflect", or another
        :func:`numpy.pad` mode.
    copy : bool
        Return a modified copy (default). ``False`` modifies a preloaded ``inst`` in place,
        which needs the channels to stay the same (as many out as picked, no new names).
    memory_budget : int, optional
        Bytes for the out-of-core path (``preload=False``); default
        :data:`specconv.outofcore.DEFAULT_BUDGET`.
    verbose : bool | str | int | None
        MNE's ``verbose``: the log level of this call's messages, which go to MNE's logger
        (None: MNE's current level).

    Returns
    -------
    mne.io.Raw | mne.Epochs | mne.Evoked
        Same kind; info, annotations, bads, events, ``first_samp``, ``tmin`` kept. A Raw read
        with ``preload=False`` gives an in-memory ``RawArray``.

    See Also
    --------
    apply_like_mne : the same edge extension on a plain array.
    output_names : the naming rule for new channels.
    specconv.outofcore.apply : write a result larger than memory to a file.

    Notes
    -----
    Channels, when the layer changes the channel count (or ``names``/``bands`` are given):
    the output holds the layer's outputs, then the channels not picked. An output whose
    weights read ONE input channel (every channel of a filter bank or of any depthwise layer)
    takes that channel's type, location, unit and bad status; an output mixing several
    channels of one type takes that type with no location; one mixing several types is
    "misc". Channel-specific annotations follow their channels to the outputs derived from
    them. Samples inside skipped annotations are the input's own samples (the derived
    channel's source channel; zeros for mixed outputs), as ``raw.filter`` leaves them.

    ``info["highpass"]``/``["lowpass"]`` are not updated: a layer is any linear filter,
    and the caller knows what it passes.

    Examples
    --------
    >>> import mne, numpy as np
    >>> from specconv.apps.eeg import apply_to_mne, filter_bank
    >>> info = mne.create_info(["C3", "C4", "STI"], 250.0, ["eeg", "eeg", "stim"])
    >>> x = np.random.default_rng(0).standard_normal((3, 2500)) * 1e-5
    >>> raw = mne.io.RawArray(x, info, verbose=False)
    >>> bands = [(8, 13), (13, 30)]
    >>> bank = filter_bank(250.0, bands, n_channels=2)
    >>> out = apply_to_mne(bank, raw, bands=bands, verbose=False)
    >>> out.ch_names
    ['C3-8-13Hz', 'C3-13-30Hz', 'C4-8-13Hz', 'C4-13-30Hz', 'STI']
    >>> alpha = filter_bank(250.0, [(8, 13)], n_channels=2)
    >>> ref = raw.copy().filter(8, 13, picks="eeg", verbose=False)
    >>> y = apply_to_mne(alpha, raw, verbose=False).get_data()
    >>> bool(np.allclose(y, ref.get_data(), rtol=0, atol=1e-12 * np.abs(ref.get_data()).max()))
    True
    """
    mne = _mne("filtering MNE objects")
    if not isinstance(inst, (mne.io.BaseRaw, mne.BaseEpochs, mne.Evoked)):
        raise TypeError(
            f"inst must be an MNE Raw, Epochs or Evoked object, got {type(inst).__name__}."
        )
    if not isinstance(copy, bool):
        raise TypeError(f"copy must be a bool, got {copy!r}.")
    is_raw = isinstance(inst, mne.io.BaseRaw)
    if pad is None:
        pad = "reflect_limited" if is_raw else "edge"
    if not isinstance(pad, str):
        raise TypeError(f"pad must be a str, got {pad!r}.")
    picks = _picks(mne, inst, picks)
    lo, hi, span = _check_layer(layer, len(picks))
    in_names = [inst.ch_names[i] for i in picks]
    out_names = output_names(layer, in_names, bands=bands, names=names)
    same_channels = names is None and bands is None and layer.out_channels == len(picks)
    preloaded = getattr(inst, "preload", True)
    if not copy and not (same_channels and preloaded):
        raise ValueError(
            "copy=False modifies inst in place, which needs preloaded data and the same "
            f"channels out as picked (got preload={preloaded}, {len(picks)} picked, "
            f"{layer.out_channels} out{', new names' if names or bands else ''}); use "
            "copy=True."
        )
    log = mne.utils.use_log_level(verbose) if verbose is not None else contextlib.nullcontext()
    with log:
        if is_raw:
            starts, stops = _good_segments(inst, skip_by_annotation)
            mne.utils.logger.info(
                "Filtering raw data in %d contiguous segment%s",
                len(starts),
                "" if len(starts) == 1 else "s",
            )
            longest = int((stops - starts).max()) if len(starts) else 0
        else:
            starts, stops = np.array([0]), np.array([len(inst.times)])
            longest = len(inst.times)
        # MNE's rule: warn for the longest segment only, and verbose="error" mutes it
        if 0 < longest < span and mne.utils.logger.level <= logging.WARNING:
            warnings.warn(
                f"The layer's span ({span} samples) is longer than the signal ({longest}); "
                "distortion is likely (as MNE warns for filter_length).",
                RuntimeWarning,
                stacklevel=2,
            )
        if same_channels and (preloaded or not is_raw):
            return _in_place(
                mne, layer, inst if not copy else inst.copy(), picks, starts, stops, lo, hi, pad
            )
        if is_raw:
            return _new_raw(
                mne,
                layer,
                inst,
                picks,
                out_names,
                same_channels,
                starts,
                stops,
                lo,
                hi,
                pad,
                memory_budget,
                preloaded,
            )
        return _new_epochs_or_evoked(mne, layer, inst, picks, out_names, lo, hi, pad)


def _segmentwise(layer, x, starts, stops, lo, hi, pad, out):
    """``out`` (C_out, n) from ``x`` (C_in, n): each segment filtered on its own."""
    for a, b in zip(starts, stops):
        if b > a:
            out[:, a:b] = _filter(layer, x[:, a:b], lo, hi, pad)
    return out


def _stream_raw(layer, raw, picks, starts, stops, lo, hi, pad, memory_budget):
    """The picked channels' outputs (C_out, n_times), reading ``raw`` out of core."""
    from .. import outofcore

    pad = check_option("pad", pad, _STREAMABLE_PADS)
    budget = outofcore.DEFAULT_BUDGET if memory_budget is None else memory_budget
    y = np.zeros((layer.out_channels, raw.n_times))
    valid = without_padding(layer)
    for a, b in zip(starts, stops):
        if b > a:
            src = _PaddedSegment(raw, picks, a, b, lo, hi, pad)
            outofcore.apply(valid, src, y[:, a:b], memory_budget=budget, progress=False)
    return y


def _gaps(starts, stops, n):
    """The ``[a, b)`` ranges outside the segments (inside skipped annotations)."""
    edges = np.concatenate([[0], np.column_stack([starts, stops]).ravel(), [n]])
    return [(int(a), int(b)) for a, b in edges.reshape(-1, 2) if b > a]


def _in_place(mne, layer, out, picks, starts, stops, lo, hi, pad):
    """Same channels: the picked channels of ``out`` replaced by the layer's outputs."""
    if isinstance(out, mne.BaseEpochs):
        out.load_data()
    is_raw = isinstance(out, mne.io.BaseRaw)

    def fun(x):
        if not is_raw:
            return _filter(layer, x, lo, hi, pad)
        res = x.copy()  # samples in skipped annotations stay as they are
        return _segmentwise(layer, x, starts, stops, lo, hi, pad, res)

    return out.apply_function(fun, picks=picks, channel_wise=False, verbose=False)


def _new_raw(
    mne,
    layer,
    raw,
    picks,
    out_names,
    same_channels,
    starts,
    stops,
    lo,
    hi,
    pad,
    memory_budget,
    preloaded,
):
    n = raw.n_times
    if preloaded:
        y = _segmentwise(
            layer,
            raw.get_data(picks=picks),
            starts,
            stops,
            lo,
            hi,
            pad,
            np.zeros((layer.out_channels, n)),
        )
    else:
        y = _stream_raw(layer, raw, picks, starts, stops, lo, hi, pad, memory_budget)
    sources = _sources(layer)
    for a, b in _gaps(starts, stops, n):  # as raw.filter leaves them: the input's samples
        x = raw.get_data(picks=picks, start=a, stop=b)
        for o, srcs in enumerate(sources):
            if len(srcs) == 1:
                y[o, a:b] = x[srcs[0]]
    picked = set(picks.tolist())
    kept = [i for i in range(len(raw.ch_names)) if i not in picked]
    if same_channels:
        info, annot = raw.info.copy(), raw.annotations.copy()
        data = np.empty((len(raw.ch_names), n))
        data[picks] = y
    else:
        info, kept, derived = _channel_info(mne, raw, picks, layer, out_names)
        annot = _annotations(mne, raw.annotations, derived)
        data = np.empty((len(info["ch_names"]), n))
        data[: len(y)] = y
    if kept:
        rows = kept if same_channels else slice(len(y), None)
        data[rows] = raw.get_data(picks=kept)
    out = mne.io.RawArray(data, info, first_samp=raw.first_samp, verbose=False)
    out.set_annotations(annot, verbose=False)
    return out


def _new_epochs_or_evoked(mne, layer, inst, picks, out_names, lo, hi, pad):
    info, kept, derived = _channel_info(mne, inst, picks, layer, out_names)
    y = _filter(layer, inst.get_data(picks=picks), lo, hi, pad)
    if kept:
        y = np.concatenate([y, inst.get_data(picks=kept)], axis=-2)
    if isinstance(inst, mne.Evoked):
        return mne.EvokedArray(
            y,
            info,
            tmin=inst.tmin,
            comment=inst.comment,
            nave=inst.nave,
            kind=inst.kind,
            baseline=inst.baseline,
            verbose=False,
        )
    epochs = mne.EpochsArray(
        y,
        info,
        events=inst.events.copy(),
        tmin=inst.tmin,
        event_id=dict(inst.event_id),
        baseline=inst.baseline,
        metadata=inst.metadata,
        selection=inst.selection,
        drop_log=inst.drop_log,
        verbose=False,
    )
    if inst.annotations is not None and len(inst.annotations):
        epochs.set_annotations(_annotations(mne, inst.annotations, derived), verbose=False)
    return epochs
