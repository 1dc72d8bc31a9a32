"""Fuzzing the public API (issue 19, Tests): any value for any parameter.

Every public function and the CLI are called with one argument replaced by an arbitrary value:
Python and numpy integers (small, huge, negative), bools, floats (NaN, ±Inf), strings, None,
tuples, nested (and ragged) lists, arrays of every layout (0-d, empty, non-contiguous, Fortran,
read-only, big-endian, memory-mapped, masked) and dtype. Each call must, within a few seconds,

* return the right answer (checked against the numpy reference of ``_reference.py`` where one
  exists, with the tolerances of ``_tolerances.py``), or
* raise an error of the documented set (TypeError, ValueError and its subclass FormatError;
  OSError for files) whose message names the parameter,

and leave every input unchanged. Runs are derandomized (seeded by the test), so CI sees the
same examples every time; ``SPECCONV_FUZZ_SCALE=10`` runs ten times as many (a deeper local
search, about ten minutes).
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import io as stdio
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path

import _reference as ref
import numpy as np
import pytest
from _tolerances import assert_close
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from specconv import (
    SpectralConv,
    SpectralConvTranspose,
    conv,
    conv_transpose,
    convolve,
    correlate,
    io,
    kernels,
    outofcore,
)
from specconv.cli import main
from specconv.signal import VectorSignal
from specconv.stream import StreamingConv

#: Seconds one call may take before the test calls it a hang.
TIMEOUT = 10

SCALE = int(os.environ.get("SPECCONV_FUZZ_SCALE", "1"))
FUZZ = settings(
    max_examples=60 * SCALE,
    deadline=None,  # the timeout guard below bounds every call instead
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)

DOCUMENTED = (TypeError, ValueError)
_TMP = Path(tempfile.mkdtemp(prefix="specconv-fuzz-"))
atexit.register(shutil.rmtree, _TMP, ignore_errors=True)  # memmaps and files of the examples


# --------------------------------------------------------------------------------------------
# values


NUMPY_INTS = (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64)
OPTION_WORDS = (
    "same",
    "valid",
    "full",
    "zeros",
    "reflect",
    "replicate",
    "circular",
    "auto",
    "fft",
    "direct",
    "propagate",
    "raise",
    "omit",
    "",
    "SAME",
    "time",
    "kspace",
)


def _numpy_int(draw):
    itype = draw(st.sampled_from(NUMPY_INTS))
    info = np.iinfo(itype)
    value = draw(st.one_of(st.integers(0, 12), st.sampled_from([int(info.max), int(info.min)])))
    return itype(value)


def scalars():
    """Any scalar or small structure a caller might pass for a parameter."""
    return st.one_of(
        st.integers(-3, 12),
        st.sampled_from([2**31, 2**63, 10**12, 10**30, -(2**63), -(10**12)]),
        st.composite(lambda draw: _numpy_int(draw))(),
        st.sampled_from([True, False, np.bool_(True), np.bool_(False)]),
        st.floats(allow_nan=True, allow_infinity=True, width=64),
        st.sampled_from([2.0, np.float32(3.0), 1 + 2j, np.float64("nan")]),
        st.sampled_from(OPTION_WORDS),
        st.text(max_size=4),
        st.none(),
        st.lists(st.integers(-2, 6), max_size=4).map(tuple),
        st.lists(st.lists(st.integers(0, 3), max_size=3), max_size=3),
        st.lists(st.integers(0, 5), max_size=3).map(np.array),
        st.sampled_from(
            [
                object(),
                {"a": 1},
                {1, 2},
                b"bytes",
                slice(1),
                np.array(2),
                np.array([1.5, 2.5]),
                (1, "a"),
                ((1, 2), (3,)),
            ]
        ),
    )


def _memmap(a):
    path = Path(tempfile.mkstemp(dir=_TMP, suffix=".dat")[1])
    m = np.memmap(path, dtype=a.dtype, mode="w+", shape=a.shape)
    m[...] = a
    m.flush()
    return np.memmap(path, dtype=a.dtype, mode="r", shape=a.shape)


#: Layouts that keep the values: the call must give the reference's answer.
SAME_VALUES = {
    "as is": lambda a: a,
    "non-contiguous": lambda a: np.repeat(a, 2, axis=-1)[..., ::2],
    "fortran": np.asfortranarray,
    "read-only": lambda a: _frozen(a),
    "big-endian": lambda a: a.astype(a.dtype.newbyteorder(">")),
    "memmap": _memmap,
    "nested list": lambda a: a.tolist(),
    "single": lambda a: a.astype(np.complex64 if a.dtype.kind == "c" else np.float32),
    "complex": lambda a: a.astype(np.complex128),
    "ints": lambda a: np.round(a.real * 3).astype(np.int16),
    "bools": lambda a: a.real > 0,
    "float16": lambda a: a.real.astype(np.float16),
}
#: Layouts that change the values or the shape: any documented outcome.
OTHER_VALUES = {
    "0-d": lambda a: np.array(a.flat[1]),
    "empty": lambda a: a[..., :0],
    "extra axis": lambda a: a[np.newaxis, np.newaxis],
    "one axis less": lambda a: a[0],
    "longer": lambda a: np.concatenate([a, a], axis=-1),
    "more channels": lambda a: np.concatenate([a, a], axis=-2 if a.ndim > 1 else 0),
    "object": lambda a: a.astype(object),
    "strings": lambda a: a.astype(str),
    "longdouble": lambda a: a.astype(np.clongdouble if a.dtype.kind == "c" else np.longdouble),
    "ragged list": lambda a: [a.reshape(-1).tolist(), [1.0]],
    "masked": lambda a: np.ma.masked_array(a, mask=np.arange(a.size).reshape(a.shape) % 2 == 0),
    "nan": lambda a: np.where(np.arange(a.size).reshape(a.shape) == 1, np.nan, a),
    "inf": lambda a: np.where(np.arange(a.size).reshape(a.shape) == 0, -np.inf, a),
    "datetime": lambda a: np.zeros(a.shape, "datetime64[s]"),
}


def _frozen(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def arrays_like(base):
    """``base`` in another layout: (label, value, whether the values are those of ``base``)."""
    keys = sorted(SAME_VALUES) + sorted(OTHER_VALUES)
    return st.sampled_from(keys).map(
        lambda k: (
            (k, SAME_VALUES[k](base), True)
            if k in SAME_VALUES
            else (k, OTHER_VALUES[k](base), False)
        )
    )


def any_value(base=None):
    """A fuzzed value for a parameter whose valid value is ``base`` (an array or not)."""
    if isinstance(base, np.ndarray):
        return st.one_of(arrays_like(base), scalars().map(lambda v: ("scalar", v, False)))
    return scalars().map(lambda v: ("scalar", v, False))


# --------------------------------------------------------------------------------------------
# the contract


#: Address space a fuzzed call may add to the process: a legal value whose answer is larger
#: (a 2-D padding of 32767, say: gigabytes of zeros) gets a MemoryError instead of taking the
#: shared test machine's memory. specconv itself refuses anything beyond physical memory.
HEADROOM = 3 * 2**30


@contextlib.contextmanager
def _memory_capped():
    try:
        import resource
    except ImportError:  # not POSIX: no cap, and no MemoryError is accepted
        yield False
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as f:
        in_use = int(f.read().split()[0]) * resource.getpagesize()
    cap = in_use + HEADROOM
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield True
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def call_guarded(fn, *args, **kwargs):
    """``("ok", result)`` or ``("error", exception)``; fails the test after TIMEOUT seconds.

    A MemoryError under the test's memory cap is returned as ``("too big", error)``.
    """
    box = {}

    def target():
        try:
            box["ok"] = fn(*args, **kwargs)
        except BaseException as err:  # judged by the test
            box["error"] = err

    with _memory_capped() as capped:
        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        thread.join(TIMEOUT)
    assert not thread.is_alive(), f"the call did not return within {TIMEOUT} s"
    if "ok" in box:
        return "ok", box["ok"]
    if capped and isinstance(box["error"], MemoryError):
        return "too big", box["error"]
    return "error", box["error"]


def _snapshot(value):
    if isinstance(value, np.ma.MaskedArray):
        return ("masked", np.ma.getdata(value).copy(), np.ma.getmaskarray(value).copy())
    if isinstance(value, np.ndarray):
        return (value.dtype, value.shape, np.array(value, copy=True))
    if isinstance(value, (list, tuple, dict)):
        return copy.deepcopy(value)
    return None


def _unchanged(value, snap):
    if snap is None:
        return True
    if isinstance(value, np.ma.MaskedArray):
        return np.array_equal(np.ma.getdata(value), snap[1], equal_nan=True) and np.array_equal(
            np.ma.getmaskarray(value), snap[2]
        )
    if isinstance(value, np.ndarray):
        dtype, shape, data = snap
        if value.dtype != dtype or value.shape != shape:
            return False
        if value.dtype.kind in "fc":
            return np.array_equal(value, data, equal_nan=True)
        return np.array_equal(value, data)
    return _equal_nested(value, snap)


def _equal_nested(a, b):
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return (
            type(a) is type(b)
            and len(a) == len(b)
            and all(_equal_nested(x, y) for x, y in zip(a, b))
        )
    try:
        return bool(a == b)
    except Exception:  # arrays inside lists and the like: compared above or not at all
        return True


def check_call(fn, name, kwargs, *, errors=DOCUMENTED, names=None):
    """Call ``fn(**kwargs)`` and apply the contract; return the result when it computed.

    ``name`` is the fuzzed parameter; an error must name it (or one of ``names``).
    """
    snaps = {k: _snapshot(v) for k, v in kwargs.items()}
    status, value = call_guarded(fn, **kwargs)
    for k, v in kwargs.items():
        assert _unchanged(v, snaps[k]), f"the call changed its input {k!r}"
    if status == "ok":
        return value
    if status == "too big":  # legal, but its answer does not fit the test's memory cap
        return None
    err = value
    if not isinstance(err, errors):
        raise AssertionError(f"undocumented {type(err).__name__} for {name}: {err}") from err
    message = str(err)
    wanted = names or (name,)
    if isinstance(err, OSError) or name in ("path", "source"):  # or the file it could not use
        wanted = (*wanted, str(kwargs.get(name)), repr(str(kwargs.get(name)))[1:-1])
    if not any(re.search(rf"(?<![A-Za-z_]){re.escape(w)}(?![A-Za-z_])", message) for w in wanted):
        raise AssertionError(f"{type(err).__name__} does not name {wanted}: {message}") from err
    return None


def plain(value):
    """A fuzzed value that computed, in the form the reference understands."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return tuple(plain(v) for v in value)
    if isinstance(value, (np.integer,)):
        return int(value)
    return value


