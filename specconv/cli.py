"""The ``specconv`` command line, a thin layer over the Python API.

Commands::

    specconv info FILE                  format, channels, rate/shape, dtype, duration
    specconv apply FILE --kernel K.npy -o OUT [conv options]
                                        read, apply one conv layer, write (atomically)
    specconv demo [--output DIR]        the main job on the bundled samples, checked
    specconv sys-info                   versions, FFTW threads, BLAS (for bug reports)
    specconv calibrate                  measure the cost model's constants on this machine

Exit status: 0 on success, 1 when the demo's check against the direct method fails, 2 for a
usage or input error (one line on stderr, no traceback; ``--traceback`` shows it), 128 + the
signal's number when stopped by SIGINT (130, Ctrl-C), SIGHUP (129) or SIGTERM (143), after
removing the partial output.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import signal
import sys
import threading
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np

from . import __version__

__all__ = ["main", "build_parser"]

DEMO_DIR = "specconv-demo-output"

# Errors the library raises for bad input; the CLI turns them into one line and exit code 2.
USER_ERRORS = (ValueError, TypeError, ImportError, OSError)

# Files that belong together: writing one of them must not replace a part of the input.
_FAMILIES = ({".cfl", ".hdr"}, {".vhdr", ".vmrk", ".eeg"}, {".set", ".fdt"})


class UsageError(ValueError):
    """A mistake in the command line itself (reported like any other user error)."""


class _Terminated(BaseException):
    """SIGTERM or SIGHUP, raised in the main thread so that clean-up code runs (not an
    Exception: nothing may swallow it)."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def _stopped(fired, status):
    """``status``, or, after a real signal, the end of the process with it.

    An exception raised by a signal handler can land inside the standard library's thread-pool
    bookkeeping (a worker started but not yet registered for shutdown), and the interpreter
    would then wait for that idle thread forever at exit. The output is cleaned up by now, so
    the process ends at once.
    """
    if not fired:  # raised by code, not by a signal: an ordinary return
        return status
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(status)


@contextlib.contextmanager
def _ending_signals():
    """SIGTERM and SIGHUP (kill, timeout, job schedulers) end a command like Ctrl-C does.

    Each raises in the main thread, so temporary outputs are removed on the way out; a second
    signal during that clean-up is ignored rather than cutting it short. Installed by the
    command line only (a library must not take over a program's signals), and not over a
    signal the caller chose to ignore (``nohup``, background jobs).
    """
    fired: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield fired
        return

    def handler(signum, frame):
        if fired:
            return
        fired.append(signum)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise _Terminated(signum)

    previous = {}
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        signum = getattr(signal, name, None)
        if signum is not None and signal.getsignal(signum) is not signal.SIG_IGN:
            previous[signum] = signal.signal(signum, handler)
    try:
        yield fired
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


# ---------------------------------------------------------------------------------------------
# option parsing helpers
# ---------------------------------------------------------------------------------------------


