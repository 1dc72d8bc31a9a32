"""Multi-coil MRI I/O: fastMRI HDF5, BART cfl/hdr, NumPy arrays, centred FFTs, RSS.

Oracles: numpy.fft with ``norm="ortho"`` for the centred transforms; BART's layout written
out independently here (Fortran-order complex64 + a text header); the real brain data for
"looks like an image, not noise".
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from specconv import io
from specconv.io import FormatError, image_to_kspace, kspace_to_image, rss
from specconv.signal import VectorSignal

h5py = pytest.importorskip("h5py")


def _listing(folder):
    return sorted(p.name for p in folder.iterdir())


def _complex(rng, shape, dtype=np.complex64):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)


@pytest.fixture
def kspace():
    """(slices=3, coils=4, 10, 12) complex64."""
    return _complex(np.random.default_rng(5), (3, 4, 10, 12))


def _write_bart(base, array):
    """BART's layout, independently: column-major complex64 + '# Dimensions' header."""
    base.with_suffix(".hdr").write_text(
        "# Dimensions\n" + " ".join(str(d) for d in array.shape) + " \n"
    )
    np.asarray(array, dtype="<c8").ravel(order="F").tofile(base.with_suffix(".cfl"))


# -- centred orthonormal FFTs -----------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
@pytest.mark.parametrize("shape", [(6, 8), (4, 7, 9)])
def test_kspace_to_image_matches_numpy(shape, dtype):
    k = _complex(np.random.default_rng(2), shape, dtype)
    ref = np.fft.fftshift(
        np.fft.ifftn(np.fft.ifftshift(k, axes=(-2, -1)), axes=(-2, -1), norm="ortho"), axes=(-2, -1)
    )
    img = kspace_to_image(k)
    assert img.dtype == dtype
    np.testing.assert_allclose(img, ref, rtol=0, atol=1e-5 if dtype == np.complex64 else 1e-12)
    np.testing.assert_allclose(
        image_to_kspace(img), k, rtol=0, atol=1e-5 if dtype == np.complex64 else 1e-12
    )


def test_centred_fft_is_orthonormal_and_leaves_input_alone():
    x = _complex(np.random.default_rng(3), (5, 16, 16), np.complex128)
    before = x.copy()
    k = image_to_kspace(x, axes=(1, 2))
    np.testing.assert_array_equal(x, before)
    np.testing.assert_allclose(np.linalg.norm(k), np.linalg.norm(x), rtol=1e-12)
    point = np.zeros((8, 8), complex)
    point[4, 4] = 1.0  # the centre pixel is the origin: flat k-space
    np.testing.assert_allclose(np.abs(image_to_kspace(point)), 1 / 8, rtol=1e-12)


def test_fft_helpers_on_signals_switch_domain(kspace):
    sig = VectorSignal(kspace, domain="kspace", batched=True)
    img = kspace_to_image(sig)
    assert img.domain == "image" and img.batched and img.ch_names == sig.ch_names
    assert image_to_kspace(img).domain == "kspace"
    with pytest.raises(ValueError, match=r"axes \(5,\) out of range"):
        kspace_to_image(kspace, axes=5)


def test_rss():
    coils = np.array([[[3.0, 0.0]], [[4j, 2.0]]])  # (2 coils, 1, 2)
    np.testing.assert_allclose(rss(coils), [[5.0, 2.0]])
    sig = VectorSignal(np.stack([coils, coils]), domain="image", batched=True)
    np.testing.assert_allclose(rss(sig), [[[5.0, 2.0]]] * 2)


# -- fastMRI HDF5 -----------------------------------------------------------------------------
HEADER = "<?xml version='1.0'?><ismrmrdHeader><encoding/></ismrmrdHeader>"


def _fastmri_file(path, kspace, singlecoil=False):
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", data=kspace[:, 0] if singlecoil else kspace)
        f.create_dataset("ismrmrd_header", data=np.bytes_(HEADER.encode()))
        f.create_dataset("reconstruction_rss", data=np.zeros((3, 4, 4), np.float32))
        f.attrs["acquisition"] = "CORPD_FBK"
        f.attrs["max"] = 0.5
        f.attrs["patient_id"] = "abc"


