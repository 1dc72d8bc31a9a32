"""Audio I/O, the read/write dispatch and atomic writes (WAV is the core format to test them).

Oracles: scipy.io.wavfile and soundfile read the same files independently; the int -> float
rule is written out here once (``_expected``) rather than taken from specconv.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
from scipy.io import wavfile

import specconv
from specconv import io
from specconv.io import ClippingWarning, FormatError, stereo_ir_kernel, true_stereo_kernel
from specconv.signal import VectorSignal

soundfile = pytest.importorskip("soundfile")

SUBTYPE_BITS = {"PCM_U8": 8, "PCM_16": 16, "PCM_24": 24, "PCM_32": 32}

REAL_AUDIO = [
    # (path below shared/data/audio, channels, rate, libsndfile subtype)
    ("communication_acoustics/brir_clap.wav", 2, 44100, "PCM_16"),
    ("communication_acoustics/castanets_dry.wav", 1, 44100, "PCM_24"),
    ("communication_acoustics/xmas.wav", 1, 44100, "PCM_16"),
    ("web_audio_samples/kitchen-true-stereo.wav", 4, 44100, "PCM_16"),
    ("web_audio_samples/penny-spinning.wav", 2, 44100, "PCM_16"),
    (
        "freesound_peter1955/757865__peter1955__2024-09-14-ir-basement-museum-unterlinden-in-"
        "colmar-f-clap-48k24b-stereo.wav",
        2,
        48000,
        "PCM_24",
    ),
    ("openair_via_quantumverb/medium_hall.wav", 2, 44100, "PCM_24"),
    ("openair_via_quantumverb/large_church.wav", 2, 48000, "FLOAT"),
    ("scipy_wav_edge_cases/test-44100Hz-2ch-32bit-float-be.wav", 2, 44100, "FLOAT"),
    ("scipy_wav_edge_cases/test-44100Hz-2ch-32bit-float-le.wav", 2, 44100, "FLOAT"),
    ("scipy_wav_edge_cases/test-44100Hz-le-1ch-4bytes-rf64.wav", 1, 44100, "PCM_32"),
    ("scipy_wav_edge_cases/test-48000Hz-2ch-64bit-float-le-wavex.wav", 2, 48000, "DOUBLE"),
    ("scipy_wav_edge_cases/test-8000Hz-be-3ch-5S-24bit.wav", 3, 8000, "PCM_24"),
    ("scipy_wav_edge_cases/test-8000Hz-le-2ch-1byteu.wav", 2, 8000, "PCM_U8"),
    ("scipy_wav_edge_cases/test-8000Hz-le-3ch-5S-24bit.wav", 3, 8000, "PCM_24"),
    ("freesound_felix_blume/LluviasDeMayo.flac", 2, 44100, "PCM_16"),
]


def _expected(frames):
    """The documented int -> float rule, written independently: (N, C) -> (C, N) float64."""
    frames = np.asarray(frames)
    if frames.ndim == 1:
        frames = frames[:, None]
    if frames.dtype.kind == "f":
        return frames.T.astype(np.float64)
    bits = 8 * frames.dtype.itemsize
    if frames.dtype.kind == "u":
        return (frames.T.astype(np.float64) - 2 ** (bits - 1)) / 2 ** (bits - 1)
    return frames.T.astype(np.float64) / 2 ** (bits - 1)


@pytest.fixture
def stereo():
    rng = np.random.default_rng(1234)
    return VectorSignal(rng.uniform(-0.95, 0.95, (2, 3000)), ("left", "right"), sfreq=16000.0)


def _listing(folder):
    return sorted(p.name for p in Path(folder).iterdir())


# -- round trips ----------------------------------------------------------------------------
@pytest.mark.parametrize("subtype", list(SUBTYPE_BITS))
def test_wav_pcm_round_trip_within_half_a_step(tmp_path, stereo, subtype):
    path = tmp_path / f"x_{subtype}.wav"
    io.write(stereo, path, subtype=subtype)
    back = io.read(path)
    step = 2.0 ** (1 - SUBTYPE_BITS[subtype])
    assert back.metadata["subtype"] == subtype
    assert back.ch_names == ("left", "right") and back.sfreq == 16000.0
    assert back.data.dtype == np.float64
    assert np.max(np.abs(back.data - stereo.data)) <= step / 2 + 1e-12
    # The other backend reads the very same numbers.
    np.testing.assert_array_equal(io.read(path, backend="soundfile").data, back.data)


@pytest.mark.parametrize(("subtype", "dtype"), [("FLOAT", np.float32), ("DOUBLE", np.float64)])
def test_wav_float_round_trip_is_exact_in_its_precision(tmp_path, stereo, subtype, dtype):
    path = tmp_path / "f.wav"
    io.write(stereo, path, subtype=subtype)
    back = io.read(path)
    assert back.data.dtype == dtype
    np.testing.assert_array_equal(back.data, stereo.data.astype(dtype))


def test_float_wav_beyond_full_scale_warns_and_keeps_the_values(tmp_path):
    sig = VectorSignal(np.array([[3.0, -2.5]], dtype=np.float32), sfreq=8000.0)
    with pytest.warns(ClippingWarning, match=r"peaks at \+9\.5 dBFS \(3, channel 0, sample 0\)"):
        io.write(sig, tmp_path / "hot.wav")  # FLOAT by default for float32
    np.testing.assert_array_equal(io.read(tmp_path / "hot.wav").data, sig.data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        io.write(sig, tmp_path / "allowed.wav", clip="allow")  # the caller's choice: silent
    np.testing.assert_array_equal(io.read(tmp_path / "allowed.wav").data, sig.data)


@pytest.mark.parametrize("subtype", ["FLOAT", "DOUBLE"])
def test_float_wav_clip_raise_refuses_and_warn_clips(tmp_path, subtype):
    sig = VectorSignal(np.array([[0.5, 1.0], [-4.0, 0.25]]), sfreq=8000.0)
    with pytest.raises(
        ValueError,
        match=r"\+12\.0 dBFS \(-4, channel 1, sample 0\).*"
        r"clip='allow'",
    ):
        io.write(sig, tmp_path / "x.wav", subtype=subtype, clip="raise")
    assert list(tmp_path.iterdir()) == []
    with pytest.warns(ClippingWarning, match="clipping it"):
        io.write(sig, tmp_path / "x.wav", subtype=subtype, clip="warn")
    np.testing.assert_array_equal(io.read(tmp_path / "x.wav").data, np.clip(sig.data, -1, 1))


def test_clip_allow_is_for_float_subtypes_only(tmp_path, stereo):
    with pytest.raises(ValueError, match="clip='allow' applies to float subtypes: 16-bit PCM"):
        io.write(stereo, tmp_path / "x.wav", subtype="PCM_16", clip="allow")


def test_full_scale_exactly_is_silent(tmp_path):
    sig = VectorSignal(np.array([[1.0, -1.0, 0.0]]), sfreq=8000.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        io.write(sig, tmp_path / "x.wav")


def test_reverb_from_new_signal_and_from_apply_are_treated_alike(tmp_path):
    """The issue's case: a 2 x 2 reverb of the bundled PCM sound, +3 dBFS. Through
    dry.apply it keeps PCM_16 and is refused; from a new VectorSignal it is float and now
    warns; normalized, both write silently."""
    from specconv import datasets
    from specconv.apps.audio import normalize, true_stereo_reverb

    dry = datasets.load("audio-pcm16")
    reverb = true_stereo_reverb(datasets.load("ir-true-stereo").data, mode="causal")
    wet = dry.apply(reverb)
    with pytest.raises(ValueError, match="outside the range of 16-bit PCM"):
        io.write(wet, tmp_path / "wet16.wav")
    fresh = VectorSignal(reverb(dry.data), ("left", "right"), sfreq=dry.sfreq)
    with pytest.warns(ClippingWarning, match=r"peaks at \+3\.2 dBFS"):
        io.write(fresh, tmp_path / "wet_float.wav")
    with pytest.raises(ValueError, match="above full scale"):
        io.write(fresh, tmp_path / "refused.wav", clip="raise")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        io.write(normalize(wet, peak=-1.0), tmp_path / "wet16_ok.wav")
        io.write(normalize(fresh, peak=-1.0), tmp_path / "wet_float_ok.wav")
    a = io.read(tmp_path / "wet16_ok.wav").data
    b = io.read(tmp_path / "wet_float_ok.wav").data
    assert np.max(np.abs(b)) == pytest.approx(10 ** (-1 / 20))
    np.testing.assert_allclose(a, b, rtol=0, atol=2**-15)  # 16-bit rounding


def test_default_subtype_is_the_one_read(tmp_path, stereo):
    io.write(stereo, tmp_path / "a.wav", subtype="PCM_16")
    sig = io.read(tmp_path / "a.wav")
    io.write(sig.apply(lambda x: 0.5 * x), tmp_path / "b.wav")
    assert io.read(tmp_path / "b.wav").metadata["subtype"] == "PCM_16"
    io.write(stereo, tmp_path / "c.wav")  # float64 without a source subtype: no rounding
    assert io.read(tmp_path / "c.wav").metadata["subtype"] == "DOUBLE"


@pytest.mark.parametrize(
    ("ext", "subtype", "tol"), [(".flac", "PCM_16", 2.0**-16), (".flac", "PCM_24", 2.0**-24)]
)
def test_flac_round_trip(tmp_path, stereo, ext, subtype, tol):
    path = tmp_path / f"x{ext}"
    io.write(stereo, path, subtype=subtype)
    back = io.read(path)
    assert back.metadata["format"] == "flac" and back.metadata["subtype"] == subtype
    assert np.max(np.abs(back.data - stereo.data)) <= tol + 1e-12


def test_ogg_vorbis_round_trip_is_lossy_but_close(tmp_path):
    t = np.arange(16000) / 16000.0
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    sig = VectorSignal(np.stack([tone, -tone]), sfreq=16000.0)
    io.write(sig, tmp_path / "x.ogg")
    back = io.read(tmp_path / "x.ogg")
    assert back.data.shape[0] == 2 and back.metadata["subtype"] == "VORBIS"
    n = min(back.data.shape[1], sig.data.shape[1])
    corr = np.corrcoef(back.data[0, :n], sig.data[0, :n])[0, 1]
    assert corr > 0.99


def test_float32_output_dtype_option(tmp_path, stereo):
    io.write(stereo, tmp_path / "x.wav", subtype="PCM_24")
    back = io.read(tmp_path / "x.wav", dtype=np.float32)
    assert back.data.dtype == np.float32
    with pytest.raises(ValueError, match=r"'dtype' parameter.*int16"):
        io.read(tmp_path / "x.wav", dtype=np.int16)


# -- the int <-> float rule and clipping ----------------------------------------------------
def test_full_scale_integers_map_to_documented_floats(tmp_path):
    frames = np.array([[-32768, 32767], [0, 16384]], dtype=np.int16)
    wavfile.write(tmp_path / "edge.wav", 8000, frames)
    np.testing.assert_array_equal(
        io.read(tmp_path / "edge.wav").data, [[-1.0, 0.0], [32767 / 32768, 0.5]]
    )


def test_clip_raise_names_the_peak_and_writes_nothing(tmp_path):
    x = np.zeros((2, 100))
    x[1, 40] = -1.75
    sig = VectorSignal(x, sfreq=8000.0)
    with pytest.raises(ValueError, match=r"peaks at -1\.75 \(channel 1, sample 40\).*clip='warn'"):
        io.write(sig, tmp_path / "x.wav", subtype="PCM_16")
    assert _listing(tmp_path) == []


def test_clip_warn_clips_with_a_warning(tmp_path):
    sig = VectorSignal(np.array([[0.5, 1.0, -1.5]]), sfreq=8000.0)
    with pytest.warns(ClippingWarning, match="2 samples would clip"):
        io.write(sig, tmp_path / "x.wav", subtype="PCM_16", clip="warn")
    np.testing.assert_array_equal(io.read(tmp_path / "x.wav").data, [[0.5, 32767 / 32768, -1.0]])


def test_clip_option_is_checked(tmp_path, stereo):
    with pytest.raises(ValueError, match=r"'clip' parameter.*'silent'"):
        io.write(stereo, tmp_path / "x.wav", subtype="PCM_16", clip="silent")


def test_nan_cannot_be_written_as_pcm(tmp_path):
    sig = VectorSignal(np.array([[0.0, np.nan]]), sfreq=8000.0)
    with pytest.raises(ValueError, match="NaN"):
        io.write(sig, tmp_path / "x.wav", subtype="PCM_16")


@pytest.mark.parametrize(
    ("sig", "match"),
    [
        (VectorSignal(np.zeros((2, 2, 10)), sfreq=8.0, batched=True), "batched"),
        (VectorSignal(np.zeros((1, 10), complex), sfreq=8.0), "complex"),
        (VectorSignal(np.zeros((1, 4, 4)), domain="image"), "domain is 'image'"),
        (VectorSignal(np.zeros((1, 10)), sfreq=44100.5), "integer sampling rate.*44100.5"),
    ],
)
def test_signals_wav_cannot_hold(tmp_path, sig, match):
    with pytest.raises(ValueError, match=match):
        io.write(sig, tmp_path / "x.wav")


def test_bad_subtype(tmp_path, stereo):
    with pytest.raises(ValueError, match=r"'subtype' parameter.*'PCM_12'"):
        io.write(stereo, tmp_path / "x.wav", subtype="PCM_12")
    with pytest.raises(ValueError, match=r"'subtype' parameter.*'FLOAT'"):
        io.write(stereo, tmp_path / "x.flac", subtype="FLOAT")


# -- impulse responses as kernels -----------------------------------------------------------
def test_true_stereo_kernel_follows_web_audio_order():
    ir = np.stack([np.full(5, k, dtype=float) for k in range(4)])  # channel k holds k
    w = true_stereo_kernel(ir)
    assert w.shape == (2, 2, 5)
    # weight[out, in]: 0 = L->L, 1 = L->R, 2 = R->L, 3 = R->R
    assert (w[0, 0, 0], w[1, 0, 0], w[0, 1, 0], w[1, 1, 0]) == (0, 1, 2, 3)
    assert np.shares_memory(w, ir)


def test_true_stereo_kernel_is_for_true_convolution():
    rng = np.random.default_rng(7)
    ir = rng.standard_normal((4, 9))
    x = rng.standard_normal((2, 40))
    y = specconv.convolve(x, true_stereo_kernel(ir))
    out_l = scipy.signal.convolve(x[0], ir[0]) + scipy.signal.convolve(x[1], ir[2])
    out_r = scipy.signal.convolve(x[0], ir[1]) + scipy.signal.convolve(x[1], ir[3])
    np.testing.assert_allclose(y, np.stack([out_l, out_r]), atol=1e-12)
    # The cross-correlating conv gives the same with flipped taps and full padding.
    y_conv = specconv.conv(x, true_stereo_kernel(ir, flip=True), padding=8)
    np.testing.assert_allclose(y_conv, y, atol=1e-12)


def test_stereo_ir_kernel_gives_per_ear_kernels():
    rng = np.random.default_rng(8)
    ir = rng.standard_normal((2, 7))
    x = rng.standard_normal((1, 30))
    w = stereo_ir_kernel(ir)
    assert w.shape == (2, 1, 7)
    y = specconv.convolve(x, w)
    np.testing.assert_allclose(y[1], scipy.signal.convolve(x[0], ir[1]), atol=1e-12)
    np.testing.assert_array_equal(stereo_ir_kernel(ir, flip=True)[0, 0], ir[0, ::-1])


def test_kernel_helpers_want_channels_first():
    with pytest.raises(ValueError, match=r"shape \(4, N\).*transpose.*got shape \(100, 4\)"):
        true_stereo_kernel(np.zeros((100, 4)))
    with pytest.raises(ValueError, match=r"shape \(2, N\)"):
        stereo_ir_kernel(VectorSignal(np.zeros((4, 10)), sfreq=10.0))


# -- real recordings ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "channels", "rate", "subtype"),
    REAL_AUDIO,
    ids=[r[0].split("/")[-1][:40] for r in REAL_AUDIO],
)
def test_real_audio_reads_like_the_reference_readers(shared_data, name, channels, rate, subtype):
    path = shared_data / "audio" / name
    sig = io.read(path)
    assert sig.n_channels == channels and sig.sfreq == rate
    assert sig.metadata["subtype"] == subtype
    ref_sf, ref_rate = soundfile.read(path, dtype="float64", always_2d=True)
    assert ref_rate == rate
    np.testing.assert_array_equal(sig.data, ref_sf.T)
    if path.suffix == ".wav":
        _, frames = _quiet_read(path)
        np.testing.assert_array_equal(sig.data, _expected(frames))
    details = io.info(path)
    assert (details["channels"], details["sfreq"], details["shape"]) == (
        channels,
        rate,
        sig.data.shape,
    )


def _quiet_read(path):
    """scipy's read, minus its warning about metadata chunks (LIST, bext) some files carry."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", category=wavfile.WavFileWarning, message="Chunk .* not understood"
        )
        return wavfile.read(path)


