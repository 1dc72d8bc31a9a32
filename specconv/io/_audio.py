"""Audio adapter: WAV through scipy.io.wavfile, FLAC/OGG through soundfile (extra ``audio``).

Layout is explicit: audio files store frames x channels, a :class:`VectorSignal` holds
``(C, N)``. Samples are floats; integer PCM maps to float by one rule, in both directions:

* signed ``b``-bit integers: ``x = k / 2**(b - 1)``, so the range is ``[-1, 1 - 2**(1 - b)]``;
* unsigned 8-bit: ``x = (k - 128) / 128``;
* 24-bit samples are read by scipy left-justified in 32 bits (``k * 256``), which the rule
  above with ``b = 32`` maps to the same value as ``k / 2**23``;

and writing quantizes with ``round(x * 2**(b - 1))`` (to nearest, ties to even). libsndfile
(soundfile) reads with the same rule, so both backends give the same numbers; for writing,
specconv quantizes itself and hands libsndfile integers, so libsndfile's own float -> int
scaling never applies. Writing never clips silently: values outside the integer range raise
(default) or are clipped with a :class:`ClippingWarning` (``clip="warn"``). Float files
(WAV FLOAT/DOUBLE, Ogg) hold values beyond full scale (±1, 0 dBFS), which players and
conversions to PCM clip: writing one warns (default), refuses (``clip="raise"``), clips
(``clip="warn"``) or stays silent (``clip="allow"``).
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
from scipy.io import wavfile

from .._optional import has_module, soft_import
from .._validate import as_array, check_option
from ..signal import VectorSignal, default_ch_names
from ._common import FormatError, reading, require_time_signal

logger = logging.getLogger("specconv")

__all__ = [
    "ClippingWarning",
    "read_wav",
    "read_soundfile",
    "write_wav",
    "write_soundfile",
    "true_stereo_kernel",
    "stereo_ir_kernel",
    "WAV_SUBTYPES",
]


class ClippingWarning(UserWarning):
    """Samples beyond full scale were clipped while writing, or written above 0 dBFS to a
    float file (where players and conversions to PCM will clip them)."""


#: Subtypes :func:`write_wav` accepts, with their bits per sample (None for floats).
WAV_SUBTYPES = {
    "PCM_U8": 8,
    "PCM_16": 16,
    "PCM_24": 24,
    "PCM_32": 32,
    "FLOAT": None,
    "DOUBLE": None,
}
#: Subtypes per soundfile container specconv writes.
SOUNDFILE_SUBTYPES: dict[str, dict[str, int | None]] = {
    "flac": {"PCM_16": 16, "PCM_24": 24},
    "ogg": {"VORBIS": None},
}
_SF_FORMAT = {"flac": "FLAC", "ogg": "OGG"}

_FLOAT_DTYPES = (np.float32, np.float64)


def _stereo_names(n):
    return ("left", "right") if n == 2 else default_ch_names(n)


def _check_dtype(dtype):
    if dtype is None:
        return None
    dtype = np.dtype(dtype)
    if dtype not in _FLOAT_DTYPES:
        raise ValueError(
            f"Invalid value for the 'dtype' parameter. Allowed values are float32, float64 "
            f"and None, but got {dtype} instead."
        )
    return dtype


def int_to_float(frames, dtype=None):
    """Map integer PCM frames ``(N, C)`` to float ``(C, N)`` by the module's one rule.

    Floats pass through (as a transposed view when no conversion is needed).

    Examples
    --------
    >>> import numpy as np
    >>> from specconv.io._audio import int_to_float
    >>> int_to_float(np.array([[-32768], [16384]], dtype=np.int16))
    array([[-1. ,  0.5]])
    >>> int_to_float(np.array([[0], [128], [255]], dtype=np.uint8))
    array([[-1.       ,  0.       ,  0.9921875]])
    """
    kind = frames.dtype.kind
    if kind == "f":
        out_dtype = dtype if dtype is not None else frames.dtype.newbyteorder("=")
        return frames.T.astype(out_dtype, copy=False)
    if kind not in "iu":
        raise FormatError(f"unsupported sample type {frames.dtype}.")
    out_dtype = dtype if dtype is not None else np.dtype(np.float64)
    bits = 8 * frames.dtype.itemsize
    out = np.empty(frames.shape[::-1], dtype=out_dtype)
    if kind == "u":  # WAV stores 8-bit (and smaller) samples unsigned, centred at 128
        np.subtract(frames.T, 2 ** (bits - 1), out=out, dtype=out_dtype)
        out *= 1.0 / 2 ** (bits - 1)
    else:
        np.multiply(frames.T, 1.0 / 2 ** (bits - 1), out=out, dtype=out_dtype)
    return out


def _wav_subtype(path, frames):
    """The file's sample format, exactly from libsndfile when installed, else from the data."""
    if has_module("soundfile"):
        import soundfile

        try:
            return soundfile.info(str(path)).subtype
        except Exception:  # noqa: BLE001 - libsndfile may refuse a file scipy reads
            logger.debug("soundfile could not identify %s; inferring the subtype", path)
    dt = frames.dtype
    if dt.kind == "f":
        return "FLOAT" if dt.itemsize == 4 else "DOUBLE"
    if dt.kind == "u":
        return "PCM_U8"
    if dt.itemsize == 4 and frames.size and not np.any(frames & 0xFF):
        # scipy left-justifies 24-bit samples in int32; the low byte is then always 0, and
        # such data holds exactly 24 bits either way.
        return "PCM_24"
    return f"PCM_{8 * dt.itemsize}"


