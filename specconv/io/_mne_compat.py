"""Every use of MNE's private API in specconv, behind one check of the installed MNE version.

MNE offers no public way to do three things specconv needs:

* write a FIF file whose samples are computed while it is written (out-of-core FIF targets):
  a ``mne.io.BaseRaw`` subclass whose ``_read_segment_file`` hands over the samples, with
  its state in ``_raw_extras``;
* give a copy of an ``Info`` a new sampling rate (a strided layer's output) while keeping
  every channel's description: ``Info._unlock()``;
* split a Raw at its annotations exactly as ``raw.filter`` does:
  ``mne.annotations._annotations_starts_stops``.

Within :data:`TESTED_MNE` (the versions the suite ran against) these private paths are
used. Outside it every function here takes a public path instead, documented on each: the same
result where MNE's public API can give it, an ``Info`` rebuilt field by field, or the output
built in memory with :class:`mne.io.RawArray` when it fits the memory budget (else a
RuntimeError that names the versions and what to do). ``tests/test_mne_compat.py`` runs both
paths against the installed MNE.
"""

from __future__ import annotations

import numpy as np

from .._optional import soft_import

__all__ = [
    "TESTED_MNE",
    "mne_version",
    "private_api_ok",
    "with_sfreq",
    "raw_from_reader",
    "annotation_segments",
]

#: ``[low, high)``: MNE versions (major, minor) whose internals used here were tested: from
#: the ``eeg`` extra's minimum to the newest minor release the suite ran against.
TESTED_MNE = ((1, 6), (1, 14))

#: Samples per piece when the public path gathers a whole output in memory.
_PIECE = 2**16


def _mne():
    return soft_import("mne", "eeg", purpose="EEG files")


