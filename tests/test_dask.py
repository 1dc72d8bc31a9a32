"""Dask: lazy conv on chunked arrays equals the eager layer; map_files on a cluster."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import specconv
from specconv import SpectralConv, io
from specconv.signal import VectorSignal

da = pytest.importorskip("dask.array")
dask_mod = pytest.importorskip("specconv.dask")
conv_dask, map_files = dask_mod.conv_dask, dask_mod.map_files

RTOL = {
    np.dtype(np.float64): 1e-12,
    np.dtype(np.float32): 1e-5,
    np.dtype(np.complex128): 1e-12,
    np.dtype(np.complex64): 1e-5,
}


def assert_close(y, ref):
    y, ref = np.asarray(y), np.asarray(ref)
    assert y.shape == ref.shape and y.dtype == ref.dtype, (y.shape, ref.shape, y.dtype, ref.dtype)
    assert np.abs(y - ref).max() <= RTOL[y.dtype] * max(np.abs(ref).max(), 1e-300)


def random_chunks(draw, n, max_parts=6):
    cuts = sorted(set(draw(st.lists(st.integers(1, max(n - 1, 1)), max_size=max_parts))))
    cuts = [c for c in cuts if 0 < c < n]
    return tuple(np.diff([0] + cuts + [n]).tolist())


@st.composite
def dask_cases(draw):
    d = draw(st.sampled_from([1, 1, 2]))
    G = draw(st.sampled_from([1, 2]))
    ci, co = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 12 if d == 1 else 4)) for _ in range(d))
    dilation = draw(st.sampled_from([1, 1, 2]))
    stride = draw(st.sampled_from([1, 1, 2, 3]))
    mode = draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"]))
    span = tuple(dilation * (k - 1) + 1 for k in kernel)
    n = tuple(draw(st.integers(max(e, 4), 80 if d == 1 else 20)) for e in span)
    padding = draw(st.sampled_from(["valid", "same", 0, 1, 3]))
    if padding == "same" and stride > 1:
        padding = 1
    if isinstance(padding, int) and mode in ("reflect", "circular"):
        padding = min(padding, min(n) - 1)
    batch = draw(st.sampled_from([None, 2]))
    shape = ((batch,) if batch else ()) + (G * ci,) + n
    chunks = [draw(st.sampled_from([(1, 1), (2,)]))] if batch else []
    chunks += [random_chunks(draw, m) for m in shape[len(chunks) :]]  # channels too
    dtype = draw(st.sampled_from(["float64", "float32", "complex128"]))
    return dict(
        G=G,
        ci=ci,
        co=co,
        kernel=kernel,
        dilation=dilation,
        stride=stride,
        mode=mode,
        padding=padding,
        shape=shape,
        chunks=tuple(chunks),
        dtype=np.dtype(dtype),
        bias=draw(st.booleans()),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


@settings(max_examples=50, deadline=None)
@given(dask_cases())
def test_conv_dask_equals_the_eager_layer(case):
    rng = np.random.default_rng(case["seed"])
    dtype = case["dtype"]
    x = rng.standard_normal(case["shape"])
    w = rng.standard_normal((case["G"] * case["co"], case["ci"]) + case["kernel"])
    if dtype.kind == "c":
        x = x + 1j * rng.standard_normal(x.shape)
    x, w = x.astype(dtype), w.astype(dtype)
    b = rng.standard_normal(w.shape[0]).astype(dtype) if case["bias"] else None
    layer = SpectralConv(
        w,
        b,
        stride=case["stride"],
        padding=case["padding"],
        dilation=case["dilation"],
        groups=case["G"],
        padding_mode=case["mode"],
    )
    y = conv_dask(da.from_array(x, chunks=case["chunks"]), layer)
    assert isinstance(y, da.Array)
    ref = layer(x)
    assert y.shape == ref.shape
    assert_close(y.compute(scheduler="synchronous"), ref)


def test_output_chunks_follow_the_input_chunks():
    x = da.zeros((3, 9000), chunks=(1, 1000))
    layer = SpectralConv(np.ones((2, 3, 65)), padding="same")
    assert conv_dask(x, layer).chunks == ((2,), (1000,) * 9)
    strided = SpectralConv(np.ones((2, 3, 65)), padding=32, stride=4)
    assert conv_dask(x, strided).chunks == ((2,), (250,) * 9)
    tiny = da.zeros((3, 900), chunks=(3, 10))  # chunks smaller than the kernel are merged
    y = conv_dask(tiny, layer)
    assert all(c >= 64 for c in y.chunks[1][:-1])
    np.testing.assert_array_equal(y.compute(scheduler="synchronous"), np.zeros((2, 900)))


def explode(block):
    raise RuntimeError("computed too early")


def test_lazy_and_the_layer_is_in_the_graph_once():
    x = da.map_blocks(explode, da.zeros((2, 200_000), chunks=(2, 5000)), dtype=float)
    w = np.random.default_rng(0).standard_normal((2, 2, 4001))
    y = conv_dask(x, SpectralConv(w, padding="same"))  # builds, computes nothing
    assert y.numblocks == (1, 40)
    # tasks travel one by one: the weight must sit in one task, not in each of the 40
    size = sum(len(pickle.dumps(task)) for task in dict(y.__dask_graph__()).values())
    assert size < 3 * w.nbytes
    with pytest.raises(RuntimeError, match="computed too early"):
        y.compute(scheduler="synchronous")


def test_numpy_input_and_errors():
    layer = SpectralConv(np.ones((1, 2, 3)))
    y = conv_dask(np.ones((2, 10)), layer)
    np.testing.assert_allclose(y.compute(), np.full((1, 8), 6.0))
    with pytest.raises(ValueError, match=r"x has 3 channels \(axis 0 of shape \(3, 10\)\)"):
        conv_dask(da.ones((3, 10)), layer)
    with pytest.raises(ValueError, match="x must have shape .* got shape"):
        conv_dask(da.ones(10), layer)
    with pytest.raises(TypeError, match="layer must be a specconv.SpectralConv"):
        conv_dask(da.ones((2, 10)), lambda v: v)
    with pytest.raises(ValueError, match="padding_mode='reflect' needs padding smaller"):
        conv_dask(
            da.ones((2, 3)), SpectralConv(np.ones((1, 2, 3)), padding=3, padding_mode="reflect")
        )
    with pytest.raises(ValueError, match="kernel .span 3. is larger than the padded input"):
        conv_dask(da.ones((2, 2)), layer)


# ---------------------------------------------------------------------------- map_files
def make_recordings(folder, count=4, n=3000):
    rng = np.random.default_rng(9)
    paths = []
    for k in range(count):
        sig = VectorSignal(rng.standard_normal((3, n)), ("a", "b", "c"), sfreq=200.0)
        paths.append(folder / f"rec{k}.npz")
        io.write(sig, paths[-1])
    return paths


def check_outputs(inputs, outputs, layer):
    assert [p.name for p in outputs] == [p.name for p in inputs]
    for src, out in zip(inputs, outputs):
        got = io.read(out)
        assert got.ch_names == ("a", "b", "c") and got.sfreq == 200.0
        assert_close(got.data, layer(io.read(src).data))


def test_map_files_in_process(tmp_path):
    inputs = make_recordings(tmp_path)
    (tmp_path / "out").mkdir()
    layer = SpectralConv(np.random.default_rng(1).standard_normal((3, 3, 51)), padding="same")
    outputs = map_files(inputs, layer, tmp_path / "out")
    check_outputs(inputs, outputs, layer)
    outs = map_files(inputs[:1], layer, tmp_path / "out", suffix=".npy")
    assert outs == [tmp_path / "out" / "rec0.npy"]
    with pytest.raises(FileExistsError, match="already exists"):
        map_files(inputs[:1], layer, tmp_path / "out")
    with pytest.raises(NotADirectoryError, match="is not an existing directory"):
        map_files(inputs, layer, tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"would write the same output file\(s\): \['rec0.npz'\]"):
        map_files([inputs[0], tmp_path / "out" / "rec0.npz"], layer, tmp_path)
    with pytest.raises(ValueError, match="num_threads must be a positive int or None, got 0"):
        map_files(inputs, layer, tmp_path / "out", num_threads=0)


@pytest.mark.slow
def test_map_files_on_a_two_process_local_cluster(tmp_path):
    distributed = pytest.importorskip("distributed")
    inputs = make_recordings(tmp_path, count=6)
    (tmp_path / "out").mkdir()
    layer = SpectralConv(
        np.random.default_rng(2).standard_normal((3, 1, 101)), groups=3, padding="same"
    )
    root = str(Path(specconv.__file__).resolve().parents[1])
    with (
        distributed.LocalCluster(
            n_workers=2,
            processes=True,
            threads_per_worker=1,
            dashboard_address=None,
            env={"PYTHONPATH": root},
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        outputs = map_files(inputs, layer, tmp_path / "out", client=client)
        check_outputs(inputs, outputs, layer)
        (tmp_path / "broken.npz").write_bytes(b"not a numpy archive")
        with pytest.raises(io.FormatError):
            map_files([tmp_path / "broken.npz"], layer, tmp_path / "out", client=client)
        # the lazy array API on the same cluster
        x = da.from_array(np.random.default_rng(3).standard_normal((3, 40_000)), chunks=(3, 5000))
        assert_close(conv_dask(x, layer).compute(), layer(x.compute()))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [p.name for p in inputs]


def test_importing_the_long_recording_modules_imports_no_optional_dependency():
    import subprocess
    import sys

    code = (
        "import sys, specconv.stream, specconv.outofcore, specconv.dask; "
        "print(sorted(m for m in ('dask', 'distributed', 'mne', 'h5py', 'tqdm') "
        "if m in sys.modules))"
    )
    root = str(Path(specconv.__file__).resolve().parents[1])
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    assert done.stdout.strip() == "[]"