def _scipy_read(path, *, mmap=False, allow_truncated=False):
    """scipy.io.wavfile.read with its harmless chatter moved to the log; frames are (N, C)."""
    with reading(path, "WAV", allow_truncated=allow_truncated):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", wavfile.WavFileWarning)
            rate, frames = wavfile.read(path, mmap=mmap)
        for w in caught:
            if issubclass(w.category, wavfile.WavFileWarning) and "not understood" in str(
                w.message
            ):
                # Metadata chunks (LIST, bext, smpl, cue ...) that carry no samples.
                logger.debug("%s: %s", path, w.message)
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        with open(path, "rb") as fh:
            container = fh.read(4).decode("ascii", "replace")
    if frames.ndim == 1:
        frames = frames[:, np.newaxis]
    return rate, frames, container


def read_wav(path, *, dtype=None, backend="scipy", allow_truncated=False):
    """Read a WAV file (RIFF, RIFX, RF64, WAVE_FORMAT_EXTENSIBLE; 8/16/24/32-bit, float).

    Parameters
    ----------
    path : path-like
    dtype : {None, float32, float64}
        Output dtype. Default: float64 for integer PCM, the file's own for float WAVs.
    backend : {"scipy", "soundfile"}
        scipy.io.wavfile (no extra dependency) or soundfile (extra ``audio``); both give
        the same values.
    allow_truncated : bool
        Read what is there when the file is shorter than its header says.

    Returns
    -------
    VectorSignal
        ``(C, N)``, domain ``"time"``, ``metadata["subtype"]`` the file's sample format
        (``"PCM_16"``, ``"PCM_24"``, ``"FLOAT"``, ...), ``metadata["container"]`` the RIFF
        variant.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> from scipy.io import wavfile
    >>> from specconv.io._audio import read_wav
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "tone.wav"
    >>> wavfile.write(path, 8000, np.array([[0, 16384], [-32768, 0]], dtype=np.int16))
    >>> sig = read_wav(path)
    >>> sig.data, sig.sfreq, sig.metadata["subtype"]
    (array([[ 0. , -1. ],
           [ 0.5,  0. ]]), 8000.0, 'PCM_16')
    """
    check_option("backend", backend, ("scipy", "soundfile"))
    dtype = _check_dtype(dtype)
    if backend == "soundfile":
        return read_soundfile(path, dtype=dtype, fmt="wav", allow_truncated=allow_truncated)
    rate, frames, container = _scipy_read(path, allow_truncated=allow_truncated)
    subtype = _wav_subtype(path, frames)
    data = int_to_float(frames, dtype)
    return VectorSignal(
        data,
        _stereo_names(data.shape[0]),
        sfreq=float(rate),
        metadata={
            "format": "wav",
            "subtype": subtype,
            "container": container,
            "source": (str(path),),
        },
    )