def test_kitchen_true_stereo_ir_is_a_2x2_kernel(shared_data):
    ir = io.read(shared_data / "audio" / "web_audio_samples" / "kitchen-true-stereo.wav")
    w = true_stereo_kernel(ir)
    assert w.shape == (2, 2, ir.data.shape[1])
    np.testing.assert_array_equal(w[1, 0], ir.data[1])  # in L -> out R
    # The same-side paths carry the loudest taps (both peak at full scale).
    peaks = np.abs(w).max(axis=-1)
    assert peaks[0, 0] > peaks[1, 0] and peaks[1, 1] > peaks[0, 1]


def test_real_24bit_file_round_trips_bit_exactly(shared_data, tmp_path):
    src = shared_data / "audio" / "communication_acoustics" / "castanets_dry.wav"
    sig = io.read(src)
    io.write(sig, tmp_path / "copy.wav")  # PCM_24 kept from the metadata
    np.testing.assert_array_equal(io.read(tmp_path / "copy.wav").data, sig.data)


# -- dispatch -------------------------------------------------------------------------------
def test_formats_table():
    names = {f.name: f for f in io.formats()}
    assert {
        "wav",
        "flac",
        "ogg",
        "fif",
        "edf",
        "bdf",
        "brainvision",
        "eeglab",
        "gdf",
        "fastmri",
        "cfl",
        "npy",
        "npz",
    } <= set(names)
    assert names["flac"].extra == "audio" and names["edf"].write_extra == "eeg-export"
    assert not names["gdf"].writable