def mne_version(mne=None):
    """The installed MNE's ``(major, minor)``; a pre-release counts as its release."""
    mne = _mne() if mne is None else mne
    parts = []
    for p in mne.__version__.split(".")[:2]:
        digits = "".join(ch for ch in p if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def private_api_ok(mne=None):
    """Whether the installed MNE is one :data:`TESTED_MNE` covers (private paths in use).

    Examples
    --------
    >>> import pytest
    >>> mne = pytest.importorskip("mne")
    >>> from specconv.io._mne_compat import TESTED_MNE, mne_version, private_api_ok
    >>> private_api_ok() == (TESTED_MNE[0] <= mne_version() < TESTED_MNE[1])
    True
    """
    low, high = TESTED_MNE
    return low <= mne_version(mne) < high


def _tested_text(mne):
    low, high = TESTED_MNE
    return (
        f"MNE {mne.__version__} is outside the versions specconv was tested with "
        f"({low[0]}.{low[1]} <= MNE < {high[0]}.{high[1]})"
    )


def with_sfreq(info, sfreq):
    """A copy of ``info`` with the sampling rate ``sfreq``, every channel described as before.

    Private path: ``Info._unlock()``. Public path: an Info made by :func:`mne.create_info`
    whose channels take every field of the old ones, with the measurement date, the bad
    channels and whichever recording fields this MNE lets one set.

    Examples
    --------
    >>> import pytest
    >>> mne = pytest.importorskip("mne")
    >>> from specconv.io._mne_compat import with_sfreq
    >>> info = mne.create_info(["C3", "C4"], 250.0, "eeg")
    >>> new = with_sfreq(info, 125.0)
    >>> new["sfreq"], info["sfreq"], new.ch_names
    (125.0, 250.0, ['C3', 'C4'])
    """
    mne = _mne()
    if private_api_ok(mne):
        info = info.copy()
        with info._unlock():
            info["sfreq"] = float(sfreq)
        return info
    new = mne.create_info(list(info.ch_names), float(sfreq), info.get_channel_types())
    for ch, old in zip(new["chs"], info["chs"]):
        for key, value in old.items():
            ch[key] = value.copy() if isinstance(value, np.ndarray) else value
    new.set_meas_date(info["meas_date"])
    new["bads"] = list(info["bads"])
    for key in ("line_freq", "description", "experimenter", "subject_info", "device_info"):
        if info.get(key) is not None:
            try:
                new[key] = info[key]
            except (RuntimeError, KeyError, TypeError, ValueError):
                pass  # a field this MNE version locks: best effort outside the tested range
    return new


def raw_from_reader(info, n_times, read, *, first_samp=0, max_bytes=None):
    """A Raw of ``n_times`` samples that ``read(start, stop)`` computes when MNE asks.

    Parameters
    ----------
    info : mne.Info
        Its channels' ``cal`` and ``range`` should be 1: ``read`` returns physical values.
    n_times : int
    read : callable
        ``read(start, stop)`` -> ndarray ``(n_channels, stop - start)``: the samples
        ``start .. stop - 1`` in MNE's numbering (counting from ``first_samp``).
    first_samp : int
    max_bytes : int or None
        Public path only: the most memory the whole output may take (None: no limit).

    Returns
    -------
    mne.io.BaseRaw
        Private path: a Raw without data in memory (``preload=False``); saving it reads the
        samples buffer by buffer. Public path: an :class:`mne.io.RawArray` with the whole
        output, gathered in pieces.

    Raises
    ------
    RuntimeError
        Public path, when the output needs more than ``max_bytes``.

    Examples
    --------
    >>> import numpy as np, pytest
    >>> mne = pytest.importorskip("mne")
    >>> from specconv.io._mne_compat import raw_from_reader
    >>> info = mne.create_info(["a", "b"], 100.0, "misc")
    >>> ramp = lambda start, stop: np.tile(np.arange(start, stop, dtype=float), (2, 1))
    >>> raw = raw_from_reader(info, 500, ramp)
    >>> int(raw.n_times), raw.get_data(start=10, stop=13)[1].tolist()
    (500, [10.0, 11.0, 12.0])
    """
    mne = _mne()
    if private_api_ok(mne):
        return _lazy_raw(mne, info, n_times, read, first_samp)
    need = len(info["ch_names"]) * n_times * np.dtype(np.float64).itemsize
    if max_bytes is not None and need > max_bytes:
        raise RuntimeError(
            f"{_tested_text(mne)}: it writes a FIF file chunk by chunk only through MNE's "
            f"internals, and building this one in memory needs {need} bytes, more than the "
            f"memory budget ({max_bytes}). Write a .npy or .h5 target, raise memory_budget, "
            f"or install a tested MNE."
        )
    data = np.empty((len(info["ch_names"]), n_times))
    for a in range(0, n_times, _PIECE):
        b = min(a + _PIECE, n_times)
        data[:, a:b] = read(first_samp + a, first_samp + b)
    return mne.io.RawArray(data, info, first_samp=first_samp, verbose="error")


def _lazy_raw(mne, info, n_times, read, first_samp):
    """The private path of :func:`raw_from_reader`."""

    class _ComputedRaw(mne.io.BaseRaw):  # type: ignore[name-defined]  # the installed MNE's
        def __init__(self):
            super().__init__(
                info,
                preload=False,
                first_samps=(first_samp,),
                last_samps=(first_samp + n_times - 1,),
                filenames=(None,),
                raw_extras=[{"read": read}],
                orig_format="double",
                verbose="error",
            )

        def _read_segment_file(self, data, idx, fi, start, stop, cals, mult):
            # MNE calls this through a proxy that exposes only _raw_extras and filenames
            one = self._raw_extras[fi]["read"](start, stop)
            if mult is not None:
                data[:] = mult @ one[idx]
            else:
                data[:] = one[idx] * cals

    return _ComputedRaw()


def annotation_segments(raw, kinds):
    """``(starts, stops)`` between the annotations ``kinds`` as ``raw.filter`` splits a Raw,
    or None outside the tested versions (the caller then applies the rule itself).

    Private path: ``mne.annotations._annotations_starts_stops(raw, kinds, invert=True)``.

    Examples
    --------
    >>> import numpy as np, pytest
    >>> mne = pytest.importorskip("mne")
    >>> from specconv.io._mne_compat import annotation_segments, private_api_ok
    >>> raw = mne.io.RawArray(np.zeros((1, 1000)), mne.create_info(1, 100.0), verbose=False)
    >>> _ = raw.set_annotations(mne.Annotations([2.0], [1.0], ["bad"]))
    >>> segments = annotation_segments(raw, ["bad"])
    >>> segments is None or [s.tolist() for s in segments] == [[0, 300], [200, 1000]]
    True
    """
    mne = _mne()
    if not private_api_ok(mne):
        return None
    try:
        from mne.annotations import _annotations_starts_stops

        starts, stops = _annotations_starts_stops(raw, kinds, invert=True)
    except (ImportError, AttributeError):  # moved or renamed: the caller's public rule
        return None
    return np.asarray(starts, int), np.asarray(stops, int)
