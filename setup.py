"""specconv's one compiled module; everything else about the package is in pyproject.toml.

The module (depthwise correlation and the FFT path's per-frequency product) is optional: without
a C compiler the install still succeeds (setuptools says the build failed), and numpy and BLAS
do that work instead, slower, with the same results. No -march flag: the module holds its loops
once per instruction-set level (target attributes, see _simd.c) and picks one when imported,
so one build runs on every CPU of its architecture.
"""

import sys

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "specconv._simd",
            sources=["specconv/_simd.c"],
            extra_compile_args=[] if sys.platform == "win32" else ["-O3"],
            optional=True,
        )
    ]
)
