"""EEG adapter via MNE-Python (extra ``eeg``; EDF/BDF/BrainVision/EEGLAB output: ``eeg-export``).

Reading accepts every format :func:`mne.io.read_raw` reads and MNE ``Raw``, ``Epochs`` and
``Evoked`` objects; the samples stay in MNE's SI units (volts for EEG). The MNE ``info``,
annotations and bad channels travel in the signal's metadata so that :func:`to_mne` can
rebuild an MNE object -- with the original info when the channels are unchanged.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

from .._optional import soft_import
from ..signal import VectorSignal
from ._common import companions, reading, require_time_signal

logger = logging.getLogger("specconv")

__all__ = ["from_mne", "to_mne", "read_eeg", "write_fif", "write_export", "eeg_info"]

#: specconv format name -> (mne.export fmt, optional package, output suffixes, header last)
EXPORTS = {
    "edf": ("edf", "edfio", (".edf",)),
    "bdf": ("bdf", "edfio", (".bdf",)),
    "brainvision": ("brainvision", "pybv", (".eeg", ".vmrk", ".vhdr")),
    "eeglab": ("eeglab", "eeglabio", (".set",)),
}

# Info fields that describe the recording rather than the channels: kept when the channels
# change and a new Info has to be built.
_RECORDING_FIELDS = ("line_freq", "description", "experimenter", "subject_info", "device_info")


def _mne():
    return soft_import("mne", "eeg", purpose="EEG files")


def _pick_names(inst, picks):
    """Channel names MNE's own ``pick`` semantics select (names, types, indices, 'data')."""
    if picks is None:
        return list(inst.ch_names)
    mne = _mne()
    # A one-sample stand-in with the same Info: MNE resolves the picks, no data is copied.
    proxy = mne.io.RawArray(np.zeros((len(inst.ch_names), 1)), inst.info, verbose=False)
    return list(proxy.pick(picks).ch_names)


def from_mne(inst, *, picks=None, reject_by_annotation=None, dtype=None, fmt="mne"):
    """Build a :class:`~specconv.signal.VectorSignal` from an MNE Raw, Epochs or Evoked.

    Parameters
    ----------
    inst : mne.io.BaseRaw | mne.BaseEpochs | mne.Evoked
        Raw and Evoked give ``(C, N)``; Epochs give ``(n_epochs, C, N)`` (batched).
    picks : str | list | slice | None
        Channels, as MNE's ``pick`` understands them (names, types such as ``"eeg"``,
        indices). Default: all channels, in file order.
    reject_by_annotation : {None, "NaN"}
        ``"NaN"`` replaces samples inside ``BAD_*`` annotations by NaN (Raw only), which the
        convolution engine keeps local to the affected outputs.
    dtype : {None, float32, float64}
        Output dtype; default float64 as MNE returns it.
    fmt : str
        Recorded as ``metadata["format"]``.

    Returns
    -------
    VectorSignal
        Time domain, ``sfreq`` from the info. ``metadata`` holds ``"info"`` (an Info for
        the picked channels), ``"annotations"``, ``"bads"``, ``"ch_types"``, ``"kind"``
        (``"raw"``, ``"epochs"`` or ``"evoked"``) and kind-specific fields (``"first_samp"``;
        ``"events"``, ``"event_id"``, ``"tmin"``; ``"nave"``, ``"comment"``).

    See Also
    --------
    to_mne : The way back.
    specconv.io.read : Reads files, calling this for EEG formats.

    Examples
    --------
    >>> import numpy as np, mne
    >>> from specconv.io import from_mne
    >>> info = mne.create_info(["Fz", "Cz", "STI"], 100.0, ["eeg", "eeg", "stim"])
    >>> raw = mne.io.RawArray(np.zeros((3, 200)), info, verbose=False)
    >>> sig = from_mne(raw, picks="eeg")
    >>> sig.ch_names, sig.data.shape, sig.sfreq
    (('Fz', 'Cz'), (2, 200), 100.0)
    """
    mne = _mne()
    if not isinstance(inst, (mne.io.BaseRaw, mne.BaseEpochs, mne.Evoked)):
        raise TypeError(
            f"inst must be an MNE Raw, Epochs or Evoked object, got {type(inst).__name__}."
        )
    if reject_by_annotation not in (None, "NaN"):
        raise ValueError(
            f"Invalid value for the 'reject_by_annotation' parameter. Allowed values are "
            f"None and 'NaN', but got {reject_by_annotation!r} instead."
        )
    names = _pick_names(inst, picks)
    sel = [inst.ch_names.index(n) for n in names]
    info = mne.pick_info(inst.info, sel)
    meta = {
        "format": fmt,
        "info": info,
        "bads": tuple(info["bads"]),
        "ch_types": tuple(info.get_channel_types()),
        "meas_date": info["meas_date"],
    }
    if isinstance(inst, mne.io.BaseRaw):
        data = inst.get_data(picks=names, reject_by_annotation=reject_by_annotation)
        meta.update(kind="raw", annotations=inst.annotations.copy(), first_samp=inst.first_samp)
        batched = False
    elif reject_by_annotation is not None:
        raise ValueError(
            f"reject_by_annotation='NaN' applies to continuous (Raw) data, got "
            f"{type(inst).__name__}."
        )
    elif isinstance(inst, mne.BaseEpochs):
        data = inst.get_data(picks=names)
        annotations = inst.annotations.copy() if inst.annotations is not None else None
        meta.update(
            kind="epochs",
            annotations=annotations,
            events=inst.events.copy(),
            event_id=dict(inst.event_id),
            tmin=inst.tmin,
        )
        batched = True
    else:
        data = inst.get_data(picks=names)
        meta.update(kind="evoked", tmin=inst.tmin, nave=inst.nave, comment=inst.comment)
        batched = False
    if dtype is not None:
        data = data.astype(dtype, copy=False)
    return VectorSignal(
        data, tuple(names), sfreq=float(info["sfreq"]), batched=batched, metadata=meta
    )


