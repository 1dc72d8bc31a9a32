"""The compiled depthwise loops (specconv/_simd.c) and the numpy loops they stand in for."""

from __future__ import annotations

import os

import numpy as np
import pytest

from specconv import _direct
from specconv._engine import Geometry

from test_chunks_and_caches import _check_direct

compiled_only = pytest.mark.skipif(_direct._simd is None, reason="specconv._simd not built")

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
]


@pytest.fixture(params=["compiled", "numpy"])
def loops(request, monkeypatch):
    if request.param == "numpy":
        monkeypatch.setattr(_direct, "_simd", None)
    elif _direct._simd is None:
        pytest.skip("specconv._simd not built")
    return request.param


@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", range(len(_CASES)))
def test_depthwise_loops_match_the_reference(loops, workers, dtype, case):
    _check_direct(*_CASES[case], dtype, workers)


def test_only_real_stride_1_layers_take_the_compiled_loops(monkeypatch):
    monkeypatch.setattr(_direct, "_simd", object())
    real = Geometry(1, 4, 4, 4, (3,), (1,), (1,), (20,), False)
    assert _direct.compiled_depthwise(real)
    assert not _direct.compiled_depthwise(Geometry(1, 4, 4, 4, (3,), (1,), (1,), (20,), True))
    assert not _direct.compiled_depthwise(Geometry(1, 4, 4, 4, (1,), (1,), (2,), (20,), False))
    monkeypatch.setattr(_direct, "_simd", None)
    assert not _direct.compiled_depthwise(real)


@compiled_only
@pytest.mark.parametrize("change, message", [
    (dict(taps=np.array([0, 5], np.int64)), "outside the padded image"),
    (dict(lines=np.array([-1], np.int64)), "outside the padded image"),
    (dict(rows=np.array([3], np.int64)), "outside the padded image"),
    (dict(itemsize=2), "itemsize must be 4 or 8"),
    (dict(w=np.ones(3)), r"w does not hold \(groups, m, taps\)"),
    (dict(out=np.empty(5)), "out does not hold whole output images"),
    (dict(x=np.ones(3, np.float32)), "x and out hold different numbers of images"),
    (dict(x=np.ones(7)), "outside the padded image"),
])
def test_the_compiled_loops_refuse_offsets_outside_their_buffers(change, message):
    # one image of 4 samples padded to 6, two taps, an output line of 4: everything in bounds
    args = dict(x=np.ones(4), out=np.empty(4), w=np.ones(2), taps=np.array([0, 2], np.int64),
                rows=np.array([1], np.int64), lines=np.array([0], np.int64), itemsize=8,
                first=0, groups=1, padded=6, length=4)
    _direct._simd.depthwise(*args.values())
    np.testing.assert_array_equal(args["out"], [1, 2, 2, 1])
    args.update(change)
    with pytest.raises(ValueError, match=message):
        _direct._simd.depthwise(*args.values())


@pytest.mark.skipif(os.environ.get("SPECCONV_REQUIRE_COMPILED") != "1",
                    reason="only where the build is known to have a C compiler (CI)")
def test_the_compiled_loops_are_built():
    assert _direct._simd is not None, "specconv._simd failed to build: see pip's output"
