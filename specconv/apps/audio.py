"""Audio with the kernel matrix: true-stereo reverb, binaural rendering, crosstalk cancellation.

Every multichannel acoustic path is a matrix of impulse responses, i.e. a conv layer:

* a true-stereo reverb is a ``2 × 2`` matrix (:func:`true_stereo_reverb`);
* ``L`` loudspeakers heard at two ears through binaural room impulse responses (BRIRs) are a
  ``2 × L`` matrix, the *plant* (:func:`binaural_plant`);
* a crosstalk canceller is a regularized inverse of that plant
  (:func:`crosstalk_canceller`, built on :func:`specconv.kernels.inverse`) so that each ear
  hears only its own program channel; :func:`channel_separation` measures how well, frequency
  by frequency;
* levels: :func:`peak_dbfs`, :func:`loudness` (ITU-R BS.1770 integrated LUFS) and
  :func:`normalize` to a peak or a loudness before writing (:func:`specconv.io.write`
  refuses PCM beyond full scale and warns about float files above 0 dBFS).

Layers take ``(channels, samples)`` arrays; impulse responses are applied by true
convolution (scipy.signal semantics for the taps, as :func:`specconv.kernels.fir_layer`).
"""

from __future__ import annotations

import numbers

import numpy as np

from .._validate import as_array, as_int, check_memory, check_option
from ..io import true_stereo_kernel
from ..kernels import fir_layer, inverse
from ..layers import SpectralConv

__all__ = [
    "true_stereo_reverb",
    "read_brir_mat",
    "binaural_plant",
    "crosstalk_canceller",
    "channel_separation",
    "peak_dbfs",
    "loudness",
    "k_weighting",
    "normalize",
]

MODES = ("full", "causal")


def true_stereo_reverb(ir, *, mode="full"):
    """A true-stereo reverb as one ``2 × 2`` layer.

    ``out_L = in_L * ir[0] + in_R * ir[2]``, ``out_R = in_L * ir[1] + in_R * ir[3]``: the
    Web Audio ``ConvolverNode`` order of a 4-channel impulse response (in L → out L,
    in L → out R, in R → out L, in R → out R).

    Parameters
    ----------
    ir : array_like [shape=(4, N)] or VectorSignal
        Channels first (transpose a ``(frames, 4)`` array from a WAV file).
    mode : {"full", "causal"}
        "full": the whole reverberant output, ``n + N − 1`` samples; "causal": as long as the
        input (the tail cut off).

    Returns
    -------
    layer : SpectralConv [2 -> 2 channels, kernel (N,)]

    See Also
    --------
    specconv.io.true_stereo_kernel : the ``(2, 2, N)`` kernel alone.

    Examples
    --------
    >>> import numpy as np
    >>> from specconv.apps.audio import true_stereo_reverb
    >>> ir = np.zeros((4, 3)); ir[0, 0] = 1.0; ir[2, 1] = 0.5      # L->L now, R->L later
    >>> true_stereo_reverb(ir)(np.array([[1.0, 0.0], [0.0, 2.0]]))
    array([[1., 0., 1., 0.],
           [0., 0., 0., 0.]])
    """
    mode = check_option("mode", mode, MODES)
    return fir_layer(np.asarray(true_stereo_kernel(ir)), mode=mode)


def read_brir_mat(path):
    """Read a BRIR from a MATLAB struct ``data`` with fields ``ir`` ``(N, 2)`` and ``fs``.

    The layout of the communication-acoustics exercise files (``brir_sweep±40.mat``).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    ir : ndarray, float64 [shape=(2, N)]
        Left ear, right ear.
    fs : float
        Sampling rate in Hz.

    Examples
    --------
    >>> from specconv.apps.audio import read_brir_mat
    >>> ir, fs = read_brir_mat("brir_sweep+40.mat")      # doctest: +SKIP
    >>> ir.shape, fs                                      # doctest: +SKIP
    ((2, 66150), 44100.0)
    """
    import scipy.io

    mat = scipy.io.loadmat(str(path), squeeze_me=True)
    if (
        "data" not in mat
        or mat["data"].dtype.names is None
        or not {"ir", "fs"} <= set(mat["data"].dtype.names)
    ):
        raise ValueError(f"{path} holds no struct 'data' with fields 'ir' and 'fs'.")
    data = mat["data"]
    ir = np.asarray(data["ir"][()], dtype=np.float64)
    if ir.ndim != 2 or 2 not in ir.shape:
        raise ValueError(f"'ir' in {path} must be (N, 2) or (2, N), got shape {ir.shape}.")
    ir = ir.T if ir.shape[1] == 2 else ir
    return ir, float(data["fs"][()])