def refconv(*args, **kwargs):
    """The reference's conv, quiet about the NaN and Inf that non-finite inputs make."""
    with np.errstate(all="ignore"):
        return ref.conv(*args, **kwargs)


def refconv_transpose(*args, **kwargs):
    with np.errstate(all="ignore"):
        return ref.conv_transpose(*args, **kwargs)


def assert_matches(y, expected):
    """``y`` equals the reference: the same non-finite entries, close elsewhere."""
    y = np.asarray(y)
    expected = np.asarray(expected)
    assert y.shape == expected.shape, f"shape {y.shape} != reference {expected.shape}"
    bad = ~np.isfinite(expected)
    assert np.array_equal(~np.isfinite(y), bad), "non-finite outputs differ from the reference"
    assert_close(y, np.where(bad, 0, expected), where=~bad)


# --------------------------------------------------------------------------------------------
# the conv family against the numpy reference


RNG = np.random.default_rng(1919)
X1 = RNG.standard_normal((4, 23))
W1 = RNG.standard_normal((6, 2, 3))  # groups=2: 4 -> 6 channels
B1 = RNG.standard_normal(6)
WT1 = RNG.standard_normal((4, 3, 3))  # transposed, groups=2: 4 -> 6 channels
X2 = RNG.standard_normal((1, 2, 9, 8))
W2 = RNG.standard_normal((3, 2, 2, 3))