def _ints(text):
    """``"2"`` -> 2, ``"2,3"`` -> (2, 3) (one value per spatial axis)."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an integer or comma-separated integers, got {text!r}"
        ) from None
    return values[0] if len(values) == 1 else values


def _padding(text):
    return text if text in ("same", "valid") else _ints(text)


def _one_line(err):
    return " ".join(str(err).split()) or type(err).__name__


# ---------------------------------------------------------------------------------------------
# info
# ---------------------------------------------------------------------------------------------

_UNITS = {"sfreq": "Hz", "duration": "s"}


def _format_value(key, value, limit=8):
    if key == "shape" and isinstance(value, (list, tuple)):
        return " x ".join(str(v) for v in value)
    if isinstance(value, (list, tuple)):
        text = ", ".join(str(v) for v in value[:limit])
        return text + (f", ... ({len(value)} in all)" if len(value) > limit else "")
    if isinstance(value, float):
        value = f"{value:g}"
    unit = _UNITS.get(key)
    return f"{value} {unit}" if unit else str(value)


def _cmd_info(args):
    from . import io

    details = io.info(args.file)
    if args.json:
        print(json.dumps(details, indent=1, default=str))
        return 0
    print(args.file)
    shown = {k: v for k, v in details.items() if v is not None and k != "path"}
    width = max((len(str(k)) for k in shown), default=0)
    for key, value in shown.items():
        print(f"  {str(key):<{width}}  {_format_value(key, value)}")
    return 0


# ---------------------------------------------------------------------------------------------
# apply
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _reading_array(option, path):
    """Name the option and the file in any failure to read an array from ``path``."""
    try:
        yield
    except UsageError:
        raise
    except OSError as err:  # missing, unreadable, a directory: keep the OSError subclass
        raise type(err)(f"{option} {path}: cannot read it: {err.strerror or err}") from None
    except (ValueError, EOFError, zipfile.BadZipFile) as err:
        raise UsageError(
            f"{option} {path}: not a readable NumPy {Path(path).suffix} array ({_one_line(err)})."
        ) from None


def _load_kernel(kernel_path, bias_path):
    kernel_path = Path(kernel_path)
    suffix = kernel_path.suffix.lower()
    bias = None
    if suffix == ".npy":
        with _reading_array("--kernel", kernel_path):
            weight = np.load(kernel_path, allow_pickle=False)
    elif suffix == ".npz":
        with (
            _reading_array("--kernel", kernel_path),
            np.load(kernel_path, allow_pickle=False) as npz,
        ):
            if "weight" not in npz.files:
                raise UsageError(
                    f"--kernel {kernel_path}: an .npz kernel must hold an array named "
                    f"'weight' (and optionally 'bias'), found {sorted(npz.files)}."
                )
            weight = npz["weight"]
            bias = npz["bias"] if "bias" in npz.files else None
    else:
        raise UsageError(f"--kernel must be a .npy or .npz file, got {str(kernel_path)!r}.")
    if bias_path is not None:
        if bias is not None:
            raise UsageError(
                f"bias given twice: in {kernel_path} and as --bias {bias_path}; keep one."
            )
        if Path(bias_path).suffix.lower() != ".npy":
            raise UsageError(f"--bias must be a .npy file, got {str(bias_path)!r}.")
        with _reading_array("--bias", bias_path):
            bias = np.load(bias_path, allow_pickle=False)
    return weight, bias


def _check_not_input(src, out):
    """Refuse an output that would replace the input file or one of its companion files."""
    from ._atomic import same_file

    src, out = Path(src), Path(out)
    same = same_file(src, out)  # hard links and symlinks included
    if not same and out.resolve().parent == src.resolve().parent:
        a, b = src.suffix.lower(), out.suffix.lower()
        same = src.name == out.name or (
            src.stem == out.stem and any(a in f and b in f for f in _FAMILIES)
        )
    if same:
        raise UsageError(
            f"refusing to write {str(out)!r} over the input {str(src)!r} (or a file that "
            "belongs to it); choose another output name."
        )


def _check_kernel_fits(sig, weight, groups, src):
    lead = 2 if sig.batched else 1
    n_spatial = sig.data.ndim - lead
    if weight.ndim != n_spatial + 2:
        raise UsageError(
            f"the kernel has shape {weight.shape} ({weight.ndim - 2} spatial axes), but "
            f"{src} holds a signal with {n_spatial} spatial axes (data shape "
            f"{sig.data.shape}); the weight must be (C_out, C_in/groups"
            f"{', k' * n_spatial})."
        )
    expected = weight.shape[1] * groups
    if expected != sig.n_channels:
        raise UsageError(
            f"the kernel expects {expected} input channels (weight.shape[1]="
            f"{weight.shape[1]} x groups={groups}), but {src} has {sig.n_channels} channels."
        )


class _ScipyConvolve:
    """scipy.signal-convention layer: true convolution, ``mode`` full/same/valid, + bias."""

    stride = 1

    def __init__(self, weight, bias, *, mode, groups, method, nan_policy):
        self.weight, self.bias = weight, bias
        self.options = dict(mode=mode, groups=groups, method=method, nan_policy=nan_policy)

    def __call__(self, x):
        from .conv import convolve

        y = convolve(x, self.weight, **self.options)
        if self.bias is not None:
            bias = np.asarray(self.bias)
            if bias.shape != (self.weight.shape[0],):
                raise ValueError(
                    f"bias must have shape ({self.weight.shape[0]},) (one value per output "
                    f"channel), got shape {bias.shape}."
                )
            y = y + bias.reshape((-1,) + (1,) * (self.weight.ndim - 2))
        return y


def _make_layer(args, weight, bias):
    groups = 1 if args.groups is None else args.groups
    if args.convention == "scipy":
        torch_only = {
            "--stride": args.stride,
            "--padding": args.padding,
            "--dilation": args.dilation,
            "--padding-mode": args.padding_mode,
        }
        given = [opt for opt, value in torch_only.items() if value is not None]
        if given:
            raise UsageError(
                f"{', '.join(given)} only apply with --convention torch; the scipy convention "
                "takes --mode full|same|valid."
            )
        return _ScipyConvolve(
            weight,
            bias,
            mode=args.mode or "same",
            groups=groups,
            method=args.method,
            nan_policy=args.nan_policy,
        )
    if args.mode is not None:
        raise UsageError(
            "--mode only applies with --convention scipy; the torch convention takes --padding."
        )
    from .layers import SpectralConv

    return SpectralConv(
        weight,
        bias,
        stride=1 if args.stride is None else args.stride,
        padding=0 if args.padding is None else args.padding,
        dilation=1 if args.dilation is None else args.dilation,
        groups=groups,
        padding_mode=args.padding_mode or "zeros",
        method=args.method,
        nan_policy=args.nan_policy,
    )


def _output_names(sig, n_out, groups):
    """Depthwise multipliers keep their input's name: ``Fp1:0, Fp1:1, ...``."""
    c_in = sig.n_channels
    if n_out == c_in:
        return sig.ch_names
    if groups == c_in and n_out % c_in == 0:
        m = n_out // c_in
        return tuple(f"{name}:{j}" for name in sig.ch_names for j in range(m))
    return None