def binaural_plant(brirs, *, mode="full"):
    """The ``2 × L`` loudspeakers-to-ears plant from one BRIR pair per loudspeaker.

    ``ears = plant(speakers)``: ear ``e`` hears ``sum_s brirs[s][e] * speaker_s``. With a
    single loudspeaker this is binaural rendering of a mono source at its position.

    Parameters
    ----------
    brirs : sequence of array_like [shape=(2, N)], or array_like [shape=(L, 2, N)]
        ``brirs[s]`` = (left ear, right ear) impulse responses of loudspeaker ``s``.
    mode : {"full", "causal"}
        See :func:`true_stereo_reverb`.

    Returns
    -------
    plant : SpectralConv [L -> 2 channels]

    Examples
    --------
    >>> import numpy as np
    >>> from specconv.apps.audio import binaural_plant
    >>> left_spk = np.array([[1.0, 0.0], [0.0, 0.5]])    # near ear now, far ear later
    >>> right_spk = left_spk[::-1]
    >>> plant = binaural_plant([left_spk, right_spk])
    >>> plant(np.array([[1.0, 0.0], [0.0, 0.0]]))        # only the left loudspeaker
    array([[1. , 0. , 0. ],
           [0. , 0.5, 0. ]])
    """
    mode = check_option("mode", mode, MODES)
    h = as_array("brirs", np.asarray(brirs))
    if h.ndim != 3 or h.shape[1] != 2:
        raise ValueError(
            f"brirs must have shape (L, 2, N): one (left, right) pair per loudspeaker, got "
            f"shape {h.shape}."
        )
    return fir_layer(np.ascontiguousarray(h.transpose(1, 0, 2)), mode=mode)


def _check_fs(fs):
    if not isinstance(fs, numbers.Real) or isinstance(fs, bool) or not fs > 0:
        raise ValueError(f"fs must be a positive number (Hz), got {fs!r}.")
    return float(fs)


def _check_band(band, fs):
    try:
        lo, hi = (float(b) for b in band)
    except (TypeError, ValueError):
        raise ValueError(f"band must be a pair (low, high) in Hz, got {band!r}.") from None
    if not 0 <= lo < hi <= fs / 2:
        raise ValueError(f"band must satisfy 0 <= low < high <= fs/2 = {fs / 2}, got {band!r}.")
    return lo, hi


def crosstalk_canceller(
    plant,
    n_taps,
    *,
    fs,
    band=(150.0, 6000.0),
    reg=0.01,
    reg_outside=100.0,
    delay=None,
    window=("tukey", 0.5),
    mode="full",
):
    """A crosstalk canceller: the plant's Tikhonov-regularized inverse as an FIR layer.

    Program channel ``i`` should reach ear ``i`` only: the canceller ``C`` makes
    ``plant @ C ≈ delay · I``. It is :func:`specconv.kernels.inverse` with a two-level
    regularization ``β(f)``: ``reg · mean|H|²`` inside ``band`` and ``reg_outside`` times
    that outside (where loudspeakers cannot reproduce, or inversion would only boost what
    the plant lacks). Relative to ``mean|H|²`` (the plant's mean squared entry over all
    frequencies) the weight does not depend on the recording level.

    Parameters
    ----------
    plant : SpectralConv [L -> 2]
        E.g. :func:`binaural_plant`; ``L >= 2`` loudspeakers (``L > 2``: minimum-norm).
    n_taps : int
        Length of each canceller FIR. Reverberant plants need about their own length.
    fs : float
        Sampling rate (Hz) for ``band``.
    band : (float, float)
        Where to cancel, in Hz.
    reg : float
        In-band ``β`` relative to ``mean|H|²``: smaller cancels deeper and costs more
        loudspeaker effort and robustness.
    reg_outside : float
        Factor on ``β`` outside ``band``.
    delay, window, mode
        As :func:`specconv.kernels.inverse` (default delay ``n_taps // 2``).

    Returns
    -------
    canceller : SpectralConv [2 -> L]

    See Also
    --------
    channel_separation : how well it cancels.

    Examples
    --------
    >>> import numpy as np
    >>> from specconv.apps.audio import binaural_plant, channel_separation, crosstalk_canceller
    >>> near = np.zeros(32); near[0] = 1.0
    >>> far = np.zeros(32); far[3] = 0.6                 # the other ear: later and softer
    >>> plant = binaural_plant([[near, far], [far, near]])
    >>> ctc = crosstalk_canceller(plant, 256, fs=8000.0, band=(100.0, 3000.0), reg=1e-4)
    >>> f, sep = channel_separation(plant, ctc, fs=8000.0)
    >>> bool(np.median(sep[(f > 100) & (f < 3000)]) > 40)
    True
    """
    if not isinstance(plant, SpectralConv):
        raise TypeError(f"plant must be a SpectralConv, got {type(plant).__name__}.")
    if plant.out_channels != 2 or plant.in_channels < 2:
        raise ValueError(
            f"plant must map L >= 2 loudspeakers to 2 ears, got {plant.in_channels} -> "
            f"{plant.out_channels} channels."
        )
    fs = _check_fs(fs)
    lo, hi = _check_band(band, fs)
    for name, value in (("reg", reg), ("reg_outside", reg_outside)):
        if not isinstance(value, numbers.Real) or not value > 0:
            raise ValueError(f"{name} must be a positive number, got {value!r}.")
    span = plant.dilation[0] * (plant.kernel_size[0] - 1) + 1
    L = 1 << int(np.ceil(np.log2(max(span, 1024))))
    scale = float(np.mean(np.abs(plant.frequency_response(L)) ** 2))
    beta_in = reg * scale

    def beta(f):
        hz = np.abs(f) * fs
        return np.where((hz >= lo) & (hz <= hi), beta_in, beta_in * reg_outside)

    return inverse(plant, n_taps, reg=beta, delay=delay, window=window, mode=mode)


