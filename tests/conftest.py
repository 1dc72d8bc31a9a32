"""Shared pytest fixtures."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# The cost model's shipped constants in every test and doctest: calibrating costs about a
# second per precision and would make choices depend on the machine (the calibration's own
# tests turn it back on, each with an empty cache directory).
os.environ["SPECCONV_CALIBRATE"] = "0"

#: The team's real test recordings, beside the repository (see its README.md for provenance).
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data():
    """Path of ``../shared/data``; skips the test when the folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared real data not available at {SHARED_DATA}")
    return SHARED_DATA


# pytest's importlib mode does not put the tests directory on sys.path: the oracle helpers
# (_reference, _tolerances) are imported from here
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(autouse=True, scope="session")
def _quick_fftw_planning():
    """Hundreds of small new shapes: FFTW_MEASURE planning dominated a cold run (34 of 74 s);
    plans measured for less time are just as correct."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPECCONV_PLANNING_TIMELIMIT", "0.002")
        yield


@pytest.fixture(autouse=True, scope="session")
def _private_wisdom_cache(tmp_path_factory):
    """The suite never reads or writes the user's FFTW wisdom (``~/.cache/specconv``): a cache
    left there by another version would make the run depend on it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPECCONV_CACHE_DIR", str(tmp_path_factory.mktemp("specconv-cache")))
        yield