def _output_grid(sig, stride):
    """The sampling of a strided output: every stride-th sample of the input grid."""
    strides = stride if isinstance(stride, tuple) else (stride,)
    if all(s == 1 for s in strides):
        return {}
    if sig.domain == "time":
        return {"sfreq": sig.sfreq / strides[0]}
    if sig.spacing is not None:
        if len(strides) == 1:
            strides = strides * len(sig.spacing)
        return {"spacing": tuple(d * s for d, s in zip(sig.spacing, strides))}
    return {}


def _cmd_apply(args):
    from . import io

    _check_not_input(args.file, args.output)
    if Path(args.output).exists() and not args.overwrite:
        raise UsageError(
            f"output {str(args.output)!r} already exists; pass --overwrite to replace it."
        )
    weight, bias = _load_kernel(args.kernel, args.bias)
    layer = _make_layer(args, weight, bias)
    sig = io.read(args.file, format=args.format)
    groups = 1 if args.groups is None else args.groups
    _check_kernel_fits(sig, weight, groups, args.file)

    # The output is reserved (checked, its temporary folder made) before the work, so an
    # unwritable target fails at once and a signal during the work leaves nothing behind.
    with io.reserve(
        args.output,
        format=args.output_format,
        overwrite=args.overwrite,
        protected=io.source_files(sig),
    ) as put:
        start = time.perf_counter()
        result = sig.apply(
            layer,
            ch_names=_output_names(sig, weight.shape[0], groups),
            **_output_grid(sig, getattr(layer, "stride", 1)),
        )
        elapsed = time.perf_counter() - start
        put(result)
    print(
        f"{args.file}: {sig.data.shape} -> {result.data.shape} in {elapsed:.3f} s; "
        f"wrote {args.output}"
    )
    return 0


# ---------------------------------------------------------------------------------------------
# demo
# ---------------------------------------------------------------------------------------------

_BANDS = {"delta": (1.0, 4.0), "theta": (4.0, 8.0), "alpha": (8.0, 13.0), "beta": (13.0, 30.0)}

#: What the demo needs beyond the core, and what for; all of it comes with ``specconv[demo]``.
_DEMO_NEEDS = {
    "mne": "the EEG sample (FIF) and the EEG filter bank",
    "h5py": "the MRI sample and result (HDF5)",
}

#: The samples the demo uses and the model each was generated from (datasets/README.md).
_DEMO_SAMPLES = {
    "eeg-fif": "resting EEG: 1/f background, a 10 Hz occipital alpha rhythm, eye blinks, "
    "50 Hz line noise",
    "audio-float32": "four plucked notes panned across the stereo field, light pink noise",
    "ir-true-stereo": "a room's 2 x 2 impulse response: direct sound, 10 early reflections, "
    "a decaying tail (RT60 0.3 s)",
    "mri-fastmri": "k-space of a Shepp-Logan head phantom seen by 8 loop coils, with noise",
}