def channel_separation(plant, canceller=None, *, fs, nfft=None):
    """Channel separation at each ear, in dB, frequency by frequency.

    With ``S(f) = plant(f) @ canceller(f)`` (program channels to ears), the separation at ear
    ``e`` is ``20·log10(|S_ee| / |S_e,other|)``: how much louder the ear's own program is than
    the other one. Without a canceller, the plant's natural separation (loudspeaker ``e`` as
    ear ``e``'s program).

    Parameters
    ----------
    plant : SpectralConv [L -> 2]
    canceller : SpectralConv [2 -> L], optional
    fs : float
    nfft : int, optional
        Frequency grid (default: a power of two at least the combined kernel span).

    Returns
    -------
    freqs : ndarray [shape=(F,)], Hz
    separation : ndarray [shape=(F, 2)], dB, for the left and right ear

    Examples
    --------
    >>> import numpy as np
    >>> from specconv.apps.audio import binaural_plant, channel_separation
    >>> plant = binaural_plant([[[1.0, 0.0], [0.1, 0.0]], [[0.1, 0.0], [1.0, 0.0]]])
    >>> f, sep = channel_separation(plant, fs=100.0, nfft=8)
    >>> np.round(sep[0], 6)                               # 1 against 0.1: 20 dB
    array([20., 20.])
    """
    fs = _check_fs(fs)
    if not isinstance(plant, SpectralConv):
        raise TypeError(f"plant must be a SpectralConv, got {type(plant).__name__}.")
    spans = [plant.dilation[0] * (plant.kernel_size[0] - 1) + 1]
    if canceller is not None:
        if not isinstance(canceller, SpectralConv):
            raise TypeError(f"canceller must be a SpectralConv, got {type(canceller).__name__}.")
        if canceller.out_channels != plant.in_channels or canceller.in_channels != 2:
            raise ValueError(
                f"canceller must map 2 program channels to the plant's {plant.in_channels} "
                f"loudspeakers, got {canceller.in_channels} -> {canceller.out_channels}."
            )
        spans.append(canceller.dilation[0] * (canceller.kernel_size[0] - 1) + 1)
    if nfft is None:
        nfft = 1 << int(np.ceil(np.log2(sum(spans))))
    nfft = as_int("nfft", nfft, minimum=max(spans))
    check_memory((plant.out_channels, plant.in_channels, nfft), 16, "frequency response", "nfft")
    S = plant.frequency_response(nfft)
    if canceller is not None:
        S = S @ canceller.frequency_response(nfft)
    elif plant.in_channels != 2:
        raise ValueError("without a canceller the plant must be 2 x 2.")
    mag = np.abs(S)
    tiny = np.finfo(float).tiny
    with np.errstate(divide="ignore"):
        sep = np.stack(
            [
                20 * np.log10(np.maximum(mag[:, 0, 0], tiny) / np.maximum(mag[:, 0, 1], tiny)),
                20 * np.log10(np.maximum(mag[:, 1, 1], tiny) / np.maximum(mag[:, 1, 0], tiny)),
            ],
            axis=-1,
        )
    return np.fft.rfftfreq(nfft, 1.0 / fs), sep


