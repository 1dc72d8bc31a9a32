"""The compiled loops (specconv/_simd.c) and the numpy code they stand in for: the depthwise
direct method and the FFT path's per-frequency product, at every instruction-set level this
CPU runs, and the environment variable that picks the level."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import types

import _reference as ref
import numpy as np
import pytest
from _tolerances import assert_close, rtol
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_chunks_and_caches import _check_direct

import specconv
from specconv import _compiled, _direct, _engine, fft
from specconv._geometry import Geometry

# (x shape, weight shape, groups, dilation, stride, pads). Lines of 150 samples take the wide
# register blocks, a narrow one and single samples; the negative pads crop x, the last case
# crops all of it (only padding is read).
_CASES = [
    ((2, 5, 9, 150), (10, 1, 3, 4), 5, (2, 1), (1, 1), ((1, 2), (-3, 5))),
    ((3, 4, 70), (4, 1, 7), 4, (3,), (1,), ((9, 2),)),
    ((1, 3, 6, 5, 7), (6, 1, 3, 2, 3), 3, (1, 2, 1), (1, 1, 1), ((1, 1), (0, 2), (2, 0))),
    ((2, 6, 8, 8), (6, 1, 1, 1), 6, (1, 1), (1, 1), ((0, 0), (0, 0))),
    ((2, 6, 8, 8), (12, 1, 3, 3), 6, (1, 1), (2, 2), ((1, 1), (1, 1))),
    ((1, 2, 4), (2, 1, 1), 2, (1,), (1,), ((1, -4),)),
    # lines computed in pairs (5 x 5 and 5 x 3 kernels share most samples), 11 and 5 lines per
    # image (a single one left), 3-D: pairs within a plane, none across
    ((2, 3, 11, 150), (6, 1, 5, 5), 3, (1, 1), (1, 1), ((2, 2), (2, 2))),
    ((1, 2, 9, 37), (2, 1, 5, 3), 2, (1, 2), (1, 1), ((0, 0), (3, 1))),
    ((1, 2, 6, 7, 40), (4, 1, 2, 5, 3), 2, (1, 1, 1), (1, 1, 1), ((0, 1), (2, 2), (1, 1))),
    # strided 1-D (decimation): the input's phases laid out as one line, with a multiplier,
    # dilations sharing a factor with the stride or not, and crops at either end
    ((2, 3, 150), (6, 1, 9), 3, (2,), (3,), ((4, -2),)),
    ((1, 4, 300), (4, 1, 31), 4, (1,), (2,), ((15, 15),)),
    ((1, 2, 10), (2, 1, 4), 2, (3,), (4,), ((-1, 6),)),
    ((2, 2, 41), (2, 1, 6), 2, (2,), (2,), ((0, 0),)),
    # strided 2-D and 3-D: lines of 8 and 12 (a half vector of floats on AVX-512, and a tail)
    ((2, 3, 16, 16), (3, 1, 7, 7), 3, (1, 1), (2, 2), ((3, 3), (3, 3))),
    ((1, 2, 9, 24, 10), (4, 1, 3, 3, 2), 2, (1, 1, 2), (2, 2, 1), ((1, 1), (1, 1), (0, 1))),
]


# every level any build has; those this CPU cannot run are skipped
LEVELS = ["avx512", "avx2", "baseline"]


def _level(name):
    """The loops of level ``name``, or a skip where this CPU does not run it."""
    if name not in _compiled.levels():
        pytest.skip(f"this CPU runs the levels {_compiled.levels()}, not {name!r}")
    return _compiled.loops_at(name)


@pytest.fixture(params=[*LEVELS, "numpy"])
def loops(request, monkeypatch):
    """Every compiled level in turn, then the numpy/BLAS path (loops = None)."""
    monkeypatch.setattr(
        _compiled, "loops", None if request.param == "numpy" else _level(request.param)
    )
    return request.param


@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", range(len(_CASES)))
def test_depthwise_loops_match_the_reference(loops, workers, dtype, case):
    _check_direct(*_CASES[case], dtype, workers)


# Depthwise transposed 1-D layers (interpolation): (x shape, multiplier, taps, stride,
# dilation, padding, output_padding, whether the phases run interleaved in one call). Phases
# longer than the loop's block of 1024 samples (three blocks and a tail), outputs that end
# inside a group of phases, a multiplier of 2; run phase by phase: dilations and kernels
# shorter than the stride whose phases share few offsets.
_TRANSPOSED = [
    ((2, 3, 2500), 1, 48, 4, 1, 0, 0, True),
    ((1, 4, 1100), 2, 7, 3, 1, 2, 1, True),
    ((2, 2, 9), 1, 5, 2, 2, 1, 1, False),
    ((1, 3, 30), 1, 5, 4, 2, 3, 0, False),
    ((1, 2, 3), 1, 2, 5, 1, 0, 3, False),
    ((1, 2, 40), 1, 9, 2, 3, 4, 2, False),
    ((3, 1, 64), 3, 32, 16, 1, 5, 15, True),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", _TRANSPOSED)
def test_transposed_depthwise_phases_interleaved_match_the_reference(
    loops, dtype, case, monkeypatch
):
    shape, m, K, stride, dilation, padding, output_padding, interleaved = case
    rng = np.random.default_rng(11)
    x = ref.random_array(rng, shape, dtype)
    x[0, -1, shape[2] // 2] = np.nan  # marked where its taps reach, as the reference does
    w = ref.random_array(rng, (shape[1], m, K), dtype)
    b = ref.random_array(rng, (shape[1] * m,), dtype)
    kw = dict(stride=stride, dilation=dilation, padding=padding, output_padding=output_padding)
    calls = []
    if loops != "numpy":  # spy: the phases interleaved by the compiled loop, in one call
        loop = _compiled.loops.depthwise
        spy = lambda *a: calls.append(a[11:]) or loop(*a)  # noqa: E731
        monkeypatch.setattr(_compiled, "loops", types.SimpleNamespace(depthwise=spy))
    y = specconv.conv_transpose(x, w, b, groups=shape[1], method="direct", **kw)
    expected = ref.conv_transpose(np.nan_to_num(x, nan=0.0), w, b, groups=shape[1], **kw)
    marked = ref.conv_transpose(np.isnan(x).astype(float), abs(w) + 1, groups=shape[1], **kw)
    np.testing.assert_array_equal(np.isnan(y), marked > 0)
    assert_close(y, expected, where=marked == 0)
    if loops != "numpy" and interleaved:
        assert calls and all(phases == (min(stride, y.shape[-1]), y.shape[-1]) for phases in calls)
    else:
        assert not any(calls)


@pytest.mark.parametrize("level", LEVELS)
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_strided_depthwise_layers_take_one_pass_of_the_compiled_loop(monkeypatch, level, data):
    """1-D, 2-D and 3-D strided depthwise layers (any multiplier, dilation and padding, pads
    that crop too) go through the loop in one pass over their input phases, never phase by
    phase, with the reference's numbers."""
    monkeypatch.setattr(_compiled, "loops", _level(level))

    def no_phases(*args):
        raise AssertionError("computed phase by phase")

    monkeypatch.setattr(_direct, "_polyphase", no_phases)
    ndim = data.draw(st.integers(1, 3))
    axis = st.tuples(st.integers(1, 5), st.integers(1, 3), st.integers(2, 4))  # taps, dil., stride
    kernel, dilation, stride = zip(*data.draw(st.lists(axis, min_size=ndim, max_size=ndim)))
    spans = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
    pads = tuple(data.draw(st.tuples(st.integers(-2, s), st.integers(-2, s))) for s in spans)
    lowest = [max(3, span - a - b, 1 - a - b) for span, (a, b) in zip(spans, pads)]
    spatial = tuple(data.draw(st.integers(n, n + (8 if ndim > 1 else 40))) for n in lowest)
    channels, multiplier = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 2))
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    x_shape = (data.draw(st.integers(1, 2)), channels) + spatial
    w_shape = (channels * multiplier, 1) + kernel
    _check_direct(
        x_shape, w_shape, channels, dilation, stride, pads, dtype, data.draw(st.integers(1, 2))
    )


