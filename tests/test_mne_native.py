"""MNE in, MNE out: apply_to_mne against raw.filter / epochs.filter / evoked.filter.

Oracle: MNE's own filtering with the same FIR (``method="fir", phase="zero"``); the layers
are filter banks designed by MNE (``filter_bank``), so every difference is ours.
"""

from __future__ import annotations

import numpy as np
import pytest

from specconv import datasets
from specconv.apps import _eeg_mne
from specconv.apps.eeg import (
    apply_to_mne,
    filter_bank,
    output_names,
    rereference_matrix,
)
from specconv.io import _mne_compat
from specconv.kernels import fir_layer, pointwise

from ._tolerances import assert_close

mne = pytest.importorskip("mne")

BANDS = [(4.0, 8.0), (8.0, 13.0), (13.0, 30.0)]
SKIP = ("edge", "bad_acq_skip")


def _annotate(raw):
    """Blinks (kept), an acquisition skip and two zero-length boundaries: 4 good segments,
    one (0.5 s) shorter than the FIRs (MNE's edge extension is then limited to its length)."""
    t0, orig = raw.first_time, raw.annotations.orig_time
    raw.set_annotations(
        raw.annotations
        + mne.Annotations(
            [t0 + 10.0, t0 + 12.9, t0 + 30.0],
            [2.4, 0.0, 0.0],
            ["BAD_ACQ_SKIP", "EDGE boundary", "EDGE boundary"],
            orig_time=orig,
        )
    )
    return raw


@pytest.fixture(scope="module")
def edf_path():
    """The bundled 32-channel EDF+ sample (60 s, 256 Hz, blink annotations)."""
    return datasets.path("eeg-edf")


@pytest.fixture()
def raw(edf_path):
    raw = mne.io.read_raw_edf(edf_path, preload=True, verbose=False)
    raw.set_montage("colin27_1020", on_missing="ignore", verbose=False)
    raw.set_channel_types({"PO9": "eog", "PO10": "misc"}, on_unit_change="ignore")
    raw.info["bads"] = ["Fz", "C3"]
    return _annotate(raw)


def _one_band(raw, band, picks="eeg", **kw):
    n = len(raw.copy().pick(picks, exclude=()).ch_names)
    return filter_bank(raw.info["sfreq"], [band], n, **kw)


@pytest.mark.parametrize("picks", [None, "eeg", ["Cz", "Fz", "O1", "EOG"]])
def test_raw_equals_raw_filter(raw, picks):
    if picks == ["Cz", "Fz", "O1", "EOG"]:
        raw.set_channel_types({"Oz": "eog"}, verbose=False)
        raw.rename_channels({"Oz": "EOG"})
    n = len(raw.copy().pick("data" if picks is None else picks, exclude=()).ch_names)
    layer = filter_bank(raw.info["sfreq"], [(8.0, 13.0)], n)
    ref = raw.copy().filter(8.0, 13.0, picks=picks, verbose=False)
    out = apply_to_mne(layer, raw, picks=picks, verbose=False)
    assert type(out) is type(raw) and out is not raw
    assert out.ch_names == raw.ch_names and out.info["bads"] == ["Fz", "C3"]
    assert out.annotations == raw.annotations
    assert_close(out.get_data(), ref.get_data())  # measured ~1e-16 relative
    # the data outside picks and inside the skip annotation is untouched, the input too
    assert np.array_equal(out.get_data(picks="misc"), raw.get_data(picks="misc"))
    assert not np.array_equal(out.get_data(picks="Cz"), raw.get_data(picks="Cz"))


@pytest.mark.parametrize("pad", ["reflect_limited", "edge", "reflect", "constant", "wrap"])
def test_raw_pads_and_short_segments_in_memory_and_out_of_core(raw, edf_path, tmp_path, pad):
    # a segment of 0.4 s (102 samples) is shorter than half the 4-8 Hz FIR (423 taps)
    t0, orig = raw.first_time, raw.annotations.orig_time
    raw.set_annotations(
        raw.annotations
        + mne.Annotations([t0 + 40.0], [0.0], ["EDGE boundary"], orig_time=orig)
        + mne.Annotations([t0 + 40.4], [0.0], ["EDGE boundary"], orig_time=orig)
    )
    layer = _one_band(raw, (4.0, 8.0))
    ref = raw.copy().filter(4.0, 8.0, picks="eeg", pad=pad, verbose=False)
    out = apply_to_mne(layer, raw, picks="eeg", pad=pad, verbose="error")
    assert_close(out.get_data(), ref.get_data())
    path = tmp_path / "sample_raw.fif"
    raw.save(path, fmt="double", verbose="error")  # MNE warns about the acquisition skip
    lazy = mne.io.read_raw_fif(path, preload=False, verbose=False)
    streamed = apply_to_mne(
        layer, lazy, picks="eeg", pad=pad, memory_budget=4 * 2**20, verbose="error"
    )
    assert not lazy.preload and streamed.first_samp == lazy.first_samp
    assert_close(streamed.get_data(), ref.get_data())


