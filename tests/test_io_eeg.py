"""EEG through MNE: from_mne / to_mne, file round trips, real recordings, bad input.

Oracles: MNE's own readers (``mne.io.read_raw(...).get_data()``), EEGLAB's reads of the same
BDF/EDF files (``.mat``, independent code), and the FIF copy of the BrainVision recording.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import scipy.io

from specconv import io
from specconv.io import FormatError, from_mne, to_mne
from specconv.signal import VectorSignal

mne = pytest.importorskip("mne")

REAL_EEG = [
    "mne_python/test.bdf",
    "mne_python/test.edf",
    "mne_python/brainvision/test.vhdr",
    "mne_python/brainvision/test_bin_raw.fif",
    "physionet_eegmat/Subject00_2.edf",
    "eeglab_sample/eeglab_data.set",
    "mne_testing_data/test_1ch.gdf",
]


def _listing(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def raw():
    """A small synthetic recording: 4 EEG channels (volts) + a stim channel, annotated."""
    rng = np.random.default_rng(42)
    info = mne.create_info(
        ["Fz", "Cz", "Pz", "Oz", "STI"], 250.0, ["eeg", "eeg", "eeg", "eeg", "stim"]
    )
    data = 20e-6 * rng.standard_normal((5, 1000))
    data[4] = 0.0
    data[4, [100, 600]] = 1.0
    raw = mne.io.RawArray(data, info, verbose=False)
    raw.set_meas_date(1_600_000_000.0)
    raw.info["bads"] = ["Oz"]
    raw.info["line_freq"] = 50.0
    raw.set_annotations(
        mne.Annotations(
            [1.0, 2.5], [0.5, 0.2], ["BAD_blink", "stim"], orig_time=raw.info["meas_date"]
        )
    )
    return raw


# -- from_mne ---------------------------------------------------------------------------------
def test_from_raw_keeps_info_annotations_and_bads(raw):
    sig = from_mne(raw)
    np.testing.assert_array_equal(sig.data, raw.get_data())
    assert sig.ch_names == tuple(raw.ch_names)
    assert sig.sfreq == 250.0 and not sig.batched
    meta = sig.metadata
    assert meta["kind"] == "raw" and meta["bads"] == ("Oz",)
    assert meta["ch_types"] == ("eeg",) * 4 + ("stim",)
    assert list(meta["annotations"].description) == ["BAD_blink", "stim"]
    assert meta["info"]["line_freq"] == 50.0
    assert meta["meas_date"] == raw.info["meas_date"]


@pytest.mark.parametrize(
    ("picks", "names"),
    [
        ("eeg", ("Fz", "Cz", "Pz", "Oz")),
        (["Pz", "Fz"], ("Pz", "Fz")),
        ([4, 0], ("STI", "Fz")),
    ],
)
def test_picks_follow_mne_semantics(raw, picks, names):
    sig = from_mne(raw, picks=picks)
    assert sig.ch_names == names
    np.testing.assert_array_equal(sig.data, raw.get_data(picks=list(names)))
    assert list(sig.metadata["info"]["ch_names"]) == list(names)


def test_bad_segments_as_nan(raw):
    sig = from_mne(raw, reject_by_annotation="NaN")
    t = np.arange(raw.n_times) / raw.info["sfreq"]
    in_bad = (t >= 1.0) & (t < 1.5)
    assert np.isnan(sig.data[:, in_bad]).all()
    assert not np.isnan(sig.data[:, ~in_bad]).any()
    with pytest.raises(ValueError, match=r"'reject_by_annotation'.*'omit'"):
        from_mne(raw, reject_by_annotation="omit")


def test_from_epochs_gives_a_batch_axis(raw):
    events = mne.make_fixed_length_events(raw, duration=1.0)
    epochs = mne.Epochs(
        raw,
        events,
        tmin=0.0,
        tmax=0.5,
        baseline=None,
        preload=True,
        reject_by_annotation=False,
        verbose=False,
    )
    sig = from_mne(epochs)
    assert sig.batched and sig.data.shape == (len(events), 5, 126)
    np.testing.assert_array_equal(sig.data, epochs.get_data())
    assert sig.metadata["kind"] == "epochs" and sig.metadata["tmin"] == 0.0
    with pytest.raises(ValueError, match="applies to continuous"):
        from_mne(epochs, reject_by_annotation="NaN")


def test_from_evoked(raw):
    events = mne.make_fixed_length_events(raw, duration=1.0)
    evoked = mne.Epochs(
        raw,
        events,
        tmin=0.0,
        tmax=0.5,
        baseline=None,
        preload=True,
        reject_by_annotation=False,
        verbose=False,
    ).average(picks="all")
    sig = from_mne(evoked, dtype=np.float32)
    assert sig.data.dtype == np.float32 and not sig.batched
    assert sig.metadata["kind"] == "evoked" and sig.metadata["nave"] == len(events)


def test_from_mne_rejects_other_objects():
    with pytest.raises(TypeError, match="MNE Raw, Epochs or Evoked object, got ndarray"):
        from_mne(np.zeros((2, 10)))


# -- to_mne -----------------------------------------------------------------------------------
def test_to_mne_reuses_the_original_info(raw):
    back = to_mne(from_mne(raw))
    assert isinstance(back, mne.io.RawArray)
    np.testing.assert_array_equal(back.get_data(), raw.get_data())
    assert back.info["bads"] == ["Oz"] and back.info["line_freq"] == 50.0
    assert back.get_channel_types() == raw.get_channel_types()
    assert list(back.annotations.description) == ["BAD_blink", "stim"]
    np.testing.assert_allclose(back.annotations.onset, raw.annotations.onset)


def test_to_mne_gives_mne_its_own_writable_copy(raw):
    sig = from_mne(raw)
    back = to_mne(sig)
    back.apply_function(lambda x: 2 * x)  # MNE modifies in place
    np.testing.assert_array_equal(sig.data, raw.get_data())


@pytest.mark.parametrize(("picks", "expected_type"), [("eeg", "eeg"), (None, "misc")])
def test_to_mne_with_new_channels(raw, picks, expected_type):
    sig = from_mne(raw, picks=picks)
    mixed = sig.apply(lambda x: x[:2] + x[1:3])  # 2 new channels mixing the old ones
    back = to_mne(mixed)
    assert back.ch_names == ["ch000", "ch001"]
    assert set(back.get_channel_types()) == {expected_type}
    assert back.info["meas_date"] == raw.info["meas_date"]
    assert back.info["line_freq"] == 50.0 and back.info["bads"] == []
    assert list(back.annotations.description) == ["BAD_blink", "stim"]
    np.testing.assert_array_equal(back.get_data(), mixed.data)


def test_to_mne_same_count_renamed_keeps_types(raw):
    sig = from_mne(raw).replace(ch_names=("a", "b", "c", "d", "e"))
    back = to_mne(sig)
    assert back.get_channel_types() == raw.get_channel_types()


def test_to_mne_epochs_round_trip(raw):
    events = mne.make_fixed_length_events(raw, duration=1.0)
    epochs = mne.Epochs(
        raw,
        events,
        tmin=0.0,
        tmax=0.5,
        baseline=None,
        preload=True,
        reject_by_annotation=False,
        verbose=False,
    )
    back = to_mne(from_mne(epochs))
    assert isinstance(back, mne.EpochsArray)
    np.testing.assert_array_equal(back.get_data(), epochs.get_data())
    np.testing.assert_array_equal(back.events, epochs.events)


def test_to_mne_plain_signal_and_checks():
    raw = to_mne(VectorSignal(np.zeros((2, 100)), ("a", "b"), sfreq=100.0))
    assert raw.get_channel_types() == ["misc", "misc"]
    with pytest.raises(ValueError, match="domain is 'image'"):
        to_mne(VectorSignal(np.zeros((2, 4, 4)), domain="image"))
    with pytest.raises(TypeError, match="sig must be a VectorSignal"):
        to_mne(np.zeros((2, 3)))


# -- file round trips -------------------------------------------------------------------------
def _quantum(sig, bits):
    """Largest step of an EDF/BDF file: MNE scales each channel type to its min..max range."""
    types = np.array(sig.metadata["ch_types"])
    if len(types) != sig.n_channels:  # new channels are exported as one type
        types = np.array(["eeg"] * sig.n_channels)
    step = np.zeros(sig.n_channels)
    for t in set(types):
        rows = sig.data[types == t]
        step[types == t] = (rows.max() - rows.min()) / (2**bits - 1)
    return step


@pytest.mark.parametrize(
    ("name", "bits"),
    [
        ("out_raw.fif", None),
        ("out.edf", 16),
        ("out.bdf", 24),
        ("out.vhdr", None),
        ("out.set", None),
    ],
)
def test_round_trip(tmp_path, raw, name, bits):
    sig = from_mne(raw, picks="eeg")
    io.write(sig, tmp_path / name)
    back = io.read(tmp_path / name)
    assert back.ch_names == sig.ch_names and back.sfreq == sig.sfreq
    if bits is None:
        # FIF keeps float64; BrainVision stores float32 µV, EEGLAB float32.
        tol = 0.0 if name.endswith(".fif") else 1e-6 * np.abs(sig.data).max()
        np.testing.assert_allclose(back.data, sig.data, rtol=0, atol=tol)
    else:
        err = np.abs(back.data - sig.data).max(axis=1)
        assert np.all(err <= _quantum(sig, bits) + 1e-15)
    assert "blink" in " ".join(back.metadata["annotations"].description)


def test_fif_single_precision_option(tmp_path, raw):
    sig = from_mne(raw, picks="eeg")
    io.write(sig, tmp_path / "s_raw.fif", fmt="single")
    back = io.read(tmp_path / "s_raw.fif")
    np.testing.assert_array_equal(back.data, sig.data.astype(np.float32).astype(np.float64))
    with pytest.raises(ValueError, match=r"'fmt' parameter.*'short'"):
        io.write(sig, tmp_path / "t_raw.fif", fmt="short")


def test_brainvision_writes_its_three_files(tmp_path, raw):
    io.write(from_mne(raw, picks="eeg"), tmp_path / "rec.vhdr")
    assert _listing(tmp_path) == ["rec.eeg", "rec.vhdr", "rec.vmrk"]
    with pytest.raises(ValueError, match=r"BrainVision output must be named \*\.vhdr"):
        io.write(from_mne(raw, picks="eeg"), tmp_path / "rec.txt", format="brainvision")


def test_epochs_and_evoked_fif_round_trip(tmp_path, raw):
    events = mne.make_fixed_length_events(raw, duration=1.0)
    epochs = mne.Epochs(
        raw,
        events,
        tmin=0.0,
        tmax=0.5,
        baseline=None,
        preload=True,
        reject_by_annotation=False,
        verbose=False,
    )
    sig = from_mne(epochs)
    io.write(sig, tmp_path / "x-epo.fif")
    back = io.read(tmp_path / "x-epo.fif")
    assert back.batched
    np.testing.assert_array_equal(back.data, sig.data)
    ev = from_mne(epochs.average(picks="all"))
    io.write(ev, tmp_path / "x-ave.fif")
    np.testing.assert_allclose(io.read(tmp_path / "x-ave.fif").data, ev.data, rtol=1e-6)


def test_processed_signal_writes_with_new_channel_names(tmp_path, raw):
    sig = from_mne(raw, picks="eeg")
    out = sig.apply(lambda x: np.concatenate([x, -x]))  # 8 channels from 4
    io.write(out, tmp_path / "y.edf")
    back = io.read(tmp_path / "y.edf")
    assert back.n_channels == 8 and set(back.metadata["ch_types"]) == {"eeg"}
    assert np.abs(back.data - out.data).max() <= _quantum(out, 16).max() + 1e-15


@pytest.mark.parametrize("name", ["x.edf", "x.vhdr"])
def test_export_refuses_what_the_format_cannot_hold(tmp_path, raw, name):
    nan_sig = from_mne(raw, picks="eeg", reject_by_annotation="NaN")
    with pytest.raises(ValueError, match="cannot store NaN"):
        io.write(nan_sig, tmp_path / name)
    assert _listing(tmp_path) == []


def test_interrupted_fif_write_leaves_no_file(tmp_path, raw, monkeypatch):
    def fail(self, fname, **kwargs):
        with open(fname, "wb") as fh:
            fh.write(b"\x00" * 64)
        raise KeyboardInterrupt

    monkeypatch.setattr(mne.io.RawArray, "save", fail)
    with pytest.raises(KeyboardInterrupt):
        io.write(from_mne(raw), tmp_path / "x_raw.fif")
    assert _listing(tmp_path) == []


# -- real recordings --------------------------------------------------------------------------
@pytest.mark.parametrize("name", REAL_EEG)
def test_real_file_reads_like_mne(shared_data, name):
    path = shared_data / "eeg" / name
    sig = io.read(path)
    reference = mne.io.read_raw(path, preload=True, verbose=False)
    np.testing.assert_array_equal(sig.data, reference.get_data())
    assert sig.ch_names == tuple(reference.ch_names)
    assert sig.sfreq == reference.info["sfreq"]
    assert len(sig.metadata["annotations"]) == len(reference.annotations)
    details = io.info(path)
    assert details["shape"] == sig.data.shape and details["sfreq"] == sig.sfreq


@pytest.mark.parametrize(
    ("name", "mat"), [("test.bdf", "test_bdf_eeglab.mat"), ("test.edf", "test_edf_eeglab.mat")]
)
def test_bdf_edf_match_eeglab(shared_data, name, mat):
    folder = shared_data / "eeg" / "mne_python"
    sig = io.read(folder / name, picks="eeg")  # EEGLAB leaves Status out / unscaled
    reference_uv = scipy.io.loadmat(folder / mat)["data"].astype(np.float64)
    np.testing.assert_allclose(sig.data * 1e6, reference_uv[: sig.n_channels], rtol=0, atol=0.01)


def test_brainvision_and_fif_copies_agree(shared_data):
    folder = shared_data / "eeg" / "mne_python" / "brainvision"
    bv = io.read(folder / "test.vhdr", picks="eeg")
    fif = io.read(folder / "test_bin_raw.fif", picks="eeg")
    # Same recording, different channel names: the FIF lists the EEG channels in file order.
    n = bv.n_channels
    np.testing.assert_allclose(fif.data[:n], bv.data, rtol=0, atol=1e-12)


def test_real_edf_round_trips_through_fif_and_edf(shared_data, tmp_path):
    sig = io.read(shared_data / "eeg" / "physionet_eegmat" / "Subject00_2.edf")
    io.write(sig, tmp_path / "copy_raw.fif")
    np.testing.assert_array_equal(io.read(tmp_path / "copy_raw.fif").data, sig.data)
    io.write(sig, tmp_path / "copy.edf")
    back = io.read(tmp_path / "copy.edf")
    assert np.all(np.abs(back.data - sig.data).max(axis=1) <= _quantum(sig, 16) + 1e-15)
    assert back.metadata["meas_date"] == sig.metadata["meas_date"]


def test_reading_protects_all_input_files(shared_data, tmp_path):
    sig = io.read(shared_data / "eeg" / "mne_python" / "brainvision" / "test.vhdr")
    sources = {p.rsplit("/", 1)[-1] for p in sig.metadata["source"]}
    assert sources == {"test.vhdr", "test.vmrk", "test.eeg"}
    with pytest.raises(ValueError, match="Refusing to write over the input file"):
        io.write(
            sig, shared_data / "eeg" / "mne_python" / "brainvision" / "test.vhdr", overwrite=True
        )


# -- bad input --------------------------------------------------------------------------------
@pytest.fixture
def edf_file(tmp_path, raw):
    path = tmp_path / "in.edf"
    io.write(from_mne(raw, picks="eeg"), path)
    return path


def test_truncated_edf(edf_file, tmp_path):
    data = edf_file.read_bytes()
    header = 256 * (1 + 5)  # main header + one per signal (4 EEG + annotations)
    cut = tmp_path / "cut.edf"
    cut.write_bytes(data[: header + (len(data) - header) // 2])
    with pytest.raises(FormatError, match=r"cut\.edf.*truncated.*allow_truncated=True"):
        io.read(cut)
    with pytest.warns(RuntimeWarning, match="Number of records"):
        partial = io.read(cut, allow_truncated=True)
    assert 0 < partial.data.shape[1] < 1000
    tiny = tmp_path / "tiny.edf"
    tiny.write_bytes(data[:100])
    with pytest.raises(FormatError, match=r"Could not read .*tiny\.edf"):
        io.read(tiny)


def test_corrupt_fif(tmp_path):
    (tmp_path / "bad_raw.fif").write_bytes(b"\x00\x00\x00\x64\x00\x00\x00\x1f" + b"\x00" * 8)
    with pytest.raises(FormatError, match=r"bad_raw\.fif"):
        io.read(tmp_path / "bad_raw.fif")


def test_edf_content_without_extension_explains_the_rename(edf_file, tmp_path):
    renamed = tmp_path / "recording"
    renamed.write_bytes(edf_file.read_bytes())
    with pytest.raises(FormatError, match=r"looks like a edf file.*named \.edf: rename it"):
        io.read(renamed)


def test_edf_extension_on_other_content(tmp_path):
    (tmp_path / "fake.edf").write_bytes(b"\xffBIOSEMI" + b" " * 300)
    with pytest.raises(FormatError, match=r"extension \.edf \(edf\).*looks like bdf"):
        io.read(tmp_path / "fake.edf")


def test_missing_mne_names_the_extra(edf_file, monkeypatch):
    monkeypatch.setitem(sys.modules, "mne", None)
    with pytest.raises(ImportError, match=r'pip install "specconv\[eeg\]"'):
        io.read(edf_file)


@pytest.mark.parametrize(
    ("package", "name"), [("edfio", "x.edf"), ("pybv", "x.vhdr"), ("eeglabio", "x.set")]
)
def test_missing_export_dependency_names_the_extra(tmp_path, raw, monkeypatch, package, name):
    sig = from_mne(raw, picks="eeg")
    monkeypatch.setitem(sys.modules, package, None)
    with pytest.raises(ImportError, match=rf"{package}.*pip install \"specconv\[eeg-export\]\""):
        io.write(sig, tmp_path / name)
    assert _listing(tmp_path) == []