def _channel_types(sig, ch_types):
    if ch_types is not None:
        return ch_types
    original = sig.metadata.get("ch_types")
    if original and len(original) == sig.n_channels:
        return list(original)
    # New channels mix the old ones: EEG stays EEG (volts), anything else is "misc".
    if original and set(original) == {"eeg"}:
        return "eeg"
    return "misc"


def _info_for(sig, ch_types):
    """The original Info when the channels match, else a new one keeping the recording facts."""
    mne = _mne()
    orig = sig.metadata.get("info")
    if (
        ch_types is None
        and orig is not None
        and list(orig["ch_names"]) == list(sig.ch_names)
        and float(orig["sfreq"]) == sig.sfreq
    ):
        return orig.copy()
    info = mne.create_info(list(sig.ch_names), sig.sfreq, _channel_types(sig, ch_types))
    if orig is not None:
        info.set_meas_date(orig["meas_date"])
        for key in _RECORDING_FIELDS:
            if orig.get(key) is not None:
                try:
                    info[key] = orig[key]
                except (RuntimeError, KeyError, TypeError, ValueError):
                    logger.debug("could not carry info[%r] over", key)
        if orig.get("bads"):
            info["bads"] = [b for b in orig["bads"] if b in sig.ch_names]
    return info


def _annotations_for(sig, ch_names):
    mne = _mne()
    annot = sig.metadata.get("annotations")
    if annot is None or len(annot) == 0:
        return annot
    names = set(ch_names)
    if all(set(chs) <= names for chs in annot.ch_names):
        return annot.copy()
    # Channel-specific annotations that name channels no longer there become global.
    return mne.Annotations(
        annot.onset, annot.duration, annot.description, orig_time=annot.orig_time
    )


def to_mne(sig, *, ch_types=None, copy=True):
    """Turn a time-domain :class:`~specconv.signal.VectorSignal` into an MNE object.

    Unbatched signals become a ``RawArray`` (an ``EvokedArray`` if read from an Evoked),
    batched ones an ``EpochsArray``. When the channel names and ``sfreq`` are those of the
    source, its full ``info`` is reused (montage, filters, bads ...); otherwise a new info
    is built with the same recording facts (``meas_date``, ``line_freq``, subject ...) and
    channel types: the original ones when the channel count is unchanged, ``"eeg"`` when
    every source channel was EEG (a spatial or filter-bank layer keeps volts), else
    ``"misc"``. Annotations are kept.

    Parameters
    ----------
    sig : VectorSignal
        Real, time domain, in SI units (volts).
    ch_types : str | list of str, optional
        Override the channel types of a newly built info.
    copy : bool
        Give MNE its own writable copy of the data (its methods modify in place). Only
        specconv's writers pass False.

    Returns
    -------
    mne.io.RawArray | mne.EpochsArray | mne.EvokedArray

    See Also
    --------
    from_mne : The way in.

    Examples
    --------
    >>> import numpy as np
    >>> from specconv.signal import VectorSignal
    >>> from specconv.io import to_mne
    >>> sig = VectorSignal(np.zeros((2, 500)), ("C3", "C4"), sfreq=250.0)
    >>> raw = to_mne(sig, ch_types="eeg")
    >>> raw.ch_names, raw.info["sfreq"], raw.get_data().shape
    (['C3', 'C4'], 250.0, (2, 500))
    """
    mne = _mne()
    if not isinstance(sig, VectorSignal):
        raise TypeError(f"sig must be a VectorSignal, got {type(sig).__name__}.")
    require_time_signal(sig, "an MNE object", batched_ok=True, complex_ok=True)
    info = _info_for(sig, ch_types)
    data = np.array(sig.data, dtype=np.float64) if copy else sig.data
    kind = sig.metadata.get("kind")
    if sig.batched:
        events = sig.metadata.get("events")
        event_id = sig.metadata.get("event_id")
        if events is None or len(events) != sig.n_batch:
            events, event_id = None, None
        return mne.EpochsArray(
            data,
            info,
            events=events,
            tmin=sig.metadata.get("tmin", 0.0),
            event_id=event_id,
            verbose=False,
        )
    if kind == "evoked":
        return mne.EvokedArray(
            data,
            info,
            tmin=sig.metadata.get("tmin", 0.0),
            comment=sig.metadata.get("comment", ""),
            nave=sig.metadata.get("nave", 1),
            verbose=False,
        )
    raw = mne.io.RawArray(data, info, first_samp=sig.metadata.get("first_samp", 0), verbose=False)
    annot = _annotations_for(sig, sig.ch_names)
    if annot is not None and len(annot):
        raw.set_annotations(annot, verbose=False)
    return raw