def test_read_fastmri_layout_and_metadata(tmp_path, kspace):
    _fastmri_file(tmp_path / "file1000.h5", kspace)
    sig = io.read(tmp_path / "file1000.h5")
    assert sig.batched and sig.domain == "kspace"
    assert (sig.n_batch, sig.n_channels, sig.spatial_shape) == (3, 4, (10, 12))
    assert sig.ch_names == ("coil00", "coil01", "coil02", "coil03")
    np.testing.assert_array_equal(sig.data, kspace)
    meta = sig.metadata
    assert meta["attrs"] == {"acquisition": "CORPD_FBK", "max": 0.5, "patient_id": "abc"}
    assert meta["ismrmrd_header"] == HEADER
    assert meta["datasets"] == ("reconstruction_rss",)
    assert io.info(tmp_path / "file1000.h5")["shape"] == (3, 4, 10, 12)


def test_singlecoil_fastmri_gets_a_coil_axis(tmp_path, kspace):
    _fastmri_file(tmp_path / "single.h5", kspace, singlecoil=True)
    sig = io.read(tmp_path / "single.h5")
    assert sig.data.shape == (3, 1, 10, 12) and sig.metadata["singlecoil"]


def test_fastmri_round_trip_keeps_attrs_and_header(tmp_path, kspace):
    _fastmri_file(tmp_path / "a.h5", kspace)
    sig = io.read(tmp_path / "a.h5")
    compressed = sig.apply(lambda x: x[:, :2])  # 4 -> 2 coils
    io.write(compressed, tmp_path / "b.h5")
    with h5py.File(tmp_path / "b.h5", "r") as f:
        np.testing.assert_array_equal(f["kspace"][()], kspace[:, :2])
        assert f["kspace"].dtype == np.complex64
        assert f.attrs["acquisition"] == "CORPD_FBK"
        assert f["ismrmrd_header"][()].decode() == HEADER
    back = io.read(tmp_path / "b.h5")
    assert back.n_channels == 2 and back.metadata["attrs"]["max"] == 0.5


def test_unbatched_signal_writes_one_slice(tmp_path, kspace):
    io.write(VectorSignal(kspace[0], domain="kspace"), tmp_path / "one.h5")
    assert io.read(tmp_path / "one.h5").data.shape == (1, 4, 10, 12)


def test_fastmri_refuses_images_and_volumes(tmp_path, kspace):
    with pytest.raises(ValueError, match="stores k-space.*image_to_kspace"):
        io.write(VectorSignal(kspace, domain="image", batched=True), tmp_path / "x.h5")
    vol = VectorSignal(kspace[..., :4, None], domain="kspace", batched=True)
    with pytest.raises(ValueError, match="2-D slices"):
        io.write(vol, tmp_path / "y.h5")
    assert _listing(tmp_path) == []


