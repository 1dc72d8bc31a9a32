"""MNE's private API behind one version check: both paths against the installed MNE.

The private path (what runs within ``TESTED_MNE``) and the public path (forced here by a
range the installed MNE is outside of) must give the same Info and the same samples. Oracles:
MNE's own objects (``Info`` fields, ``RawArray``, a FIF file read back by MNE).
"""

from __future__ import annotations

import numpy as np
import pytest

from specconv import SpectralConv
from specconv.io import _mne_compat
from specconv.outofcore import apply

mne = pytest.importorskip("mne")


@pytest.fixture(params=["private", "public"])
def path(request, monkeypatch):
    """Run the test once per path: ``private`` within the tested versions, ``public`` outside."""
    if request.param == "private":
        if not _mne_compat.private_api_ok():
            pytest.skip(f"MNE {mne.__version__} is outside {_mne_compat.TESTED_MNE}")
    else:
        monkeypatch.setattr(_mne_compat, "TESTED_MNE", ((0, 0), (0, 1)))
        assert not _mne_compat.private_api_ok()
    return request.param


@pytest.fixture
def info():
    names = ["Fp1", "Fp2", "C3", "C4", "O1", "O2"]
    info = mne.create_info(names + ["STI"], 250.0, ["eeg"] * 6 + ["stim"])
    for i, ch in enumerate(info["chs"][:6]):  # positions: a field only the chs carry
        ch["loc"][:3] = [0.01 * i, 0.02, 0.03 * (i % 2)]
    info["bads"] = ["C4"]
    info["line_freq"] = 50.0
    info.set_meas_date(1_700_000_000.0)
    return info


def test_installed_version_is_read():
    major, minor = _mne_compat.mne_version()
    assert mne.__version__.startswith(f"{major}.{minor}")
    low, high = _mne_compat.TESTED_MNE
    assert _mne_compat.private_api_ok() == (low <= (major, minor) < high)


def test_the_suite_runs_the_private_path():
    """The range names a version the suite ran against: the installed one is inside it."""
    assert _mne_compat.private_api_ok(), (
        f"MNE {mne.__version__} is outside TESTED_MNE {_mne_compat.TESTED_MNE}: run this file "
        "and tests/test_outofcore.py, then widen the range"
    )


def test_with_sfreq_keeps_every_channel(path, info):
    before = info.copy()
    new = _mne_compat.with_sfreq(info, 125.0)
    assert new["sfreq"] == 125.0 and info["sfreq"] == 250.0  # the input is untouched
    assert new.ch_names == info.ch_names
    assert new.get_channel_types() == info.get_channel_types()
    assert new["bads"] == ["C4"] and new["meas_date"] == info["meas_date"]
    assert new["line_freq"] == 50.0
    for a, b in zip(new["chs"], before["chs"]):
        np.testing.assert_array_equal(a["loc"], b["loc"])
        assert (a["unit"], a["kind"], a["coil_type"], a["cal"]) == (
            b["unit"],
            b["kind"],
            b["coil_type"],
            b["cal"],
        )
    # MNE itself accepts the result (its consistency checks run on a Raw)
    mne.io.RawArray(np.zeros((len(new.ch_names), 10)), new, verbose="error")


def _ramp(n_channels):
    def read(start, stop):
        t = np.arange(start, stop, dtype=np.float64)
        return np.stack([np.sin(0.01 * (c + 1) * t) for c in range(n_channels)])

    return read


def test_raw_from_reader_gives_the_samples_read(path, info, tmp_path):
    info = info.copy()
    for ch in info["chs"]:
        ch["cal"], ch["range"] = 1.0, 1.0
    read = _ramp(len(info.ch_names))
    raw = _mne_compat.raw_from_reader(info, 5000, read, first_samp=300)
    assert isinstance(raw, mne.io.BaseRaw) and raw.preload == (path == "public")
    assert raw.first_samp == 300 and raw.n_times == 5000
    np.testing.assert_array_equal(raw.get_data(start=1234, stop=2345), read(1534, 2645))
    raw.save(tmp_path / "r_raw.fif", fmt="double", buffer_size_sec=3.0, verbose="error")
    back = mne.io.read_raw_fif(tmp_path / "r_raw.fif", preload=True, verbose="error")
    assert back.first_samp == 300 and back.ch_names == info.ch_names
    np.testing.assert_array_equal(back.get_data(), read(300, 5300))


def test_public_path_refuses_outputs_over_the_budget(monkeypatch, info):
    monkeypatch.setattr(_mne_compat, "TESTED_MNE", ((0, 0), (0, 1)))
    with pytest.raises(RuntimeError, match=r"outside the versions .* needs 280000 bytes"):
        _mne_compat.raw_from_reader(info, 5000, _ramp(7), max_bytes=100_000)


def test_outofcore_fif_target_on_both_paths(path, tmp_path):
    """End to end: a strided layer on a Raw read with preload=False, to a FIF file."""
    rng = np.random.default_rng(21)
    info = mne.create_info(["C3", "C4", "Cz"], 250.0, "eeg")
    x = rng.standard_normal((3, 4000)) * 1e-5
    mne.io.RawArray(x, info, first_samp=11, verbose="error").save(
        tmp_path / "x_raw.fif", verbose="error"
    )
    raw = mne.io.read_raw_fif(tmp_path / "x_raw.fif", preload=False, verbose="error")
    layer = SpectralConv(rng.standard_normal((3, 3, 31)), padding=15, stride=2)
    out = apply(layer, raw, tmp_path / "y_raw.fif", chunk_size=600, progress=False)
    back = mne.io.read_raw_fif(out, preload=True, verbose="error")
    assert back.ch_names == ["C3", "C4", "Cz"] and back.info["sfreq"] == 125.0
    ref = layer(raw.get_data())
    np.testing.assert_allclose(back.get_data(), ref, rtol=1e-5, atol=1e-6 * np.abs(ref).max())


def test_annotation_segments_on_both_paths(path):
    raw = mne.io.RawArray(np.zeros((1, 1000)), mne.create_info(1, 100.0), verbose="error")
    raw.set_annotations(mne.Annotations([2.0, 6.0], [1.0, 0.5], ["bad_a", "edge"]))
    segments = _mne_compat.annotation_segments(raw, ["bad"])
    if path == "public":
        assert segments is None  # the caller applies the rule from public API
    else:
        starts, stops = segments
        assert starts.tolist() == [0, 300] and stops.tolist() == [200, 1000]
