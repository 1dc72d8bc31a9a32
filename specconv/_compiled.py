"""specconv's compiled loops (``_simd.c``) at one instruction-set level, or None.

The engine and the direct method look them up here, at call time, so that one switch (the
tests set ``loops`` to None) runs the numpy code they stand in for. Same results either way.

``_simd`` holds every loop once per level: on x86-64 "avx512" (x86-64-v4), "avx2"
(x86-64-v3) and "baseline" (plain x86-64), elsewhere "baseline" alone. At import the
environment variable ``SPECCONV_SIMD`` picks one: "auto" (the default: the best level this CPU
runs), "off" (no compiled loops: the numpy/BLAS path) or a level's name. ``loops`` is None
where it says "off" or where the install had no C compiler.
"""

from __future__ import annotations

import os
import types
import warnings
from typing import Any

import numpy as np

from ._validate import check_option

try:
    from . import _simd
except ImportError:  # pragma: no cover - an install without a C compiler
    _simd = None

#: The variable that picks the level at import.
ENVIRONMENT = "SPECCONV_SIMD"


def levels():
    """The levels this CPU runs, best first; empty where the module was not built."""
    return () if _simd is None else tuple(_simd.supported())


def choices():
    """What ``SPECCONV_SIMD`` and :func:`select` accept on this machine."""
    return ("auto", "off", *levels())


def loops_at(name):
    """The loops of level ``name`` (one of :func:`levels`): ``depthwise`` and ``product``."""
    if not levels():
        raise ValueError(f"No compiled levels: specconv._simd was not built (got {name!r}).")
    check_option("level", name, levels())
    return types.SimpleNamespace(
        level=name,
        depthwise=getattr(_simd, f"depthwise_{name}"),
        product=getattr(_simd, f"product_{name}"),
    )


def select(name="auto"):
    """Use the loops of level ``name`` ("auto": the best; "off": none) from now on.

    Sets ``loops`` and ``level`` and returns ``loops``. ValueError for a level this CPU does
    not run (see :func:`choices`).
    """
    global loops, level
    check_option("name", name, choices())
    if name == "auto":
        name = levels()[0] if levels() else "off"
    loops = None if name == "off" else loops_at(name)
    level = None if loops is None else name
    return loops


def _from_environment():
    """``SPECCONV_SIMD``'s level, or "auto" with a warning when this machine has no such."""
    value = os.environ.get(ENVIRONMENT, "auto").strip().lower() or "auto"
    allowed = choices()
    if value in allowed:
        return value
    listed = ", ".join(repr(a) for a in allowed[:-1]) + f" and {allowed[-1]!r}"
    warnings.warn(
        f"Invalid value for the {ENVIRONMENT} environment variable. Allowed values on this "
        f"machine are {listed}, but got {value!r} instead; using 'auto'.",
        RuntimeWarning,
        stacklevel=2,
    )
    return "auto"


#: The selected level's name, or None (see ``select``).
level: str | None = None
#: The selected level's ``depthwise`` and ``product``, or None (the numpy/BLAS path); Any: a
#: C extension module without stubs, whose callers check for None first
loops: Any = None
select(_from_environment())


#: (loop, dtype name) pairs measured slower than the numpy/BLAS path on this machine; filled by
#: the calibration, never by hand.
losing: set[tuple[str, str]] = set()


def use(loop, dtype):
    """Whether the compiled ``loop`` ("depthwise" or "product") runs for arrays of ``dtype``."""
    return loops is not None and (loop, np.dtype(dtype).name) not in losing