def test_strided_depthwise_layers_of_real_data_only_take_the_compiled_loop():
    if _compiled.loops is None:
        pytest.skip("no compiled loops in this build")
    square = Geometry(1, 4, 4, 4, (3, 3), (1, 1), (2, 2), (20, 20), False)
    assert _direct.strided_depthwise(square, "f8")
    assert _direct.strided_depthwise(Geometry(1, 4, 8, 4, (3,), (1,), (2,), (20,), False), "f4")
    # complex data, channels to mix, stride 1: phase by phase, or not strided at all
    assert not _direct.strided_depthwise(Geometry(1, 4, 4, 4, (3,), (1,), (2,), (20,), True), "c8")
    assert not _direct.strided_depthwise(Geometry(1, 4, 4, 2, (3,), (1,), (2,), (20,), False), "f8")
    assert not _direct.strided_depthwise(Geometry(1, 4, 4, 4, (3,), (1,), (1,), (20,), False), "f8")


@pytest.mark.parametrize("workers", [1, 2])
def test_depthwise_loops_read_any_view_in_blocks_of_images(monkeypatch, workers):
    """A strided layer's input phases reach the compiled loop as strided views, which each
    worker copies in blocks (here one image each, cast from float32 to the loop's float64):
    the same numbers as the reference."""
    monkeypatch.setattr(_compiled, "loops", _level("baseline"))
    monkeypatch.setattr(_direct, "DEPTHWISE_BLOCK", 1)
    calls = []
    loop = _compiled.loops.depthwise
    spy = lambda *a: calls.append(a[0].shape[0]) or loop(*a)  # noqa: E731
    monkeypatch.setattr(_compiled, "loops", types.SimpleNamespace(depthwise=spy))
    rng = np.random.default_rng(5)
    big = ref.random_array(rng, (3, 4, 23, 30), np.float32)
    w = ref.random_array(rng, (8, 1, 5, 4), np.float64)
    x = big[:, :, 1::2, ::3]  # (3, 4, 11, 10), every stride a view's
    geom = Geometry(3, 4, 8, 4, (5, 4), (1, 1), (1, 1), (15, 13), False)
    y = _direct.correlate_direct(x, ((2, 2), (1, 2)), w, geom, np.dtype(np.float64), workers)
    expected = ref.conv(x.astype(np.float64), w, groups=4, padding=((2, 2), (1, 2)))
    assert_close(y, expected)
    assert calls == [1] * 12  # one call per image: 3 signals x 4 channels