def read_soundfile(path, *, dtype=None, fmt=None, allow_truncated=False):
    """Read any file libsndfile reads (FLAC, OGG/Vorbis, WAV, AIFF ...) via soundfile.

    Integer files map to float by the module's rule (libsndfile's own normalisation).

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> from specconv.io._audio import read_soundfile
    >>> import soundfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "x.flac"
    >>> soundfile.write(path, np.array([[0, 16384]], dtype=np.int16), 8000)
    >>> read_soundfile(path).data
    array([[0. ],
           [0.5]])
    """
    sf = soft_import("soundfile", "audio", purpose="FLAC/OGG audio")
    dtype = _check_dtype(dtype)
    with reading(path, fmt or "audio", allow_truncated=allow_truncated):
        info = sf.info(str(path))
        if dtype is None:
            dtype = np.dtype(
                np.float32 if info.subtype in ("FLOAT", "VORBIS", "OPUS") else np.float64
            )
        frames, rate = sf.read(str(path), dtype=dtype.name, always_2d=True)
    data = frames.T
    return VectorSignal(
        data,
        _stereo_names(data.shape[0]),
        sfreq=float(rate),
        metadata={
            "format": fmt or info.format.lower(),
            "subtype": info.subtype,
            "container": info.format,
            "source": (str(path),),
        },
    )


# -- writing --------------------------------------------------------------------------------
def _integer_rate(sfreq, fmt):
    if not float(sfreq).is_integer():
        raise ValueError(
            f"{fmt} needs an integer sampling rate, got sfreq={sfreq}; resample first."
        )
    return int(sfreq)


def quantize(data, bits, *, clip="raise", unsigned=False):
    """Float ``(C, N)`` -> integer frames ``(N, C)`` by ``round(x * 2**(bits - 1))``.

    Raises (``clip="raise"``) or clips with a :class:`ClippingWarning` (``clip="warn"``) when
    a sample is outside ``[-1, 1 - 2**(1 - bits)]``. The result is left-justified in the
    smallest numpy integer type holding ``bits`` (24-bit samples in int32, times 256), the
    layout scipy and soundfile exchange.

    Examples
    --------
    >>> import numpy as np
    >>> from specconv.io._audio import quantize
    >>> quantize(np.array([[-1.0, 0.5]]), 16)
    array([[-32768],
           [ 16384]], dtype=int16)
    >>> quantize(np.array([[1.0]]), 16)
    Traceback (most recent call last):
    ...
    ValueError: the signal peaks at 1 (channel 0, sample 0), outside the range of 16-bit ...
    """
    check_option("clip", clip, ("raise", "warn"))
    x = np.asarray(data)
    if np.isnan(x).any():
        raise ValueError("the signal contains NaN, which integer PCM cannot store.")
    scale = 2.0 ** (bits - 1)
    hi = (scale - 1) / scale
    over = (x > hi) | (x < -1.0)
    if over.any():
        flat = int(np.argmax(np.abs(x)))
        ch, n = np.unravel_index(flat, x.shape)
        peak = float(x[ch, n])
        msg = (
            f"the signal peaks at {peak:.6g} (channel {ch}, sample {n}), outside the range "
            f"of {bits}-bit PCM [-1, {hi:.6g}]; {int(over.sum())} samples would clip"
        )
        if clip == "raise":
            raise ValueError(
                msg + ". Scale it down, write a float subtype ('FLOAT'), or pass "
                "clip='warn' to clip."
            )
        warnings.warn(msg + "; clipping them.", ClippingWarning, stacklevel=3)
    q = np.clip(np.rint(x.T * scale), -scale, scale - 1)
    if unsigned:
        return (q + scale).astype(np.uint8)
    if bits == 24:
        return (q.astype(np.int32) << 8).astype(np.int32)
    return q.astype(np.int16 if bits <= 16 else np.int32)


_CLIP = ("raise", "warn", "allow")


def _check_clip(clip, bits):
    """``clip`` for a subtype of ``bits`` (None: float): None means "raise" for integers."""
    if clip is None:
        return "raise" if bits is not None else None
    check_option("clip", clip, _CLIP)
    if clip == "allow" and bits is not None:
        raise ValueError(
            f"clip='allow' applies to float subtypes: {bits}-bit PCM cannot hold samples beyond "
            "full scale; use clip='raise' or 'warn'."
        )
    return clip


