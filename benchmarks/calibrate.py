"""Measure the per-operation times of specconv's cost model on this machine.

    python benchmarks/calibrate.py [--precision single|double]

The same as ``specconv calibrate``: the measuring lives in ``specconv/_calibration.py``, which
specconv runs by itself the first time a call needs a precision's constants and stores in its
cache directory. This prints each constant as measured here next to the shipped one, and
whether the compiled loops beat the numpy/BLAS code they replace on this machine.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from specconv.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["calibrate", *sys.argv[1:]]))