def test_missing_extension_is_detected_from_content(tmp_path, stereo):
    io.write(stereo, tmp_path / "x.wav", subtype="PCM_16")
    os.rename(tmp_path / "x.wav", tmp_path / "noext")
    assert io.read(tmp_path / "noext").metadata["format"] == "wav"
    assert io.info(tmp_path / "noext")["format"] == "wav"


def test_extension_and_content_disagree(tmp_path, stereo):
    io.write(stereo, tmp_path / "x.wav", subtype="PCM_16")
    os.rename(tmp_path / "x.wav", tmp_path / "x.flac")
    with pytest.raises(FormatError, match=r"extension \.flac \(flac\) but its content looks like"):
        io.read(tmp_path / "x.flac")
    assert io.read(tmp_path / "x.flac", format="wav").n_channels == 2


def test_unknown_format(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(FormatError, match=r"Cannot tell the format.*\.txt.*format=\.\.\."):
        io.read(tmp_path / "notes.txt")
    with pytest.raises(ValueError, match=r"'format' parameter.*'mp3'"):
        io.read(tmp_path / "notes.txt", format="mp3")


def test_unknown_output_extension(tmp_path, stereo):
    with pytest.raises(FormatError, match=r"output format.*\.mp3.*writable extensions"):
        io.write(stereo, tmp_path / "x.mp3")
    with pytest.raises(FormatError, match="writable extensions"):
        io.write(stereo, tmp_path / "x.gdf")  # readable only
    assert _listing(tmp_path) == []


def test_unknown_options_are_type_errors(tmp_path, stereo):
    with pytest.raises(TypeError, match=r"option\(s\) \['bits'\] for format 'wav'.*subtype"):
        io.write(stereo, tmp_path / "x.wav", bits=16)
    io.write(stereo, tmp_path / "x.wav")
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['picks'\] for format 'wav'"):
        io.read(tmp_path / "x.wav", picks="eeg")


def test_path_type_and_existence(tmp_path):
    with pytest.raises(TypeError, match="path must be a str or os.PathLike, got int"):
        io.read(3)
    with pytest.raises(FileNotFoundError, match="No such file"):
        io.read(tmp_path / "missing.wav")
    with pytest.raises(IsADirectoryError, match="is a directory"):
        io.read(tmp_path)


# -- bad input ------------------------------------------------------------------------------
@pytest.fixture
def wav_file(tmp_path, stereo):
    path = tmp_path / "in" / "x.wav"
    path.parent.mkdir()
    io.write(stereo, path, subtype="PCM_16")
    return path


def _truncate(src, dst, nbytes):
    dst.write_bytes(src.read_bytes()[:nbytes])
    return dst


def test_truncated_wav_is_an_error_unless_allowed(wav_file, tmp_path):
    short = _truncate(wav_file, tmp_path / "short.wav", 44 + 4 * 100 + 2)
    with pytest.raises(FormatError, match=r"Could not read .*short\.wav.* as WAV"):
        io.read(short)
    cut = _truncate(wav_file, tmp_path / "cut.wav", 44 + 4 * 100)  # whole frames
    with pytest.raises(FormatError, match=r"looks truncated.*allow_truncated=True"):
        io.read(cut)
    with pytest.warns(wavfile.WavFileWarning, match="Reached EOF prematurely"):
        assert io.read(cut, allow_truncated=True).data.shape == (2, 100)


@pytest.mark.parametrize(
    ("content", "match"), [(b"", "is empty"), (b"\x00garbage" * 20, "signature")]
)
def test_empty_or_garbage_wav(tmp_path, content, match):
    (tmp_path / "bad.wav").write_bytes(content)
    with pytest.raises(FormatError, match=match):
        io.read(tmp_path / "bad.wav")


def test_corrupt_header_after_a_valid_signature(wav_file, tmp_path):
    data = bytearray(wav_file.read_bytes())
    data[16:36] = b"\xff" * 20  # fmt chunk garbage
    (tmp_path / "corrupt.wav").write_bytes(bytes(data))
    with pytest.raises(FormatError, match=r"Could not read .*corrupt\.wav.* as WAV"):
        io.read(tmp_path / "corrupt.wav")


def test_truncated_flac(tmp_path, stereo):
    io.write(stereo, tmp_path / "x.flac")
    _truncate(tmp_path / "x.flac", tmp_path / "t.flac", 300)
    with pytest.raises(FormatError, match=r"t\.flac"):
        io.read(tmp_path / "t.flac")


def test_missing_soundfile_names_the_extra(tmp_path, stereo, monkeypatch):
    io.write(stereo, tmp_path / "x.flac")
    monkeypatch.setitem(sys.modules, "soundfile", None)
    with pytest.raises(ImportError, match=r'pip install "specconv\[audio\]"'):
        io.read(tmp_path / "x.flac")
    with pytest.raises(ImportError, match=r'24-bit WAV.*pip install "specconv\[audio\]"'):
        io.write(stereo, tmp_path / "y.wav", subtype="PCM_24")
    # scipy handles the rest of WAV without the extra; the subtype then comes from the data.
    io.write(stereo, tmp_path / "z.wav", subtype="PCM_16")
    assert io.read(tmp_path / "z.wav").metadata["subtype"] == "PCM_16"
    assert _listing(tmp_path) == ["x.flac", "z.wav"]


def test_24bit_subtype_inferred_without_soundfile(tmp_path, stereo, monkeypatch):
    io.write(stereo, tmp_path / "x.wav", subtype="PCM_24")
    monkeypatch.setitem(sys.modules, "soundfile", None)
    assert io.read(tmp_path / "x.wav").metadata["subtype"] == "PCM_24"


# -- atomic writes --------------------------------------------------------------------------
def test_existing_output_needs_overwrite(tmp_path, stereo):
    io.write(stereo, tmp_path / "x.wav")
    before = (tmp_path / "x.wav").read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        io.write(stereo.apply(lambda x: 0.5 * x), tmp_path / "x.wav")
    assert (tmp_path / "x.wav").read_bytes() == before
    io.write(stereo.apply(lambda x: 0.5 * x), tmp_path / "x.wav", overwrite=True)
    assert (tmp_path / "x.wav").read_bytes() != before


def test_input_file_is_never_overwritten(wav_file):
    sig = io.read(wav_file)
    before = wav_file.read_bytes()
    with pytest.raises(ValueError, match="Refusing to write over the input file"):
        io.write(sig, wav_file, overwrite=True)
    link = wav_file.parent / "alias.wav"
    link.symlink_to(wav_file)
    with pytest.raises(ValueError, match="Refusing to write over the input file"):
        io.write(sig, link, overwrite=True)
    assert wav_file.read_bytes() == before


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, OSError])
def test_interrupted_write_leaves_no_file(tmp_path, stereo, monkeypatch, interrupt):
    def half_then_fail(filename, rate, data):
        with open(filename, "wb") as fh:
            fh.write(b"RIFF" + b"\x00" * 100)  # a partial file exists at this point
        raise interrupt("simulated")

    monkeypatch.setattr(wavfile, "write", half_then_fail)
    with pytest.raises(interrupt, match="simulated"):
        io.write(stereo, tmp_path / "x.wav", subtype="PCM_16")
    assert _listing(tmp_path) == []