CONV_BASE = {
    "x": X1,
    "weight": W1,
    "bias": B1,
    "stride": 2,
    "padding": 1,
    "dilation": 2,
    "groups": 2,
    "padding_mode": "zeros",
    "method": "auto",
    "nan_policy": "propagate",
}
CONV2_BASE = {
    "x": X2,
    "weight": W2,
    "bias": None,
    "stride": (1, 2),
    "padding": ((1, 0), (2, 1)),
    "dilation": 1,
    "groups": 1,
    "padding_mode": "zeros",
    "method": "fft",
    "nan_policy": "propagate",
}
TRANSPOSE_BASE = {
    "x": X1,
    "weight": WT1,
    "bias": B1,
    "stride": 2,
    "padding": 1,
    "output_padding": 1,
    "groups": 2,
    "dilation": 1,
    "method": "auto",
    "nan_policy": "propagate",
}


def _fuzzed_kwargs(draw, base):
    name = draw(st.sampled_from(sorted(base)))
    label, value, same = draw(any_value(base[name]))
    kwargs = dict(base)
    kwargs[name] = value
    return name, label, value, same, kwargs


def _reference_args(kwargs):
    """Array arguments as float64/complex128 arrays, parameters as plain ints and tuples."""
    out = {}
    for k, v in kwargs.items():
        if k in ("x", "weight", "bias", "h"):
            out[k] = (
                None
                if v is None
                else np.asarray(np.ma.getdata(v)).astype(
                    np.result_type(np.asarray(v).dtype, np.float64)
                )
            )
        else:
            out[k] = plain(v)
    return out