def test_raw_preload_false_from_edf_equals_raw_filter(edf_path):
    lazy = mne.io.read_raw_edf(edf_path, preload=False, verbose=False)
    layer = _one_band(lazy, (8.0, 13.0))
    ref = mne.io.read_raw_edf(edf_path, preload=True, verbose=False).filter(
        8.0, 13.0, verbose=False
    )
    out = apply_to_mne(layer, lazy, memory_budget=4 * 2**20, verbose=False)
    assert not lazy.preload and isinstance(out, mne.io.BaseRaw)
    assert out.annotations == lazy.annotations and out.info["meas_date"] == lazy.info["meas_date"]
    assert_close(out.get_data(), ref.get_data())


def test_real_recording_when_available(shared_data):
    path = shared_data / "eeg" / "physionet_eegmat" / "Subject00_2.edf"
    if not path.is_file():
        pytest.skip(f"{path} not available")
    raw = mne.io.read_raw_edf(path, preload=False, verbose=False).crop(0, 20.0)
    ref = raw.copy().load_data().filter(13.0, 30.0, verbose=False)
    layer = _one_band(raw, (13.0, 30.0), picks="data")
    assert_close(apply_to_mne(layer, raw, verbose=False).get_data(), ref.get_data())
    bank = filter_bank(raw.info["sfreq"], BANDS, len(raw.ch_names))
    out = apply_to_mne(bank, raw.copy().load_data(), bands=BANDS, verbose=False)
    assert out.ch_names[:3] == [f"{raw.ch_names[0]}-{b}" for b in ("4-8Hz", "8-13Hz", "13-30Hz")]
    assert not any(name.startswith("ch0") for name in out.ch_names)


@pytest.mark.parametrize("kind", ["epochs", "evoked"])
def test_epochs_and_evoked_equal_their_filter(raw, kind):
    events = mne.make_fixed_length_events(raw, duration=2.0)
    epochs = mne.Epochs(
        raw,
        events,
        tmin=-0.5,
        tmax=1.5,
        baseline=None,
        preload=True,
        reject_by_annotation=False,
        verbose=False,
    )
    inst = epochs if kind == "epochs" else epochs.average(picks="all")
    layer = _one_band(raw, (8.0, 13.0), picks="data")
    ref = inst.copy().filter(8.0, 13.0, verbose=False)  # pad="edge", their default
    out = apply_to_mne(layer, inst, verbose=False)
    assert type(out) is type(inst) and out.ch_names == inst.ch_names
    assert_close(out.get_data(), ref.get_data())
    if kind == "epochs":
        assert np.array_equal(out.events, epochs.events) and out.event_id == epochs.event_id
    bank = filter_bank(raw.info["sfreq"], BANDS, layer.in_channels)
    banked = apply_to_mne(bank, inst, bands=BANDS, verbose=False)
    alpha = [n for n in banked.ch_names if n.endswith("-8-13Hz")]
    data_names = inst.copy().pick("data", exclude=()).ch_names  # bads included
    assert_close(banked.get_data(picks=alpha), ref.get_data(picks=data_names))
    assert banked.tmin == inst.tmin


def test_epochs_not_preloaded(raw):
    events = mne.make_fixed_length_events(raw, duration=2.0)
    epochs = mne.Epochs(
        raw,
        events,
        tmin=0.0,
        tmax=1.0,
        baseline=None,
        preload=False,
        reject_by_annotation=False,
        verbose=False,
    )
    layer = _one_band(raw, (8.0, 13.0), picks="data")
    with pytest.warns(RuntimeWarning, match="filter_length"):
        ref = epochs.copy().load_data().filter(8.0, 13.0, verbose=False)
    with pytest.warns(RuntimeWarning, match="span"):
        out = apply_to_mne(layer, epochs, verbose=False)
    assert_close(out.get_data(), ref.get_data())


def test_copy_false_modifies_in_place(raw):
    layer = _one_band(raw, (8.0, 13.0), picks="data")
    ref = raw.copy().filter(8.0, 13.0, verbose=False)
    out = apply_to_mne(layer, raw, copy=False, verbose=False)
    assert out is raw
    assert_close(raw.get_data(), ref.get_data())