# -- levels: peak and loudness -----------------------------------------------------------------
#: ITU-R BS.1770 K-weighting (the pre-filter's high shelf, then the RLB high-pass), as
#: analogue prototypes so that any sampling rate gets the same response (libebur128's form).
_SHELF = {"f0": 1681.974450955533, "gain_db": 3.999843853973347, "q": 0.7071752369554196}
_HIGHPASS = {"f0": 38.13547087602444, "q": 0.5003270373238773}
_BLOCK_S, _STEP_S = 0.4, 0.1  # gating blocks of 400 ms, 75 % overlap
_ABSOLUTE_GATE, _RELATIVE_GATE = -70.0, -10.0


def _samples(x):
    """``(data, sfreq or None, wrap)``: a VectorSignal or an array, and the way back."""
    from ..signal import VectorSignal

    if isinstance(x, VectorSignal):
        return np.asarray(x.data), x.sfreq, lambda y: x.replace(data=y)
    arr = as_array("x", x)
    return arr, None, lambda y: y


def k_weighting(fs):
    """The BS.1770 K-weighting filter at ``fs``: two biquads ``(b, a)``, shelf then high-pass.

    Parameters
    ----------
    fs : float
        Sampling rate in Hz.

    Returns
    -------
    stages : list of (b, a), each ndarray [shape=(3,)]

    Examples
    --------
    >>> from specconv.apps.audio import k_weighting
    >>> (b1, a1), (b2, a2) = k_weighting(48000.0)       # the standard's table at 48 kHz
    >>> [round(float(v), 8) for v in b1], [round(float(v), 8) for v in a2]
    ([1.53512486, -2.69169619, 1.19839281], [1.0, -1.99004745, 0.99007225])
    """
    fs = _check_fs(fs)
    k = np.tan(np.pi * _SHELF["f0"] / fs)
    vh = 10 ** (_SHELF["gain_db"] / 20)
    vb = vh**0.4996667741545416
    q = _SHELF["q"]
    a0 = 1 + k / q + k * k
    shelf = (
        np.array([vh + vb * k / q + k * k, 2 * (k * k - vh), vh - vb * k / q + k * k]) / a0,
        np.array([1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0]),
    )
    k = np.tan(np.pi * _HIGHPASS["f0"] / fs)
    q = _HIGHPASS["q"]
    a0 = 1 + k / q + k * k
    highpass = (
        np.array([1.0, -2.0, 1.0]),
        np.array([1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0]),
    )
    return [shelf, highpass]


def peak_dbfs(x):
    """The sample peak in dB relative to full scale (±1): ``20 log10 max|x|``.

    Parameters
    ----------
    x : array_like or VectorSignal

    Returns
    -------
    float
        ``-inf`` for silence; above 0 for a signal that a PCM file would clip.

    Examples
    --------
    >>> import numpy as np
    >>> from specconv.apps.audio import peak_dbfs
    >>> round(peak_dbfs(np.array([[0.5, -0.25]])), 2)
    -6.02
    """
    data, _, _ = _samples(x)
    peak = float(np.max(np.abs(data)))
    if np.isnan(peak):
        raise ValueError("x contains NaN: its peak is undefined.")
    with np.errstate(divide="ignore"):
        return float(20 * np.log10(peak))


