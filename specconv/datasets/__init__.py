"""Small bundled sample files: EEG, stereo audio, a true-stereo impulse response, MRI k-space.

The files are synthetic, generated deterministically by ``datasets/make_samples.py`` in the
source tree from documented models (see ``datasets/README.md``), released under CC0-1.0, and
shipped inside the package, so they work offline and from a plain ``pip install``.
``MANIFEST.json`` lists each file with its sha256, size, license line, the model parameters
that made it and what it should load as; :func:`path` checks the hash before handing a file
out.

========================  ==================================================================
name                      content
========================  ==================================================================
``eeg-fif``               32-channel EEG model, 256 Hz, 60 s (FIF, 16-bit with calibration)
``eeg-edf``               the same EEG as EDF+ (16-bit), with blink annotations
``audio-pcm16``           stereo plucked tones + noise, 48 kHz, 1.5 s, WAV PCM 16-bit
``audio-pcm24``           the same sound, WAV PCM 24-bit
``audio-float32``         the same sound, WAV IEEE float32
``ir-true-stereo``        2 x 2 room impulse response, 4 channels in Web Audio order (float32)
``mri-fastmri``           8-coil phantom k-space (3 slices, 80 x 64), fastMRI-style HDF5
``mri-bart``              the middle slice of it as BART ``.cfl/.hdr``
========================  ==================================================================
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

__all__ = ["names", "path", "load", "describe"]

_HERE = Path(__file__).resolve().parent
_DATA = _HERE / "data"
_MANIFEST = _HERE / "MANIFEST.json"

_lock = threading.Lock()
_manifest_cache = None
# (path, size, mtime_ns) of files whose hash was already checked in this process.
_verified: set[tuple[str, int, int]] = set()


def _manifest():
    global _manifest_cache
    with _lock:
        if _manifest_cache is None:
            with open(_MANIFEST, encoding="utf-8") as fh:
                _manifest_cache = json.load(fh)
        return _manifest_cache


def _entry(name):
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__} ({name!r}).")
    for entry in _manifest()["datasets"]:
        if entry["name"] == name:
            return entry
    allowed = ", ".join(repr(n) for n in names())
    raise ValueError(
        f"Invalid value for the 'name' parameter. Allowed values are {allowed}, "
        f"but got {name!r} instead."
    )


def _sha256(file):
    digest = hashlib.sha256()
    with open(file, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(name, record):
    file = _DATA / record["file"]
    try:
        st = file.stat()
    except FileNotFoundError:
        raise FileNotFoundError(
            f"Sample file {record['file']!r} of dataset {name!r} is missing from {_DATA}. "
            "Reinstall specconv, or regenerate the samples with "
            "`python datasets/make_samples.py` in a source checkout."
        ) from None
    key = (str(file), st.st_size, st.st_mtime_ns)
    with _lock:
        if key in _verified:
            return file
    got = _sha256(file)
    if got != record["sha256"]:
        raise ValueError(
            f"Sample file {file} of dataset {name!r} has sha256 {got}, but MANIFEST.json "
            f"expects {record['sha256']}: the installed file is corrupted or was modified. "
            "Reinstall specconv, or regenerate the samples with "
            "`python datasets/make_samples.py` in a source checkout."
        )
    with _lock:
        _verified.add(key)
    return file


def names():
    """Names of the bundled sample datasets.

    Returns
    -------
    names : list of str
        In manifest order (EEG, audio, impulse response, MRI).

    See Also
    --------
    path : where a sample file is, after checking its hash.
    load : read a sample as a :class:`~specconv.signal.VectorSignal`.

    Examples
    --------
    >>> import specconv.datasets
    >>> specconv.datasets.names()[:2]
    ['eeg-fif', 'eeg-edf']
    >>> "mri-bart" in specconv.datasets.names()
    True
    """
    return [entry["name"] for entry in _manifest()["datasets"]]


def describe(name):
    """The manifest record of one dataset (a copy): file, format, sha256, license, model.

    Parameters
    ----------
    name : str
        One of :func:`names`.

    Returns
    -------
    record : dict
        Keys ``name, file, sha256, bytes, format, description, license, companions,
        signal`` (what the file loads as) and ``model`` (generator parameters).

    Examples
    --------
    >>> from specconv import datasets
    >>> rec = datasets.describe("eeg-edf")
    >>> rec["file"], rec["signal"]["n_channels"], rec["license"]
    ('eeg_sample.edf', 32, 'CC0-1.0, generated by datasets/make_samples.py')
    """
    return json.loads(json.dumps(_entry(name)))


def path(name):
    """Path of a bundled sample file, after verifying its sha256 against the manifest.

    Parameters
    ----------
    name : str
        One of :func:`names`.

    Returns
    -------
    path : pathlib.Path
        The file to read. For ``"mri-bart"`` it is the ``.cfl`` file; its ``.hdr`` companion
        sits beside it and is verified too.

    Raises
    ------
    ValueError
        If ``name`` is unknown, or a file's sha256 does not match the manifest.
    FileNotFoundError
        If a file is missing from the installation.

    Notes
    -----
    Each file is hashed once per process (re-hashed if its size or mtime changes).

    Examples
    --------
    >>> from specconv import datasets
    >>> datasets.path("eeg-edf").name
    'eeg_sample.edf'
    >>> p = datasets.path("mri-bart")
    >>> p.suffix, p.with_suffix(".hdr").exists()
    ('.cfl', True)
    """
    entry = _entry(name)
    for companion in entry.get("companions", []):
        _verify(name, companion)
    return _verify(name, entry)


def load(name, **options):
    """Read a bundled sample as a vector-valued signal.

    Parameters
    ----------
    name : str
        One of :func:`names`.
    **options
        Passed to :func:`specconv.io.read` (e.g. ``picks`` for EEG).

    Returns
    -------
    signal : specconv.signal.VectorSignal
        ``data`` is ``(C, N)`` for EEG and audio, ``(slices, coils, H, W)`` (batched) for
        ``"mri-fastmri"`` and ``(coils, H, W)`` for ``"mri-bart"``.

    Raises
    ------
    ImportError
        If the reader's optional dependency (mne, soundfile, h5py) is missing; the message
        names the ``pip install "specconv[...]"`` extra.

    See Also
    --------
    path : the file itself, for other readers.
    specconv.io.read : the reader used here.

    Examples
    --------
    >>> from specconv import datasets
    >>> sig = datasets.load("audio-float32")
    >>> sig.n_channels, sig.sfreq, sig.data.shape
    (2, 48000.0, (2, 72000))
    """
    from .. import io

    return io.read(path(name), **options)