def _call_positional(fn):
    def call(x, weight, bias=None, **kwargs):
        return fn(x, weight, bias, **kwargs)

    return call


@pytest.mark.parametrize("base", [CONV_BASE, CONV2_BASE], ids=["1d-groups", "2d-pairs"])
@FUZZ
@given(data=st.data())
def test_conv(base, data):
    name, label, value, same, kwargs = _fuzzed_kwargs(data.draw, base)
    y = check_call(
        _call_positional(conv),
        name,
        kwargs,
        names=(name, "padded input", "kernel") if name != "x" else ("x",),
    )
    if y is None:
        return
    r = _reference_args(kwargs)
    expected = refconv(
        r["x"],
        r["weight"],
        r["bias"],
        stride=r["stride"],
        padding=r["padding"],
        dilation=r["dilation"],
        groups=r["groups"],
        padding_mode=r["padding_mode"],
    )
    assert_matches(y, expected)


@FUZZ
@given(data=st.data())
def test_conv_two_parameters_at_once(data):
    """Interactions (a stride with "same", a dilation with a pair of paddings...)."""
    names = data.draw(
        st.lists(st.sampled_from(sorted(CONV_BASE)), min_size=2, max_size=2, unique=True)
    )
    kwargs = dict(CONV_BASE)
    for name in names:
        kwargs[name] = data.draw(any_value(CONV_BASE[name]))[1]
    wanted = (*names, "padded input", "kernel")
    y = check_call(_call_positional(conv), names[0], kwargs, names=wanted)
    if y is None:
        return
    r = _reference_args(kwargs)
    expected = refconv(
        r["x"],
        r["weight"],
        r["bias"],
        stride=r["stride"],
        padding=r["padding"],
        dilation=r["dilation"],
        groups=r["groups"],
        padding_mode=r["padding_mode"],
    )
    assert_matches(y, expected)


