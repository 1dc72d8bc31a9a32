"""Parameters at their edges and the smaller gaps of issue 19 (§3, §5).

Every case here once failed: a bare StopIteration, a hang proportional to the stride, an
overflow in numpy-integer arithmetic, an error without the parameter's name, a silently
ignored mask or non-finite weight. Each is checked against the numpy reference where it
computes, and by its message where it raises.
"""

from __future__ import annotations

import re
import threading

import _reference as ref
import numpy as np
import pytest
from _tolerances import assert_close

from specconv import (
    SpectralConv,
    SpectralConvTranspose,
    _costmodel,
    conv,
    conv_transpose,
    convolve,
    correlate,
    io,
    outofcore,
)
from specconv.cli import main
from specconv.signal import VectorSignal
from specconv.stream import StreamingConv

RNG = np.random.default_rng(19)
X = RNG.standard_normal((2, 50))
W = RNG.standard_normal((4, 2, 3))
WT = RNG.standard_normal((2, 4, 3))


def within(seconds, fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, failing the test if it has not returned after ``seconds``."""
    box = {}

    def target():
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as err:  # handed back to the test thread
            box["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{fn.__name__} did not return within {seconds} s"
    if "error" in box:
        raise box["error"]
    return box["value"]


# ------------------------------------------------------------------ lengths beyond any FFT
@pytest.mark.parametrize(
    "kwargs",
    [
        {"padding": 10**12},
        {"padding": 2**31},
        {"padding": (0, 2**40)},
        {"padding": 2**31, "dilation": 2**30},
        {"padding": 10**30},
    ],
    ids=["pad-1e12", "pad-2^31", "pad-pair", "pad-and-dilation", "pad-1e30"],
)
@pytest.mark.parametrize("method", ["auto", "fft", "direct"])
def test_lengths_beyond_any_fft_are_a_clear_value_error(kwargs, method):
    kwargs = {
        k: ((v,) if k == "padding" and isinstance(v, tuple) else v) for k, v in kwargs.items()
    }
    with pytest.raises(
        ValueError,
        match=r"The padded input would have spatial shape .* longer "
        r"than 2147483648 samples .*check padding",
    ):
        within(5, conv, X, W, method=method, **kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [{"stride": 10**9}, {"dilation": 10**10}, {"output_padding": 10**12, "stride": 10**13}],
)
def test_transposed_outputs_beyond_any_fft_are_a_clear_value_error(kwargs):
    with pytest.raises(
        ValueError,
        match=r"The output would have spatial shape .* longer than "
        r"2147483648 samples .*check stride, padding",
    ):
        within(5, conv_transpose, X, WT, **kwargs)


def test_the_cost_model_says_value_error_not_stop_iteration():
    with pytest.raises(
        ValueError,
        match=r"No FFT length specconv plans covers an axis of "
        r"1099511627776 samples",
    ):
        _costmodel._axis_candidates(3, 1, 2**40, 1)


def test_cli_huge_padding_is_a_user_error(tmp_path, capsys):
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "k.npy", W)
    status = main(
        [
            "apply",
            str(tmp_path / "x.npy"),
            "-o",
            str(tmp_path / "y.npy"),
            "--kernel",
            str(tmp_path / "k.npy"),
            "--padding",
            str(10**12),
        ]
    )
    err = capsys.readouterr().err
    assert status == 2
    assert "longer than 2147483648 samples" in err and "Traceback" not in err
    assert not (tmp_path / "y.npy").exists()


# ------------------------------------------------------------------ strides beyond the input
@pytest.mark.parametrize("stride", [52, 10**9, 2**63, 10**30])
@pytest.mark.parametrize("method", ["auto", "fft", "direct"])
def test_a_stride_beyond_the_input_returns_promptly_and_right(stride, method):
    y = within(5, conv, X, W, stride=stride, padding=2, method=method)
    assert_close(y, ref.conv(X, W, stride=stride, padding=2))
    assert y.shape == (4, 1)


def test_a_huge_stride_in_one_axis_of_two():
    x, w = RNG.standard_normal((1, 2, 9, 11)), RNG.standard_normal((3, 2, 2, 3))
    y = within(5, conv, x, w, stride=(2, 10**12))
    assert_close(y, ref.conv(x, w, stride=(2, 10**12)))
    assert y.shape == (1, 3, 4, 1)


def test_a_huge_stride_keeps_non_finite_input_local():
    x = X.copy()
    x[0, 1] = np.nan  # read by the only output of every channel
    x[1, 49] = np.inf  # read by none
    y = within(5, conv, x, W, stride=10**9)
    assert np.isnan(y).all()
    y = within(5, conv, x[:, 3:], W, stride=10**9)
    assert np.isfinite(y).all()
    assert_close(y, ref.conv(x[:, 3:], W, stride=10**9))


@pytest.mark.parametrize("method", ["auto", "fft", "direct"])
def test_a_huge_transposed_stride_on_one_sample_returns_promptly_and_right(method):
    x = RNG.standard_normal((2, 1))
    y = within(5, conv_transpose, x, WT, stride=10**9, method=method)
    assert_close(y, ref.conv_transpose(x, WT, stride=10**9))


def test_a_huge_stride_streams_promptly():
    stream = StreamingConv(SpectralConv(W, stride=10**9, padding=2), block_size=16)
    y = within(
        5, lambda: np.concatenate([stream.process(X[:, :20]), stream.process(X[:, 20:])], axis=-1)
    )
    assert y.shape == (4, 1)
    assert_close(y, ref.conv(X, W, stride=10**9, padding=2)[:, :1])


# ------------------------------------------------------------------ numpy integers
NUMPY_INTS = [np.int8, np.int16, np.uint8, np.uint16, np.int32, np.int64, np.uint64]


@pytest.mark.parametrize("itype", NUMPY_INTS, ids=lambda t: t.__name__)
@pytest.mark.parametrize("method", ["fft", "direct"])
def test_numpy_integer_parameters_equal_python_ints(itype, method):
    x, w, b = RNG.standard_normal((6, 40)), RNG.standard_normal((4, 3, 3)), RNG.standard_normal(4)
    n = itype
    y = conv(x, w, b, stride=n(2), padding=n(3), dilation=n(2), groups=n(2), method=method)
    assert_close(y, ref.conv(x, w, b, stride=2, padding=3, dilation=2, groups=2))
    wt = RNG.standard_normal((6, 2, 3))
    yt = conv_transpose(
        x,
        wt,
        stride=n(3),
        padding=n(1),
        output_padding=n(2),
        groups=n(2),
        dilation=n(2),
        method=method,
    )
    assert_close(
        yt, ref.conv_transpose(x, wt, stride=3, padding=1, output_padding=2, groups=2, dilation=2)
    )
    h = RNG.standard_normal((4, 3, 5))
    assert_close(
        convolve(x, h, groups=n(2), method=method), convolve(x, h, groups=2, method=method)
    )


def test_numpy_int16_groups_do_not_overflow_in_the_direct_method():
    x, w = RNG.standard_normal((256, 30)), RNG.standard_normal((256, 1, 3))
    y = conv(x, w, groups=np.int16(256), method="direct")
    assert_close(y, ref.conv(x, w, groups=256))


def test_integer_arrays_as_tuples():
    x, w = RNG.standard_normal((1, 2, 12, 13)), RNG.standard_normal((3, 2, 3, 2))
    y = conv(
        x,
        w,
        stride=np.array([2, 1]),
        padding=np.array([[1, 0], [2, 3]]),
        dilation=np.array([1, 2], dtype=np.uint8),
    )
    assert_close(y, ref.conv(x, w, stride=(2, 1), padding=((1, 0), (2, 3)), dilation=(1, 2)))


def test_stream_and_layer_sizes_accept_numpy_ints():
    stream = StreamingConv(W, block_size=np.int16(8))
    assert stream.block_size == 8 and type(stream.block_size) is int
    stream.set_kernel(W * 2, crossfade=np.uint8(4))
    H = SpectralConv(W).frequency_response(np.int8(16), whole=np.bool_(True))
    assert H.shape == (16, 4, 2)


# ------------------------------------------------------------------ output_size
@pytest.mark.parametrize(
    "output_size",
    [102, np.int32(102), (102,), [4, 102], (1, 4, 102), np.array([102])],
    ids=["int", "np-int", "tuple", "C-and-n", "B-C-n", "array"],
)
def test_output_size_as_int_or_pytorch_shapes(output_size):
    layer = SpectralConvTranspose(WT, stride=2)
    y = layer(X, output_size=output_size)
    assert y.shape == (4, 102)
    assert_close(y, ref.conv_transpose(X, WT, stride=2, output_padding=1))


@pytest.mark.parametrize(
    "output_size, exc, match",
    [
        ((1, 2, 3, 102), ValueError, r"output_size must be an int or a tuple of 1 ints"),
        ("102", TypeError, r"output_size must be an int or a tuple of 1 ints, got '102'"),
        (102.0, TypeError, r"output_size must be an int or a tuple of 1 ints, got 102\.0"),
        (True, TypeError, r"output_size must be an int or a tuple of 1 ints, got True"),
        (-5, ValueError, r"output_size must be >= 1 in every dimension, got -5"),
    ],
)
def test_bad_output_sizes_name_the_parameter(output_size, exc, match):
    with pytest.raises(exc, match=match):
        SpectralConvTranspose(WT, stride=2)(X, output_size=output_size)


# ------------------------------------------------------------------ array arguments
@pytest.mark.parametrize(
    "call, name",
    [
        (lambda a: conv(a, W), "x"),
        (lambda a: conv(X, a), "weight"),
        (lambda a: convolve(X, a), "h"),
        (lambda a: correlate(a, W), "x"),
        (lambda a: SpectralConv(W)(a), "x"),
        (lambda a: SpectralConvTranspose(a), "weight"),
        (lambda a: StreamingConv(W).process(a), "block"),
    ],
)
def test_ragged_nested_lists_name_the_parameter(call, name):
    ragged = [[[1.0, 2.0], [3.0]], [[1.0, 2.0], [3.0, 4.0]]]
    with pytest.raises(
        ValueError,
        match=rf"{name} must be an array_like of numbers with a "
        r"regular shape \(not a ragged nested list\)",
    ):
        call(ragged)


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda m: conv(m, W), "x"),
        (lambda m: conv(X, m), "weight"),
        (lambda m: conv(X, W, m), "bias"),
        (lambda m: convolve(X, m), "h"),
        (lambda m: conv_transpose(m, WT), "x"),
        (lambda m: StreamingConv(W).process(m), "block"),
        (lambda m: VectorSignal(m, sfreq=100.0), "data"),
    ],
)
def test_masked_arrays_are_refused_by_name(call, name):
    shape = {
        "x": X.shape,
        "weight": W.shape,
        "bias": (4,),
        "h": W.shape,
        "block": X.shape,
        "data": X.shape,
    }[name]
    masked = np.ma.masked_array(np.ones(shape), mask=np.zeros(shape, bool))
    masked.mask.flat[0] = True
    with pytest.raises(TypeError, match=rf"{name} is a masked array"):
        call(masked)


@pytest.mark.parametrize("order", [">", "<"])
def test_byte_order_is_any(order):
    x, w = X.astype(order + "f8"), W.astype(order + "f4")
    y = conv(x, w, padding=1)
    assert y.dtype == np.float64 and y.dtype.isnative
    assert_close(y, ref.conv(X, W.astype(np.float32), padding=1))


# ------------------------------------------------------------------ non-finite weights
NAN_W = W.copy()
NAN_W[1, 0, 2] = np.nan
INF_B = np.array([0.0, 0.0, np.inf, 0.0])


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda p: conv(X, NAN_W, nan_policy=p), "weight"),
        (lambda p: conv(X, W, INF_B, nan_policy=p), "bias"),
        (lambda p: conv_transpose(X, NAN_W.transpose(1, 0, 2), nan_policy=p), "weight"),
        (lambda p: convolve(X, NAN_W, nan_policy=p), "h"),
        (lambda p: correlate(X, NAN_W, nan_policy=p), "h"),
        (lambda p: SpectralConv(NAN_W, nan_policy=p)(X), "weight"),
    ],
)
def test_non_finite_weights_raise_under_raise(call, name):
    with pytest.raises(
        ValueError,
        match=rf"{name} contains 1 non-finite value\(s\) \(NaN or "
        r"±Inf\) and nan_policy='raise'",
    ):
        call("raise")


@pytest.mark.parametrize("method", ["fft", "direct"])
def test_a_non_finite_tap_makes_its_output_channel_nan_under_propagate(method):
    y = conv(X, NAN_W, padding=1, method=method)
    assert np.isnan(y[1]).all()
    others = [0, 2, 3]
    assert np.isfinite(y[others]).all()
    assert_close(y[others], ref.conv(X, W, padding=1)[others])


def test_a_stream_refuses_non_finite_new_kernels_under_raise():
    stream = StreamingConv(SpectralConv(W, nan_policy="raise"))
    with pytest.raises(ValueError, match=r"weight contains 1 non-finite"):
        stream.set_kernel(NAN_W)


# ------------------------------------------------------------------ files (§5)
def test_info_on_a_directory_says_so(tmp_path, capsys):
    (tmp_path / "rec.edf").mkdir()
    with pytest.raises(IsADirectoryError, match=r"rec\.edf' is a directory, not a signal file"):
        io.info(tmp_path / "rec.edf")
    assert main(["info", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is a directory" in err and "not a valid" not in err


def test_a_missing_hdf5_dataset_is_a_format_error(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "in.h5"
    with h5py.File(path, "w") as f:
        f["signal"] = X
        f.create_group("group")
    for dataset in ("nope", "group"):
        with pytest.raises(
            io.FormatError,
            match=rf"in\.h5' has no dataset '{dataset}' \(it has "
            r"\['signal'\]\); choose one with dataset=",
        ):
            outofcore.apply(SpectralConv(W), path, dataset=dataset)
        with pytest.raises(io.FormatError, match=rf"has no '{dataset}' dataset"):
            io.read(path, format="fastmri", dataset=dataset)
    with pytest.raises(io.FormatError, match=r"has no 'kspace' dataset"):
        io.info(path)
    with pytest.raises(
        TypeError,
        match=r"dataset must be a str \(an HDF5 path\) or None, got "
        r"int 3",
    ):
        outofcore.apply(SpectralConv(W), path, dataset=3)


@pytest.mark.parametrize(
    "content, pattern",
    [
        (b"not an array", r"--kernel .*k\.npy: not a readable NumPy \.npy array"),
        (b"\x93NUMPY\x01\x00", r"--kernel .*k\.npy: not a readable NumPy \.npy array"),
        (None, r"--kernel .*k\.npy: cannot read it: Is a directory"),
    ],
    ids=["garbage", "truncated", "directory"],
)
def test_an_unreadable_kernel_file_is_named(tmp_path, capsys, content, pattern):
    np.save(tmp_path / "x.npy", X)
    kernel = tmp_path / "k.npy"
    if content is None:
        kernel.mkdir()
    else:
        kernel.write_bytes(content)
    status = main(
        ["apply", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"), "--kernel", str(kernel)]
    )
    err = capsys.readouterr().err
    assert status == 2
    assert re.search(pattern, err), err
