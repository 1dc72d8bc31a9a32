"""Out-of-core apply: chunked results equal the in-memory layer, outputs are atomic.

Oracle: the same layer applied in memory (``layer(np.asarray(source))``), and for the real EDF
MNE's own in-memory read.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import specconv
from specconv import SpectralConv
from specconv.outofcore import apply, output_shape

h5py = pytest.importorskip("h5py")
mne = pytest.importorskip("mne")

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RTOL = {
    np.dtype(np.float64): 1e-12,
    np.dtype(np.float32): 1e-5,
    np.dtype(np.complex128): 1e-12,
    np.dtype(np.complex64): 1e-5,
}


def assert_close(y, ref):
    y, ref = np.asarray(y), np.asarray(ref)
    assert y.shape == ref.shape, (y.shape, ref.shape)
    assert y.dtype == ref.dtype
    scale = max(float(np.abs(ref).max()), 1e-300)
    assert float(np.abs(y - ref).max()) <= RTOL[y.dtype] * scale


def leftovers(folder):
    return sorted(p.name for p in Path(folder).iterdir() if p.name.startswith(".specconv-"))


LAYERS = {
    "same": dict(padding="same"),
    "reflect": dict(padding=20, padding_mode="reflect"),
    "circular-stride": dict(padding=20, padding_mode="circular", stride=3),
    "replicate-dilated-groups": dict(padding=7, padding_mode="replicate", dilation=2, groups=2),
    "valid-bias": dict(padding="valid"),
}


@pytest.mark.parametrize("options", LAYERS.values(), ids=LAYERS.keys())
@pytest.mark.parametrize("chunk_size", [None, 1, 333, 4000])
def test_npy_memmap_to_npy_equals_in_memory(tmp_path, options, chunk_size):
    rng = np.random.default_rng(0)
    x = np.lib.format.open_memmap(tmp_path / "x.npy", "w+", np.float64, (4, 5000))
    x[:] = rng.standard_normal(x.shape)
    x.flush()
    G = options.get("groups", 1)
    layer = SpectralConv(rng.standard_normal((6, 4 // G, 41)), rng.standard_normal(6), **options)
    out = apply(
        layer, tmp_path / "x.npy", tmp_path / "y.npy", chunk_size=chunk_size, progress=False
    )
    assert out == tmp_path / "y.npy"
    y = np.load(out, mmap_mode="r")
    assert y.shape == output_shape(layer, x.shape)
    assert_close(y, layer(np.asarray(x)))
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("dtype", [np.float32, np.complex64, np.complex128])
def test_memmap_object_dtypes_and_batches(tmp_path, dtype):
    rng = np.random.default_rng(1)
    shape = (2, 3, 3000)
    x = np.memmap(tmp_path / "x.dat", dtype=dtype, mode="w+", shape=shape)
    values = rng.standard_normal(shape)
    if np.dtype(dtype).kind == "c":
        values = values + 1j * rng.standard_normal(shape)
    x[:] = values.astype(dtype)
    layer = SpectralConv(rng.standard_normal((3, 3, 30)).astype(np.float32), padding=5)
    ro = np.memmap(tmp_path / "x.dat", dtype=dtype, mode="r", shape=shape)
    y = apply(layer, ro, chunk_size=700)
    assert_close(y, layer(np.asarray(ro)))


def test_two_dimensional_layer_chunks_the_first_spatial_axis(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 50, 40))
    layer = SpectralConv(rng.standard_normal((5, 3, 5, 6)), padding="same", padding_mode="reflect")
    np.save(tmp_path / "img.npy", x)
    y = apply(layer, tmp_path / "img.npy", chunk_size=7)
    assert_close(y, layer(x))


def test_memmap_target_written_in_place(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 2000)).astype(np.float32)
    layer = SpectralConv(rng.standard_normal((2, 4, 11)).astype(np.float32))
    target = np.memmap(tmp_path / "y.dat", np.float32, "w+", shape=output_shape(layer, x.shape))
    assert apply(layer, x, target, chunk_size=300) is target
    assert_close(np.memmap(tmp_path / "y.dat", np.float32, "r", shape=target.shape), layer(x))
    with pytest.raises(ValueError, match=r"target has shape \(2, 10\) but the output has shape"):
        apply(layer, x, np.zeros((2, 10), np.float32))


def test_hdf5_dataset_source_and_target(tmp_path):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 6000))
    with h5py.File(tmp_path / "in.h5", "w") as f:
        f["eeg"] = x
        f["other"] = np.zeros(3)
    layer = SpectralConv(rng.standard_normal((5, 1, 101)), groups=5, padding="same")
    out = apply(
        layer,
        tmp_path / "in.h5",
        tmp_path / "out.h5",
        dataset="eeg",
        target_dataset="filtered",
        chunk_size=1000,
    )
    with h5py.File(out, "r") as f:
        assert_close(f["filtered"][:], layer(x))
    with h5py.File(tmp_path / "in.h5", "r") as f, h5py.File(tmp_path / "mine.h5", "w") as g:
        dset = g.create_dataset("y", shape=(5, 6000), dtype=np.float64)
        apply(layer, f["eeg"], dset, chunk_size=999)
        assert_close(dset[:], layer(x))
    with pytest.raises(ValueError, match=r"holds the datasets \['eeg', 'other'\]; choose one"):
        apply(layer, tmp_path / "in.h5")


def make_fif(folder, x, sfreq=250.0):
    info = mne.create_info([f"EEG{i}" for i in range(len(x))], sfreq, "eeg")
    raw = mne.io.RawArray(x, info, first_samp=17, verbose="error")
    raw.set_annotations(mne.Annotations([1.0, 5.0], [0.5, 1.0], ["bad_blink", "event"]))
    raw.save(folder / "x_raw.fif", verbose="error")
    return mne.io.read_raw_fif(folder / "x_raw.fif", preload=False, verbose="error")


def test_mne_raw_preload_false_to_fif(tmp_path):
    rng = np.random.default_rng(5)
    raw = make_fif(tmp_path, rng.standard_normal((4, 3000)) * 1e-5)
    layer = SpectralConv(rng.standard_normal((4, 4, 51)), padding="same")
    out = apply(layer, raw, tmp_path / "y_raw.fif", chunk_size=700)
    back = mne.io.read_raw_fif(out, preload=True, verbose="error")
    assert_close(back.get_data(), layer(raw.get_data()))
    assert back.ch_names == raw.ch_names and back.info["sfreq"] == 250.0
    assert back.first_samp == raw.first_samp
    np.testing.assert_allclose(back.annotations.onset, raw.annotations.onset)
    # the same from the path, into memory and with NaN for the bad segment
    y = apply(layer, tmp_path / "x_raw.fif", reject_by_annotation="NaN", chunk_size=500)
    ref = layer(raw.get_data(reject_by_annotation="NaN"))
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    assert_close(np.nan_to_num(y), np.nan_to_num(ref))


def test_fif_target_with_new_channels_and_stride(tmp_path):
    rng = np.random.default_rng(6)
    raw = make_fif(tmp_path, rng.standard_normal((4, 3000)) * 1e-5)
    layer = SpectralConv(rng.standard_normal((2, 4, 20)).astype(np.float32), stride=2)
    out = apply(layer, raw, tmp_path / "z_raw.fif", chunk_size=400, ch_names=["a", "b"])
    back = mne.io.read_raw_fif(out, preload=True, verbose="error")
    assert back.ch_names == ["a", "b"] and back.info["sfreq"] == 125.0
    np.testing.assert_allclose(
        back.get_data(), layer(raw.get_data()), rtol=1e-5, atol=1e-6 * np.abs(back.get_data()).max()
    )
    x = rng.standard_normal((3, 800))
    with pytest.raises(ValueError, match="sfreq is required"):
        apply(SpectralConv(np.ones((1, 3, 3))), x, tmp_path / "w_raw.fif")
    apply(SpectralConv(np.ones((1, 3, 3))), x, tmp_path / "w_raw.fif", sfreq=100.0)
    assert mne.io.read_raw_fif(tmp_path / "w_raw.fif", verbose="error").ch_names == ["ch000"]


@pytest.mark.skipif(
    not (DATA / "eeg" / "physionet_eegmat" / "Subject00_2.edf").exists(),
    reason="shared EEG data not available",
)
def test_real_edf_preload_false(tmp_path):
    path = DATA / "eeg" / "physionet_eegmat" / "Subject00_2.edf"
    raw = mne.io.read_raw_edf(path, preload=False, verbose="error")
    C = len(raw.ch_names)
    kernel = np.hanning(101) / np.hanning(101).sum()
    layer = SpectralConv(np.tile(kernel, (C, 1, 1)), groups=C, padding="same")
    out = apply(layer, path, tmp_path / "smooth.npy", memory_budget=4 * 2**20, progress=False)
    in_memory = mne.io.read_raw_edf(path, preload=True, verbose="error").get_data()
    assert_close(np.load(out), layer(in_memory))


# ------------------------------------------------------------------------------ atomicity
class Exploding:
    """An array-like that raises ``error`` on its ``after``-th read."""

    def __init__(self, arr, after, error):
        self.arr, self.after, self.error, self.reads = arr, after, error, 0
        self.shape, self.dtype = arr.shape, arr.dtype

    def __getitem__(self, index):
        self.reads += 1
        if self.reads >= self.after:
            raise self.error
        return self.arr[index]


@pytest.mark.parametrize("name", ["y.npy", "y.h5", "y_raw.fif"])
@pytest.mark.parametrize("error", [KeyboardInterrupt, MemoryError("boom")])
def test_interrupted_write_leaves_nothing(tmp_path, name, error):
    x = np.random.default_rng(7).standard_normal((2, 5000))
    layer = SpectralConv(np.ones((2, 2, 9)) / 18, padding="same")
    source = Exploding(x, after=3, error=error)
    with pytest.raises(type(error) if isinstance(error, Exception) else error):
        apply(layer, source, tmp_path / name, chunk_size=500, sfreq=100.0)
    assert source.reads == 3
    assert sorted(os.listdir(tmp_path)) == []
    # an existing target survives a failed overwrite untouched
    (tmp_path / name).write_bytes(b"precious")
    with pytest.raises(type(error) if isinstance(error, Exception) else error):
        apply(
            layer,
            Exploding(x, 3, error),
            tmp_path / name,
            chunk_size=500,
            sfreq=100.0,
            overwrite=True,
        )
    assert (tmp_path / name).read_bytes() == b"precious"
    assert leftovers(tmp_path) == []


def test_existing_target_and_input_are_protected(tmp_path):
    x = np.zeros((1, 100))
    np.save(tmp_path / "x.npy", x)
    layer = SpectralConv(np.ones((1, 1, 3)))
    apply(layer, tmp_path / "x.npy", tmp_path / "y.npy")
    with pytest.raises(FileExistsError, match="already exists; pass overwrite=True"):
        apply(layer, tmp_path / "x.npy", tmp_path / "y.npy")
    with pytest.raises(ValueError, match="Refusing to write over the input file"):
        apply(layer, tmp_path / "x.npy", tmp_path / "x.npy", overwrite=True)
    with pytest.raises(ValueError, match="Cannot choose an output format.*\\.csv"):
        apply(layer, tmp_path / "x.npy", tmp_path / "y.csv")
    assert np.load(tmp_path / "x.npy").shape == (1, 100)


def test_errors_name_the_parameter(tmp_path):
    layer = SpectralConv(np.ones((4, 4, 1001)))
    x = np.zeros((4, 100_000))
    with pytest.raises(ValueError, match="memory_budget=1000 bytes is too small"):
        apply(layer, x, memory_budget=1000)
    with pytest.raises(TypeError, match="memory_budget must be an int"):
        apply(layer, x, memory_budget=1.5e6)
    with pytest.raises(ValueError, match="chunk_size must be >= 1, got 0"):
        apply(layer, x, chunk_size=0)
    with pytest.raises(TypeError, match="layer must be a specconv.SpectralConv"):
        apply(specconv.SpectralConvTranspose(np.ones((4, 4, 3))), x)
    with pytest.raises(ValueError, match="the input has 3 channels but the layer expects 4"):
        apply(layer, np.zeros((3, 5000)))
    with pytest.raises(ValueError, match="padding_mode='reflect' needs padding smaller"):
        apply(SpectralConv(np.ones((1, 1, 3)), padding=5, padding_mode="reflect"), np.ones((1, 4)))
    with pytest.raises(FileNotFoundError, match="No such file"):
        apply(layer, tmp_path / "missing.npy")
    with pytest.raises(TypeError, match="source must be a path, an MNE Raw, or an array-like"):
        apply(layer, [[1.0, 2.0]])
    raw = make_fif(tmp_path, np.zeros((4, 2000)))
    with pytest.raises(ValueError, match="reject_by_annotation must be None or 'NaN'"):
        apply(layer, raw, reject_by_annotation="omit")


def test_progress_bar_only_when_asked(tmp_path, capsys):
    pytest.importorskip("tqdm")
    x = np.zeros((1, 5000))
    layer = SpectralConv(np.ones((1, 1, 3)))
    apply(layer, x, chunk_size=1000)  # stderr is not a terminal under pytest: no bar
    assert capsys.readouterr().err == ""
    apply(layer, x, chunk_size=1000, progress=True)
    assert "sample" in capsys.readouterr().err


def test_positioned_reads_only_where_the_file_is_the_array(tmp_path):
    """Shared .npy mappings are read with preadv; views and copy-on-write maps by slicing."""
    from specconv.outofcore import _ArraySource

    rng = np.random.default_rng(9)
    x = np.lib.format.open_memmap(tmp_path / "x.npy", "w+", np.float64, (3, 4000))
    x[:] = rng.standard_normal(x.shape)
    x.flush()
    cow = np.load(tmp_path / "x.npy", mmap_mode="c")
    cow[:, :50] = 7.0  # edits only in memory: reading the file would miss them
    layer = SpectralConv(rng.standard_normal((2, 3, 31)), padding="same")
    for source, positioned in [
        (np.load(tmp_path / "x.npy", mmap_mode="r"), True),
        (x, True),
        (x[:, 100:], False),
        (x[::-1], False),
        (cow, False),
    ]:
        src = _ArraySource(source, "x")
        assert (src._fd is not None) == positioned
        assert np.array_equal(src.read(1, 10, 1500), np.asarray(source)[:, 10:1500])
        src.close()
        assert_close(apply(layer, source, chunk_size=777), layer(np.asarray(source)))


def test_full_disk_fails_at_once_and_leaves_nothing(tmp_path, monkeypatch):
    import errno

    x = np.zeros((2, 3000))
    layer = SpectralConv(np.ones((2, 2, 5)))

    def no_space(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", no_space, raising=False)
    with pytest.raises(
        OSError,
        match=r"No space left on device while writing the output "
        r"\(needs \d+ bytes\).*y\.npy",
    ):
        apply(layer, x, tmp_path / "y.npy")
    assert os.listdir(tmp_path) == []

    def unsupported(fd, offset, length):  # some file systems: plain writes still work
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(os, "posix_fallocate", unsupported, raising=False)
    apply(layer, x + 1, tmp_path / "y.npy", chunk_size=1000)
    assert_close(np.load(tmp_path / "y.npy"), layer(x + 1))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread niceness is Linux's")
def test_io_thread_yields_to_the_engine_and_only_it(tmp_path, monkeypatch):
    """The I/O thread lowers its own priority; the caller's threads keep theirs."""
    import threading

    from specconv import outofcore

    seen = []
    write = outofcore._NpyWriter.write

    def spying_write(self, m0, y):
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        write(self, m0, y)

    monkeypatch.setattr(outofcore._NpyWriter, "write", spying_write)
    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    x = np.random.default_rng(3).standard_normal((2, 5000))
    layer = SpectralConv(np.ones((2, 2, 9)))
    apply(layer, x, tmp_path / "y.npy", chunk_size=1000)
    assert seen == [min(19, before + outofcore._IO_NICENESS)] * 5
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before
    assert_close(np.load(tmp_path / "y.npy"), layer(x))