def _check_demo_needs():
    """Fail before anything is written if a package the demo needs is missing."""
    from importlib.util import find_spec

    missing = [name for name in _DEMO_NEEDS if find_spec(name) is None]
    if missing:
        needs = "; ".join(f"{name} for {_DEMO_NEEDS[name]}" for name in missing)
        raise ImportError(
            f"the demo needs packages that are not installed ({needs}). Install them with: "
            'pip install "specconv[demo]" (from a source folder: pip install ".[demo]")'
        )


def _sample_line(name):
    from . import datasets

    entry = datasets.describe(name)
    sig = entry["signal"]
    if sig["domain"] == "time":
        size = (
            f"{sig['n_channels']} ch x {sig['n_samples']} samples at "
            f"{sig['sfreq'] / 1000:g} kHz ({sig['n_samples'] / sig['sfreq']:g} s)"
            if sig["sfreq"] >= 1000
            else f"{sig['n_channels']} ch x {sig['n_samples']} samples at {sig['sfreq']:g} Hz "
            f"({sig['n_samples'] / sig['sfreq']:g} s)"
        )
    else:
        size = " x ".join(str(n) for n in sig["shape"]) + " (slices x coils x H x W)"
    return (
        _wrap(f"  {name:<15} {_DEMO_SAMPLES[name]}", indent=18)
        + "\n"
        + _wrap(f"  {'':<15} {size}, {entry['file']}, {entry['bytes'] / 1e6:.2f} MB", indent=18)
    )


def _wrap(text, indent=3, width=92):
    import textwrap

    return textwrap.fill(text, width=width, subsequent_indent=" " * indent, break_on_hyphens=False)


def _rel_err(y, ref, scale=None):
    """max |y - ref| relative to the largest magnitude of the result (or ``scale``)."""
    if scale is None:
        scale = np.max(np.abs(ref))
    return float(np.max(np.abs(y - ref))) / (float(scale) or 1.0)


def _tolerance(dtype):
    return 1e-4 if np.dtype(dtype) in (np.float32, np.complex64) else 1e-9


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def _demo_eeg(out_dir):
    """Depthwise multiplier layer: every channel through 4 band-pass FIRs (groups = C)."""
    from . import datasets, io
    from .apps import eeg
    from .conv import conv

    sig = datasets.load("eeg-fif")
    c = sig.n_channels
    bank = eeg.filter_bank(sig.sfreq, list(_BANDS.values()), c)  # MNE's FIR design
    taps = bank.weight.shape[-1]
    names = tuple(f"{ch}-{band}" for ch in sig.ch_names for band in _BANDS)
    filtered, seconds = _timed(sig.apply, bank, ch_names=names)
    reference, direct_s = _timed(
        conv,
        sig.data,
        bank.weight,
        groups=bank.groups,
        padding=bank.padding,
        padding_mode=bank.padding_mode,
        method="direct",
    )
    path = out_dir / "eeg_filterbank_raw.fif"
    io.write(filtered, path, overwrite=True)
    power = np.mean(filtered.data**2, axis=-1).reshape(c, len(_BANDS))
    alpha = list(_BANDS).index("alpha")
    peak = sig.ch_names[int(np.argmax(power[:, alpha]))]
    bands = ", ".join(f"{name} {lo:g}-{hi:g}" for name, (lo, hi) in _BANDS.items())
    return {
        "task": "EEG filter bank",
        "detail": [
            (
                f"every channel through 4 band-pass filters ({bands} Hz; MNE's FIR "
                f"design, {taps} taps): apps.eeg.filter_bank, one layer with groups={c}"
            ),
            f"alpha peaks at {peak} (the sample's alpha source is occipital)",
        ],
        "shape": f"{sig.data.shape} -> {filtered.data.shape}",
        "seconds": seconds,
        "direct_seconds": direct_s,
        "error": _rel_err(filtered.data, reference),
        "dtype": filtered.data.dtype,
        "file": path,
    }


