"""The geometry of one valid correlation: what every method and the cost model are given.

Every public call reduces to a valid cross-correlation of a padded input (see ``_engine``);
:class:`Geometry` holds its shapes. :func:`kernel_span` is the one place the extent of a
dilated kernel is computed.
"""

from __future__ import annotations

import dataclasses


def kernel_span(kernel_size, dilation):
    """Extent of a dilated kernel per axis: ``dilation · (kernel − 1) + 1``."""
    return tuple(d * (k - 1) + 1 for k, d in zip(kernel_size, dilation))


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Shapes of one valid correlation (everything the engine and cost model need)."""

    batch: int
    in_channels: int
    out_channels: int
    groups: int
    kernel: tuple  # taps per spatial axis (undilated)
    dilation: tuple
    stride: tuple
    padded: tuple  # padded input length per spatial axis
    is_complex: bool

    @property
    def span(self):
        """Extent of the dilated kernel per axis."""
        return kernel_span(self.kernel, self.dilation)

    @property
    def out_shape(self):
        return tuple((p - e) // s + 1 for p, e, s in zip(self.padded, self.span, self.stride))

    @property
    def ndim(self):
        return len(self.kernel)
