"""Bad input -> a clear error (issue 2 §5): the parameter, the value received, what is allowed.

TypeError for wrong types, ValueError for wrong values, every message matched.
"""

from __future__ import annotations

import numpy as np
import pytest

import specconv
from specconv import SpectralConv, SpectralConvTranspose, conv, conv_transpose, convolve, correlate

X = np.ones((2, 10))  # 2 channels, 10 samples
W = np.ones((4, 2, 3))  # 2 -> 4 channels, 3 taps
WT = np.ones((2, 4, 3))  # transposed: 2 -> 4 channels

CASES = [
    # shapes
    (
        "x ndim too small",
        lambda: conv(np.ones(10), W),
        ValueError,
        r"x must have shape \(C_in, \*spatial\) or \(B, C_in, \*spatial\) with 1 spatial "
        r"dimension\(s\), i\.e\. ndim 2 or 3, got shape \(10,\)",
    ),
    (
        "x ndim too large",
        lambda: conv(np.ones((1, 1, 2, 10)), W),
        ValueError,
        r"ndim 2 or 3, got shape \(1, 1, 2, 10\)",
    ),
    (
        "x ndim transpose",
        lambda: conv_transpose(np.ones((2, 3, 4, 5)), WT),
        ValueError,
        r"x must have shape .* ndim 2 or 3, got shape \(2, 3, 4, 5\)",
    ),
    (
        "x ndim convolve",
        lambda: convolve(np.ones(10), W),
        ValueError,
        r"x must have shape .* got shape \(10,\)",
    ),
    (
        "weight ndim",
        lambda: conv(X, np.ones((4, 2))),
        ValueError,
        r"weight must have shape \(C_out, C_in/groups, \*kernel\).*got shape \(4, 2\)",
    ),
    (
        "h ndim",
        lambda: convolve(X, np.ones((4, 2))),
        ValueError,
        r"h must have shape \(C_out, C_in/groups, \*kernel\), got shape \(4, 2\)",
    ),
    (
        "h ndim correlate",
        lambda: correlate(X, np.ones(3)),
        ValueError,
        r"h must have shape .* got shape \(3,\)",
    ),
    (
        "channels vs weight",
        lambda: conv(np.ones((3, 10)), W),
        ValueError,
        r"x has 3 channels \(axis 0 of shape \(3, 10\)\) but the weight expects 2 input channels",
    ),
    (
        "channels vs weight batched",
        lambda: conv(np.ones((5, 3, 10)), W),
        ValueError,
        r"x has 3 channels \(axis 1 of shape \(5, 3, 10\)\)",
    ),
    (
        "channels vs groups",
        lambda: conv(np.ones((2, 10)), W, groups=2),
        ValueError,
        r"x has 2 channels .* expects 4 input channels",
    ),
    (
        "channels transpose",
        lambda: conv_transpose(np.ones((3, 10)), WT),
        ValueError,
        r"x has 3 channels .* expects 2 input channels",
    ),
    (
        "channels convolve",
        lambda: convolve(np.ones((3, 10)), W),
        ValueError,
        r"x has 3 channels .* expects 2 input channels",
    ),
    (
        "out channels not divisible",
        lambda: conv(X, np.ones((3, 1, 3)), groups=2),
        ValueError,
        r"out_channels \(3\) must be divisible by groups \(2\)",
    ),
    (
        "in channels not divisible",
        lambda: conv_transpose(np.ones((3, 10)), np.ones((3, 1, 3)), groups=2),
        ValueError,
        r"in_channels \(3\) must be divisible by groups \(2\)",
    ),
    (
        "groups not divisible convolve",
        lambda: convolve(X, np.ones((3, 1, 3)), groups=2),
        ValueError,
        r"out_channels \(3\) must be divisible by groups \(2\)",
    ),
    ("groups zero", lambda: conv(X, W, groups=0), ValueError, r"groups must be >= 1, got 0"),
    (
        "groups negative",
        lambda: SpectralConv(W, groups=-2),
        ValueError,
        r"groups must be >= 1, got -2",
    ),
    (
        "groups float",
        lambda: conv(X, W, groups=1.5),
        TypeError,
        r"groups must be an int, got float 1\.5",
    ),
    (
        "groups bool",
        lambda: conv(X, W, groups=True),
        TypeError,
        r"groups must be an int, got bool True",
    ),
    # sizes
    (
        "kernel larger than input",
        lambda: conv(np.ones((2, 2)), W),
        ValueError,
        r"The kernel \(span \(3,\) with dilation \(1,\)\) is larger than the padded input \(2,\)",
    ),
    (
        "dilated kernel larger",
        lambda: conv(np.ones((2, 5)), W, dilation=3),
        ValueError,
        r"span \(7,\) with dilation \(3,\)\) is larger than the padded input \(5,\)",
    ),
    (
        "kernel larger 2d",
        lambda: conv(np.ones((2, 9, 2)), np.ones((1, 2, 3, 3)), padding=(0, 0)),
        ValueError,
        r"larger than the padded input \(9, 2\)",
    ),
    (
        "transposed output empty",
        lambda: conv_transpose(np.ones((2, 1)), WT, padding=3),
        ValueError,
        r"The output would be empty: input \(1,\) with padding \(3,\)",
    ),
    (
        "valid mixed sizes",
        lambda: convolve(np.ones((1, 5, 5)), np.ones((1, 1, 6, 3)), mode="valid"),
        ValueError,
        r"For mode='valid', the kernel \(6, 3\) must be no larger than x \(5, 5\) in every "
        r"spatial dimension, or at least as large in every dimension",
    ),
    # padding
    (
        "same with stride",
        lambda: conv(X, W, padding="same", stride=2),
        ValueError,
        r"padding='same' is only supported with stride 1, got stride 2",
    ),
    (
        "same with stride tuple",
        lambda: SpectralConv(np.ones((1, 1, 3, 3)), padding="same", stride=(1, 2)),
        ValueError,
        r"padding='same' is only supported with stride 1, got stride \(1, 2\)",
    ),
    (
        "padding string",
        lambda: conv(X, W, padding="full"),
        ValueError,
        r"Invalid value for the 'padding' parameter\. Allowed values are 'same' and 'valid', "
        r"but got 'full' instead",
    ),
    (
        "padding negative",
        lambda: conv(X, W, padding=-1),
        ValueError,
        r"padding must be >= 0 in every dimension, got -1",
    ),
    (
        "padding tuple length",
        lambda: conv(X, W, padding=(1, 2)),
        ValueError,
        r"padding must be an int or a tuple of 1 ints \(one per spatial dimension\), got \(1, 2\)",
    ),
    (
        "padding float",
        lambda: conv(X, W, padding=1.0),
        TypeError,
        r"padding must be an int or a tuple of 1 ints, got 1\.0",
    ),
    (
        "transposed padding negative",
        lambda: conv_transpose(X, WT, padding=-1),
        ValueError,
        r"padding must be >= 0 in every dimension, got -1",
    ),
    (
        "output_padding >= stride",
        lambda: conv_transpose(X, WT, stride=2, output_padding=2),
        ValueError,
        r"output_padding must be smaller than max\(stride, dilation\) in every "
        r"dimension, got output_padding 2 with stride 2 and dilation 1",
    ),
    (
        "output_padding >= dilation",
        lambda: conv_transpose(X, WT, dilation=3, output_padding=3),
        ValueError,
        r"output_padding 3 with stride 1 and dilation 3",
    ),
    (
        "output_padding stride 1",
        lambda: SpectralConvTranspose(WT, output_padding=1),
        ValueError,
        r"output_padding must be smaller than max\(stride, dilation\)",
    ),
    (
        "output_padding 2d",
        lambda: conv_transpose(
            np.ones((2, 5, 5)), np.ones((2, 1, 3, 3)), stride=(2, 1), output_padding=(1, 1)
        ),
        ValueError,
        r"got output_padding \(1, 1\) with stride \(2, 1\)",
    ),
    (
        "output_padding negative",
        lambda: conv_transpose(X, WT, output_padding=-1),
        ValueError,
        r"output_padding must be >= 0 in every dimension, got -1",
    ),
    (
        "output_size unreachable",
        lambda: SpectralConvTranspose(WT, stride=2)(X, output_size=(30,)),
        ValueError,
        r"output_size \(30,\) is not reachable: with this input the output is \(21,\)",
    ),
    (
        "output_size too small",
        lambda: SpectralConvTranspose(WT, stride=2)(X, output_size=(20,)),
        ValueError,
        r"output_size \(20,\) is not reachable",
    ),
    (
        "reflect wider than input",
        lambda: conv(np.ones((2, 3)), W, padding=3, padding_mode="reflect"),
        ValueError,
        r"padding_mode='reflect' needs padding smaller than the input size: got padding 3 for "
        r"spatial axis 0 of size 3",
    ),
    (
        "reflect same wider than input",
        lambda: conv(np.ones((2, 4)), np.ones((1, 2, 9)), padding="same", padding_mode="reflect"),
        ValueError,
        r"padding_mode='reflect' needs padding smaller than the input size: got "
        r"padding 4 for spatial axis 0 of size 4",
    ),
    (
        "circular wider than input",
        lambda: conv(np.ones((2, 3)), W, padding=4, padding_mode="circular"),
        ValueError,
        r"padding_mode='circular' needs padding at most the input size: got padding 4",
    ),
    # strides and dilations
    (
        "stride zero",
        lambda: conv(X, W, stride=0),
        ValueError,
        r"stride must be >= 1 in every dimension, got 0",
    ),
    (
        "stride negative",
        lambda: conv(X, W, stride=-1),
        ValueError,
        r"stride must be >= 1 in every dimension, got -1",
    ),
    (
        "stride tuple with zero",
        lambda: conv(np.ones((2, 9, 9)), np.ones((1, 2, 3, 3)), stride=(1, 0)),
        ValueError,
        r"stride must be >= 1 in every dimension, got \(1, 0\)",
    ),
    (
        "stride transposed zero",
        lambda: conv_transpose(X, WT, stride=0),
        ValueError,
        r"stride must be >= 1 in every dimension, got 0",
    ),
    (
        "dilation zero",
        lambda: conv(X, W, dilation=0),
        ValueError,
        r"dilation must be >= 1 in every dimension, got 0",
    ),
    (
        "dilation negative",
        lambda: conv_transpose(X, WT, dilation=-2),
        ValueError,
        r"dilation must be >= 1 in every dimension, got -2",
    ),
    (
        "dilation tuple length",
        lambda: conv(X, W, dilation=(1, 1)),
        ValueError,
        r"dilation must be an int or a tuple of 1 ints \(one per spatial dimension\), got \(1, 1\)",
    ),
    (
        "stride bool",
        lambda: conv(X, W, stride=True),
        TypeError,
        r"stride must be an int or a tuple of 1 ints, got True",
    ),
    (
        "stride string",
        lambda: conv(X, W, stride="2"),
        TypeError,
        r"stride must be an int or a tuple of 1 ints, got '2'",
    ),
    # options
    (
        "padding_mode",
        lambda: conv(X, W, padding_mode="mirror"),
        ValueError,
        r"Invalid value for the 'padding_mode' parameter\. Allowed values are 'zeros', 'reflect', "
        r"'replicate' and 'circular', but got 'mirror' instead",
    ),
    (
        "padding_mode None",
        lambda: SpectralConv(W, padding_mode=None),
        TypeError,
        r"padding_mode must be a str, one of 'zeros', 'reflect', 'replicate', 'circular', got "
        r"NoneType None",
    ),
    (
        "method",
        lambda: conv(X, W, method="fast"),
        ValueError,
        r"Invalid value for the 'method' parameter\. Allowed values are 'auto', 'fft' and "
        r"'direct', but got 'fast' instead",
    ),
    (
        "method transpose",
        lambda: conv_transpose(X, WT, method="FFT"),
        ValueError,
        r"'method' parameter.*but got 'FFT' instead",
    ),
    (
        "method convolve",
        lambda: convolve(X, W, method="oa"),
        ValueError,
        r"'method' parameter.*but got 'oa' instead",
    ),
    (
        "mode",
        lambda: convolve(X, W, mode="wide"),
        ValueError,
        r"Invalid value for the 'mode' parameter\. Allowed values are 'full', 'same' and 'valid', "
        r"but got 'wide' instead",
    ),
    (
        "mode correlate",
        lambda: correlate(X, W, mode=1),
        TypeError,
        r"mode must be a str, one of 'full', 'same', 'valid', got int 1",
    ),
    (
        "nan_policy",
        lambda: conv(X, W, nan_policy="omit"),
        ValueError,
        r"Invalid value for the 'nan_policy' parameter\. Allowed values are 'propagate' and "
        r"'raise', but got 'omit' instead",
    ),
    (
        "nan_policy convolve",
        lambda: convolve(X, W, nan_policy="ignore"),
        ValueError,
        r"'nan_policy' parameter.*but got 'ignore' instead",
    ),
    (
        "nan_policy transpose",
        lambda: SpectralConvTranspose(WT, nan_policy=None),
        TypeError,
        r"nan_policy must be a str.*got NoneType None",
    ),
    # dtypes and empty arrays
    (
        "x strings",
        lambda: conv(np.full((2, 10), "a"), W),
        TypeError,
        r"x must be a numeric array \(bool, int, float or complex\), got dtype <U1",
    ),
    (
        "x object",
        lambda: conv(np.ones((2, 10), dtype=object), W),
        TypeError,
        r"x must be a numeric array \(bool, int, float or complex\), got dtype object",
    ),
    (
        "x list of strings",
        lambda: convolve([["a", "b"]], np.ones((1, 1, 1))),
        TypeError,
        r"x must be a numeric array .* got dtype <U1",
    ),
    (
        "weight object",
        lambda: conv(X, np.ones((4, 2, 3), dtype=object)),
        TypeError,
        r"weight must be a numeric array .* got dtype object",
    ),
    (
        "h object",
        lambda: correlate(X, np.ones((4, 2, 3), dtype=object)),
        TypeError,
        r"h must be a numeric array .* got dtype object",
    ),
    (
        "bias object",
        lambda: conv(X, W, np.ones(4, dtype=object)),
        TypeError,
        r"bias must be a numeric array .* got dtype object",
    ),
    (
        "x datetime",
        lambda: conv(np.ones((2, 10), dtype="datetime64[s]"), W),
        TypeError,
        r"x must be a numeric array .* got dtype datetime64\[s\]",
    ),
    (
        "x empty",
        lambda: conv(np.ones((2, 0)), W),
        ValueError,
        r"x must not be empty, got shape \(2, 0\)",
    ),
    (
        "x no channels",
        lambda: conv(np.ones((0, 10)), W),
        ValueError,
        r"x must not be empty, got shape \(0, 10\)",
    ),
    (
        "x empty convolve",
        lambda: convolve(np.ones((2, 0)), W),
        ValueError,
        r"x must not be empty, got shape \(2, 0\)",
    ),
    (
        "weight empty",
        lambda: conv(X, np.ones((4, 2, 0))),
        ValueError,
        r"weight must not be empty, got shape \(4, 2, 0\)",
    ),
    (
        "h empty",
        lambda: convolve(X, np.ones((0, 2, 3))),
        ValueError,
        r"h must not be empty, got shape \(0, 2, 3\)",
    ),
    (
        "x longdouble",
        lambda: conv(X.astype(np.longdouble), W),
        TypeError,
        r"dtype float128 is not supported; use float32, float64, complex64 or complex128",
    ),
    (
        "weight clongdouble",
        lambda: conv(X, W.astype(np.clongdouble)),
        TypeError,
        r"dtype complex256 is not supported; use float32, float64, complex64 or complex128",
    ),
    (
        "h longdouble",
        lambda: convolve(X, W.astype(np.longdouble)),
        TypeError,
        r"dtype float128 is not supported",
    ),
    (
        "bias longdouble",
        lambda: conv(X, W, np.ones(4, dtype=np.longdouble)),
        TypeError,
        r"dtype float128 is not supported",
    ),
    # bias
    (
        "bias length",
        lambda: conv(X, W, np.ones(3)),
        ValueError,
        r"bias must have shape \(C_out,\) = \(4,\), got \(3,\)",
    ),
    (
        "bias 2-d",
        lambda: conv(X, W, np.ones((4, 1))),
        ValueError,
        r"bias must have shape \(C_out,\) = \(4,\), got \(4, 1\)",
    ),
    (
        "bias scalar",
        lambda: SpectralConv(W, 1.0),
        ValueError,
        r"bias must have shape \(C_out,\) = \(4,\), got \(\)",
    ),
    (
        "bias transposed",
        lambda: conv_transpose(X, WT, np.ones(2)),
        ValueError,
        r"bias must have shape \(C_out,\) = \(4,\), got \(2,\)",
    ),
    (
        "bias transposed groups",
        lambda: conv_transpose(np.ones((4, 10)), np.ones((4, 3, 3)), np.ones(3), groups=2),
        ValueError,
        r"bias must have shape \(C_out,\) = \(6,\), got \(3,\)",
    ),
    # the layer objects
    (
        "frequency_response too short",
        lambda: SpectralConv(W).frequency_response(2),
        ValueError,
        r"shape \(2,\) must be at least the kernel span \(3,\)",
    ),
    (
        "frequency_response one-sided complex",
        lambda: SpectralConv(W + 1j).frequency_response(8, whole=False),
        ValueError,
        r"whole=False \(one-sided spectrum\) needs real weights",
    ),
    (
        "T of reflect padding",
        lambda: SpectralConv(W, padding=1, padding_mode="reflect").T,
        ValueError,
        r"The transpose of a layer with padding_mode='reflect' is not a ConvTranspose "
        r"layer \(only zero padding is\); use padding_mode='zeros'",
    ),
    (
        "T of circular padding",
        lambda: SpectralConv(W, padding="same", padding_mode="circular").T,
        ValueError,
        r"padding_mode='circular' is not a ConvTranspose layer",
    ),
    # (before, after) padding pairs
    (
        "padding pair negative",
        lambda: conv(X, W, padding=((1, -1),)),
        ValueError,
        r"padding must be >= 0 in every dimension, got \(1, -1\)",
    ),
    (
        "padding pair float",
        lambda: conv(X, W, padding=((1.0, 2),)),
        TypeError,
        r"padding must be an int or a tuple of 2 ints.*got \(1\.0, 2\)",
    ),
    (
        "transposed padding pair negative",
        lambda: conv_transpose(X, WT, padding=((-1, 0),)),
        ValueError,
        r"padding must be >= 0 in every dimension, got \(-1, 0\)",
    ),
    (
        "transposed pairs too wide",
        lambda: conv_transpose(np.ones((2, 2)), WT, padding=((3, 1),)),
        ValueError,
        r"The output would be empty",
    ),
]