def test_fastmri_missing_dataset_and_bad_shape(tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.create_dataset("image", data=np.zeros((2, 2)))
    with pytest.raises(FormatError, match=r"no 'kspace' dataset.*\['image'\].*dataset="):
        io.read(tmp_path / "other.h5")
    with pytest.raises(FormatError, match=r"must be \(slices, coils, H, W\).*\(2, 2\)"):
        io.read(tmp_path / "other.h5", dataset="image")


def test_truncated_hdf5(tmp_path, kspace):
    _fastmri_file(tmp_path / "a.h5", kspace)
    data = (tmp_path / "a.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError, match=r"Could not read .*cut\.h5.* as fastMRI HDF5"):
        io.read(tmp_path / "cut.h5")


def test_missing_h5py_names_the_extra(tmp_path, kspace, monkeypatch):
    _fastmri_file(tmp_path / "a.h5", kspace)
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match=r'pip install "specconv\[mri\]"'):
        io.read(tmp_path / "a.h5")
    with pytest.raises(ImportError, match=r'pip install "specconv\[mri\]"'):
        io.write(VectorSignal(kspace, domain="kspace", batched=True), tmp_path / "b.h5")
    assert _listing(tmp_path) == ["a.h5"]


def test_interrupted_hdf5_write_leaves_no_file(tmp_path, kspace, monkeypatch):
    real_create = h5py.Group.create_dataset

    def create_then_interrupt(self, *args, **kwargs):
        real_create(self, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(h5py.Group, "create_dataset", create_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        io.write(VectorSignal(kspace, domain="kspace", batched=True), tmp_path / "x.h5")
    assert _listing(tmp_path) == []


# -- BART cfl/hdr -----------------------------------------------------------------------------
def test_read_cfl_layout_against_an_independent_writer(tmp_path):
    rng = np.random.default_rng(9)
    bart = _complex(rng, (1, 6, 5, 3, 1))  # BART: READ=1, PHS1=6, PHS2=5, COIL=3
    _write_bart(tmp_path / "k", bart)
    sig = io.read(tmp_path / "k.cfl")
    assert sig.data.shape == (3, 6, 5) and not sig.batched and sig.domain == "kspace"
    np.testing.assert_array_equal(sig.data, np.moveaxis(bart[0, :, :, :, 0], 2, 0))
    # The header names the same pair.
    np.testing.assert_array_equal(io.read(tmp_path / "k.hdr").data, sig.data)


def test_cfl_extra_dims_become_the_batch(tmp_path):
    rng = np.random.default_rng(10)
    bart = _complex(rng, (4, 5, 1, 2, 3, 1, 1, 1, 1, 1, 1, 1, 1, 2))  # 3 maps x 2 slices
    _write_bart(tmp_path / "m", bart)
    sig = io.read(tmp_path / "m.cfl")
    assert sig.batched and sig.data.shape == (6, 2, 4, 5)
    # Batch index = slice * 3 + map (the last BART dimension varies slowest).
    np.testing.assert_array_equal(
        sig.data[4], np.moveaxis(bart[:, :, 0, :, 1, ..., 1], 2, 0).reshape(2, 4, 5)
    )
    io.write(sig, tmp_path / "back.cfl")
    assert (tmp_path / "back.cfl").read_bytes() == (tmp_path / "m.cfl").read_bytes()
    assert (tmp_path / "back.hdr").read_text().split()[2:] == (
        tmp_path / "m.hdr"
    ).read_text().split()[2:]


def test_cfl_round_trip_for_new_signals(tmp_path, kspace):
    for sig in (
        VectorSignal(kspace, domain="kspace", batched=True),
        VectorSignal(kspace[0], domain="image"),
        VectorSignal(kspace[0, :, :, :3], domain="kspace"),
    ):
        io.write(sig, tmp_path / "x.cfl", overwrite=True)
        back = io.read(tmp_path / "x.cfl", domain=sig.domain)
        assert back.data.shape == sig.data.shape and back.batched == sig.batched
        np.testing.assert_array_equal(back.data, sig.data)
    assert _listing(tmp_path) == ["x.cfl", "x.hdr"]


def test_cfl_stores_complex64(tmp_path):
    x = np.random.default_rng(11).standard_normal((2, 3, 4))
    io.write(VectorSignal(x, domain="image"), tmp_path / "r.cfl")
    back = io.read(tmp_path / "r.cfl", domain="image")
    assert back.data.dtype == np.complex64
    np.testing.assert_array_equal(back.data, x.astype(np.complex64))


def test_cfl_after_coil_compression_keeps_the_original_dims(tmp_path):
    bart = _complex(np.random.default_rng(12), (1, 6, 5, 4, 1))
    _write_bart(tmp_path / "k", bart)
    sig = io.read(tmp_path / "k.cfl")
    io.write(sig.apply(lambda x: x[:2]), tmp_path / "c.cfl")
    assert (tmp_path / "c.hdr").read_text().split()[2:] == ["1", "6", "5", "2", "1"]


@pytest.mark.parametrize(
    ("header", "match"),
    [
        ("# Dims\n1 2 3\n", "not a BART header"),
        ("# Dimensions\n1 two 3\n", "not a BART header"),
        ("# Dimensions\n1 0 3\n", "invalid BART dimensions"),
    ],
)
def test_bad_cfl_headers(tmp_path, header, match):
    (tmp_path / "b.hdr").write_text(header)
    (tmp_path / "b.cfl").write_bytes(b"\x00" * 48)
    with pytest.raises(FormatError, match=match):
        io.read(tmp_path / "b.cfl")


def test_truncated_or_unpaired_cfl(tmp_path):
    _write_bart(tmp_path / "k", _complex(np.random.default_rng(13), (2, 3, 1, 2)))
    data = (tmp_path / "k.cfl").read_bytes()
    (tmp_path / "k.cfl").write_bytes(data[:-8])
    with pytest.raises(FormatError, match=r"has 88 bytes but its header .* needs 96"):
        io.read(tmp_path / "k.cfl")
    (tmp_path / "lonely.cfl").write_bytes(data)
    with pytest.raises(FileNotFoundError, match=r"needs both lonely\.cfl and lonely\.hdr"):
        io.read(tmp_path / "lonely.cfl")


def test_interrupted_cfl_write_leaves_neither_file(tmp_path, kspace, monkeypatch):
    from specconv.io import _mri

    def half(sig, paths):
        paths[0].write_bytes(b"\x00" * 16)
        raise KeyboardInterrupt

    monkeypatch.setattr(_mri, "write_cfl", half)
    monkeypatch.setitem(io._WRITERS, "cfl", (half, {}, "all"))
    with pytest.raises(KeyboardInterrupt):
        io.write(VectorSignal(kspace[0], domain="kspace"), tmp_path / "x.cfl")
    assert _listing(tmp_path) == []


# -- NumPy ------------------------------------------------------------------------------------
def test_npy_axes_options(tmp_path, kspace):
    np.save(tmp_path / "k.npy", kspace)  # (slices, coils, H, W)
    sig = io.read(tmp_path / "k.npy", batch_axis=0, coil_axis=1)
    assert sig.batched and sig.ch_names[0] == "coil00"
    np.testing.assert_array_equal(sig.data, kspace)
    last = io.read(tmp_path / "k.npy", coil_axis=-1)  # coils last: (W=12 coils, 3, 4, 10)
    np.testing.assert_array_equal(last.data, np.moveaxis(kspace, -1, 0))
    with pytest.raises(ValueError, match="batch_axis and coil_axis must differ"):
        io.read(tmp_path / "k.npy", batch_axis=1, coil_axis=1)
    with pytest.raises(ValueError, match="coil_axis=4 is out of range"):
        io.read(tmp_path / "k.npy", coil_axis=4)


def test_npy_domain_defaults_and_time_series(tmp_path):
    np.save(tmp_path / "real.npy", np.zeros((2, 8, 8)))
    assert io.read(tmp_path / "real.npy").domain == "image"
    np.save(tmp_path / "eeg.npy", np.zeros((3, 500)))
    sig = io.read(tmp_path / "eeg.npy", domain="time", sfreq=250.0)
    assert sig.duration == 2.0 and sig.ch_names[0] == "ch000"
    with pytest.raises(ValueError, match="'domain' parameter.*'freq'"):
        io.read(tmp_path / "eeg.npy", domain="freq")


def test_npy_time_series_from_sfreq_and_neutral_names(tmp_path, kspace):
    np.save(tmp_path / "eeg.npy", np.zeros((3, 500), np.float32))
    sig = io.read(tmp_path / "eeg.npy", sfreq=250.0)  # sampling given: a time series
    assert (sig.domain, sig.sfreq, sig.duration) == ("time", 250.0, 2.0)
    assert sig.ch_names == ("ch000", "ch001", "ch002")
    real = io.read(tmp_path / "eeg.npy")  # no hint: a real array is an image, not coils
    assert real.domain == "image" and real.ch_names[0] == "ch000"
    assert io.read(tmp_path / "eeg.npy", spacing=(0.5,)).domain == "image"
    np.save(tmp_path / "k.npy", kspace[0])  # complex: MRI k-space, named as coils
    assert io.read(tmp_path / "k.npy").ch_names[0] == "coil00"
    np.save(tmp_path / "iq.npy", kspace[0, :, 0, :])  # complex (4, 12) with a rate: I/Q time
    assert io.read(tmp_path / "iq.npy", sfreq=1e3).ch_names[0] == "ch000"
    assert io.info(tmp_path / "eeg.npy")["domain"] == "image"


def test_npy_mmap_and_round_trip(tmp_path, kspace):
    sig = VectorSignal(kspace, domain="kspace", batched=True)
    io.write(sig, tmp_path / "x.npy")
    back = io.read(tmp_path / "x.npy", batch_axis=0, coil_axis=1, mmap=True)
    np.testing.assert_array_equal(back.data, kspace)
    details = io.info(tmp_path / "x.npy")  # default coil_axis=0: 3 "coils" of (4, 10, 12)
    assert details["shape"] == (3, 4, 10, 12) and details["channels"] == 3


def test_npz_is_self_describing(tmp_path):
    sig = VectorSignal(np.arange(12.0).reshape(2, 6), ("a", "b"), sfreq=3.0)
    io.write(sig, tmp_path / "s.npz", compressed=True)
    back = io.read(tmp_path / "s.npz")
    assert (back.ch_names, back.sfreq, back.domain) == (("a", "b"), 3.0, "time")
    np.testing.assert_array_equal(back.data, sig.data)
    img = VectorSignal(np.ones((2, 3, 4, 5)), domain="image", batched=True, spacing=(0.5, 1.0))
    io.write(img, tmp_path / "i.npz")
    back = io.read(tmp_path / "i.npz")
    assert back.batched and back.spacing == (0.5, 1.0) and back.sfreq is None


def test_npz_key_choice(tmp_path, kspace):
    np.savez(tmp_path / "many.npz", kspace=kspace[0], mask=np.ones(3))
    assert io.read(tmp_path / "many.npz").metadata["key"] == "kspace"
    np.savez(tmp_path / "two.npz", a=np.zeros((2, 3)), b=np.ones((2, 3)))
    with pytest.raises(FormatError, match=r"several arrays \['a', 'b'\]; pass key="):
        io.read(tmp_path / "two.npz")
    np.testing.assert_array_equal(io.read(tmp_path / "two.npz", key="b").data, 1.0)
    with pytest.raises(FormatError, match="has no array 'c'"):
        io.read(tmp_path / "two.npz", key="c")


def test_npy_refuses_pickles_and_truncation(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(FormatError, match="obj.npy"):
        io.read(tmp_path / "obj.npy")
    np.save(tmp_path / "k.npy", np.zeros((4, 100)))
    data = (tmp_path / "k.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[:-100])
    with pytest.raises(FormatError, match=r"Could not read .*cut\.npy"):
        io.read(tmp_path / "cut.npy")


# -- real k-space -----------------------------------------------------------------------------
def _looks_like_an_image(img):
    """Energy inside a centred ellipse and dark corners: a head, not noise."""
    h, w = img.shape
    yy, xx = np.mgrid[:h, :w]
    ellipse = ((yy - h / 2) / (0.45 * h)) ** 2 + ((xx - w / 2) / (0.45 * w)) ** 2 <= 1
    energy = img**2
    inside = energy[ellipse].sum() / energy.sum()  # noise: ~ the ellipse area, 0.64
    corners = np.concatenate([img[:20, :20], img[:20, -20:], img[-20:, :20], img[-20:, -20:]])
    centre = img[h // 2 - 40 : h // 2 + 40, w // 2 - 30 : w // 2 + 30]
    return inside, centre.mean() / corners.mean()


@pytest.mark.parametrize(
    "name", ["espirit_matlab_examples/full.cfl", "sigpy_mri_tutorial/cartesian_ksp.npy"]
)
def test_real_kspace_gives_a_brain(shared_data, name):
    sig = io.read(shared_data / "mri" / name)
    assert sig.n_channels == 8 and sig.spatial_shape == (230, 180)
    assert sig.data.dtype == np.complex64 and sig.domain == "kspace"
    img = rss(kspace_to_image(sig))
    inside, contrast = _looks_like_an_image(img)
    assert inside > 0.9 and contrast > 5
    noise = _complex(np.random.default_rng(0), (8, 230, 180))
    noise_inside, noise_contrast = _looks_like_an_image(rss(kspace_to_image(noise)))
    assert noise_inside < 0.7 and noise_contrast < 1.5


def test_real_cfl_is_fully_sampled_and_round_trips_byte_exactly(shared_data, tmp_path):
    src = shared_data / "mri" / "espirit_matlab_examples" / "full.cfl"
    sig = io.read(src)
    assert np.count_nonzero(sig.data) == sig.data.size
    io.write(sig, tmp_path / "copy.cfl")
    assert (tmp_path / "copy.cfl").read_bytes() == src.read_bytes()
    assert io.info(src)["bart_dims"] == (1, 230, 180, 8, 1)


def test_real_kspace_to_fastmri_layout(shared_data, tmp_path):
    k = io.read(shared_data / "mri" / "sigpy_mri_tutorial" / "cartesian_ksp.npy")
    stacked = VectorSignal(np.stack([k.data, k.data]), domain="kspace", batched=True)
    io.write(stacked, tmp_path / "brain.h5")
    back = io.read(tmp_path / "brain.h5")
    assert back.data.shape == (2, 8, 230, 180)
    np.testing.assert_array_equal(back.data[1], k.data)
