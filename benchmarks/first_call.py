"""First call against warm call, in fresh processes: on a machine that never ran specconv
(an empty cache directory: the calibration, FFTW planning and the kernel spectra all happen in
the first call) and on a calibrated one (a new shape: planning and spectra only).

    python benchmarks/first_call.py [--dtype float32] [--repeat 3]

Targets (issue 18): first - warm <= 2 s with an empty cache directory, <= 1 s once calibrated.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: (name, x shape, weight shape, groups): a layer per family
LAYERS = [
    ("depthwise 64 x 129 taps, 300 x 64 x 1000", (300, 64, 1000), (64, 1, 129), 64),
    ("CNN 64 x 64 x 3 x 3, 8 x 64 x 128^2", (8, 64, 128, 128), (64, 64, 3, 3), 1),
    ("dense 1-D 64 x 64 x 1001, 64 x 70 000", (1, 64, 70_000), (64, 64, 1001), 1),
]

CHILD = """
import json, sys, time
import numpy as np
import specconv
from specconv import _calibration
x_shape, w_shape, groups, dtype, repeat = json.loads(sys.argv[1])
rng = np.random.default_rng(0)
x = rng.standard_normal(x_shape).astype(dtype)
w = rng.standard_normal(w_shape).astype(dtype)
pad = tuple(k // 2 for k in w_shape[2:])
t0 = time.perf_counter()
specconv.conv(x, w, groups=groups, padding=pad)
first = time.perf_counter() - t0
warm = []
for _ in range(repeat):
    t0 = time.perf_counter()
    specconv.conv(x, w, groups=groups, padding=pad)
    warm.append(time.perf_counter() - t0)
print(json.dumps({"first": first, "warm": sorted(warm)[len(warm) // 2],
                  "measured": _calibration.measure_count}))
"""


def run(cache, layer, dtype, repeat):
    _, x_shape, w_shape, groups = layer
    env = dict(os.environ, SPECCONV_CACHE_DIR=str(cache), PYTHONPATH=str(ROOT))
    env.pop("SPECCONV_CALIBRATE", None)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps([x_shape, w_shape, groups, dtype, repeat])],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dtype", default="float32")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    for layer in LAYERS:
        with tempfile.TemporaryDirectory() as cache:
            empty = run(cache, layer, args.dtype, args.repeat)
            # the same machine, calibrated (and with FFTW wisdom): the next layer shape is new
            calibrated = run(
                cache, LAYERS[(LAYERS.index(layer) + 1) % len(LAYERS)], args.dtype, args.repeat
            )
        for label, r in (("empty cache", empty), ("calibrated, new shape", calibrated)):
            name = (
                layer[0]
                if label == "empty cache"
                else LAYERS[(LAYERS.index(layer) + 1) % len(LAYERS)][0]
            )
            print(
                f"{args.dtype} {name:42s} {label:22s} first {r['first'] * 1e3:8.1f} ms  warm "
                f"{r['warm'] * 1e3:8.1f} ms  first - warm {(r['first'] - r['warm']):6.2f} s"
                f"  (calibrations measured: {r['measured']})",
                flush=True,
            )


if __name__ == "__main__":
    main()
