"""Read and write vector-valued signals: EEG (MNE), audio, multi-coil MRI, NumPy arrays.

:func:`read` picks an adapter from the file extension, checks it against the file's first
bytes, and returns a :class:`~specconv.signal.VectorSignal`; :func:`write` writes one
atomically (a temporary file next to the target, renamed only when complete, so an error or
Ctrl-C leaves nothing behind and never touches the input). The adapters import their optional
dependencies only when used: mne (extra ``eeg``; ``eeg-export`` for EDF/BDF/BrainVision/EEGLAB
output), soundfile (``audio``), h5py (``mri``).

=============  ==========================================  =====  =====  ==========
format         extensions                                  read   write  extra
=============  ==========================================  =====  =====  ==========
wav            .wav .wave                                  yes    yes    (audio: PCM_24 out)
flac, ogg      .flac; .ogg .oga                            yes    yes    audio
fif            .fif .fif.gz                                yes    yes    eeg
edf, bdf       .edf; .bdf                                  yes    yes    eeg / eeg-export
brainvision    .vhdr (+ .vmrk, .eeg)                       yes    yes    eeg / eeg-export
eeglab         .set (+ .fdt)                               yes    yes    eeg / eeg-export
gdf            .gdf                                        yes    no     eeg
mne            other formats mne.io.read_raw reads         yes    no     eeg
fastmri        .h5 .hdf5                                   yes    yes    mri
cfl            .cfl / .hdr (BART)                          yes    yes
npy, npz       .npy; .npz                                  yes    yes
=============  ==========================================  =====  =====  ==========
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .._atomic import atomic_output, check_not_aliased, files_behind
from .._typing import PathLike
from .._validate import check_option
from ..signal import VectorSignal
from . import _array, _audio, _eeg, _mri
from ._audio import ClippingWarning, stereo_ir_kernel, true_stereo_kernel
from ._common import FormatError, as_path
from ._eeg import from_mne, to_mne
from ._mri import image_to_kspace, kspace_to_image, rss

logger = logging.getLogger("specconv")

__all__ = [
    "read",
    "write",
    "reserve",
    "source_files",
    "info",
    "formats",
    "FormatInfo",
    "FormatError",
    "ClippingWarning",
    "from_mne",
    "to_mne",
    "true_stereo_kernel",
    "stereo_ir_kernel",
    "kspace_to_image",
    "image_to_kspace",
    "rss",
    "VectorSignal",
]


@dataclasses.dataclass(frozen=True)
class FormatInfo:
    """One supported file format (see :func:`formats`)."""

    name: str
    extensions: tuple[str, ...]
    description: str
    readable: bool
    writable: bool
    extra: str | None = None
    write_extra: str | None = None


_FORMATS = {
    f.name: f
    for f in (
        FormatInfo(
            "wav",
            (".wav", ".wave"),
            "WAV audio (RIFF/RIFX/RF64, PCM 8-32 bit, float)",
            True,
            True,
            None,
            None,
        ),
        FormatInfo("flac", (".flac",), "FLAC audio", True, True, "audio", "audio"),
        FormatInfo("ogg", (".ogg", ".oga"), "Ogg/Vorbis audio", True, True, "audio", "audio"),
        FormatInfo("fif", (".fif", ".fif.gz"), "MNE/Neuromag FIF", True, True, "eeg", "eeg"),
        FormatInfo(
            "edf", (".edf",), "European Data Format (EDF/EDF+)", True, True, "eeg", "eeg-export"
        ),
        FormatInfo("bdf", (".bdf",), "BioSemi BDF (24-bit EDF)", True, True, "eeg", "eeg-export"),
        FormatInfo(
            "brainvision",
            (".vhdr", ".ahdr"),
            "BrainVision (.vhdr + .vmrk + .eeg)",
            True,
            True,
            "eeg",
            "eeg-export",
        ),
        FormatInfo("eeglab", (".set",), "EEGLAB .set (+ .fdt)", True, True, "eeg", "eeg-export"),
        FormatInfo("gdf", (".gdf",), "General Data Format (GDF)", True, False, "eeg"),
        FormatInfo(
            "mne",
            (
                ".cnt",
                ".mff",
                ".nxe",
                ".snirf",
                ".data",
                ".sqd",
                ".con",
                ".ds",
                ".lay",
                ".nedf",
                ".mefd",
                ".ns3",
                ".cdt",
            ),
            "other formats mne.io.read_raw reads",
            True,
            False,
            "eeg",
        ),
        FormatInfo(
            "fastmri", (".h5", ".hdf5"), "fastMRI-style HDF5 k-space", True, True, "mri", "mri"
        ),
        FormatInfo("cfl", (".cfl",), "BART .cfl/.hdr (complex64, column-major)", True, True),
        FormatInfo("npy", (".npy",), "NumPy array", True, True),
        FormatInfo("npz", (".npz",), "NumPy archive", True, True),
    )
}

# Formats whose files start with a recognisable signature (see _sniff).
_SIGNED = {
    "wav",
    "flac",
    "ogg",
    "fif",
    "edf",
    "bdf",
    "gdf",
    "brainvision",
    "eeglab",
    "fastmri",
    "npy",
    "npz",
}
# Signatures that confirm a format without naming it alone.
_COMPATIBLE = {("eeglab", "matlab"), ("fif", "gzip"), ("mne", "matlab"), ("mne", "fastmri")}
_MNE_FORMATS = ("fif", "edf", "bdf", "brainvision", "eeglab", "gdf", "mne")
_DIRECTORY_FORMATS = (".ds", ".mff")


def formats() -> tuple[FormatInfo, ...]:
    """The supported file formats.

    Returns
    -------
    tuple of FormatInfo
        ``name``, ``extensions``, ``description``, ``readable``, ``writable`` and the pip
        extras needed to read (``extra``) and write (``write_extra``).

    Examples
    --------
    >>> from specconv.io import formats
    >>> [f.name for f in formats() if not f.writable]
    ['gdf', 'mne']
    >>> next(f for f in formats() if f.name == "flac").extra
    'audio'
    """
    return tuple(_FORMATS.values())


def _suffix(path):
    name = path.name.lower()
    if name.endswith(".fif.gz"):
        return ".fif.gz"
    return path.suffix.lower()


def _format_from_extension(path):
    ext = _suffix(path)
    if ext == ".hdr":
        return None  # BART and NIRx share it: the content decides
    for f in _FORMATS.values():
        if ext in f.extensions:
            return f.name
    return None


def _sniff(path):
    """The format the first bytes of ``path`` announce, or None."""
    if path.is_dir():
        return None
    with open(path, "rb") as fh:
        head = fh.read(64)
    if head[:4] in (b"RIFF", b"RIFX", b"RF64") and head[8:12] == b"WAVE":
        return "wav"
    signatures = (
        (b"fLaC", "flac"),
        (b"OggS", "ogg"),
        (b"\x89HDF\r\n\x1a\n", "fastmri"),
        (b"\x93NUMPY", "npy"),
        (b"PK\x03\x04", "npz"),
        (b"PK\x05\x06", "npz"),
        (b"\xffBIOSEMI", "bdf"),
        (b"0       ", "edf"),
        (b"GDF", "gdf"),
        (b"\x00\x00\x00\x64\x00\x00\x00\x1f", "fif"),
        (b"\x1f\x8b", "gzip"),
        (b"MATLAB", "matlab"),
    )
    for magic, name in signatures:
        if head.startswith(magic):
            return name
    text = head.lstrip(b"\xef\xbb\xbf")
    if text.startswith((b"Brain Vision Data Exchange", b"BrainVision Data Exchange")):
        return "brainvision"
    if text.startswith(b"# Dimensions"):
        return "cfl"
    if text.startswith(b"[GeneralInfo]"):  # NIRx .hdr
        return "mne"
    return None


def _detect(path):
    by_ext = _format_from_extension(path)
    by_content = _sniff(path)
    ext = _suffix(path) or "(none)"
    if by_ext is None:
        if by_content in _FORMATS:
            if by_content in _MNE_FORMATS and by_content != "mne":
                raise FormatError(
                    f"{str(path)!r} looks like a {by_content} file but its extension is "
                    f"{ext}; MNE reads {by_content} only from files named "
                    f"{' or '.join(_FORMATS[by_content].extensions)}: rename it."
                )
            logger.info("%s: no known extension, reading as %s (content)", path, by_content)
            return by_content
        raise FormatError(
            f"Cannot tell the format of {str(path)!r}: the extension {ext} is not one "
            f"specconv knows and the content is not recognised. Supported formats: "
            f"{', '.join(_FORMATS)} (see specconv.io.formats()); pass format=... to choose one."
        )
    if by_content is not None and by_content != by_ext and (by_ext, by_content) not in _COMPATIBLE:
        raise FormatError(
            f"{str(path)!r} has the extension {ext} ({by_ext}) but its content looks like "
            f"{by_content}; rename the file or pass format=... explicitly."
        )
    if by_content is None and by_ext in _SIGNED:
        size = path.stat().st_size if path.is_file() else None
        what = "is empty" if size == 0 else "does not start with its format's signature"
        raise FormatError(
            f"{str(path)!r} is not a valid {_FORMATS[by_ext].description} file: it {what}. "
            "The file is corrupt or has the wrong extension."
        )
    return by_ext


def _check_format(fmt, action):
    allowed = tuple(
        n for n, f in _FORMATS.items() if (f.readable if action == "read" else f.writable)
    )
    return check_option("format", fmt, allowed)


def _check_options(func, options, fmt, action, fixed):
    params = inspect.signature(func).parameters
    allowed = [n for n, p in params.items() if n not in fixed and p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(allowed))
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(options) & set(fixed))  # the rest goes to a third-party reader
    if unknown:
        raise TypeError(
            f"{action}() got unknown option(s) {unknown} for format {fmt!r}; allowed options "
            f"are {allowed or 'none'}."
        )


# -- reading --------------------------------------------------------------------------------
# format -> (reader, fixed keyword arguments)
_READERS: dict[str, tuple[Callable[..., VectorSignal], dict[str, Any]]] = {
    "wav": (_audio.read_wav, {}),
    "flac": (_audio.read_soundfile, {"fmt": "flac"}),
    "ogg": (_audio.read_soundfile, {"fmt": "ogg"}),
    **{fmt: (_eeg.read_eeg, {"fmt": fmt}) for fmt in _MNE_FORMATS},
    "fastmri": (_mri.read_fastmri, {}),
    "cfl": (_mri.read_cfl, {}),
    "npy": (_array.read_npy, {}),
    "npz": (_array.read_npz, {}),
}


def read(  # noqa: A002 - the natural name for users
    path: PathLike, *, format: str | None = None, **options: Any
) -> VectorSignal:
    """Read a file as a :class:`~specconv.signal.VectorSignal`.

    Parameters
    ----------
    path : str or path-like
        The file (for BrainVision the ``.vhdr``, for BART the ``.cfl`` or ``.hdr``).
    format : str, optional
        Force a format (see :func:`formats`) instead of detecting it. Detection uses the
        extension, checked against the file's first bytes (a mismatch is an error); a file
        without a known extension is recognised by its content (MNE's readers, however,
        need the usual extension).
    **options
        Passed to the adapter:

        * EEG (``fif``, ``edf``, ``bdf``, ``brainvision``, ``eeglab``, ``gdf``, ``mne``):
          ``picks``, ``reject_by_annotation`` (None or ``"NaN"``), ``dtype``,
          ``allow_truncated``, and any :func:`mne.io.read_raw` option;
        * ``wav``: ``dtype``, ``backend`` (``"scipy"`` or ``"soundfile"``),
          ``allow_truncated``; ``flac``/``ogg``: ``dtype``, ``allow_truncated``;
        * ``fastmri``: ``dataset``; ``cfl``: ``coil_axis`` (default 3, BART's COIL_DIM),
          ``domain`` (default ``"kspace"``), ``mmap``;
        * ``npy``/``npz``: ``coil_axis`` (default 0), ``batch_axis``, ``domain`` (default
          "time" with ``sfreq``, else "kspace" for complex and "image" for real arrays),
          ``sfreq``, ``spacing``; ``npz``: ``key``; ``npy``: ``mmap``.

    Returns
    -------
    VectorSignal
        ``metadata["format"]`` names the format; ``metadata["source"]`` the file(s) read,
        which :func:`write` will refuse to overwrite.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    FormatError
        Unknown format, extension and content disagreeing, truncated or corrupt file.
    ImportError
        A needed optional dependency is missing (the message names the pip extra).

    See Also
    --------
    write : The way back to a file.
    info : A short summary without loading the samples where possible.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> from specconv import io
    >>> from specconv.signal import VectorSignal
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> sig = VectorSignal(np.zeros((2, 800)), ("left", "right"), sfreq=8000.0)
    >>> io.write(sig, folder / "quiet.wav", subtype="PCM_16")
    >>> back = io.read(folder / "quiet.wav")
    >>> back.ch_names, back.sfreq, back.metadata["subtype"]
    (('left', 'right'), 8000.0, 'PCM_16')
    """
    path = as_path(path)
    if not path.exists():
        raise FileNotFoundError(f"No such file: {str(path)!r}.")
    if path.is_dir() and _suffix(path) not in _DIRECTORY_FORMATS:
        raise IsADirectoryError(f"{str(path)!r} is a directory, not a signal file.")
    fmt = _detect(path) if format is None else _check_format(format, "read")
    reader, fixed = _READERS[fmt]
    _check_options(reader, options, fmt, "read", fixed)
    sig = reader(path, **fixed, **options)
    logger.debug("read %s as %s: %r", path, fmt, sig)
    return sig


# -- writing --------------------------------------------------------------------------------
def _targets(fmt, path):
    if fmt == "brainvision":
        if _suffix(path) != ".vhdr":
            raise ValueError(f"a BrainVision output must be named *.vhdr, got {str(path)!r}.")
        return [path.with_suffix(s) for s in _eeg.EXPORTS["brainvision"][2]]
    if fmt == "cfl":
        return list(_mri.cfl_paths(path))
    return [path]


# format -> (writer, fixed keyword arguments, which temporary path(s) it receives)
_WRITERS: dict[str, tuple[Callable[..., None], dict[str, Any], str]] = {
    "wav": (_audio.write_wav, {}, "first"),
    "flac": (_audio.write_soundfile, {"fmt": "flac"}, "first"),
    "ogg": (_audio.write_soundfile, {"fmt": "ogg"}, "first"),
    "fif": (_eeg.write_fif, {}, "first"),
    **{fmt: (_eeg.write_export, {"fmt": fmt}, "last") for fmt in _eeg.EXPORTS},
    "fastmri": (_mri.write_fastmri, {}, "first"),
    "cfl": (_mri.write_cfl, {}, "all"),
    "npy": (_array.write_npy, {}, "first"),
    "npz": (_array.write_npz, {}, "first"),
}


def write(  # noqa: A002
    sig: VectorSignal,
    path: PathLike,
    *,
    format: str | None = None,
    overwrite: bool = False,
    **options: Any,
) -> None:
    """Write a signal to a file, atomically.

    The file is written under a temporary name in the target directory and renamed into
    place only when complete: on any error (or KeyboardInterrupt) no partial file remains.
    The files the signal was read from are never overwritten, even with ``overwrite=True``.

    Parameters
    ----------
    sig : VectorSignal
    path : str or path-like
        Target; its extension picks the format unless ``format`` is given. BrainVision
        (``x.vhdr``) also writes ``x.vmrk`` and ``x.eeg``; BART (``x.cfl``) ``x.hdr``.
    format : str, optional
        A writable format from :func:`formats`.
    overwrite : bool
        Replace existing files.
    **options
        Passed to the adapter:

        * ``wav``: ``subtype`` (``"PCM_U8"``, ``"PCM_16"``, ``"PCM_24"``, ``"PCM_32"``,
          ``"FLOAT"``, ``"DOUBLE"``; default: the subtype read, else FLOAT for float32 and
          DOUBLE for float64 data), ``clip`` (``"raise"``, ``"warn"``: clip, ``"allow"``:
          float only; default raise for PCM, a ClippingWarning above 0 dBFS for floats);
        * ``flac``: ``subtype`` (``"PCM_16"``, ``"PCM_24"``), ``clip``; ``ogg``: ``subtype``
          (``"VORBIS"``), ``clip``;
        * ``fif``: ``fmt`` (``"single"``/``"double"``, default by dtype), ``ch_types``;
          ``edf``/``bdf``/``brainvision``/``eeglab``: ``ch_types`` and
          :func:`mne.export.export_raw` options (``physical_range`` ...);
        * ``fastmri``: ``dataset``, ``compression``; ``npz``: ``compressed``.

    Raises
    ------
    FileExistsError
        The target exists and ``overwrite`` is False.
    ValueError
        The target is the input file (under any name: hard link, symlink, or the file a
        memory-mapped signal reads); the signal does not fit the format (e.g. a batched
        signal to WAV, samples that would clip with ``clip="raise"``).
    FileNotFoundError, PermissionError
        The output directory is missing or not writable (read-only file system included).
    OSError
        The disk filled up while writing (``errno.ENOSPC``, the target in ``filename``);
        nothing partial is kept.
    ImportError
        A needed optional dependency is missing (the message names the pip extra).

    See Also
    --------
    read : The way in.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> from specconv import io
    >>> from specconv.signal import VectorSignal
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> loud = VectorSignal(np.full((1, 10), 1.5), sfreq=1000.0)
    >>> io.write(loud, folder / "loud.wav", subtype="PCM_16")
    Traceback (most recent call last):
    ...
    ValueError: the signal peaks at 1.5 (channel 0, sample 0), outside the range of 16-bit PCM ...
    >>> sorted(p.name for p in folder.iterdir())   # nothing left behind
    []
    >>> io.write(loud, folder / "loud.npz")
    >>> io.read(folder / "loud.npz").data.max()
    np.float64(1.5)
    """
    if not isinstance(sig, VectorSignal):
        raise TypeError(f"sig must be a VectorSignal, got {type(sig).__name__}.")
    with reserve(path, format=format, overwrite=overwrite, **options) as put:
        put(sig)


def source_files(sig: VectorSignal) -> list:
    """The files ``sig`` was read from or still reads (a memory map): outputs never go there.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> from specconv import io
    >>> from specconv.signal import VectorSignal
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "x.npz"
    >>> io.write(VectorSignal(np.zeros((2, 8)), sfreq=100.0), path)
    >>> [p.name for p in map(pathlib.Path, io.source_files(io.read(path)))]
    ['x.npz']
    """
    return [*(sig.metadata.get("source") or ()), *files_behind(sig.data)]


@contextlib.contextmanager
def reserve(
    path: PathLike,
    *,
    format: str | None = None,  # noqa: A002
    overwrite: bool = False,
    protected: Iterable = (),
    **options: Any,
) -> Iterator[Callable[[VectorSignal], None]]:
    """:func:`write` in two steps: check and reserve ``path`` now, write a signal later.

    Yields ``put(sig)``, which writes into a temporary folder beside ``path``; the files move
    into place when the block ends without an error, and nothing is left if it raises (or
    the process is interrupted). Compute inside the block: an unwritable target, an existing
    one without ``overwrite``, or one of the ``protected`` files (e.g. :func:`source_files`
    of the input) fails before the work.

    Parameters
    ----------
    path, format, overwrite, **options
        As for :func:`write`.
    protected : iterable of path-like
        Files the output must not be (the inputs).

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> from specconv import io
    >>> from specconv.signal import VectorSignal
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> with io.reserve(folder / "y.npz") as put:
    ...     y = VectorSignal(np.ones((2, 8)), sfreq=100.0)   # the work
    ...     put(y)
    >>> sorted(p.name for p in folder.iterdir())
    ['y.npz']
    """
    path = as_path(path)
    if format is None:
        fmt = _format_from_extension(path)
        if fmt is None and _suffix(path) == ".hdr":
            fmt = "cfl"
        if fmt is None or not _FORMATS[fmt].writable:
            writable = sorted(e for f in _FORMATS.values() if f.writable for e in f.extensions)
            raise FormatError(
                f"Cannot choose an output format for {str(path)!r} from its extension "
                f"{_suffix(path) or '(none)'}; writable extensions are {writable} (or pass "
                "format=...)."
            )
    else:
        fmt = _check_format(format, "write")
    writer, fixed, which = _WRITERS[fmt]
    _check_options(writer, options, fmt, "write", fixed)
    protected = [*protected]  # put() adds the signal's own files; the final check sees them
    targets = _targets(fmt, path)
    with atomic_output(targets, overwrite=overwrite, protected=protected, label=path) as tmp:

        def put(sig):
            for source in source_files(sig):
                for t in targets:
                    check_not_aliased(t, [source], name="path")
                protected.append(source)
            writer(sig, {"first": tmp[0], "last": tmp[-1], "all": tmp}[which], **fixed, **options)

        yield put


# -- summaries ------------------------------------------------------------------------------
def _time_info(d, dtype):
    """:func:`info`'s fields of a (channels, n_times) recording sampled at ``d["sfreq"]``."""
    return dict(
        domain="time",
        channels=d["channels"],
        batch=None,
        shape=(d["channels"], d["n_times"]),
        sfreq=d["sfreq"],
        spacing=None,
        dtype=dtype,
        duration=d["n_times"] / d["sfreq"],
    )


def _summary(sig):
    return {
        "domain": sig.domain,
        "channels": sig.n_channels,
        "batch": sig.n_batch,
        "shape": tuple(sig.data.shape),
        "sfreq": sig.sfreq,
        "spacing": sig.spacing,
        "dtype": str(sig.data.dtype),
        "duration": sig.duration,
    }


def info(path: PathLike, *, format: str | None = None) -> dict[str, Any]:  # noqa: A002
    """A short description of a file, for ``specconv info`` and quick checks.

    Reads headers only where the format allows (EEG, WAV except 24-bit, HDF5, BART, .npy).

    Returns
    -------
    dict
        ``format``, ``path``, ``domain``, ``channels``, ``batch`` (None when unbatched),
        ``shape`` (of the data :func:`read` returns), ``sfreq`` (Hz or None), ``spacing``,
        ``dtype`` (of the data read returns), ``duration`` (s or None), plus format details
        (``subtype`` for audio, ``n_annotations``/``ch_types`` for EEG, ``bart_dims``).

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> from specconv import io
    >>> from specconv.signal import VectorSignal
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "x.wav"
    >>> io.write(VectorSignal(np.zeros((2, 4000), np.float32), sfreq=8000.0), path)
    >>> d = io.info(path)
    >>> d["format"], d["channels"], d["sfreq"], d["duration"], d["subtype"]
    ('wav', 2, 8000.0, 0.5, 'FLOAT')
    """
    path = as_path(path)
    if not path.exists():
        raise FileNotFoundError(f"No such file: {str(path)!r}.")
    if path.is_dir() and _suffix(path) not in _DIRECTORY_FORMATS:
        raise IsADirectoryError(f"{str(path)!r} is a directory, not a signal file.")
    fmt = _detect(path) if format is None else _check_format(format, "read")
    out = {"format": fmt, "path": str(path)}
    if fmt in _MNE_FORMATS:
        d = _eeg.eeg_info(path, fmt=fmt)
        out.update(
            _time_info(d, "float64"), n_annotations=d["n_annotations"], ch_types=d["ch_types"]
        )
    elif fmt == "wav":
        d = _audio.wav_info(path)
        dtype = "float32" if d["subtype"] == "FLOAT" else "float64"
        out.update(_time_info(d, dtype), subtype=d["subtype"])
    elif fmt == "fastmri":
        d = _mri.fastmri_info(path)
        shape = d["shape"] if len(d["shape"]) == 4 else (d["shape"][0], 1, *d["shape"][1:])
        out.update(
            domain="kspace",
            channels=d["channels"],
            batch=d["batch"],
            shape=shape,
            sfreq=None,
            spacing=None,
            dtype=d["dtype"],
            duration=None,
        )
    elif fmt == "cfl":
        sig = _mri.read_cfl(path, mmap=True)
        out.update(_summary(sig), bart_dims=sig.metadata["bart_dims"])
    elif fmt == "npy":
        out.update(_summary(_array.read_npy(path, mmap=True)))
    else:
        sig = read(path, format=fmt)
        out.update(_summary(sig))
        if "subtype" in sig.metadata:
            out["subtype"] = sig.metadata["subtype"]
    return out
