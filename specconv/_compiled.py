"""specconv's compiled loops (``_simd.c``), or None where the install had no C compiler.

The engine and the direct method look them up here, at call time, so that one switch (the
tests set ``loops`` to None) runs the numpy code they stand in for. Same results either way.
"""

try:
    from . import _simd as loops
except ImportError:  # pragma: no cover - an install without a C compiler
    loops = None