def _demo_reverb(out_dir):
    """True-stereo reverb: the 2 x 2 impulse response as a (2, 2, taps) convolution."""
    from . import datasets, io
    from .conv import convolve

    dry = datasets.load("audio-float32")
    ir = datasets.load("ir-true-stereo")
    kernel = io.true_stereo_kernel(ir)
    wet, seconds = _timed(dry.apply, lambda x: convolve(x, kernel, mode="full"))
    # The direct method on the whole signal costs 4 * N * taps multiply-adds (seconds in
    # pure numpy); check two windows of the output instead -- the start and one deep inside,
    # across the FFT blocks -- each computed directly from the input samples it depends on.
    taps = kernel.shape[-1]
    width = 2048
    errors, direct_s = [], 0.0
    for start in (0, wet.data.shape[-1] // 2):
        lo = start - (taps - 1)
        seg = dry.data[:, max(lo, 0) : start + width]
        if lo < 0:
            seg = np.pad(seg, ((0, 0), (-lo, 0)))
        ref, t = _timed(convolve, seg, kernel, mode="valid", method="direct")
        direct_s += t
        errors.append(
            _rel_err(wet.data[:, start : start + width], ref, scale=np.max(np.abs(wet.data)))
        )
    # The energy-normalised room adds up to ~1.5x the dry peak; leave headroom in the file.
    peak = float(np.max(np.abs(wet.data)))
    gain = 0.9 / peak
    path = out_dir / "audio_reverb.wav"
    io.write(wet.replace(data=wet.data * gain), path, overwrite=True)
    return {
        "task": "true-stereo reverb",
        "detail": [
            (
                f"the sound through the 2 x 2 room response ({taps} taps at "
                f"{dry.sfreq:g} Hz), scipy.signal.convolve semantics"
            ),
            (
                f"the direct method checks two windows of {width} samples (the start "
                "and the middle); the whole signal would take it seconds"
            ),
            (
                f"the file is scaled by {gain:.2f} so that its loudest sample is at 90 % "
                f"of full scale (the reverb's loudest is {peak:.2f})"
            ),
        ],
        "shape": f"{dry.data.shape} -> {wet.data.shape}",
        "seconds": seconds,
        "direct_seconds": direct_s,
        "error": max(errors),
        "dtype": wet.data.dtype,
        "file": path,
    }


def _demo_coils(out_dir, n_virtual=4):
    """Coil compression 8 -> 4: a 1 x 1 layer from the SVD of the coil covariance."""
    from . import datasets, io
    from .conv import conv
    from .layers import SpectralConv

    k = datasets.load("mri-fastmri")
    x = k.data  # (slices, coils, H, W)
    coils = np.moveaxis(x, 1, 0).reshape(k.n_channels, -1)
    u, _, _ = np.linalg.svd(coils @ coils.conj().T)  # eigenvectors of the Hermitian covariance
    weight = u[:, :n_virtual].conj().T[:, :, None, None].astype(x.dtype)
    layer = SpectralConv(weight)
    names = tuple(f"virtual{i}" for i in range(n_virtual))
    compressed, seconds = _timed(k.apply, layer, ch_names=names)
    reference, direct_s = _timed(conv, x, weight, method="direct")
    # For a 1 x 1 layer "auto" may well pick the direct product itself; check the spectral
    # path explicitly as well, so the comparison is never of a result with itself.
    spectral = conv(x, weight, method="fft")
    error = max(_rel_err(compressed.data, reference), _rel_err(spectral, reference))
    kept = float(np.sum(np.abs(compressed.data) ** 2) / np.sum(np.abs(x) ** 2))
    path = out_dir / "mri_compressed.h5"
    io.write(compressed, path, overwrite=True)
    return {
        "task": "MRI coil compression",
        "detail": [
            (
                f"{k.n_channels} coils -> {n_virtual} virtual coils, a 1 x 1 layer "
                f"from the SVD of the coil covariance; {100 * kept:.2f} % of the k-space "
                "energy kept"
            ),
            (
                "for a 1 x 1 layer 'auto' may choose the direct product itself, so "
                "method='fft' is run too and compared with 'direct'; the larger "
                "difference is shown"
            ),
        ],
        "shape": f"{x.shape} -> {compressed.data.shape}",
        "seconds": seconds,
        "direct_seconds": direct_s,
        "error": error,
        "dtype": compressed.data.dtype,
        "file": path,
    }


def _cmd_demo(args):
    _check_demo_needs()  # before the output folder exists: a failed start leaves nothing
    out_dir = Path(args.output)
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        return _run_demo(out_dir)
    except BaseException:
        if created and not any(out_dir.iterdir()):
            out_dir.rmdir()
        raise


def _run_demo(out_dir):
    print(f"specconv demo: three conv layers on the bundled samples; results go to {out_dir}/")
    print(
        "\nThe samples are synthetic (CC0), generated with fixed seeds by "
        "datasets/make_samples.py\nfrom the models described in datasets/README.md "
        "(parameters in specconv/datasets/MANIFEST.json):"
    )
    for name in _DEMO_SAMPLES:
        print(_sample_line(name))
    print(
        "\nEach layer runs with method='auto' (specconv picks FFT or direct by its cost "
        "model; times include\nFFTW planning on a first call). Its output is compared "
        "with method='direct', the same layer\ncomputed as plain sums of products without "
        "FFTs: 'max relative error' is the largest\ndifference divided by the output's "
        "largest magnitude.\n"
    )
    failed = False
    for number, step in enumerate((_demo_eeg, _demo_reverb, _demo_coils), start=1):
        r = step(out_dir)
        tol = _tolerance(r["dtype"])
        ok = r["error"] <= tol
        failed |= not ok
        print(_wrap(f"{number}. {r['task']}: {r['detail'][0]}"))
        for line in r["detail"][1:]:
            print(_wrap(f"   {line}"))
        print(
            f"   {r['shape']}, {r['dtype']}: {r['seconds']:.3f} s "
            f"(the direct method: {r['direct_seconds']:.3f} s)"
        )
        print(
            f"   max relative error vs direct {r['error']:.1e} (tolerance for "
            f"{r['dtype']}: {tol:.0e}) {'ok' if ok else 'FAILED'}"
        )
        print(f"   wrote {r['file']}")
    print(
        "\nall results agree with the direct method"
        if not failed
        else "\nSOME RESULTS DISAGREE WITH THE DIRECT METHOD"
    )
    return 1 if failed else 0


# ---------------------------------------------------------------------------------------------
# sys-info
# ---------------------------------------------------------------------------------------------

_OPTIONAL = (
    "mne",
    "edfio",
    "pybv",
    "eeglabio",
    "soundfile",
    "h5py",
    "matplotlib",
    "dask",
    "distributed",
    "tqdm",
    "torch",
    "threadpoolctl",
)


def _version(dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _blas_lines():
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        threadpool_info = None
    if threadpool_info is not None:
        lines = [
            f"{p.get('internal_api')} {p.get('version')} ({p.get('num_threads')} "
            f"threads, {p.get('threading_layer', 'n/a')}) {p.get('filepath')}"
            for p in threadpool_info()
            if p.get("user_api") == "blas"
        ]
        if lines:
            return lines
    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        return [f"{blas.get('name')} {blas.get('version')} (numpy build config)"]
    except Exception:  # numpy < 2 or an unusual build: say so rather than fail a bug report
        return ["unknown"]


def _cmd_sys_info(args):
    from . import _calibration, _compiled, fft

    rows = [
        ("platform", platform.platform()),
        ("python", sys.version.split()[0]),
        ("executable", sys.executable),
        (
            "CPUs",
            f"{os.cpu_count()} ({len(os.sched_getaffinity(0))} usable)"
            if hasattr(os, "sched_getaffinity")
            else str(os.cpu_count()),
        ),
        ("specconv", __version__),
        ("numpy", np.__version__),
        ("scipy", _version("scipy")),
        ("pyfftw", fft.fftw_version()),
        ("FFTW threads", str(fft.get_num_threads())),
        (
            "FFTW planning",
            f"time limit {fft.planning_timelimit():g} s per plan "
            f"({fft.REMEASURE_FACTOR}x to measure a provisional one again), wisdom "
            f"{fft.wisdom_path()}",
        ),
        (
            "calibration",
            f"{_calibration.calibration_path()}"
            + ("" if _calibration.enabled() else " (off: SPECCONV_CALIBRATE)"),
        ),
        (
            "compiled loops",
            f"level {_compiled.level or 'off (numpy/BLAS path)'}; this CPU runs "
            f"{', '.join(_compiled.levels()) or 'none (not built)'}",
        ),
    ]
    for name in _OPTIONAL:
        rows.append((name, _version(name)))
    blas = _blas_lines()
    rows.append(("BLAS", blas[0]))
    rows.extend(("", line) for line in blas[1:])
    for var in (
        "SPECCONV_NUM_THREADS",
        "SPECCONV_PLANNING_TIMELIMIT",
        "SPECCONV_CACHE_DIR",
        "SPECCONV_CALIBRATE",
        "SPECCONV_SIMD",
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
    ):
        if var in os.environ:
            rows.append((var, os.environ[var]))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:>{width}}: {value}" if key else f"{'':>{width}}  {value}")
    return 0


# ---------------------------------------------------------------------------------------------
# calibrate
# ---------------------------------------------------------------------------------------------


def _cmd_calibrate(args):
    from . import _calibration, _costmodel, fft

    threads = fft.get_num_threads()
    precisions = args.precision or _calibration.PRECISIONS
    entries = _calibration.recalibrate(precisions, threads)
    print(
        f"CPU {_calibration.machine_key(threads)['cpu']}, {threads} threads; stored in "
        f"{_calibration.calibration_path(threads)}"
    )
    if not _calibration.enabled():
        print(
            f"note: {_calibration.ENV}={os.environ[_calibration.ENV]} -- the shipped "
            f"constants are used, not these"
        )
    header = f"{'constant':20s}" + "".join(
        f" {p + ' shipped':>15s} {p + ' measured':>16s}" for p in precisions
    )
    print(header)
    for name in entries[precisions[0]]["constants"]:
        print(
            f"{name:20s}"
            + "".join(
                f" {getattr(_costmodel.SHIPPED[p], name):15.3g} "
                f"{entries[p]['constants'].get(name, float('nan')):16.3g}"
                for p in precisions
            )
        )
    for p in precisions:
        timings = entries[p]["timings"]
        for loop in _calibration.LOOPS:
            mine = [k for k in timings if k.startswith(loop) and "compiled" in k]
            if not mine:
                print(f"{p}: compiled {loop} loop: not built")
                continue
            lost = [d for lp, d in entries[p]["losing"] if lp == loop]
            other = [
                k for k in timings if k.startswith(loop) and "compiled" not in k and "1x1" not in k
            ]
            shown = ", ".join(f"{k} {timings[k] * 1e3:.2f} ms" for k in mine[-1:] + other)
            print(f"{p}: compiled {loop} loop {'OFF (slower)' if lost else 'used'}: {shown}")
        print(f"{p}: measured in {entries[p]['seconds']:.2f} s")
    return 0


# ---------------------------------------------------------------------------------------------
# the parser and main
# ---------------------------------------------------------------------------------------------


def build_parser():
    """The argparse parser of the ``specconv`` command (exposed for documentation tools)."""
    parser = argparse.ArgumentParser(
        prog="specconv",
        description="Conv layers computed as per-frequency channel matrices (FFTW + BLAS).",
        epilog="Run 'specconv demo' to see the main job on the bundled samples.",
    )
    parser.add_argument("--version", action="version", version=f"specconv {__version__}")
    parser.add_argument(
        "--traceback",
        action="store_true",
        help="show the full traceback instead of a one-line error",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "info",
        help="describe a signal file",
        description="Format, channels, sampling rate or shape, dtype and "
        "duration of a file specconv can read.",
    )
    p.add_argument("file", metavar="FILE")
    p.add_argument("--json", action="store_true", help="print the details as JSON")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser(
        "apply",
        help="apply a conv layer to a file and write the result",
        description=(
            "Read FILE with the adapter its format needs, apply one conv layer, and write OUT "
            "in the format its extension names. The output is written atomically (a temporary "
            "file renamed at the end): an error, Ctrl-C, SIGTERM or SIGHUP leaves nothing "
            "behind, and the input is never overwritten. --convention torch (default) is "
            "specconv.SpectralConv: PyTorch Conv semantics, cross-correlation, weight (C_out, "
            "C_in/groups, *kernel), padding 0 by default like PyTorch (use --padding same to "
            "keep the length). "
            "--convention scipy is specconv.convolve: true convolution summed over input "
            "channels, --mode same by default so the output keeps the input's length and "
            "sampling grid and can be written back to the same format."
        ),
    )
    p.add_argument("file", metavar="FILE")
    p.add_argument(
        "--kernel",
        required=True,
        metavar="K.npy|K.npz",
        help="the weight (C_out, C_in/groups, *kernel); an .npz holds 'weight' and "
        "optionally 'bias'",
    )
    p.add_argument("--bias", metavar="B.npy", help="bias (C_out,)")
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT",
        help="output file; its extension picks the format",
    )
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument("--convention", choices=("torch", "scipy"), default="torch")
    p.add_argument("--stride", type=_ints, help="int or comma-separated ints (torch)")
    p.add_argument(
        "--padding",
        type=_padding,
        help="int, comma-separated ints, 'same' or 'valid' (torch; default 0)",
    )
    p.add_argument("--dilation", type=_ints, help="int or comma-separated ints (torch)")
    p.add_argument("--groups", type=int, help="channel groups (default 1)")
    p.add_argument("--padding-mode", help="zeros, reflect, replicate or circular (torch)")
    p.add_argument(
        "--mode",
        choices=("full", "same", "valid"),
        help="output size for --convention scipy (default same)",
    )
    p.add_argument("--method", default="auto", help="auto, fft or direct (default auto)")
    p.add_argument("--nan-policy", default="propagate", help="propagate or raise")
    p.add_argument("--format", help="read FILE as this format instead of guessing")
    p.add_argument("--output-format", help="write OUT as this format instead of guessing")
    p.set_defaults(func=_cmd_apply)

    p = sub.add_parser(
        "demo",
        help="run the main job on the bundled samples",
        description=(
            "Filter the sample EEG with a band-pass filter bank (a depthwise "
            "multiplier layer), put a true-stereo reverb on the sample audio, "
            "compress the sample MRI coils 8 -> 4 with a 1 x 1 layer; check each "
            "against method='direct', write the results and report timings."
        ),
    )
    p.add_argument(
        "--output",
        default=DEMO_DIR,
        metavar="DIR",
        help=f"folder for the results (default ./{DEMO_DIR})",
    )
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("sys-info", help="versions, FFTW threads and BLAS, for bug reports")
    p.set_defaults(func=_cmd_sys_info)

    p = sub.add_parser(
        "calibrate",
        help="measure the cost model's constants on this machine",
        description="Measure again the per-operation times that method='auto' prices with (and "
        "whether the compiled loops beat numpy/BLAS here), store them in the cache "
        "directory and print them next to the shipped ones.",
    )
    p.add_argument(
        "--precision",
        choices=("single", "double"),
        action="append",
        help="only this precision (repeatable; default both)",
    )
    p.set_defaults(func=_cmd_calibrate)
    return parser