def test_copy_false_refused_without_preload_or_with_new_channels(raw, edf_path):
    lazy = mne.io.read_raw_edf(edf_path, preload=False, verbose=False)
    with pytest.raises(ValueError, match="copy=False modifies inst in place.*preload=False"):
        apply_to_mne(_one_band(lazy, (8.0, 13.0), picks="data"), lazy, copy=False)
    bank = filter_bank(raw.info["sfreq"], BANDS, 30)
    with pytest.raises(ValueError, match="same channels out as picked"):
        apply_to_mne(bank, raw, copy=False)


def test_filter_bank_channels_mean_something(raw):
    sfreq = raw.info["sfreq"]
    bank = filter_bank(sfreq, BANDS, 30)  # the data channels: the 30 EEG (EOG is not data)
    out = apply_to_mne(bank, raw, bands=["theta", "alpha", "beta"], verbose=False)
    data_names = raw.copy().pick("data", exclude=()).ch_names
    expected = [f"{c}-{b}" for c in data_names for b in ("theta", "alpha", "beta")]
    assert out.ch_names == expected + ["PO9", "PO10"]  # EOG and misc pass through
    types = dict(zip(out.ch_names, out.get_channel_types()))
    assert types["Cz-alpha"] == "eeg" and types["PO9"] == "eog" and types["PO10"] == "misc"
    assert out.info["bads"] == [
        "Fz-theta",
        "Fz-alpha",
        "Fz-beta",
        "C3-theta",
        "C3-alpha",
        "C3-beta",
    ]
    loc = {ch["ch_name"]: ch["loc"][:3] for ch in out.info["chs"]}
    cz = raw.info["chs"][raw.ch_names.index("Cz")]["loc"][:3]
    assert np.array_equal(loc["Cz-theta"], cz) and np.array_equal(loc["Cz-beta"], cz)
    assert out.info["meas_date"] == raw.info["meas_date"]
    assert out.annotations == raw.annotations and out.first_samp == raw.first_samp
    ref = raw.copy().filter(13.0, 30.0, picks="data", verbose=False)
    assert_close(out.get_data(picks=expected[2::3]), ref.get_data(picks=data_names))


def test_channel_specific_annotations_follow_their_channels(raw):
    orig = raw.annotations.orig_time
    raw.set_annotations(
        raw.annotations
        + mne.Annotations(
            [raw.first_time + 5.0], [1.0], ["BAD_pop"], orig_time=orig, ch_names=[["Cz"]]
        )
    )
    bank = filter_bank(raw.info["sfreq"], BANDS[:2], 30)
    out = apply_to_mne(bank, raw, bands=BANDS[:2], verbose=False)
    pops = [
        chs
        for chs, d in zip(out.annotations.ch_names, out.annotations.description)
        if d == "BAD_pop"
    ]
    assert pops == [("Cz-4-8Hz", "Cz-8-13Hz")]


def test_mixing_layer_needs_names_and_gets_types(raw):
    eeg = raw.copy().pick("eeg", exclude=()).ch_names
    R = rereference_matrix(len(eeg))[:2]  # two re-referenced channels: a new count
    layer = pointwise(R)
    with pytest.raises(ValueError, match="mixes 30 channels into 2: name its outputs"):
        apply_to_mne(layer, raw, picks="eeg")
    out = apply_to_mne(
        layer, raw, picks="eeg", names=["Fp1-avg", "Fp2-avg"], skip_by_annotation=(), verbose=False
    )
    assert out.ch_names == ["Fp1-avg", "Fp2-avg", "PO9", "PO10"]
    assert out.get_channel_types() == ["eeg", "eeg", "eog", "misc"]
    assert np.isnan(out.info["chs"][0]["loc"][:3]).all() and out.info["bads"] == []
    x = raw.get_data(picks="eeg")
    assert_close(out.get_data(picks=[0, 1]), R @ x)


def test_same_count_spatial_filter_keeps_info(raw):
    n = len(raw.copy().pick("eeg", exclude=()).ch_names)
    layer = pointwise(rereference_matrix(n))
    out = apply_to_mne(layer, raw, picks="eeg", skip_by_annotation=(), verbose=False)
    eeg = raw.copy().pick("eeg", exclude=()).ch_names
    assert out.ch_names == raw.ch_names and out.info["bads"] == raw.info["bads"]
    assert_close(out.get_data(picks=eeg), rereference_matrix(n) @ raw.get_data(picks=eeg))


