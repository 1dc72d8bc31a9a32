"""EEG applications against MNE on a real 10-20 recording (PhysioNet eegmat, 19 channels)."""

from __future__ import annotations

import numpy as np
import pytest

from specconv.apps.eeg import (
    apply_like_mne,
    bandpass_firs,
    csd_matrix,
    filter_bank,
    laplacian_matrix,
    montage_positions,
    rereference_matrix,
    spatiotemporal_layer,
)
from specconv.kernels import compose, fir_layer, pointwise

from ._tolerances import assert_close

mne = pytest.importorskip("mne")

BANDS = [(None, 4.0), (4.0, 8.0), (8.0, 13.0), (13.0, 30.0)]  # delta (low-pass) ... beta
SPHERE = (0.0, 0.0, 0.0, 0.095)  # a fixed head sphere: no fit (and no warning) needed


@pytest.fixture(scope="module")
def raw(shared_data):
    """The 19 EEG channels of PhysioNet eegmat Subject00_2, first 8 s, montage set."""
    path = shared_data / "eeg" / "physionet_eegmat" / "Subject00_2.edf"
    if not path.is_file():
        pytest.skip(f"{path} not available")
    raw = mne.io.read_raw_edf(path, preload=True, verbose=False)
    raw.pick(raw.ch_names[:19])  # drops A2-A1 and ECG
    raw.rename_channels(lambda name: name.replace("EEG ", ""))
    raw.crop(0, 8.0)
    raw.set_montage("colin27_1020")
    return raw


def _mne_bank(x, sfreq, **kw):
    """MNE's filter_data for every band, stacked channel-major like the layer's outputs."""
    out = [
        mne.filter.filter_data(x, sfreq, lo, hi, method="fir", verbose=False, **kw)
        for lo, hi in BANDS
    ]
    return np.stack(out, axis=1).reshape(-1, x.shape[-1])


@pytest.mark.parametrize(
    "phase, pad",
    [
        ("zero", "constant"),
        ("zero-double", "edge"),
        ("minimum", "wrap"),
        ("minimum-half", "constant"),
    ],
)
def test_filter_bank_equals_mne_filter_data(raw, phase, pad):
    x, sfreq = raw.get_data(), raw.info["sfreq"]
    bank = filter_bank(sfreq, BANDS, 19, phase=phase, pad=pad)
    assert bank.groups == 19 and bank.weight.shape[:2] == (19 * len(BANDS), 1)
    y = bank(x)
    assert y.shape == (19 * len(BANDS), x.shape[-1])
    assert_close(y, _mne_bank(x, sfreq, phase=phase, pad=pad))  # measured ~5e-16 relative


@pytest.mark.parametrize("phase", ["zero", "minimum"])
def test_apply_like_mne_default_odd_reflection(raw, phase):
    x, sfreq = raw.get_data(), raw.info["sfreq"]
    bank = filter_bank(sfreq, BANDS, 19, phase=phase)
    assert_close(apply_like_mne(bank, x), _mne_bank(x, sfreq, phase=phase))
    assert_close(
        apply_like_mne(bank, x, pad="reflect"), _mne_bank(x, sfreq, phase=phase, pad="reflect")
    )


def test_bandpass_firs_are_mne_filters():
    firs, delay = bandpass_firs(500.0, [(8.0, 13.0), (13.0, 30.0)])
    h = mne.filter.create_filter(None, 500.0, 8.0, 13.0, method="fir", verbose=False)
    assert firs.shape == (2, len(h)) and delay == (len(h) - 1) // 2
    np.testing.assert_array_equal(firs[0], h)
    short = mne.filter.create_filter(None, 500.0, 13.0, 30.0, method="fir", verbose=False)
    off = (len(h) - len(short)) // 2  # centred: same zero-phase alignment
    np.testing.assert_array_equal(firs[1, off : off + len(short)], short)