def test_interrupted_overwrite_keeps_the_old_file(tmp_path, stereo, monkeypatch):
    io.write(stereo, tmp_path / "x.wav")
    before = (tmp_path / "x.wav").read_bytes()

    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(wavfile, "write", fail)
    with pytest.raises(KeyboardInterrupt):
        io.write(stereo, tmp_path / "x.wav", overwrite=True)
    assert _listing(tmp_path) == ["x.wav"]
    assert (tmp_path / "x.wav").read_bytes() == before


def test_output_directory_problems(tmp_path, stereo, monkeypatch):
    with pytest.raises(FileNotFoundError, match="Output directory .*missing.* does not exist"):
        io.write(stereo, tmp_path / "missing" / "x.wav")
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match="is not a directory"):
        io.write(stereo, tmp_path / "file" / "x.wav")
    (tmp_path / "dir.wav").mkdir()
    with pytest.raises(IsADirectoryError, match="is a directory"):
        io.write(stereo, tmp_path / "dir.wav", overwrite=True)

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "mkdir", denied)
    with pytest.raises(PermissionError, match="Cannot write to the output directory"):
        io.write(stereo, tmp_path / "x.wav")
    assert _listing(tmp_path) == ["dir.wav", "file"]


def test_read_only_directory(tmp_path, stereo):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running with privileges that ignore directory permissions")
        with pytest.raises(PermissionError, match="Cannot write to the output directory"):
            io.write(stereo, locked / "x.wav")
        assert _listing(locked) == []
    finally:
        locked.chmod(0o700)


def test_companion_files_a_backend_adds_are_moved_and_checked(tmp_path):
    from specconv._atomic import atomic_output

    with atomic_output([tmp_path / "main.dat"]) as (tmp,):
        tmp.write_text("main")
        (tmp.parent / "main-1.dat").write_text("part")
    assert _listing(tmp_path) == ["main-1.dat", "main.dat"]
    with pytest.raises(FileExistsError, match=r"main-1\.dat.*overwrite=True"):
        with atomic_output([tmp_path / "other.dat"]) as (tmp,):
            tmp.write_text("other")
            (tmp.parent / "main-1.dat").write_text("clobber?")
    assert (tmp_path / "main-1.dat").read_text() == "part"
    assert _listing(tmp_path) == ["main-1.dat", "main.dat"]


def test_write_needs_a_signal(tmp_path):
    with pytest.raises(TypeError, match="sig must be a VectorSignal, got ndarray"):
        io.write(np.zeros((2, 10)), tmp_path / "x.wav")