def test_chunks_plan_tiles_for_spectra_computed_once():
    """Every chunk reuses the kernel spectra: longer tiles than a one-off call, in budget."""
    from specconv import _costmodel, _geometry
    from specconv.outofcore import _ArraySource, _Chunker

    w = np.random.default_rng(10).standard_normal((16, 16, 1001)).astype(np.float32)
    layer = SpectralConv(w, padding="same")
    chunker = _Chunker(layer, _ArraySource(np.zeros((16, 3_000_000), np.float32), "x"), 64 * 2**20)
    planning = chunker.valid.planning.choose_options
    assert planning["spectra_cached"] and planning["spectra_budget"] < 64 * 2**20
    geom = _geometry.Geometry(1, 16, 16, 1, (1001,), (1,), (1,), (chunker.chunk + 1000,), False)
    once = _costmodel.choose(geom, "auto", 4, 2, **planning).tiling
    one_off = _costmodel.choose(geom, "auto", 4, 2).tiling
    assert once.fft_shape[0] > one_off.fft_shape[0]
    assert _costmodel.spectra_bytes(geom, once.fft_shape, 4) <= planning["spectra_budget"]
    assert chunker.estimate <= 64 * 2**20


@pytest.mark.parametrize("method", ["fft", "direct"])
@pytest.mark.parametrize("batched", [False, True])
def test_chunks_are_computed_in_the_buffers_given(method, batched):
    """The chunker's two output buffers are reused: run() computes in the one it is given."""
    from specconv.outofcore import _ArraySource, _Chunker

    rng = np.random.default_rng(12)
    x = rng.standard_normal((2, 3, 5000) if batched else (3, 5000))
    layer = SpectralConv(
        rng.standard_normal((4, 3, 21)), rng.standard_normal(4), padding="same", method=method
    )
    chunker = _Chunker(layer, _ArraySource(x, "x"), None, chunk_size=1200)
    out = chunker.output_buffer()
    expected = layer(x)
    for m0 in range(0, 5000, 1200):
        y = chunker.run(m0, chunker.read(m0), out)
        assert np.shares_memory(y, out)
        assert_close(y, expected[..., m0 : m0 + 1200])