@pytest.mark.parametrize("call, exc, match", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_error(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_raised_errors_keep_their_types():
    """A ValueError stays a ValueError (never wrapped), so ``except ValueError`` works."""
    for _, call, exc, _ in CASES:
        try:
            call()
        except Exception as err:  # noqa: BLE001 - the point is the exact type
            assert type(err) is exc


def test_errors_come_before_any_work(monkeypatch):
    """Bad options fail at construction time, not when the layer is first applied."""
    from specconv import _correlate

    monkeypatch.setattr(_correlate, "correlate", lambda *a, **k: pytest.fail("worked"))
    with pytest.raises(ValueError, match="padding_mode"):
        SpectralConv(W, padding_mode="mirror")
    with pytest.raises(ValueError, match="output_padding"):
        SpectralConvTranspose(WT, output_padding=1)


@pytest.mark.parametrize("n", ["2", 2.0, True, None])
def test_set_num_threads_type_error(n):  # regression: used to be a ValueError
    old = specconv.get_num_threads()
    try:
        with pytest.raises(TypeError, match=rf"n must be a positive int, got {n!r}"):
            specconv.set_num_threads(n)
    finally:
        specconv.set_num_threads(old)


@pytest.mark.parametrize("n", [0, -1])
def test_set_num_threads_value_error(n):
    with pytest.raises(ValueError, match=rf"n must be a positive int, got {n}"):
        specconv.set_num_threads(n)


def test_padding_pair_of_wrong_length_names_before_after():
    with pytest.raises(ValueError, match=r"\(before, after\)"):
        conv(X, W, padding=((1, 2, 3),))