def test_private_segments_equal_public_fallback(raw, monkeypatch):
    for skip in (SKIP, "bad", [], ("edge",)):
        private = _eeg_mne._good_segments(raw, skip)
        monkeypatch.setattr(_mne_compat, "TESTED_MNE", ((0, 0), (0, 1)))
        public = _eeg_mne._good_segments(raw, skip)
        monkeypatch.undo()
        assert all(np.array_equal(a, b) for a, b in zip(private, public)), skip
    starts, stops = _eeg_mne._good_segments(raw, SKIP)
    assert len(starts) == 4 and (stops - starts).min() == 128  # 12.4 .. 12.9 s


def test_verbose_as_mne(raw, capsys):
    layer = _one_band(raw, (8.0, 13.0), picks="data")
    apply_to_mne(layer, raw, verbose=True)
    assert "Filtering raw data in 4 contiguous segments" in capsys.readouterr().out
    apply_to_mne(layer, raw, verbose=False)
    assert capsys.readouterr().out == ""


def test_output_names_rules():
    bank = filter_bank(250.0, BANDS, 2)
    assert output_names(bank, ["a", "b"]) == ("a-0", "a-1", "a-2", "b-0", "b-1", "b-2")
    assert output_names(bank, ["a", "b"], names=list("uvwxyz")) == tuple("uvwxyz")
    with pytest.raises(ValueError, match="bands has 2 labels but the layer gives 3"):
        output_names(bank, ["a", "b"], bands=BANDS[:2])
    with pytest.raises(ValueError, match="names must be unique"):
        output_names(bank, ["a", "b"], names=list("uuvwxy"))
    with pytest.raises(ValueError, match="ch_names has 3 names but the layer takes 2"):
        output_names(bank, ["a", "b", "c"])
    mix = pointwise(np.ones((2, 2)))
    assert output_names(mix, ["a", "b"]) == ("a", "b")
    with pytest.raises(ValueError, match="bands labels the outputs of a depthwise layer"):
        output_names(mix, ["a", "b"], bands=["x"])


def test_errors_name_what_is_wrong(raw):
    layer = _one_band(raw, (8.0, 13.0), picks="data")
    with pytest.raises(TypeError, match="inst must be an MNE Raw, Epochs or Evoked"):
        apply_to_mne(layer, raw.get_data())
    with pytest.raises(ValueError, match="takes 30 input channels but picks selected 2"):
        apply_to_mne(layer, raw, picks=["Cz", "Pz"])
    full = fir_layer(np.ones((30, 1, 5)) / 5, groups=30)  # mode="full": longer output
    with pytest.raises(ValueError, match="must keep the signal's length"):
        apply_to_mne(full, raw)
    with pytest.raises(TypeError, match="skip_by_annotation must be a str or a list"):
        apply_to_mne(layer, raw, skip_by_annotation=3)
    with pytest.raises(TypeError, match="copy must be a bool"):
        apply_to_mne(layer, raw, copy="yes")


def test_filter_bank_out_of_core_equals_in_memory_and_keeps_skipped_samples(raw, tmp_path):
    path = tmp_path / "annotated_raw.fif"
    raw.save(path, fmt="double", verbose="error")
    lazy = mne.io.read_raw_fif(path, preload=False, verbose=False)
    loaded = mne.io.read_raw_fif(path, preload=True, verbose=False)
    bank = filter_bank(raw.info["sfreq"], BANDS, 30)
    streamed = apply_to_mne(bank, lazy, bands=BANDS, memory_budget=4 * 2**20, verbose=False)
    in_memory = apply_to_mne(bank, loaded, bands=BANDS, verbose=False)
    assert streamed.ch_names == in_memory.ch_names
    assert_close(streamed.get_data(), in_memory.get_data())
    # inside BAD_ACQ_SKIP (10.0 .. 12.4 s) every band holds its channel's input, as raw.filter
    # leaves skipped samples
    a, b = raw.time_as_index([10.1, 12.3])
    cz = loaded.get_data(picks="Cz", start=a, stop=b)
    for band in ("4-8Hz", "8-13Hz", "13-30Hz"):
        assert np.array_equal(streamed.get_data(picks=f"Cz-{band}", start=a, stop=b), cz)


def test_out_of_core_pads_are_those_computable_from_the_ends(edf_path):
    lazy = mne.io.read_raw_edf(edf_path, preload=False, verbose=False)
    with pytest.raises(ValueError, match="'pad' parameter.*'mean'"):
        apply_to_mne(_one_band(lazy, (8.0, 13.0), picks="data"), lazy, pad="mean")
