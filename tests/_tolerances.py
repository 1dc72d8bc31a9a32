"""The one per-dtype tolerance table of the conv tests.

Errors are measured relative to the largest magnitude of the reference output, ``max|y_ref|``
(an FFT spreads its rounding error evenly over the output, so small outputs next to large ones
carry the absolute error of the large ones):

==========================  ============================
result dtype                ``max|y - y_ref| / max|y_ref|``
==========================  ============================
float64, complex128         ``<= 1e-12``
float32, complex64          ``<= 1e-5``
==========================  ============================

References are computed in float64 / complex128 from the same (possibly single-precision)
inputs, so the table bounds specconv's own rounding only.
"""

from __future__ import annotations

import numpy as np

#: ``max|y - y_ref| / max|y_ref|`` allowed, by the dtype of specconv's result.
RTOL = {
    np.dtype(np.float64): 1e-12,
    np.dtype(np.complex128): 1e-12,
    np.dtype(np.float32): 1e-5,
    np.dtype(np.complex64): 1e-5,
}


def rtol(dtype):
    """Tolerance for results of ``dtype`` (see the module docstring)."""
    return RTOL[np.dtype(dtype)]


def assert_close(actual, expected, dtype=None, *, where=None, floor=1.0):
    """Assert ``max|actual - expected| <= rtol(dtype) * max|expected|``.

    ``dtype`` defaults to ``actual.dtype``; ``where`` (boolean mask) restricts the comparison
    (the scale ``max|expected|`` is then taken over the selected entries too). When the
    expected output is exactly zero (e.g. a transposed conv whose outputs all fall between the
    strided samples), the scale is ``floor``: the magnitude of the test data (the tests use
    standard-normal inputs), since a transform's rounding scales with its inputs.
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"shape {actual.shape} != expected {expected.shape}"
    tol = rtol(actual.dtype if dtype is None else dtype)
    if where is not None:
        actual, expected = actual[where], expected[where]
    if expected.size == 0:
        return
    scale = float(np.max(np.abs(expected))) or floor
    err = float(np.max(np.abs(actual.astype(np.complex128) - expected)))
    assert err <= tol * scale, f"max abs error {err:.3g} > {tol:g} x max|y_ref| = {tol * scale:.3g}"
