"""specconv's compiled loops (``_simd.c``), or None where the install had no C compiler.

The engine and the direct method look them up here, at call time, so that one switch (the
tests set ``loops`` to None) runs the numpy code they stand in for. Same results either way.
"""

import numpy as np

try:
    from . import _simd as loops
except ImportError:  # pragma: no cover - an install without a C compiler
    loops = None


#: (loop, dtype name) pairs measured slower than the numpy/BLAS path on this machine; filled by
#: the calibration, never by hand.
losing: set[tuple[str, str]] = set()


def use(loop, dtype):
    """Whether the compiled ``loop`` ("depthwise" or "product") runs for arrays of ``dtype``."""
    return loops is not None and (loop, np.dtype(dtype).name) not in losing