def test_only_real_stride_1_layers_take_the_compiled_loops(monkeypatch):
    monkeypatch.setattr(_compiled, "loops", object())
    real = Geometry(1, 4, 4, 4, (3,), (1,), (1,), (20,), False)
    assert _direct.compiled_depthwise(real)
    assert not _direct.compiled_depthwise(Geometry(1, 4, 4, 4, (3,), (1,), (1,), (20,), True))
    assert not _direct.compiled_depthwise(Geometry(1, 4, 4, 4, (1,), (1,), (2,), (20,), False))
    monkeypatch.setattr(_compiled, "loops", None)
    assert not _direct.compiled_depthwise(real)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize(
    "change, message",
    [
        (dict(taps=np.array([0, 5], np.int64)), "outside the padded image"),
        (dict(lines=np.array([-1], np.int64)), "outside the padded image"),
        (dict(rows=np.array([3], np.int64)), "outside the padded image"),
        (dict(itemsize=2), "itemsize must be 4 or 8"),
        (dict(w=np.ones(3)), r"w does not hold \(groups, m, taps\)"),
        (dict(out=np.empty(5)), "out does not hold whole output images"),
        (dict(x=np.ones(3, np.float32)), "x and out hold different numbers of images"),
        (dict(x=np.ones(7)), "outside the padded image"),
        (dict(phases=0), "phases or out_length out of range"),
        (dict(out_length=5), "phases or out_length out of range"),
        (dict(phases=2, out_length=8), "m is not a multiple of phases"),
        (dict(phases=2, lines=np.array([0, 0], np.int64)), "one line per image"),
    ],
)
def test_the_compiled_loops_refuse_offsets_outside_their_buffers(level, change, message):
    # one image of 4 samples padded to 6, two taps, an output line of 4: everything in bounds
    args = dict(
        x=np.ones(4),
        out=np.empty(4),
        w=np.ones(2),
        taps=np.array([0, 2], np.int64),
        rows=np.array([1], np.int64),
        lines=np.array([0], np.int64),
        itemsize=8,
        first=0,
        groups=1,
        padded=6,
        length=4,
        phases=1,
        out_length=4,
    )
    loops = _level(level)
    loops.depthwise(*args.values())
    np.testing.assert_array_equal(args["out"], [1, 2, 2, 1])
    args.update(change)
    with pytest.raises(ValueError, match=message):
        loops.depthwise(*args.values())


