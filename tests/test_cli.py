"""The ``specconv`` command line: every command in-process, and once through ``python -m``."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from specconv import datasets
from specconv.cli import main

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
REAL_EDF = SHARED / "eeg" / "physionet_eegmat" / "Subject00_2.edf"


def _sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def run(capsys, *argv):
    """main(argv) -> (status, stdout, stderr)."""
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def assert_user_error(status, err, pattern):
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert pattern in lines[0], lines[0]


@pytest.fixture
def work(tmp_path):
    """A folder with copies of some samples (the tests never write next to package data)."""
    for name in ("eeg-edf", "audio-pcm16", "mri-bart"):
        src = datasets.path(name)
        shutil.copy(src, tmp_path / src.name)
        if name == "mri-bart":
            shutil.copy(src.with_suffix(".hdr"), tmp_path / "mri_phantom.hdr")
    return tmp_path


def _read_mne(path):
    mne = pytest.importorskip("mne")
    return mne.io.read_raw(path, preload=True, verbose="error")


def _listing(folder):
    return sorted(p.name for p in Path(folder).iterdir())


# -- parser -----------------------------------------------------------------------------------


def test_no_command_prints_help_and_fails(capsys):
    status, out, err = run(capsys)
    assert status == 2 and "usage: specconv" in err and "demo" in err


def test_help_and_version(capsys):
    status, out, _ = run(capsys, "--help")
    assert status == 0 and "sys-info" in out
    status, out, _ = run(capsys, "--version")
    assert status == 0 and out.startswith("specconv ")


def test_bad_option_value_is_a_usage_error(capsys, work):
    status, _, err = run(
        capsys,
        "apply",
        work / "eeg_sample.edf",
        "--kernel",
        "k.npy",
        "-o",
        work / "o.fif",
        "--padding",
        "wide",
    )
    assert status == 2 and "--padding" in err and "'wide'" in err


# -- info -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, channels",
    [
        ("eeg-edf", 32),
        ("eeg-fif", 32),
        ("audio-pcm24", 2),
        ("ir-true-stereo", 4),
        ("mri-fastmri", 8),
        ("mri-bart", 8),
    ],
)
def test_info_describes_every_sample(capsys, name, channels):
    status, out, err = run(capsys, "info", datasets.path(name))
    assert status == 0, err
    assert str(datasets.path(name)) in out
    assert str(channels) in out
    status, out, _ = run(capsys, "info", "--json", datasets.path(name))
    assert status == 0 and isinstance(json.loads(out), dict)


def test_info_on_a_missing_file_is_one_line(capsys, tmp_path):
    status, _, err = run(capsys, "info", tmp_path / "absent.edf")
    assert_user_error(status, err, "absent.edf")


def test_info_on_an_unknown_format_is_one_line(capsys, tmp_path):
    junk = tmp_path / "notes.xyz"
    junk.write_text("not a signal")
    status, _, err = run(capsys, "info", junk)
    assert_user_error(status, err, "specconv info: error:")


def test_info_on_a_truncated_file_is_one_line(capsys, tmp_path):
    src = datasets.path("eeg-edf").read_bytes()
    cut = tmp_path / "cut.edf"
    cut.write_bytes(src[: len(src) // 2])
    status, _, err = run(capsys, "info", cut)
    assert_user_error(status, err, "cut.edf")


# -- apply: identity kernels reproduce the input ------------------------------------------------


def _identity(c, taps=1):
    w = np.zeros((c, c, taps))
    w[np.arange(c), np.arange(c), taps // 2] = 1.0
    return w


def test_apply_identity_on_sample_edf_to_fif_reproduces_it(capsys, work):
    np.save(work / "eye.npy", _identity(32, taps=5))
    out = work / "same_raw.fif"
    status, stdout, err = run(
        capsys,
        "apply",
        work / "eeg_sample.edf",
        "--kernel",
        work / "eye.npy",
        "--padding",
        "same",
        "-o",
        out,
    )
    assert status == 0, err
    assert "wrote" in stdout
    src, res = _read_mne(work / "eeg_sample.edf"), _read_mne(out)
    assert res.ch_names == src.ch_names and res.info["sfreq"] == src.info["sfreq"]
    np.testing.assert_allclose(res.get_data(), src.get_data(), rtol=1e-6, atol=1e-12)


def test_apply_identity_on_sample_edf_to_edf_within_quantization(capsys, work):
    np.save(work / "eye.npy", np.ones((32, 1, 1)))  # depthwise identity
    out = work / "copy.edf"
    status, _, err = run(
        capsys,
        "apply",
        work / "eeg_sample.edf",
        "--kernel",
        work / "eye.npy",
        "--groups",
        "32",
        "-o",
        out,
    )
    assert status == 0, err
    src, res = _read_mne(work / "eeg_sample.edf"), _read_mne(out)
    assert res.ch_names == src.ch_names
    data = src.get_data()
    lsb = (data.max() - data.min()) / 65534  # a 16-bit grid spanning the data
    np.testing.assert_allclose(res.get_data(), data, rtol=0, atol=lsb)


@pytest.mark.skipif(not REAL_EDF.exists(), reason="shared real EDF not available")
def test_apply_identity_on_a_real_edf_reproduces_it(capsys, tmp_path):
    raw = _read_mne(REAL_EDF)
    c = len(raw.ch_names)
    np.save(tmp_path / "eye.npy", _identity(c))
    out = tmp_path / "real_raw.fif"
    status, _, err = run(capsys, "apply", REAL_EDF, "--kernel", tmp_path / "eye.npy", "-o", out)
    assert status == 0, err
    res = _read_mne(out)
    assert res.ch_names == raw.ch_names
    np.testing.assert_allclose(res.get_data(), raw.get_data(), rtol=1e-6, atol=1e-12)


def test_apply_identity_on_wav_round_trips_exactly(capsys, work):
    from scipy.io import wavfile

    np.save(work / "eye.npy", _identity(2))
    out = work / "copy.wav"
    status, _, err = run(
        capsys, "apply", work / "audio_stereo_pcm16.wav", "--kernel", work / "eye.npy", "-o", out
    )
    assert status == 0, err
    sr_in, x = wavfile.read(work / "audio_stereo_pcm16.wav")
    sr_out, y = wavfile.read(out)
    assert sr_out == sr_in
    if y.dtype == np.int16:
        np.testing.assert_array_equal(y, x)
    else:  # written as float: the integer rule code / 32768
        np.testing.assert_allclose(y * 32768, x, atol=1e-3)


# -- apply: real layers -------------------------------------------------------------------------


def test_apply_npz_weight_and_bias_on_bart_kspace(capsys, work):
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((3, 8, 1, 1)) + 1j * rng.standard_normal((3, 8, 1, 1))) / 4
    b = np.array([1.0, -2.0, 0.5])
    np.savez(work / "k.npz", weight=w, bias=b)
    out = work / "virtual.cfl"
    status, _, err = run(
        capsys, "apply", work / "mri_phantom.cfl", "--kernel", work / "k.npz", "-o", out
    )
    assert status == 0, err
    dims = [int(d) for d in out.with_suffix(".hdr").read_text().splitlines()[1].split()]
    y = np.fromfile(out, np.complex64).reshape(dims, order="F")
    x = np.fromfile(work / "mri_phantom.cfl", np.complex64).reshape((1, 80, 64, 8), order="F")
    expected = np.einsum("oc,...c->...o", w[:, :, 0, 0], x) + b
    np.testing.assert_allclose(y.reshape(expected.shape), expected, rtol=1e-4, atol=1e-5)


def test_apply_scipy_convention_matches_scipy(capsys, work):
    from scipy.io import wavfile
    from scipy.signal import convolve

    rng = np.random.default_rng(1)
    h = rng.standard_normal((2, 2, 33)) / 10
    np.save(work / "h.npy", h)
    out = work / "mix.npy"
    status, _, err = run(
        capsys,
        "apply",
        work / "audio_stereo_pcm16.wav",
        "--kernel",
        work / "h.npy",
        "--convention",
        "scipy",
        "-o",
        out,
    )
    assert status == 0, err
    _, x = wavfile.read(work / "audio_stereo_pcm16.wav")
    x = x.T / 32768.0  # the documented integer rule
    ref = [sum(convolve(x[j], h[i, j], mode="same") for j in range(2)) for i in range(2)]
    y = np.load(out) if out.suffix == ".npy" else None
    np.testing.assert_allclose(np.asarray(y).reshape(2, -1), ref, rtol=1e-5, atol=1e-7)


def test_apply_stride_halves_the_sampling_rate(capsys, work):
    np.save(work / "pair.npy", np.full((32, 1, 2), 0.5))  # 2-sample average, depthwise
    out = work / "half_raw.fif"
    status, _, err = run(
        capsys,
        "apply",
        work / "eeg_sample.edf",
        "--kernel",
        work / "pair.npy",
        "--groups",
        "32",
        "--stride",
        "2",
        "-o",
        out,
    )
    assert status == 0, err
    src, res = _read_mne(work / "eeg_sample.edf"), _read_mne(out)
    assert res.info["sfreq"] == 128.0 and res.n_times == src.n_times // 2
    x = src.get_data()
    np.testing.assert_allclose(res.get_data(), (x[:, 0::2] + x[:, 1::2]) / 2, rtol=1e-5, atol=1e-11)


def test_apply_depthwise_multiplier_names_channels_after_their_input(capsys, work):
    np.save(work / "bank.npy", np.ones((64, 1, 1)))
    out = work / "bank_raw.fif"
    status, _, err = run(
        capsys,
        "apply",
        work / "eeg_sample.edf",
        "--kernel",
        work / "bank.npy",
        "--groups",
        "32",
        "-o",
        out,
    )
    assert status == 0, err
    assert _read_mne(out).ch_names[:3] == ["Fp1:0", "Fp1:1", "Fp2:0"]


# -- apply: mistakes ----------------------------------------------------------------------------


def test_apply_rejects_a_kernel_with_the_wrong_channel_count(capsys, work):
    np.save(work / "k.npy", np.ones((1, 3, 5)))
    status, _, err = run(
        capsys, "apply", work / "eeg_sample.edf", "--kernel", work / "k.npy", "-o", work / "o.fif"
    )
    assert_user_error(status, err, "expects 3 input channels")
    assert "32 channels" in err
    assert not (work / "o.fif").exists()


def test_apply_rejects_a_kernel_with_the_wrong_number_of_axes(capsys, work):
    np.save(work / "k.npy", np.ones((32, 32, 3, 3)))
    status, _, err = run(
        capsys, "apply", work / "eeg_sample.edf", "--kernel", work / "k.npy", "-o", work / "o.fif"
    )
    assert_user_error(status, err, "2 spatial axes")


def test_apply_never_writes_over_its_input(capsys, work):
    src = work / "eeg_sample.edf"
    before = _sha256(src)
    np.save(work / "k.npy", np.ones((32, 1, 1)))
    for out, extra in ((src, ()), (src, ("--overwrite",)), (work / "mri_phantom.hdr", ())):
        inp = work / "mri_phantom.cfl" if out.suffix == ".hdr" else src
        status, _, err = run(
            capsys, "apply", inp, "--kernel", work / "k.npy", "--groups", "32", "-o", out, *extra
        )
        assert_user_error(status, err, "refusing to write")
    assert _sha256(src) == before


def test_apply_keeps_an_existing_output_without_overwrite(capsys, work):
    np.save(work / "k.npy", np.ones((32, 1, 1)))
    out = work / "o_raw.fif"
    out.write_bytes(b"keep me")
    argv = [
        "apply",
        work / "eeg_sample.edf",
        "--kernel",
        work / "k.npy",
        "--groups",
        "32",
        "-o",
        out,
    ]
    status, _, err = run(capsys, *argv)
    assert_user_error(status, err, "--overwrite")
    assert out.read_bytes() == b"keep me"
    status, _, err = run(capsys, *argv, "--overwrite")
    assert status == 0, err
    assert len(_read_mne(out).ch_names) == 32


@pytest.mark.parametrize(
    "setup, argv_tail, message",
    [
        ("none", ["--kernel", "{w}/missing.npy"], "missing.npy"),
        ("txt", ["--kernel", "{w}/k.txt"], "--kernel must be a .npy or .npz"),
        ("npz_no_weight", ["--kernel", "{w}/k.npz"], "array named 'weight'"),
        ("npz_bias", ["--kernel", "{w}/k.npz", "--bias", "{w}/b.npy"], "bias given twice"),
        ("npy", ["--kernel", "{w}/k.npy", "--mode", "full"], "--mode only applies"),
        (
            "npy",
            ["--kernel", "{w}/k.npy", "--convention", "scipy", "--stride", "2"],
            "--stride only apply",
        ),
        ("npy", ["--kernel", "{w}/k.npy", "--padding-mode", "mirror"], "padding_mode"),
        ("npy", ["--kernel", "{w}/k.npy", "--method", "magic"], "method"),
    ],
)
def test_apply_reports_mistakes_in_one_line(capsys, work, setup, argv_tail, message):
    if setup == "txt":
        (work / "k.txt").write_text("1 2 3")
    elif setup == "npz_no_weight":
        np.savez(work / "k.npz", kernel=np.ones((32, 1, 1)))
    elif setup == "npz_bias":
        np.savez(work / "k.npz", weight=np.ones((32, 1, 1)), bias=np.zeros(32))
        np.save(work / "b.npy", np.zeros(32))
    elif setup == "npy":
        np.save(work / "k.npy", np.ones((32, 32, 1)))
    tail = [a.format(w=work) for a in argv_tail]
    before = _listing(work)
    status, _, err = run(capsys, "apply", work / "eeg_sample.edf", "-o", work / "o_raw.fif", *tail)
    assert_user_error(status, err, message)
    assert _listing(work) == before


def test_apply_cannot_write_complex_kspace_to_wav(capsys, work):
    np.save(work / "k.npy", np.ones((8, 8, 1, 1)))
    status, _, err = run(
        capsys, "apply", work / "mri_phantom.cfl", "--kernel", work / "k.npy", "-o", work / "o.wav"
    )
    assert_user_error(status, err, "specconv apply: error:")
    assert not (work / "o.wav").exists()


def test_apply_missing_optional_dependency_names_the_extra(capsys, work, monkeypatch):
    pytest.importorskip("h5py")
    monkeypatch.setitem(sys.modules, "h5py", None)  # makes `import h5py` fail
    np.save(work / "k.npy", np.ones((8, 1, 1, 1)))
    status, _, err = run(
        capsys,
        "apply",
        work / "mri_phantom.cfl",
        "--kernel",
        work / "k.npy",
        "--groups",
        "8",
        "-o",
        work / "o.h5",
    )
    assert_user_error(status, err, 'pip install "specconv[mri]"')
    assert not (work / "o.h5").exists()


# -- interrupted writes leave nothing -----------------------------------------------------------


def test_ctrl_c_while_computing_leaves_no_file(capsys, work, monkeypatch):
    from specconv import layers

    def interrupted(self, x):
        raise KeyboardInterrupt

    monkeypatch.setattr(layers.SpectralConv, "__call__", interrupted)
    np.save(work / "k.npy", np.ones((32, 1, 1)))
    before = _listing(work)
    status, _, err = run(
        capsys,
        "apply",
        work / "eeg_sample.edf",
        "--kernel",
        work / "k.npy",
        "--groups",
        "32",
        "-o",
        work / "o_raw.fif",
    )
    assert status == 130 and "interrupted" in err
    assert _listing(work) == before


@pytest.mark.parametrize("suffix", ["_raw.fif", ".edf", ".wav", ".cfl", ".h5"])
def test_ctrl_c_while_writing_leaves_no_file(capsys, work, monkeypatch, suffix):
    """Interrupt at the very last step, the rename of the complete temporary file."""

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    if suffix in (".wav",):
        src, kernel = work / "audio_stereo_pcm16.wav", np.ones((2, 1, 1))
    elif suffix in (".cfl", ".h5"):
        src, kernel = work / "mri_phantom.cfl", np.ones((8, 1, 1, 1))
    else:
        src, kernel = work / "eeg_sample.edf", np.ones((32, 1, 1))
    np.save(work / "k.npy", kernel)
    before = _listing(work)
    monkeypatch.setattr(os, "replace", interrupted)
    status, _, err = run(
        capsys,
        "apply",
        src,
        "--kernel",
        work / "k.npy",
        "--groups",
        str(kernel.shape[0]),
        "-o",
        work / f"out{suffix}",
    )
    monkeypatch.undo()
    assert status == 130, err
    assert _listing(work) == before  # no output, no companion, no temporary folder


# -- demo and sys-info ------------------------------------------------------------------------


def test_demo_runs_checks_and_writes_its_outputs(capsys, tmp_path):
    out_dir = tmp_path / "demo"
    status, out, err = run(capsys, "demo", "--output", out_dir)
    assert status == 0, out + err
    assert out.count("max relative error vs direct") == 3
    assert out.count(" ok") >= 3 and "FAILED" not in out
    assert "alpha peaks at O" in out  # the sample EEG's alpha rhythm is occipital
    files = _listing(out_dir)
    assert files == ["audio_reverb.wav", "eeg_filterbank_raw.fif", "mri_compressed.h5"]
    bank = _read_mne(out_dir / "eeg_filterbank_raw.fif")
    assert len(bank.ch_names) == 128 and bank.ch_names[:2] == ["Fp1-delta", "Fp1-theta"]
    h5py = pytest.importorskip("h5py")
    with h5py.File(out_dir / "mri_compressed.h5", "r") as f:
        assert f["kspace"].shape == (3, 4, 80, 64)


def test_demo_default_folder_is_named_in_the_current_directory(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, out, err = run(capsys, "demo")
    assert status == 0, out + err
    assert "specconv-demo-output" in out
    assert (tmp_path / "specconv-demo-output" / "audio_reverb.wav").exists()


@pytest.mark.parametrize("missing", ["mne", "h5py"])
def test_demo_checks_its_needs_before_creating_its_folder(capsys, tmp_path, monkeypatch, missing):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == missing else real(name, *a)
    )
    monkeypatch.chdir(tmp_path)
    status, out, err = run(capsys, "demo")
    assert status == 2
    assert missing in err and 'pip install "specconv[demo]"' in err
    assert list(tmp_path.iterdir()) == []  # no empty specconv-demo-output/ left behind


def test_the_demo_extra_brings_what_the_demo_needs():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    from specconv import cli

    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    extras = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]
    names = {req.split(">")[0].split("=")[0].split("[")[0].strip() for req in extras["demo"]}
    assert names == set(cli._DEMO_NEEDS)
    assert "torch" not in names  # a plain torch requirement pulls a multi-GB CUDA build


def test_sys_info_reports_versions_threads_and_blas(capsys):
    status, out, _ = run(capsys, "sys-info")
    assert status == 0
    for key in ("python", "numpy", "scipy", "pyfftw", "FFTW threads", "BLAS", "mne"):
        assert f"{key}:" in out


# -- once through a real process ----------------------------------------------------------------


def _python_m(*argv, cwd=REPO):
    return subprocess.run(
        [sys.executable, "-m", "specconv", *map(str, argv)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def test_python_m_specconv_runs_commands(tmp_path):
    done = _python_m("info", datasets.path("eeg-fif"))
    assert done.returncode == 0, done.stderr
    assert "32" in done.stdout
    done = _python_m("info", tmp_path / "absent.edf")
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    np.save(tmp_path / "k.npy", np.ones((32, 1, 1)))
    done = _python_m(
        "apply",
        datasets.path("eeg-edf"),
        "--kernel",
        tmp_path / "k.npy",
        "--groups",
        "32",
        "-o",
        tmp_path / "o_raw.fif",
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "o_raw.fif").exists()