# -- files ----------------------------------------------------------------------------------
def _is_fif_kind(path, kind):
    name = str(path).lower().removesuffix(".gz")
    return name.endswith((f"-{kind}.fif", f"_{kind}.fif"))


def read_eeg(
    path,
    *,
    fmt,
    picks=None,
    reject_by_annotation=None,
    dtype=None,
    allow_truncated=False,
    verbose=False,
    **mne_options,
):
    """Read an EEG/MEG file through MNE (``mne_options`` go to the MNE reader).

    Continuous files go through :func:`mne.io.read_raw`; FIF files named like MNE epochs
    (``*-epo.fif``) or evoked (``*-ave.fif``, first condition unless ``condition=`` is
    given) files through :func:`mne.read_epochs` / :func:`mne.read_evokeds`.
    """
    mne = _mne()
    with reading(path, fmt.upper(), allow_truncated=allow_truncated):
        if fmt == "fif" and _is_fif_kind(path, "epo"):
            inst = mne.read_epochs(path, preload=False, verbose=verbose, **mne_options)
        elif fmt == "fif" and _is_fif_kind(path, "ave"):
            mne_options.setdefault("condition", 0)
            inst = mne.read_evokeds(path, verbose=verbose, **mne_options)
        else:
            inst = mne.io.read_raw(path, preload=False, verbose=verbose, **mne_options)
        sig = from_mne(
            inst, picks=picks, reject_by_annotation=reject_by_annotation, dtype=dtype, fmt=fmt
        )
    sources = {str(path), *(str(f) for f in getattr(inst, "filenames", ()) if f is not None)}
    if fmt == "brainvision":
        sources.update(str(p) for p in companions(path, (".vmrk", ".eeg")) if p.exists())
    return sig.replace(metadata={**sig.metadata, "source": tuple(sorted(sources))})


def eeg_info(path, *, fmt, verbose=False):
    mne = _mne()
    with reading(path, fmt.upper()):
        raw = mne.io.read_raw(path, preload=False, verbose=verbose)
    return {
        "channels": len(raw.ch_names),
        "sfreq": float(raw.info["sfreq"]),
        "n_times": int(raw.n_times),
        "n_annotations": len(raw.annotations),
        "ch_types": sorted(set(raw.get_channel_types())),
    }


def _check_fif_fmt(sig, fmt):
    if fmt is None:
        return "double" if sig.data.dtype == np.float64 else "single"
    allowed = ("single", "double")
    if fmt not in allowed:
        raise ValueError(
            f"Invalid value for the 'fmt' parameter. Allowed values are 'single' and "
            f"'double', but got {fmt!r} instead."
        )
    return fmt


def write_fif(sig, path, *, fmt=None, ch_types=None):
    """Write FIF (Raw, Epochs or Evoked); float64 data as double unless ``fmt='single'``."""
    mne = _mne()
    require_time_signal(sig, "FIF", batched_ok=True, complex_ok=True)
    inst = to_mne(sig, ch_types=ch_types, copy=False)
    if isinstance(inst, mne.Evoked):
        mne.write_evokeds(path, inst, overwrite=True, verbose=False)
    elif isinstance(inst, mne.BaseEpochs):
        inst.save(path, fmt=_check_fif_fmt(sig, fmt), overwrite=True, verbose=False)
    else:
        inst.save(path, fmt=_check_fif_fmt(sig, fmt), overwrite=True, verbose=False)


def write_export(sig, path, *, fmt, ch_types=None, **export_options):
    """Write EDF/BDF/BrainVision/EEGLAB through :func:`mne.export.export_raw`.

    Each format has its own precision: EDF 16-bit and BDF 24-bit integers scaled to each
    channel type's range, BrainVision float32 (in µV), EEGLAB float32/64.
    """
    mne_fmt, package, _ = EXPORTS[fmt]
    _mne()
    soft_import(package, "eeg-export", purpose=f"writing {fmt} files")
    export = soft_import("mne.export", "eeg-export")
    require_time_signal(sig, fmt)
    if np.isnan(sig.data).any():
        raise ValueError(
            f"{fmt} cannot store NaN samples (e.g. from reject_by_annotation='NaN'); "
            "write .fif or .npz, or interpolate them first."
        )
    raw = to_mne(sig, ch_types=ch_types, copy=False)
    with warnings.catch_warnings():
        # pybv stores float32 samples: that is the format's precision (documented in
        # specconv.io.write), not a surprise worth a warning on every export.
        warnings.filterwarnings(
            "ignore", message="Encountered data in 'double' format", category=RuntimeWarning
        )
        export.export_raw(
            str(path), raw, fmt=mne_fmt, overwrite=True, verbose=False, **export_options
        )
