"""The benchmark workloads of issue 2, section 7, and their shrunk ``--quick`` versions.

A workload is a conv layer in PyTorch semantics (cross-correlation): input ``x`` of shape
``(B, C_in, *spatial)``, ``weight`` of shape ``(C_out, C_in/groups, *kernel)``, stride 1,
dilation 1, ``padding`` 0 ("valid") or "same".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    x_shape: tuple
    w_shape: tuple
    groups: int = 1
    padding: int | str = 0
    is_complex: bool = False
    target: float | None = None  # fastest peer time / specconv auto time, from the issue

    @property
    def ndim(self):
        """Number of spatial dimensions."""
        return len(self.w_shape) - 2

    @property
    def batch(self):
        return self.x_shape[0]

    @property
    def c_in(self):
        return self.x_shape[1]

    @property
    def c_out(self):
        return self.w_shape[0]

    @property
    def cin_per_group(self):
        return self.w_shape[1]

    @property
    def out_per_group(self):
        return self.c_out // self.groups

    @property
    def kernel(self):
        return tuple(self.w_shape[2:])

    @property
    def spatial(self):
        return tuple(self.x_shape[2:])

    @property
    def depthwise(self):
        """One input channel per group (depthwise, possibly with a channel multiplier)."""
        return self.cin_per_group == 1 and self.groups > 1

    def pads(self):
        """(left, right) zero padding per spatial axis, PyTorch's rule for "same"."""
        if self.padding == "same":
            return [((k - 1) // 2, k - 1 - (k - 1) // 2) for k in self.kernel]
        p = 0 if self.padding == "valid" else int(self.padding)
        return [(p, p)] * self.ndim

    def out_spatial(self):
        return tuple(
            n + lo + hi - k + 1 for n, k, (lo, hi) in zip(self.spatial, self.kernel, self.pads())
        )

    def out_shape(self):
        return (self.batch, self.c_out, *self.out_spatial())

    def direct_flops(self):
        """Floating-point operations of a direct convolution (a complex MAC counts 8)."""
        macs = (
            self.batch
            * self.c_out
            * self.cin_per_group
            * math.prod(self.kernel)
            * math.prod(self.out_spatial())
        )
        return macs * (8 if self.is_complex else 2)

    def dtype(self, real_name):
        """The array dtype for a ``--dtypes`` entry: complex workloads use the matching complex."""
        real = np.dtype(real_name)
        return np.result_type(real, np.complex64) if self.is_complex else real

    def make(self, real_name, seed=0):
        """Seeded random ``x`` and ``weight`` (weights scaled so outputs are O(1))."""
        rng = np.random.default_rng(seed)
        dtype = self.dtype(real_name)
        scale = 1.0 / math.sqrt(self.cin_per_group * math.prod(self.kernel))

        def draw(shape, s):
            a = rng.standard_normal(shape)
            if self.is_complex:
                a = a + 1j * rng.standard_normal(shape)
            return (s * a).astype(dtype)

        return draw(self.x_shape, 1.0), draw(self.w_shape, scale)

    def describe(self):
        pad = "" if self.padding in (0, "valid") else f", padding {self.padding!r}"
        grp = f", groups {self.groups}" if self.groups > 1 else ""
        kind = "complex " if self.is_complex else ""
        return f"{self.title}: {kind}x {self.x_shape}, weight {self.w_shape}{grp}{pad}"


def _w4(batch, c, size, kernels, groups):
    targets = {3: 0.5, 7: 1.0}
    return [
        Workload(
            f"W4-k{k}-g{g}",
            f"CNN {k}x{k}",
            (batch, c, size, size),
            (c, c // g, k, k),
            groups=g,
            padding="same",
            target=targets.get(k, 2.0),
        )
        for k in kernels
        for g in groups
    ]


def _all(eeg, stereo, mri, cnn, vol, kernels=(3, 7, 15, 31)):
    b1, c1, n1, k1 = eeg
    n2, k2 = stereo
    c3, n3, co3 = mri
    b4, c4, n4, g4 = cnn
    c5, n5, k5 = vol
    return [
        Workload("W1a", "EEG dense", (b1, c1, n1), (c1, c1, k1), target=3.0),
        Workload("W1b", "EEG depthwise", (b1, c1, n1), (c1, 1, k1), groups=c1, target=1.5),
        Workload("W1c", "EEG filter bank", (b1, c1, n1), (4 * c1, 1, k1), groups=c1, target=1.5),
        Workload("W2", "true-stereo reverb", (1, 2, n2), (2, 2, k2), target=2.0),
        Workload(
            "W3a", "MRI GRAPPA-like", (1, c3, n3, n3), (c3, c3, 7, 7), is_complex=True, target=3.0
        ),
        Workload(
            "W3b",
            "MRI coil compression",
            (1, c3, n3, n3),
            (co3, c3, 1, 1),
            is_complex=True,
            target=1.0,
        ),
        *_w4(b4, c4, n4, kernels, (1, 4, g4)),
        Workload("W5", "3-D", (1, c5, n5, n5, n5), (c5, c5, k5, k5, k5), target=3.0),
    ]


#: The sizes of issue 2.
FULL = _all(
    eeg=(1, 64, 300_000, 1001),
    stereo=(1_440_000, 96_000),
    mri=(32, 320, 8),
    cnn=(8, 64, 128, 64),
    vol=(16, 64, 9),
)

#: Smoke-test sizes: ~10x shorter signals, fewer channels, shorter kernels. Ratios mean nothing here.
QUICK = _all(
    eeg=(1, 16, 30_000, 101),
    stereo=(48_000, 960),
    mri=(8, 80, 2),
    cnn=(2, 16, 32, 16),
    vol=(4, 24, 5),
    kernels=(3, 15),
)


def select(spec, quick=False):
    """Workloads whose name starts with one of the comma-separated prefixes in ``spec``.

    ``"W1,W4-k7"`` selects W1a, W1b, W1c and every 7x7 CNN case; ``None`` selects all.
    """
    pool = QUICK if quick else FULL
    if not spec:
        return list(pool)
    prefixes = [p.strip() for p in spec.split(",") if p.strip()]
    chosen = [w for w in pool if any(w.name.startswith(p) for p in prefixes)]
    unknown = [p for p in prefixes if not any(w.name.startswith(p) for w in pool)]
    if unknown:
        names = ", ".join(w.name for w in pool)
        raise SystemExit(f"--workloads: no workload matches {unknown}; known: {names}")
    return chosen


def by_name(name, quick=False):
    for w in QUICK if quick else FULL:
        if w.name == name:
            return w
    raise KeyError(name)