@FUZZ
@given(data=st.data())
def test_conv_transpose(data):
    name, label, value, same, kwargs = _fuzzed_kwargs(data.draw, TRANSPOSE_BASE)
    y = check_call(
        _call_positional(conv_transpose),
        name,
        kwargs,
        names=(name, "output") if name != "x" else ("x",),
    )
    if y is None:
        return
    r = _reference_args(kwargs)
    expected = refconv_transpose(
        r["x"],
        r["weight"],
        r["bias"],
        stride=r["stride"],
        padding=r["padding"],
        output_padding=r["output_padding"],
        groups=r["groups"],
        dilation=r["dilation"],
    )
    assert_matches(y, expected)


def _scipy_reference(x, h, mode, groups, flip):
    """scipy.signal semantics from the PyTorch reference: full/same/valid as padding."""
    d = h.ndim - 2
    taps = h[(Ellipsis,) + (slice(None, None, -1),) * d] if flip else np.conj(h)
    n, k = np.shape(x)[-d:], h.shape[2:]
    if mode == "full":
        pads = tuple((m - 1, m - 1) for m in k)
    elif mode == "same":
        pads = tuple((m - 1 - (m - 1) // 2, (m - 1) // 2) for m in k)
    elif all(m <= a for m, a in zip(k, n)):
        pads = ((0, 0),) * d
    else:
        pads = tuple((m - a, m - a) for m, a in zip(k, n))
    return refconv(x, taps, padding=pads, groups=groups)


@pytest.mark.parametrize(
    "fn, flip", [(convolve, True), (correlate, False)], ids=["convolve", "correlate"]
)
@FUZZ
@given(data=st.data())
def test_scipy_family(fn, flip, data):
    base = {
        "x": X1,
        "h": W1,
        "mode": "same",
        "groups": 2,
        "method": "auto",
        "nan_policy": "propagate",
    }
    name, label, value, same, kwargs = _fuzzed_kwargs(data.draw, base)
    y = check_call(
        lambda x, h, **kw: fn(x, h, **kw),
        name,
        kwargs,
        names=(name, "kernel", "padded input") if name != "x" else ("x",),
    )
    if y is None:
        return
    r = _reference_args(kwargs)
    assert_matches(y, _scipy_reference(r["x"], r["h"], r["mode"], r["groups"], flip))


@FUZZ
@given(data=st.data())
def test_layers_and_their_methods(data):
    which = data.draw(st.sampled_from(["output_size", "shape", "whole", "x"]))
    label, value, same = data.draw(
        any_value({"output_size": None, "shape": None, "whole": None, "x": X1}[which])
    )
    if which == "output_size":
        layer = SpectralConvTranspose(WT1, stride=2, groups=2)
        y = check_call(
            layer, "output_size", {"x": X1, "output_size": value}, names=("output_size",)
        )
        if y is not None:
            op = y.shape[-1] - ((23 - 1) * 2 + 3)
            assert_matches(y, refconv_transpose(X1, WT1, stride=2, output_padding=op, groups=2))
    elif which in ("shape", "whole"):
        layer = SpectralConv(W1, groups=2)
        kwargs = {"shape": 16, "whole": None, which: value}
        H = check_call(layer.frequency_response, which, kwargs)
        if H is not None:
            assert H.shape[-2:] == (6, 4) and np.isfinite(H).all()
    else:
        layer = SpectralConv(W1, B1, padding=2, groups=2)
        y = check_call(layer, "x", {"x": value})
        if y is not None:
            assert_matches(
                y, refconv(_reference_args({"x": value})["x"], W1, B1, padding=2, groups=2)
            )


# --------------------------------------------------------------------------------------------
# streaming, signals, out-of-core


@FUZZ
@given(data=st.data())
def test_streaming(data):
    base = {"block_size": 8, "dtype": None, "block": X1, "crossfade": 4, "weight": W1}
    name, label, value, same, kwargs = _fuzzed_kwargs(data.draw, base)

    def run(block_size, dtype, block, crossfade, weight):
        stream = StreamingConv(SpectralConv(W1, groups=2), block_size, dtype=dtype)
        first = stream.process(block)
        stream.set_kernel(weight, crossfade=crossfade)
        return first

    y = check_call(run, name, kwargs)
    if y is not None and name in ("block_size", "crossfade", "weight"):
        assert_matches(y, refconv(X1, W1, padding=((2, 0),), groups=2)[:, :23])


@FUZZ
@given(data=st.data())
def test_vector_signal(data):
    base = {
        "data": X1,
        "ch_names": tuple("abcd"),
        "domain": "time",
        "sfreq": 100.0,
        "spacing": None,
        "batched": False,
        "metadata": {},
    }
    name, label, value, same, kwargs = _fuzzed_kwargs(data.draw, base)
    sig = check_call(VectorSignal, name, kwargs)
    if sig is not None and name == "data" and same:
        assert np.array_equal(sig.data, np.asarray(value), equal_nan=True)


@FUZZ
@given(data=st.data())
def test_outofcore_apply(data):
    layer = SpectralConv(W1, B1, padding=1, groups=2)
    base = {
        "source": X1,
        "memory_budget": 2**20,
        "chunk_size": 7,
        "dataset": None,
        "progress": False,
        "overwrite": False,
        "picks": None,
    }
    name, label, value, same, kwargs = _fuzzed_kwargs(data.draw, base)
    y = check_call(
        lambda **kw: outofcore.apply(layer, **kw), name, kwargs, errors=DOCUMENTED + (OSError,)
    )
    if y is not None and (name != "source" or same):
        source = _reference_args({"x": kwargs["source"]})["x"]
        assert_matches(y, refconv(source, W1, B1, padding=1, groups=2))


# --------------------------------------------------------------------------------------------
# kernels, apps: the contract only (their own tests check the numbers)


LAYER = SpectralConv(W1, B1, padding=1, groups=2)
KERNEL_CALLS = {
    "pointwise": (
        kernels.pointwise,
        {"matrix": RNG.standard_normal((3, 4)), "ndim": 1, "bias": None},
    ),
    "fir_layer": (
        kernels.fir_layer,
        {
            "h": RNG.standard_normal((2, 2, 5)),
            "mode": "same",
            "delay": 0,
            "groups": 1,
            "bias": None,
            "padding_mode": "zeros",
        },
    ),
    "scale": (kernels.scale, {"layer": LAYER, "alpha": 2.0}),
    "svd": (kernels.svd, {"layer": LAYER, "shape": 16, "whole": None, "per_group": False}),
    "eig": (
        kernels.eig,
        {
            "layer": SpectralConv(RNG.standard_normal((2, 2, 3))),
            "shape": 8,
            "whole": None,
            "hermitian": False,
        },
    ),
    "inverse": (
        kernels.inverse,
        {
            "layer": SpectralConv(RNG.standard_normal((2, 2, 3))),
            "n_taps": 16,
            "reg": 1e-3,
            "delay": None,
            "nfft": None,
            "mode": "full",
            "rcond": 1e-10,
        },
    ),
    "from_response": (
        kernels.from_response,
        {
            "H": RNG.standard_normal((9, 2, 2)),
            "n_taps": 5,
            "delay": None,
            "mode": "full",
            "groups": 1,
            "whole": False,
            "padding_mode": "zeros",
        },
    ),
    "estimate_transfer": (
        kernels.estimate_transfer,
        {
            "x": RNG.standard_normal((2, 400)),
            "y": RNG.standard_normal((1, 400)),
            "nperseg": 64,
            "noverlap": None,
            "window": "hann",
            "fs": 100.0,
            "reg": 0.0,
            "detrend": False,
        },
    ),
    "output_shape": (outofcore.output_shape, {"layer": LAYER, "shape": (4, 23)}),
}


@pytest.mark.parametrize("fname", sorted(KERNEL_CALLS))
@settings(FUZZ, max_examples=25 * SCALE)
@given(data=st.data())
def test_kernels_contract(fname, data):
    fn, base = KERNEL_CALLS[fname]
    name, label, value, same, kwargs = _fuzzed_kwargs(data.draw, base)
    check_call(lambda **kw: fn(**kw), name, kwargs)


# --------------------------------------------------------------------------------------------
# files and the CLI


@FUZZ
@given(data=st.data())
def test_io_read_and_write(data):
    sig = VectorSignal(X1.astype(np.float32), sfreq=100.0)
    path = Path(tempfile.mkdtemp(dir=_TMP)) / "sig.npy"
    io.write(sig, path)
    action = data.draw(st.sampled_from(["read", "write"]))
    options = {
        "read": {
            "path": path,
            "format": None,
            "mmap": False,
            "coil_axis": 0,
            "batch_axis": None,
            "domain": "time",
            "sfreq": 100.0,
        },
        "write": {"sig": sig, "path": path.with_name("out.npy"), "format": None},
    }[action]
    name, label, value, same, kwargs = _fuzzed_kwargs(data.draw, options)
    fn = io.read if action == "read" else io.write
    out = check_call(
        lambda **kw: fn(**kw),
        name,
        kwargs,
        errors=DOCUMENTED + (OSError,),
        names=(name, "option(s)"),
    )
    if action == "read" and out is not None:
        assert np.array_equal(out.data, sig.data)


CLI_WORDS = [
    "1",
    "2",
    "0",
    "-1",
    "3,1",
    "1,2",
    "99999999999",
    "2147483649",
    "1.5",
    "x",
    "",
    "same",
    "valid",
    "full",
    "zeros",
    "reflect",
    "circular",
    "fft",
    "direct",
    "raise",
    "nan",
    "1e3",
    "7",
]
CLI_OPTIONS = [
    "--stride",
    "--padding",
    "--dilation",
    "--groups",
    "--padding-mode",
    "--method",
    "--nan-policy",
    "--mode",
    "--convention",
    "--format",
]


@settings(FUZZ, max_examples=40 * SCALE)
@given(option=st.sampled_from(CLI_OPTIONS), word=st.sampled_from(CLI_WORDS))
def test_cli(option, word):
    folder = Path(tempfile.mkdtemp(dir=_TMP))
    np.save(folder / "x.npy", X1)
    np.save(folder / "k.npy", W1[:, :, :])
    argv = [
        "apply",
        str(folder / "x.npy"),
        "-o",
        str(folder / "y.npy"),
        "--kernel",
        str(folder / "k.npy"),
        "--groups",
        "2",
        option,
        word,
    ]
    err = stdio.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(stdio.StringIO()):
        status, code = call_guarded(main, argv)
    assert status == "ok", f"main raised {code!r}"
    assert code in (0, 2), f"exit status {code}: {err.getvalue()}"
    assert "Traceback" not in err.getvalue()
    if code == 2:
        assert "error" in err.getvalue()
        assert not (folder / "y.npy").exists()
    else:
        assert np.load(folder / "y.npy").shape[0] == 6
    assert np.array_equal(np.load(folder / "x.npy"), X1)


# --------------------------------------------------------------------------------------------
# the applications: the contract only


def _app_calls():
    from specconv.apps import audio, eeg, mri

    ksp = RNG.standard_normal((4, 16, 8)) + 1j * RNG.standard_normal((4, 16, 8))
    near = np.zeros(16)
    near[0] = 1.0
    far = np.zeros(16)
    far[3] = 0.6
    plant = audio.binaural_plant([[near, far], [far, near]])
    pos = RNG.standard_normal((5, 3))
    return {
        "undersample": (mri.undersample, {"ksp": ksp, "R": 2, "n_acs": 4, "offset": 0}),
        "svd_coil_compression": (
            mri.svd_coil_compression,
            {"ksp": ksp, "n_virtual": 2, "energy": None},
        ),
        "geometric_coil_compression": (
            mri.geometric_coil_compression,
            {"ksp": ksp, "n_virtual": 2, "align": True},
        ),
        "calibrate_grappa": (
            mri.calibrate_grappa,
            {"acs": ksp, "R": 2, "kernel_size": (2, 3), "reg": 0.01},
        ),
        "nrmse": (mri.nrmse, {"x": ksp, "ref": ksp + 1}),
        "rereference_matrix": (eeg.rereference_matrix, {"n_channels": 4, "ref": "average"}),
        "laplacian_matrix": (eeg.laplacian_matrix, {"positions": pos, "n_neighbors": 3}),
        "true_stereo_reverb": (
            audio.true_stereo_reverb,
            {"ir": RNG.standard_normal((8, 4)), "mode": "full"},
        ),
        "crosstalk_canceller": (
            audio.crosstalk_canceller,
            {
                "plant": plant,
                "n_taps": 32,
                "fs": 1000.0,
                "band": (50.0, 400.0),
                "reg": 0.01,
                "reg_outside": 100.0,
                "delay": None,
                "mode": "full",
            },
        ),
        "channel_separation": (
            audio.channel_separation,
            {"plant": plant, "canceller": None, "fs": 100.0, "nfft": 32},
        ),
    }


APP_NAMES = [
    "undersample",
    "svd_coil_compression",
    "geometric_coil_compression",
    "calibrate_grappa",
    "nrmse",
    "rereference_matrix",
    "laplacian_matrix",
    "true_stereo_reverb",
    "crosstalk_canceller",
    "channel_separation",
]


@pytest.mark.parametrize("fname", APP_NAMES)
@settings(FUZZ, max_examples=15 * SCALE)
@given(data=st.data())
def test_apps_contract(fname, data):
    fn, base = _app_calls()[fname]
    name, label, value, same, kwargs = _fuzzed_kwargs(data.draw, base)
    check_call(lambda **kw: fn(**kw), name, kwargs)


@settings(FUZZ, max_examples=20 * SCALE)
@given(data=st.data())
def test_dask(data):
    pytest.importorskip("dask")
    from specconv.dask import conv_dask

    layer = SpectralConv(W1, B1, padding=1, groups=2)
    label, value, same = data.draw(any_value(X1))
    y = check_call(lambda x: np.asarray(conv_dask(x, layer)), "x", {"x": value})
    if y is not None and same:
        assert_matches(y, refconv(_reference_args({"x": value})["x"], W1, B1, padding=1, groups=2))


INFO_FILES = {
    "directory": lambda folder: folder,
    "empty .wav": lambda folder: _write(folder / "e.wav", b""),
    "garbage .edf": lambda folder: _write(folder / "g.edf", b"garbage" * 40),
    "missing": lambda folder: folder / "nope.npy",
    "text .npy": lambda folder: _write(folder / "t.npy", b"\x93NUMPY junk"),
    "no extension": lambda folder: _write(folder / "noext", b"\x00" * 64),
    "a good .npy": lambda folder: _save(folder / "x.npy"),
}


def _write(path, content):
    path.write_bytes(content)
    return path


def _save(path):
    np.save(path, X1)
    return path


@pytest.mark.parametrize("case", sorted(INFO_FILES))
def test_cli_info(case):
    folder = Path(tempfile.mkdtemp(dir=_TMP))
    path = INFO_FILES[case](folder)
    err = stdio.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(stdio.StringIO()):
        status, code = call_guarded(main, ["info", str(path)])
    assert status == "ok", f"main raised {code!r}"
    assert code == (0 if case == "a good .npy" else 2), err.getvalue()
    assert "Traceback" not in err.getvalue()
    if code == 2:
        assert str(path) in err.getvalue()
        if case == "directory":
            assert "is a directory" in err.getvalue()
