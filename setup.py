"""specconv's one compiled module; everything else about the package is in pyproject.toml.

The module is optional: without a C compiler the install still succeeds (setuptools says the
build failed) and the direct method runs its numpy loops instead, slower, with the same results.
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
