"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

#: The team's real test recordings, beside the repository (see its README.md for provenance).
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data():
    """Path of ``../shared/data``; skips the test when the folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared real data not available at {SHARED_DATA}")
    return SHARED_DATA