def _full_scale(data, clip):
    """Float samples beyond ±1 (0 dBFS): warn (``clip=None``), raise, clip or allow."""
    x = np.asarray(data)
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if not peak > 1.0 or clip == "allow":  # NaN compares False
        return x
    ch, n = np.unravel_index(int(np.argmax(np.abs(x))), x.shape)
    msg = (
        f"the signal peaks at {20 * np.log10(peak):+.1f} dBFS ({float(x[ch, n]):.6g}, "
        f"channel {ch}, sample {n}), above full scale (±1)"
    )
    fix = "scale it (specconv.apps.audio.normalize)"
    if clip == "raise":
        raise ValueError(f"{msg}; {fix}, or pass clip='allow' to write it as is.")
    if clip == "warn":
        warnings.warn(msg + "; clipping it.", ClippingWarning, stacklevel=4)
        return np.clip(x, -1.0, 1.0)
    warnings.warn(
        f"{msg}: a float file stores it, but players and conversions to PCM will clip it. "
        f"To write it: {fix}; clip='allow' (as is), 'warn' (clipped) or 'raise' (refused).",
        ClippingWarning,
        stacklevel=4,
    )
    return x


def _default_subtype(sig, allowed, fallback_float):
    subtype = sig.metadata.get("subtype")
    if subtype in allowed:
        return subtype
    return fallback_float(sig.data.dtype)


def write_wav(sig, path, *, subtype=None, clip=None):
    """Write a ``(C, N)`` time signal as a little-endian WAV file (RF64 above 4 GiB).

    Parameters
    ----------
    sig : VectorSignal
    path : path-like
        Temporary path chosen by :func:`specconv.io.write`.
    subtype : {"PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"}, optional
        Default: the subtype the signal was read with, else FLOAT for float32 data and
        DOUBLE for float64 (no silent rounding). PCM_24 needs soundfile (extra ``audio``).
    clip : {None, "raise", "warn", "allow"}
        Samples beyond full scale (±1): "raise" refuses them, "warn" clips them with a
        :class:`ClippingWarning`, "allow" (float subtypes only) writes them as they are.
        Default: "raise" for integer subtypes; for float subtypes a ClippingWarning, the
        samples written as they are.
    """
    require_time_signal(sig, "WAV")
    subtype = subtype or _default_subtype(
        sig, WAV_SUBTYPES, lambda dt: "FLOAT" if dt == np.float32 else "DOUBLE"
    )
    check_option("subtype", subtype, tuple(WAV_SUBTYPES))
    rate = _integer_rate(sig.sfreq, "WAV")
    bits = WAV_SUBTYPES[subtype]
    clip = _check_clip(clip, bits)
    if bits is None:
        frames = np.ascontiguousarray(
            _full_scale(sig.data, clip).T, dtype=np.float32 if subtype == "FLOAT" else np.float64
        )
    else:
        frames = quantize(sig.data, bits, clip=clip, unsigned=subtype == "PCM_U8")
    if subtype == "PCM_24":
        # scipy writes whole-byte containers only; libsndfile packs 24-bit samples.
        sf = soft_import("soundfile", "audio", purpose="writing 24-bit WAV")
        sf.write(str(path), frames, rate, subtype="PCM_24", format="WAV")
    else:
        wavfile.write(path, rate, frames)


def write_soundfile(sig, path, *, fmt, subtype=None, clip=None):
    """Write FLAC (PCM_16, PCM_24) or OGG/Vorbis through soundfile."""
    sf = soft_import("soundfile", "audio", purpose=f"writing {fmt.upper()} audio")
    require_time_signal(sig, fmt.upper())
    allowed = SOUNDFILE_SUBTYPES[fmt]
    default = "PCM_24" if fmt == "flac" else "VORBIS"
    subtype = subtype or _default_subtype(sig, allowed, lambda dt: default)
    check_option("subtype", subtype, tuple(allowed))
    rate = _integer_rate(sig.sfreq, fmt.upper())
    bits = allowed[subtype]
    clip = _check_clip(clip, bits)
    if bits is None:
        frames = np.ascontiguousarray(_full_scale(sig.data, clip).T, dtype=np.float32)
    else:
        frames = quantize(sig.data, bits, clip=clip)
    sf.write(str(path), frames, rate, subtype=subtype, format=_SF_FORMAT[fmt])