def test_filter_bank_refusals():
    with pytest.raises(ValueError, match="pad='reflect_limited'.*apply_like_mne"):
        filter_bank(250.0, [(8, 13)], 2, pad="reflect_limited")
    with pytest.raises(ValueError, match="Invalid value for the 'phase' parameter"):
        filter_bank(250.0, [(8, 13)], 2, phase="forward")
    with pytest.raises(ValueError, match="n_channels must be a positive int"):
        filter_bank(250.0, [(8, 13)], 0)
    with pytest.raises(ValueError, match="needs l_freq or h_freq"):
        bandpass_firs(250.0, [(None, None)])


# -- spatial filters ---------------------------------------------------------------------------


@pytest.mark.parametrize("ref", ["average", ["Cz"], ["O1", "O2"]])
def test_rereference_equals_mne(raw, ref):
    idx = "average" if ref == "average" else [raw.ch_names.index(c) for c in ref]
    R = rereference_matrix(19, idx)
    ref_raw = raw.copy().set_eeg_reference(ref, projection=False, verbose=False)
    assert_close(pointwise(R)(raw.get_data()), ref_raw.get_data())


def test_csd_matrix_equals_mne(raw):
    M = csd_matrix(raw.info, sphere=SPHERE)
    csd = mne.preprocessing.compute_current_source_density(raw.copy(), sphere=SPHERE, verbose=False)
    assert_close(M @ raw.get_data(), csd.get_data())


def test_laplacian_neighbours_and_agreement_with_csd(raw):
    pos = montage_positions(raw.ch_names)
    L = laplacian_matrix(pos, n_neighbors=4)
    np.testing.assert_allclose(L.sum(axis=1), 0, atol=1e-15)
    cz = raw.ch_names.index("Cz")
    neighbours = {raw.ch_names[j] for j in np.flatnonzero(L[cz]) if j != cz}
    assert neighbours == {"C3", "C4", "Fz", "Pz"}
    # two estimates of the same surface Laplacian: measured correlation 0.81 on this recording
    x = raw.get_data()
    csd = csd_matrix(raw.info, sphere=SPHERE) @ x
    r = np.corrcoef((L @ x).ravel(), csd.ravel())[0, 1]
    print(f"nearest-neighbour Laplacian vs MNE CSD: correlation {r:.3f}")
    assert r > 0.7


def test_spatial_refusals():
    with pytest.raises(ValueError, match="ref must be 'average' or channel indices"):
        rereference_matrix(3, [5])
    with pytest.raises(ValueError, match="n_neighbors must be an int"):
        laplacian_matrix(np.zeros((3, 3)), 3)
    with pytest.raises(ValueError, match="not on the montage"):
        montage_positions(["Cz", "NotAChannel"])


# -- one layer for both -------------------------------------------------------------------------


def test_spatiotemporal_layer_equals_sequential_and_mne(raw):
    x, sfreq = raw.get_data(), raw.info["sfreq"]
    bank = filter_bank(sfreq, BANDS, 19)
    R = rereference_matrix(19)
    one = spatiotemporal_layer(R, bank)
    assert one.in_channels == 19 and one.out_channels == 76 and one.groups == 1
    y = one(x)
    assert_close(y, bank(R @ x))  # sequential application
    car = raw.copy().set_eeg_reference("average", projection=False, verbose=False).get_data()
    assert_close(y, _mne_bank(car, sfreq, pad="constant"))  # MNE's own pipeline
    # with MNE's default odd-reflection edges (they commute with channel mixing)
    assert_close(apply_like_mne(one, x), _mne_bank(car, sfreq))


def test_spatiotemporal_laplacian_then_smoothing_any_padding_mode(raw):
    x = raw.get_data()[:, :1000]
    L = laplacian_matrix(montage_positions(raw.ch_names))
    for mode in ("reflect", "replicate", "circular"):
        smooth = fir_layer(
            np.hanning(9)[None, None].repeat(19, 0) / 4,
            mode="same",
            delay=4,
            groups=19,
            padding_mode=mode,
        )
        one = spatiotemporal_layer(L, smooth)
        assert_close(one(x), smooth(L @ x))
        assert_close(one(x), compose(smooth, pointwise(L))(x))
    with pytest.raises(TypeError, match="temporal must be a SpectralConv"):
        spatiotemporal_layer(L, np.ones((19, 1, 3)))