def test_budget_bounds_the_chunk():
    layer = SpectralConv(np.ones((8, 8, 65), np.float32))
    x = np.zeros((8, 2_000_000), np.float32)
    from specconv.outofcore import _ArraySource, _Chunker

    small = _Chunker(layer, _ArraySource(x, "x"), 8 * 2**20)
    large = _Chunker(layer, _ArraySource(x, "x"), 64 * 2**20)
    assert small.chunk < large.chunk < x.shape[1]
    assert small.estimate <= 8 * 2**20 and large.estimate <= 64 * 2**20


# ------------------------------------------------------------------------ peak memory
PEAK_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import specconv
    from specconv.outofcore import apply

    def peak():  # VmHWM: ru_maxrss would include the parent's peak (kept over fork + exec)
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))

    src, dst, budget = sys.argv[1], sys.argv[2], int(sys.argv[3])
    w = np.random.default_rng(0).standard_normal((16, 16, 65)).astype(np.float32) / 16
    layer = specconv.SpectralConv(w, padding="same")
    layer(np.zeros((16, 4096), np.float32))  # libraries loaded and warm: the baseline
    base = peak()
    apply(layer, src, dst, memory_budget=budget, progress=False)
    print(base, peak())
""")


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss in kB and madvise: Linux")
def test_peak_memory_is_bounded_by_the_budget_not_the_length(tmp_path):
    channels, n = 16, 400 * 2**20 // 4 // 16  # a 400 MB float32 recording
    budget = 50 * 2**20
    x = np.lib.format.open_memmap(tmp_path / "big.npy", "w+", np.float32, (channels, n))
    rng = np.random.default_rng(8)
    for i in range(0, n, 2**20):
        x[:, i : i + 2**20] = rng.standard_normal((channels, min(2**20, n - i)), np.float32)
    x.flush()
    del x
    script = tmp_path / "peak.py"
    script.write_text(PEAK_SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(Path(specconv.__file__).parents[1]))
    done = subprocess.run(
        [
            sys.executable,
            str(script),
            str(tmp_path / "big.npy"),
            str(tmp_path / "out.npy"),
            str(budget),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=True,
    )
    base, peak = map(int, done.stdout.split())
    assert peak - base <= 1.5 * budget, f"peak grew by {(peak - base) / 2**20:.0f} MB"
    # spot checks against the layer in memory, at the edges and inside
    x = np.load(tmp_path / "big.npy", mmap_mode="r")
    y = np.load(tmp_path / "out.npy", mmap_mode="r")
    w = np.random.default_rng(0).standard_normal((16, 16, 65)).astype(np.float32) / 16
    layer = SpectralConv(w, padding="same")
    for a in (0, n // 2 - 1000, n - 3000):
        ref = layer(np.asarray(x[:, max(a - 32, 0) : a + 3032]))
        got = y[:, a : a + 3000]
        off = a - max(a - 32, 0)
        np.testing.assert_allclose(got, ref[:, off : off + 3000], rtol=1e-4, atol=1e-4)