# -- impulse responses as conv kernels ------------------------------------------------------
def _ir_array(ir, n_channels, what):
    if isinstance(ir, VectorSignal):
        if ir.domain != "time" or ir.batched:
            raise ValueError(f"{what} must be an unbatched time signal, got {ir!r}.")
        arr = ir.data
    else:
        arr = as_array("ir", ir)
    if arr.ndim != 2 or arr.shape[0] != n_channels:
        raise ValueError(
            f"ir ({what}) must have shape ({n_channels}, N) (channels first; transpose a "
            f"(frames, channels) array), got shape {arr.shape}."
        )
    return arr


def true_stereo_kernel(ir, *, flip=False):
    """A 4-channel true-stereo impulse response as a 2 x 2 kernel ``weight[out, in, :]``.

    The channels follow the Web Audio ConvolverNode order: 0 = in L -> out L,
    1 = in L -> out R, 2 = in R -> out L, 3 = in R -> out R.

    The kernel is meant for **true convolution**, :func:`specconv.convolve` (scipy.signal
    semantics), which is how impulse responses are applied:
    ``out[o] = sum_i convolve(x[i], weight[o, i])``. :func:`specconv.conv` and
    :class:`specconv.SpectralConv` follow PyTorch and compute a cross-correlation; for them
    pass ``flip=True`` (time-reversed taps) and ``padding=N - 1`` for the full output.

    Parameters
    ----------
    ir : VectorSignal or ndarray [shape=(4, N)]
        Channels first. A ``(frames, 4)`` array from a file must be transposed.
    flip : bool
        Return the time-reversed kernel (for cross-correlating layers).

    Returns
    -------
    weight : ndarray [shape=(2, 2, N)]
        A view of ``ir`` (no copy).

    See Also
    --------
    stereo_ir_kernel : A stereo (2-channel) IR applied to a mono source.

    Examples
    --------
    >>> import numpy as np
    >>> from specconv.io import true_stereo_kernel
    >>> ir = np.arange(4)[:, None] * np.ones((4, 3))   # channel k holds the value k
    >>> w = true_stereo_kernel(ir)
    >>> w.shape, w[:, :, 0]
    ((2, 2, 3), array([[0., 2.],
           [1., 3.]]))
    """
    arr = _ir_array(ir, 4, "a true-stereo impulse response")
    # weight[out, in] = channel 2*in + out: reshape to (in, out, N), then swap.
    weight = arr.reshape(2, 2, arr.shape[-1]).transpose(1, 0, 2)
    return weight[..., ::-1] if flip else weight


def stereo_ir_kernel(ir, *, flip=False):
    """A stereo (2-channel, e.g. binaural) impulse response as per-ear kernels ``(2, 1, N)``.

    Convolving a mono source ``(1, M)`` with it gives the two ear signals:
    ``specconv.convolve(x, stereo_ir_kernel(ir))`` (true convolution, scipy semantics). For
    the cross-correlating :func:`specconv.conv` / :class:`specconv.SpectralConv` pass
    ``flip=True``.

    Parameters
    ----------
    ir : VectorSignal or ndarray [shape=(2, N)]
    flip : bool
        Return time-reversed taps.

    Returns
    -------
    weight : ndarray [shape=(2, 1, N)]
        A view of ``ir``.

    See Also
    --------
    true_stereo_kernel : 2 x 2 kernels from a 4-channel true-stereo IR.

    Examples
    --------
    >>> import numpy as np
    >>> from specconv.io import stereo_ir_kernel
    >>> stereo_ir_kernel(np.array([[1.0, 0.5], [0.0, 1.0]]), flip=True)
    array([[[0.5, 1. ]],
    <BLANKLINE>
           [[1. , 0. ]]])
    """
    arr = _ir_array(ir, 2, "a stereo impulse response")
    weight = arr[:, np.newaxis, :]
    return weight[..., ::-1] if flip else weight


def wav_info(path):
    """Header facts without decoding every sample where the backend allows it."""
    try:
        rate, frames, _ = _scipy_read(path, mmap=True)
        n, c = frames.shape
        subtype = _wav_subtype(path, frames)
        del frames
    except FormatError:
        sig = read_wav(path)  # 24-bit data cannot be memory-mapped
        c, n = sig.data.shape
        rate, subtype = sig.sfreq, sig.metadata["subtype"]
    return {"channels": c, "sfreq": float(rate), "n_times": n, "subtype": subtype}