def main(argv=None):
    """Run the ``specconv`` command line.

    Parameters
    ----------
    argv : list of str, optional
        The arguments after the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    status : int
        0 on success, 1 if the demo's check fails, 2 for usage and input errors. Stopped by
        SIGINT, SIGHUP or SIGTERM, the command removes its partial output and the process
        exits at once with 128 + the signal's number (130, 129, 143).

    Examples
    --------
    >>> from specconv.cli import main
    >>> main(["sys-info"])  # doctest: +ELLIPSIS
    platform: ...
    0
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version and argparse's own usage errors
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 2)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    fired = []  # the signals that stopped the command (filled by _ending_signals)
    try:
        with warnings.catch_warnings():
            # Keep the active filters (-W, PYTHONWARNINGS); only print warnings as one line.
            def show(message, category, filename, lineno, file=None, line=None):
                print(f"specconv {args.command}: warning: {_one_line(message)}", file=sys.stderr)

            warnings.showwarning = show
            with _ending_signals() as fired:
                return args.func(args)
    except KeyboardInterrupt:
        print("specconv: interrupted; no output was written", file=sys.stderr)
        return _stopped(fired, 128 + signal.SIGINT)
    except _Terminated as stop:
        print(
            f"specconv: stopped by {signal.Signals(stop.signum).name}; no output was written",
            file=sys.stderr,
        )
        return _stopped(fired, 128 + stop.signum)
    except USER_ERRORS as err:
        if args.traceback:
            raise
        print(f"specconv {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2