def loudness(x, fs=None, *, weights=None):
    """Integrated loudness in LUFS (LKFS), ITU-R BS.1770-4: K-weighted, gated.

    Each channel is K-weighted (:func:`k_weighting`); the mean square of 400 ms blocks (75 %
    overlap), summed over channels with ``weights``, gives a block loudness
    ``−0.691 + 10 log10(Σ G_c z_c)``; blocks below −70 LUFS, then those more than 10 LU below
    the mean of the rest, are dropped; the mean of the remaining blocks is the loudness.

    Parameters
    ----------
    x : array_like [shape=(C, N)] or VectorSignal
        Channels first; at least 400 ms.
    fs : float, optional
        Sampling rate in Hz (default: the signal's ``sfreq``).
    weights : sequence of float, optional
        Channel weights ``G_c``: 1.0 for left, right and centre (default for every channel),
        1.41 for surround channels.

    Returns
    -------
    float
        LUFS; ``-inf`` when every block is below the absolute gate (silence).

    Examples
    --------
    >>> import numpy as np
    >>> from specconv.apps.audio import loudness
    >>> fs = 48000.0
    >>> t = np.arange(int(2 * fs)) / fs
    >>> tone = np.stack([np.sin(2 * np.pi * 997 * t), np.zeros_like(t)])  # 0 dBFS, left only
    >>> round(loudness(tone, fs), 2)                  # the standard's calibration: -3.01
    -3.01
    """
    import scipy.signal

    data, sfreq, _ = _samples(x)
    fs = _check_fs(fs if fs is not None else sfreq)
    if data.ndim != 2:
        raise ValueError(f"x must have shape (C, N), got shape {data.shape}.")
    n_channels, n = data.shape
    g = np.ones(n_channels) if weights is None else np.asarray(weights, dtype=float)
    if g.shape != (n_channels,):
        raise ValueError(
            f"weights must hold {n_channels} values (one per channel), got {weights!r}."
        )
    block, step = round(_BLOCK_S * fs), round(_STEP_S * fs)
    if n < block:
        raise ValueError(
            f"loudness needs at least 400 ms ({block} samples at {fs:g} Hz), got {n} samples."
        )
    y = np.asarray(data, dtype=np.float64)
    for b, a in k_weighting(fs):
        y = scipy.signal.lfilter(b, a, y, axis=-1)
    # block mean squares from a cumulative sum: O(N) for the 75 % overlap
    csum = np.concatenate([np.zeros((n_channels, 1)), np.cumsum(y * y, axis=-1)], axis=-1)
    starts = np.arange(0, n - block + 1, step)
    z = (csum[:, starts + block] - csum[:, starts]) / block  # (C, n_blocks)
    power = g @ z
    with np.errstate(divide="ignore"):
        level = -0.691 + 10 * np.log10(power)
    keep = level > _ABSOLUTE_GATE
    if not keep.any():
        return float("-inf")
    relative = -0.691 + 10 * np.log10(power[keep].mean()) + _RELATIVE_GATE
    keep &= level > relative
    return float(-0.691 + 10 * np.log10(power[keep].mean()))


def normalize(x, *, peak=None, lufs=None, fs=None):
    """Scale a signal to a target sample peak (dBFS) or integrated loudness (LUFS).

    One gain for all channels, so the stereo image stays. Returns a scaled copy; the input
    is never changed.

    Parameters
    ----------
    x : array_like [shape=(C, N)] or VectorSignal
    peak : float, optional
        Target peak in dBFS, e.g. ``-1.0`` (one of ``peak`` and ``lufs``).
    lufs : float, optional
        Target integrated loudness (:func:`loudness`), e.g. ``-23.0`` (EBU R 128) or
        ``-14.0`` (streaming). The peak may then exceed 0 dBFS: check :func:`peak_dbfs`
        before writing PCM.
    fs : float, optional
        Sampling rate for ``lufs`` (default: the signal's ``sfreq``).

    Returns
    -------
    ndarray or VectorSignal
        The same kind as ``x``, float.

    See Also
    --------
    specconv.io.write : refuses (PCM) or warns about (float) samples above 0 dBFS.

    Examples
    --------
    >>> import numpy as np
    >>> from specconv.apps.audio import normalize, peak_dbfs
    >>> loud = np.array([[4.0, -2.0], [1.0, 0.5]])                  # +12 dBFS
    >>> normalize(loud, peak=0.0)
    array([[ 1.   , -0.5  ],
           [ 0.25 ,  0.125]])
    >>> round(peak_dbfs(normalize(loud, peak=-6.0)), 6)
    -6.0
    """
    if (peak is None) == (lufs is None):
        raise ValueError(f"pass exactly one of peak= and lufs=, got peak={peak!r}, lufs={lufs!r}.")
    target = peak if peak is not None else lufs
    if isinstance(target, bool) or not isinstance(target, numbers.Real) or not np.isfinite(target):
        raise TypeError(f"the target level must be a finite number, got {target!r}.")
    data, _, wrap = _samples(x)
    current = peak_dbfs(x) if peak is not None else loudness(x, fs)
    if not np.isfinite(current):
        raise ValueError("x is silent (or below the -70 LUFS gate): no gain reaches a level.")
    gain = 10 ** ((target - current) / 20)
    dtype = np.result_type(data.dtype, np.float32)
    return wrap(np.asarray(data * gain, dtype=dtype))