@pytest.mark.skipif(
    os.environ.get("SPECCONV_REQUIRE_COMPILED") != "1",
    reason="only where the build is known to have a C compiler (CI)",
)
def test_the_compiled_loops_are_built():
    assert _compiled.levels(), "specconv._simd failed to build: see pip's output"


def _product_layout(h, lanes):
    """``h`` (G, co, ci, F) as the compiled product takes it (see ``_engine.kernel_spectra``),
    built here independently."""
    G, co, ci, F = h.shape
    padded = np.zeros((G, co, ci, -(-F // lanes) * lanes), h.dtype)
    padded[..., :F] = h
    return np.ascontiguousarray(padded.reshape(G, co, ci, -1, lanes).transpose(0, 3, 1, 2, 4))


# (batch, groups, ci, co, tiles, freqs, f_lo, f_hi): whole register blocks (4 x 4 at avx512,
# 2 x 4 below) and their remainders (co 6, 5 columns), frequency ranges that start and end
# inside a vector
_PRODUCTS = [
    (2, 3, 5, 6, 7, 37, 0, 37),
    (1, 1, 4, 8, 9, 20, 3, 17),
    (3, 2, 2, 2, 1, 8, 0, 8),
    (1, 2, 9, 4, 40, 5, 1, 2),
    (2, 1, 3, 1, 3, 11, 11, 11),
    # one input channel, 3 outputs, 7 columns; a range inside one block of every level
    (1, 1, 1, 3, 7, 19, 5, 13),
    (2, 1, 3, 7, 5, 9, 1, 6),
    (1, 1, 1, 4, 1, 13, 0, 13),  # x one row (its stride says nothing), y four
]


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("members", [1, 2])  # a team's members: one call for all their tiles
@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
@pytest.mark.parametrize("case", range(len(_PRODUCTS)))
@pytest.mark.parametrize("pad", [0, 3])  # rows of spectra padded apart (fft.spread_empty)
def test_the_compiled_product_is_the_per_frequency_matrix_product(level, members, dtype, case, pad):
    B, G, ci, co, T, F, lo, hi = _PRODUCTS[case]
    rng = np.random.default_rng(case)
    xs = [ref.random_array(rng, (B, G, ci, T, F + pad), dtype)[..., :F] for _ in range(members)]
    y_rows = [np.full((B, G, co, T, F + pad), 7 - 7j, dtype) for _ in range(members)]
    ys = [y[..., :F] for y in y_rows]
    h = ref.random_array(rng, (G, co, ci, F), dtype)
    lanes = _engine.product_lanes(np.dtype(dtype).itemsize)
    _level(level).product(
        xs, ys, _product_layout(h, lanes), np.dtype(dtype).itemsize // 2, B, G, ci, co, T, F, lo, hi
    )
    for x, y in zip(xs, ys):
        expected = np.einsum("gocf,bgctf->bgotf", h, x)
        assert_close(y[..., lo:hi], expected[..., lo:hi])
        assert np.all(y[..., :lo] == 7 - 7j) and np.all(y[..., hi:] == 7 - 7j)  # left alone
    assert all(np.all(y[..., F:] == 7 - 7j) for y in y_rows)  # and so are the rows' pads


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize(
    "change, message",
    [
        (dict(itemsize=2), "itemsize must be 4 or 8"),
        (dict(ci=0), "a non-positive size"),
        (dict(f_hi=6), "frequencies outside 0 .. freqs"),
        (dict(f_lo=3, f_hi=2), "frequencies outside 0 .. freqs"),
        (dict(x=[np.ones((1, 1, 2, 3, 4), np.complex64)]), r"x is not \(batch, groups, ci"),
        (dict(y=[np.ones((1, 1, 2, 3, 5), np.complex64)]), r"y is not \(batch, groups, co"),
        (dict(x=[np.ones((1, 1, 2, 3, 10), np.complex64)[..., ::2]]), r"x is not \(batch"),
        (dict(x=[np.ones((1, 1, 3, 2, 5), np.complex64).transpose(0, 1, 3, 2, 4)]), "x is not"),
        (dict(y=[np.empty((1, 1, 3, 3, 6), np.complex64)[..., :5]]), "rows lie at different"),
        (dict(y=[]), "x and y hold different numbers of arrays"),
        (dict(h=np.ones(3, np.complex64)), r"h is not \(groups, blocks, co, ci, lanes\)"),
    ],
)
def test_the_compiled_product_refuses_buffers_of_other_sizes(level, change, message):
    x, y = np.ones((1, 1, 2, 3, 5), np.complex64), np.empty((1, 1, 3, 3, 5), np.complex64)
    args = dict(
        x=[x],
        y=[y],
        h=_product_layout(np.ones((1, 3, 2, 5), np.complex64), 8),
        itemsize=4,
        B=1,
        G=1,
        ci=2,
        co=3,
        tiles=3,
        F=5,
        f_lo=0,
        f_hi=5,
    )
    loops = _level(level)
    loops.product(*args.values())
    np.testing.assert_array_equal(y, 2)
    args.update(change)
    with pytest.raises(ValueError, match=message):
        loops.product(*args.values())


@pytest.mark.parametrize("dtype", [np.float32, np.complex64, np.float64, np.complex128])
@pytest.mark.parametrize(
    "x_shape, w_shape, groups",
    [
        ((2, 18, 30, 27), (24, 9, 5, 4), 2),  # 9 x 12 channels per group: a matrix product
        ((3, 12, 700), (16, 12, 33), 1),
    ],
)
def test_fft_products_match_the_reference_either_way(loops, dtype, x_shape, w_shape, groups):
    assert _engine.uses_matmul(
        Geometry(1, x_shape[1], w_shape[0], groups, w_shape[2:], (1,), (1,), x_shape[2:], False)
    )
    rng = np.random.default_rng(7)
    x = ref.random_array(rng, x_shape, dtype)
    w = ref.random_array(rng, w_shape, dtype)
    y = specconv.conv(x, w, groups=groups, padding=2, method="fft")
    assert y.dtype == dtype
    assert_close(y, ref.conv(x, w, groups=groups, padding=2))


@pytest.mark.parametrize("dtype", [np.float32, np.complex128])
@pytest.mark.parametrize(
    "x_shape, w_shape, groups, stride",
    [
        ((2, 6, 40, 33), (8, 6, 5, 4), 1, 1),
        ((1, 8, 37, 30), (8, 2, 3, 3), 4, 2),  # strided: the product's spectra folded
        ((3, 4, 300), (4, 1, 17), 4, 1),  # depthwise: elementwise products
    ],
)
def test_spectra_padded_apart_give_the_same_numbers(
    loops, monkeypatch, dtype, x_shape, w_shape, groups, stride
):
    """Every transform's spectra spread (as if every size were a multiple of a page)."""
    monkeypatch.setattr(fft, "PAGE_BYTES", 8)
    monkeypatch.setattr(fft, "_pool", fft._PlanPool())
    rng = np.random.default_rng(3)
    x = ref.random_array(rng, x_shape, dtype)
    w = ref.random_array(rng, w_shape, dtype)
    y = specconv.conv(x, w, groups=groups, stride=stride, padding=1, method="fft")
    assert_close(y, ref.conv(x, w, groups=groups, stride=stride, padding=1))
    spread = [
        p for plans in fft._pool._free.values() for p in plans if p.direction == "FFTW_FORWARD"
    ]
    assert spread and all(not p.output_array.flags.c_contiguous for p in spread)


# A fresh process for each value of SPECCONV_SIMD: the level it selected, and its depthwise
# and product results against the same process's numpy path (odd shapes: every remainder).
_FORCED = textwrap.dedent("""
    import json
    import numpy as np
    import specconv
    from specconv import _compiled
    rng = np.random.default_rng(3)
    cases = [  # (x shape, w shape, groups, method): depthwise 5 x 3 in pairs of lines, product
        ((2, 3, 13, 37), (6, 1, 5, 3), 3, "direct"),
        ((1, 9, 21, 19), (11, 9, 3, 4), 1, "fft"),  # 9 x 11 channels: a matrix product
    ]
    worst = {}
    for dtype in ("float32", "float64", "complex64", "complex128"):
        for x_shape, w_shape, groups, method in cases:
            if method == "direct" and dtype.startswith("complex"):
                continue  # the compiled depthwise loops take real data only
            x = rng.standard_normal(x_shape).astype(dtype)
            w = rng.standard_normal(w_shape).astype(dtype)
            if dtype.startswith("complex"):
                x = x + 1j * rng.standard_normal(x_shape).astype(dtype)
            loops = _compiled.loops
            y = specconv.conv(x, w, groups=groups, padding=2, method=method)
            _compiled.loops = None
            expected = specconv.conv(x, w, groups=groups, padding=2, method=method)
            _compiled.loops = loops
            err = float(np.max(np.abs(y - expected)) / np.max(np.abs(expected)))
            worst[dtype] = max(worst.get(dtype, 0.0), err)
    print(json.dumps({"level": _compiled.level, "worst": worst}))
""")


@pytest.mark.parametrize("value", [*LEVELS, "off", "auto"])
def test_a_level_forced_by_the_environment_computes_the_numpy_paths_numbers(value):
    if value in LEVELS:
        _level(value)  # skips where this CPU does not run it
    env = dict(os.environ, SPECCONV_SIMD=value.upper() if value == "avx2" else value)
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", _FORCED],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    best = _compiled.levels()[0] if _compiled.levels() else None
    assert result["level"] == {"off": None, "auto": best}.get(value, value)
    for dtype, err in result["worst"].items():
        assert err <= rtol(dtype), (dtype, err)


@pytest.mark.parametrize("value", ["avx1024", "on", "3"])
def test_an_unknown_level_in_the_environment_warns_and_takes_the_best(value, monkeypatch):
    monkeypatch.setenv("SPECCONV_SIMD", value)
    with pytest.warns(
        RuntimeWarning,
        match=rf"SPECCONV_SIMD environment variable\. Allowed "
        rf"values on this machine are 'auto', 'off'.*"
        rf"but got {value!r} instead; using 'auto'",
    ):
        assert _compiled._from_environment() == "auto"


def test_a_level_this_cpu_does_not_run_warns(monkeypatch):
    monkeypatch.setattr(_compiled, "levels", lambda: ("baseline",))
    monkeypatch.setenv("SPECCONV_SIMD", "avx512")
    with pytest.warns(RuntimeWarning, match="are 'auto', 'off' and 'baseline', but got 'avx512'"):
        assert _compiled._from_environment() == "auto"


@pytest.mark.parametrize("value, expected", [("off", "off"), (" Auto ", "auto"), ("", "auto")])
def test_the_environment_variable_takes_off_and_auto_in_any_case(value, expected, monkeypatch):
    monkeypatch.setenv("SPECCONV_SIMD", value)
    assert _compiled._from_environment() == expected


def test_select_sets_the_level_and_refuses_unknown_ones(monkeypatch):
    monkeypatch.setattr(_compiled, "loops", _compiled.loops)
    monkeypatch.setattr(_compiled, "level", _compiled.level)
    assert _compiled.select("off") is None and _compiled.level is None
    for name in _compiled.levels():
        assert _compiled.select(name) is _compiled.loops and _compiled.level == name
        assert _compiled.loops.level == name
    with pytest.raises(ValueError, match=r"'name' parameter\. Allowed values are 'auto', 'off'"):
        _compiled.select("avx1024")
    with pytest.raises(ValueError, match="'level' parameter"):
        _compiled.loops_at("off")


def test_use_says_no_without_loops_or_for_a_losing_loop(monkeypatch):
    monkeypatch.setattr(_compiled, "loops", object())
    monkeypatch.setattr(_compiled, "losing", {("product", "complex64")})
    assert _compiled.use("depthwise", np.float32) and _compiled.use("product", "complex128")
    assert not _compiled.use("product", np.complex64)
    monkeypatch.setattr(_compiled, "loops", None)
    assert not _compiled.use("depthwise", np.float32)
