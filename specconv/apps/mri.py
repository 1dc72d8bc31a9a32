"""Multi-coil MRI with kernel matrices: coil compression and GRAPPA.

Coils are the channels. Cartesian k-space is ``(C, ny, nx)``: the phase-encoding axis ``ky``
(the one that is undersampled) second to last, the readout ``kx`` (always fully sampled)
last, DC in the middle as :func:`specconv.io.image_to_kspace` makes it.

Each tool is the seed's picture -- a C_out × C_in matrix at every frequency -- on MRI data:

* **SVD coil compression** is a 1 × 1 layer: one C_v × C matrix applied at every k-space
  sample (:func:`svd_coil_compression`).
* **Geometric coil compression** (Zhang et al. 2013) is one C_v × C matrix per readout
  position x. Along ``kx`` that is a conv layer whose frequency response *is* those matrices
  (:func:`geometric_coil_compression`, :meth:`GeometricCompression.as_layer`).
* A **GRAPPA** kernel is a C × C conv layer over ``(ky, kx)`` (:func:`calibrate_grappa`).
  Applied to the zero-filled k-space it fills the missing lines; its frequency response at
  the image size is the per-pixel C × C unmixing matrix of image-domain GRAPPA: the same
  mat-vec in the other domain (:meth:`GrappaKernel.image_weights`).

References
----------
Huang F. et al., "A software channel compression technique for faster reconstruction with
many channels", Magn Reson Imaging 26:133-141, 2008 (SVD compression).
Zhang T. et al., "Coil compression for accelerated imaging with Cartesian sampling",
Magn Reson Med 69:571-582, 2013 (geometric compression).
Griswold M. A. et al., "Generalized autocalibrating partially parallel acquisitions
(GRAPPA)", Magn Reson Med 47:1202-1210, 2002.
"""

from __future__ import annotations

import dataclasses
import logging
import numbers

import numpy as np

from .._validate import as_array, as_bool, check_option, result_dtype
from ..io import image_to_kspace, kspace_to_image
from ..layers import SpectralConv

logger = logging.getLogger("specconv")

__all__ = [
    "CoilCompression",
    "GeometricCompression",
    "GrappaKernel",
    "svd_coil_compression",
    "geometric_coil_compression",
    "undersample",
    "calibrate_grappa",
    "grappa",
    "nrmse",
]


# -- argument checks ---------------------------------------------------------------------------
def _kspace(name, value, ndim=None):
    arr = as_array(name, value)
    if not np.isfinite(arr).all():  # an SVD or a least-squares fit cannot use NaN or Inf
        raise ValueError(
            f"{name} must be finite; it holds "
            f"{int(np.count_nonzero(~np.isfinite(arr)))} NaN or Inf value(s)."
        )
    if ndim is None and arr.ndim < 2:
        raise ValueError(
            f"{name} must have shape (C, *spatial) with at least one spatial axis, got shape "
            f"{arr.shape}."
        )
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must have shape (C, ny, nx), got shape {arr.shape}.")
    return arr


def _int(name, value, minimum):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r}).")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}.")
    return int(value)


def _complex_dtype(arr):
    """complex64 for single-precision data, complex128 otherwise (the package dtype policy)."""
    return np.result_type(result_dtype(arr), np.complex64)


def _read_only(arr):
    arr = np.array(arr, copy=True)
    arr.flags.writeable = False
    return arr


def _centered_index(n):
    """DFT index of each centred image position: ``H[(n//2 - i) % n]`` acts at pixel ``i``.

    A circular conv over centred k-space multiplies the (centred, orthonormal) image by its
    frequency response evaluated at minus the unshifted pixel index.
    """
    return (n // 2 - np.arange(n)) % n


# -- SVD coil compression ----------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class CoilCompression:
    """An SVD coil compression: C physical coils -> C_v virtual coils by one matrix.

    Attributes
    ----------
    layer : SpectralConv
        The 1 × ... × 1 layer with weight ``(C_v, C, 1, ...)``: one C_v × C matrix with
        orthonormal rows, the same at every sample and in both domains.
    singular_values : ndarray [shape=(C,)]
        Singular values of the calibration data (coils × samples), descending.
    retained_energy : float
        Fraction of the calibration data's energy kept by the virtual coils.

    See Also
    --------
    svd_coil_compression : Builds it.
    """

    layer: SpectralConv
    singular_values: np.ndarray
    retained_energy: float

    @property
    def n_virtual(self):
        """The number of virtual coils C_v."""
        return self.layer.out_channels

    @property
    def matrix(self):
        """The C_v × C compression matrix."""
        return self.layer.weight.reshape(self.layer.weight.shape[:2])

    def __call__(self, data):
        """Compress ``data`` [shape=(C, *spatial) or (B, C, *spatial)], k-space or images.

        Examples
        --------
        >>> import numpy as np
        >>> from specconv.apps.mri import svd_coil_compression
        >>> ksp = np.random.default_rng(0).standard_normal((4, 8, 8)) + 0j
        >>> svd_coil_compression(ksp, 2)(ksp).shape
        (2, 8, 8)
        """
        return self.layer(data)


def svd_coil_compression(ksp, n_virtual=None, *, energy=None):
    """SVD coil compression as a 1 × 1 layer (Huang et al. 2008).

    The left singular vectors of the coils × samples matrix of ``ksp`` give the C_v linear
    combinations of coils that keep the most energy. The compression is one C_v × C matrix,
    the same at every sample, so it is a conv layer with 1 × 1 kernels and acts identically
    on k-space and on coil images.

    Parameters
    ----------
    ksp : array_like [shape=(C, *spatial)]
        Calibration data: the whole k-space or its autocalibration region.
    n_virtual : int, optional
        Number of virtual coils ``1 <= C_v <= C``.
    energy : float, optional
        Instead of ``n_virtual``: keep the fewest virtual coils whose energy fraction is at
        least ``energy`` (in ``(0, 1]``).

    Returns
    -------
    CoilCompression
        ``.layer`` (weight ``(C_v, C, 1, ...)``), ``.singular_values``, ``.retained_energy``.

    See Also
    --------
    geometric_coil_compression : One matrix per readout position; keeps more energy for the
        same C_v and leaves virtual coils smooth enough for GRAPPA.

    Notes
    -----
    With ``A = U S V^H`` the SVD of the ``C × N`` data matrix, the weight is
    ``U[:, :C_v]^H`` and the retained energy ``sum(s[:C_v]**2) / sum(s**2)``.

    Examples
    --------
    >>> from specconv import datasets
    >>> from specconv.apps.mri import svd_coil_compression
    >>> ksp = datasets.load("mri-bart").data          # 8-coil phantom, (8, 80, 64)
    >>> cc = svd_coil_compression(ksp, 4)
    >>> cc.layer.weight.shape
    (4, 8, 1, 1)
    >>> cc(ksp).shape
    (4, 80, 64)
    >>> round(cc.retained_energy, 2)
    0.94
    >>> svd_coil_compression(ksp, energy=0.99).n_virtual
    7
    """
    ksp = _kspace("ksp", ksp)
    n_coils = ksp.shape[0]
    if (n_virtual is None) == (energy is None):
        raise ValueError(
            "Give exactly one of n_virtual and energy, got "
            f"n_virtual={n_virtual!r} and energy={energy!r}."
        )
    u, s = _coil_svd(ksp.reshape(n_coils, -1))
    fraction = np.cumsum(s**2) / np.sum(s**2)
    if energy is not None:
        if not isinstance(energy, numbers.Real) or not 0 < energy <= 1:
            raise ValueError(f"energy must be a number in (0, 1], got {energy!r}.")
        n_virtual = int(min(np.searchsorted(fraction, energy * (1 - 1e-12)) + 1, n_coils))
    n_virtual = _int("n_virtual", n_virtual, 1)
    if n_virtual > n_coils:
        raise ValueError(
            f"n_virtual must be at most the number of coils ({n_coils}), got {n_virtual}."
        )
    weight = u[:, :n_virtual].conj().T.astype(_complex_dtype(ksp))
    weight = weight.reshape(weight.shape + (1,) * (ksp.ndim - 1))
    retained = float(fraction[n_virtual - 1])
    logger.info(
        "SVD coil compression %d -> %d coils keeps %.4f of the energy", n_coils, n_virtual, retained
    )
    return CoilCompression(SpectralConv(weight), _read_only(s), retained)


def _coil_svd(a):
    """Left singular vectors ``(..., C, C)`` and values ``(..., C)`` (descending) of ``a``.

    ``a`` is ``(..., C, N)`` with N large: the SVD of the small triangular factor of
    ``a^H = Q R`` gives the same ``U`` and ``s`` without forming an N × N or a Gram matrix
    (which would square the condition number).
    """
    a = a.astype(np.complex128)
    n_coils, n_samples = a.shape[-2:]
    r = np.linalg.qr(a.conj().swapaxes(-1, -2), mode="r")  # (..., K, C), K = min(N, C)
    u, s, _ = np.linalg.svd(r.conj().swapaxes(-1, -2), full_matrices=True)
    if n_samples < n_coils:
        s = np.concatenate([s, np.zeros(s.shape[:-1] + (n_coils - n_samples,))], axis=-1)
    return u, s


# -- geometric coil compression ----------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class GeometricCompression:
    """Geometric coil compression: one aligned C_v × C matrix per readout position.

    Attributes
    ----------
    matrices : ndarray [shape=(nx, C_v, C)]
        The compression matrix at every readout position x (centred image order), with
        orthonormal rows, aligned between neighbours so the virtual coils vary smoothly.
    retained_energy : float
        Fraction of the calibration data's energy kept (summed over x).
    energy_per_position : ndarray [shape=(nx,)]
        The same fraction at each x.

    See Also
    --------
    geometric_coil_compression : Builds it.
    """

    matrices: np.ndarray
    retained_energy: float
    energy_per_position: np.ndarray

    @property
    def n_virtual(self):
        """The number of virtual coils C_v."""
        return self.matrices.shape[1]

    def __call__(self, ksp):
        """Compress k-space ``ksp`` [shape=(C, ..., nx) or with a batch axis first].

        The readout axis is transformed to x, each position is multiplied by its matrix, and
        the result is transformed back: ``(C_v, ..., nx)`` k-space.

        Examples
        --------
        >>> import numpy as np
        >>> from specconv.apps.mri import geometric_coil_compression
        >>> ksp = np.random.default_rng(0).standard_normal((4, 6, 8)) + 0j
        >>> geometric_coil_compression(ksp, 2)(np.stack([ksp, ksp])).shape   # a batch of 2
        (2, 2, 6, 8)
        """
        ksp = _kspace("ksp", ksp)
        nx, n_virtual, n_coils = self.matrices.shape
        if ksp.shape[-1] != nx:
            raise ValueError(
                f"ksp must have {nx} readout samples (last axis) like the "
                f"calibration data, got shape {ksp.shape}."
            )
        axis = _coil_axis(ksp, n_coils)
        hybrid = np.moveaxis(kspace_to_image(ksp, axes=-1), axis, -2)  # (..., C, nx)
        out = np.einsum("xvc,...cx->...vx", self.matrices, hybrid, optimize=True)
        out = np.moveaxis(out, -2, axis).astype(_complex_dtype(ksp), copy=False)
        return image_to_kspace(out, axes=-1)

    def as_layer(self, ndim=2):
        """The same compression as a conv layer along ``kx`` (circular, full-length kernel).

        Multiplying by ``matrices[x]`` at every readout position is a circular convolution
        along ``kx`` whose frequency response at position ``x`` is ``matrices[x]``.

        Parameters
        ----------
        ndim : int
            Spatial dimensions of the k-space it will be applied to (readout last).

        Returns
        -------
        SpectralConv
            Weight ``(C_v, C, 1, ..., 1, nx)``, ``padding="same"``,
            ``padding_mode="circular"``.

        Examples
        --------
        >>> import numpy as np
        >>> from specconv import datasets
        >>> from specconv.apps.mri import geometric_coil_compression
        >>> ksp = datasets.load("mri-bart").data
        >>> gcc = geometric_coil_compression(ksp, 4)
        >>> layer = gcc.as_layer()
        >>> layer.weight.shape
        (4, 8, 1, 64)
        >>> bool(np.allclose(layer(ksp), gcc(ksp), atol=1e-5))
        True
        """
        ndim = _int("ndim", ndim, 1)
        nx = self.matrices.shape[0]
        response = self.matrices[_centered_index(nx)]  # H[f], f in DFT order
        # frequency_response(f) = sum_m tap[m] exp(+2 pi i f m / nx)  ->  taps = fft(H) / nx
        taps = np.fft.fft(response, axis=0) / nx
        left = (nx - 1) // 2  # "same" pads this much left
        taps = taps[(np.arange(nx) - left) % nx]  # kernel index k -> offset k-left
        weight = np.moveaxis(taps, 0, -1)  # (C_v, C, nx)
        weight = weight.reshape(weight.shape[:2] + (1,) * (ndim - 1) + (nx,))
        return SpectralConv(
            weight.astype(self.matrices.dtype), padding="same", padding_mode="circular"
        )


def _coil_axis(ksp, n_coils):
    # (C, *spatial) or (B, C, *spatial): the coil axis is the first one of size C
    if ksp.shape[0] == n_coils:
        return 0
    if ksp.ndim >= 3 and ksp.shape[1] == n_coils:
        return 1
    raise ValueError(
        f"ksp must have {n_coils} coils on axis 0 (or axis 1 after a batch axis), "
        f"got shape {ksp.shape}."
    )


def geometric_coil_compression(ksp, n_virtual, *, align=True):
    """Geometric coil compression along the readout (Zhang et al. 2013).

    The readout is fully sampled in Cartesian k-space, so the data can be transformed to
    ``x`` along it and compressed separately at every position, with the SVD of that
    position's coils × samples matrix. The matrices are then aligned between neighbouring
    positions (an orthogonal Procrustes rotation of each onto the previous one) so that the
    virtual coils are smooth in ``x`` -- needed for any k-space method (GRAPPA) on them.

    Parameters
    ----------
    ksp : array_like [shape=(C, ..., nx)]
        Calibration k-space, readout last and fully sampled: the whole k-space or the
        autocalibration region.
    n_virtual : int
        Number of virtual coils ``1 <= C_v <= C``.
    align : bool
        Align neighbouring matrices (default). Without it each matrix is an independent SVD
        and the virtual coils jump between positions.

    Returns
    -------
    GeometricCompression
        ``.matrices`` ``(nx, C_v, C)``, ``.retained_energy``, ``.energy_per_position``;
        call it on k-space or take :meth:`~GeometricCompression.as_layer`.

    See Also
    --------
    svd_coil_compression : One matrix for all positions: a 1 × 1 layer.

    Notes
    -----
    With ``A_x = U_x S_x V_x^H`` the data at position ``x``, ``W_x = U_x[:, :C_v]^H``.
    Alignment replaces ``W_x`` by ``P_x W_x`` with the unitary ``P_x = P Q^H`` from the SVD
    ``W_{x-1} W_x^H = P Σ Q^H``, which minimises ``||P_x W_x - W_{x-1}||_F``. The retained
    energy does not change: ``P_x`` is unitary.

    Examples
    --------
    >>> from specconv import datasets
    >>> from specconv.apps.mri import geometric_coil_compression, svd_coil_compression
    >>> ksp = datasets.load("mri-bart").data
    >>> gcc = geometric_coil_compression(ksp, 4)
    >>> gcc.matrices.shape
    (64, 4, 8)
    >>> gcc(ksp).shape
    (4, 80, 64)
    >>> gcc.retained_energy > svd_coil_compression(ksp, 4).retained_energy
    True
    """
    ksp = _kspace("ksp", ksp)
    if ksp.ndim < 3:
        raise ValueError(
            f"ksp must have shape (C, ..., nx) with a readout and at least one "
            f"phase-encoding axis, got shape {ksp.shape}."
        )
    n_coils, nx = ksp.shape[0], ksp.shape[-1]
    n_virtual = _int("n_virtual", n_virtual, 1)
    if n_virtual > n_coils:
        raise ValueError(
            f"n_virtual must be at most the number of coils ({n_coils}, axis 0 of "
            f"ksp), got {n_virtual}."
        )
    align = as_bool("align", align)
    hybrid = kspace_to_image(ksp, axes=-1).reshape(n_coils, -1, nx)
    u, s = _coil_svd(np.moveaxis(hybrid, -1, 0))  # per x: (nx, C, C)
    w = u[..., :n_virtual].conj().swapaxes(-1, -2)  # (nx, C_v, C)
    if align:
        for x in range(1, nx):
            p, _, qh = np.linalg.svd(w[x - 1] @ w[x].conj().T)
            w[x] = (p @ qh) @ w[x]
    total = np.sum(s**2, axis=-1)
    kept = np.sum(s[:, :n_virtual] ** 2, axis=-1)
    per_position = np.divide(kept, total, out=np.ones_like(kept), where=total > 0)
    retained = float(kept.sum() / total.sum())
    logger.info(
        "geometric coil compression %d -> %d coils keeps %.4f of the energy",
        n_coils,
        n_virtual,
        retained,
    )
    return GeometricCompression(
        _read_only(w.astype(_complex_dtype(ksp))), retained, _read_only(per_position)
    )


# -- GRAPPA ------------------------------------------------------------------------------------
def undersample(ksp, R, *, n_acs=24, offset=0):
    """Retrospective Cartesian undersampling along ``ky``: every R-th line plus a centre block.

    Parameters
    ----------
    ksp : array_like [shape=(C, ny, nx)]
        Fully sampled k-space, DC at ``ny // 2``.
    R : int
        Acceleration: lines ``offset, offset + R, ...`` are kept.
    n_acs : int
        Fully sampled autocalibration lines around the centre (``ny//2 - n_acs//2`` onward).
    offset : int
        First kept line, ``0 <= offset < R``.

    Returns
    -------
    ksp_us : ndarray [shape=(C, ny, nx)]
        A copy with the skipped lines set to zero.
    mask : ndarray of bool [shape=(ny,)]
        The kept lines.

    Examples
    --------
    >>> import numpy as np
    >>> from specconv.apps.mri import undersample
    >>> ksp_us, mask = undersample(np.ones((2, 12, 4)), 3, n_acs=4)
    >>> mask.astype(int)
    array([1, 0, 0, 1, 1, 1, 1, 1, 0, 1, 0, 0])
    """
    ksp = _kspace("ksp", ksp, ndim=3)
    R = _int("R", R, 1)
    n_acs = _int("n_acs", n_acs, 0)
    offset = _int("offset", offset, 0)
    ny = ksp.shape[1]
    if offset >= R:
        raise ValueError(f"offset must be smaller than R ({R}), got {offset}.")
    if n_acs > ny:
        raise ValueError(f"n_acs must be at most ny ({ny}), got {n_acs}.")
    mask = np.zeros(ny, dtype=bool)
    mask[offset::R] = True
    start = ny // 2 - n_acs // 2
    mask[start : start + n_acs] = True
    out = np.zeros_like(ksp)
    out[:, mask] = ksp[:, mask]
    return out, mask


@dataclasses.dataclass(frozen=True)
class GrappaKernel:
    """A calibrated GRAPPA kernel: C × C conv layers over ``(ky, kx)``.

    Attributes
    ----------
    R : int
        The acceleration it fills in.
    kernel_size : tuple of 2 ints
        (acquired source lines, readout points) per target point.
    layers : tuple of SpectralConv
        One layer per missing-line offset ``d = 1 .. R-1``: applied to the zero-filled
        lattice k-space, ``layers[d-1]`` predicts the lines ``d`` after each acquired line.
        Weight ``(C, C, Ky, Kx)``, ``padding="same"``, ``padding_mode="circular"``; the taps
        are zero except at ``ky`` offsets ``R·j - d``.
    layer : SpectralConv
        Their sum plus the identity at the centre tap: one layer that maps the zero-filled
        lattice k-space to the full k-space, because every offset's taps only meet acquired
        lines at the targets of that offset.

    See Also
    --------
    calibrate_grappa : Builds it.
    grappa : Calibrate and reconstruct in one call.
    """

    R: int
    kernel_size: tuple
    layers: tuple
    layer: SpectralConv

    def kspace(self, ksp):
        """Fill the missing lines of lattice k-space: ``layer(ksp)``.

        Parameters
        ----------
        ksp : array_like [shape=(C, ny, nx) or (B, C, ny, nx)]
            Zero-filled k-space holding only the regular lines (every R-th, any offset); the
            extra autocalibration lines must be zero (see :func:`grappa`).

        Returns
        -------
        ndarray, the same shape

        Examples
        --------
        >>> import numpy as np
        >>> from specconv import datasets
        >>> from specconv.apps.mri import calibrate_grappa
        >>> ksp = datasets.load("mri-bart").data
        >>> kernel = calibrate_grappa(ksp[:, 28:52], 2)
        >>> lattice = np.zeros_like(ksp)
        >>> lattice[:, 1::2] = ksp[:, 1::2]
        >>> filled = kernel.kspace(lattice)
        >>> bool(np.allclose(filled[:, 1::2], ksp[:, 1::2], atol=1e-5))   # kept as measured
        True
        >>> err = np.linalg.norm(filled[:, ::2] - ksp[:, ::2]) / np.linalg.norm(ksp[:, ::2])
        >>> print(f"{err:.2f}")            # predicted lines vs the truth (noise sd 0.01)
        0.16
        """
        return self.layer(ksp)

    def image_weights(self, shape):
        """The per-pixel C × C unmixing matrices of image-domain GRAPPA.

        The frequency response of :attr:`layer` at ``shape``, reordered to centred image
        pixels: the k-space conv is exactly this mat-vec at every pixel of the aliased coil
        images.

        Parameters
        ----------
        shape : tuple of 2 ints
            The image size ``(ny, nx)``.

        Returns
        -------
        ndarray, complex [shape=(ny, nx, C, C)]

        Examples
        --------
        >>> import numpy as np
        >>> from specconv import datasets
        >>> from specconv.io import kspace_to_image, image_to_kspace
        >>> from specconv.apps.mri import calibrate_grappa
        >>> ksp = datasets.load("mri-bart").data                  # (8, 80, 64)
        >>> kernel = calibrate_grappa(ksp[:, 28:52], 2)           # 24 ACS lines
        >>> lattice = np.zeros_like(ksp)
        >>> lattice[:, ::2] = ksp[:, ::2]
        >>> kernel.image_weights((80, 64)).shape
        (80, 64, 8, 8)
        >>> via_image = image_to_kspace(kernel.unmix(kspace_to_image(lattice)))
        >>> bool(np.allclose(via_image, kernel.kspace(lattice), atol=1e-5))
        True
        """
        shape = tuple(int(n) for n in shape)
        if len(shape) != 2:
            raise ValueError(f"shape must be (ny, nx), got {shape!r}.")
        response = self.layer.frequency_response(shape, whole=True)
        return response[np.ix_(_centered_index(shape[0]), _centered_index(shape[1]))]

    def unmix(self, images):
        """Image-domain GRAPPA: the per-pixel C × C matrices applied to aliased coil images.

        Parameters
        ----------
        images : array_like [shape=(C, ny, nx) or (B, C, ny, nx)]
            Coil images of the zero-filled lattice k-space (:func:`specconv.io.kspace_to_image`).

        Returns
        -------
        ndarray, the same shape: the unaliased coil images.

        Examples
        --------
        >>> import numpy as np
        >>> from specconv import datasets
        >>> from specconv.io import kspace_to_image, rss
        >>> from specconv.apps.mri import calibrate_grappa, nrmse
        >>> ksp = datasets.load("mri-bart").data
        >>> kernel = calibrate_grappa(ksp[:, 28:52], 2)
        >>> lattice = np.zeros_like(ksp)
        >>> lattice[:, ::2] = ksp[:, ::2]
        >>> images = kernel.unmix(kspace_to_image(lattice))     # aliased -> unaliased
        >>> bool(nrmse(rss(images), rss(kspace_to_image(ksp))) < 0.1)
        True
        """
        images = as_array("images", images)
        if images.ndim not in (3, 4) or images.shape[-3] != self.layer.in_channels:
            raise ValueError(
                f"images must have shape (C, ny, nx) or (B, C, ny, nx) with "
                f"C = {self.layer.in_channels}, got shape {images.shape}."
            )
        weights = self.image_weights(images.shape[-2:])
        out = np.einsum("yxoc,...cyx->...oyx", weights, images, optimize=True)
        return out.astype(result_dtype(images, self.layer.weight), copy=False)


def _grappa_offsets(R, n_lines):
    """ky offsets (relative to the target) of the source lines for each missing offset d."""
    js = np.arange(-((n_lines - 1) // 2), n_lines // 2 + 1)
    return {d: R * js - d for d in range(1, R)}


def calibrate_grappa(acs, R, *, kernel_size=(2, 5), reg=1e-2):
    """Calibrate a GRAPPA kernel from the autocalibration region by regularised least squares.

    For each missing-line offset ``d = 1 .. R-1``, every point of the ACS block whose
    neighbourhood fits inside it is a training pair: the target is the C coil values at
    ``(ky, kx)``; the sources are the C coil values at the ``kernel_size[0]`` acquired lines
    around it (``ky + R·j - d``) and ``kernel_size[1]`` readout points (``kx - w .. kx + w``).
    The C × (C·Ky·Kx) weights solve the Tikhonov-regularised normal equations.

    Parameters
    ----------
    acs : array_like [shape=(C, n_acs, nx)]
        The fully sampled autocalibration block (consecutive ``ky`` lines).
    R : int
        Acceleration, ``>= 2``.
    kernel_size : tuple of 2 ints
        (acquired source lines ``>= 1``, readout points, odd).
    reg : float
        Tikhonov weight relative to the mean eigenvalue of the normal matrix:
        ``λ = reg · trace(S^H S) / n_sources``.

    Returns
    -------
    GrappaKernel

    See Also
    --------
    grappa : Finds the ACS block and the lattice in undersampled data, then reconstructs.

    Notes
    -----
    With ``S`` the (training points × C·Ky·Kx) source matrix and ``T`` the (training
    points × C) targets, ``W = (S^H S + λ I)^{-1} S^H T``. The solution is written into a
    dense ``(C, C, Ky, Kx)`` cross-correlation kernel, zero at the unacquired ``ky`` offsets,
    ``Ky = 2·max|R·j - d| + 1``.

    Examples
    --------
    >>> from specconv import datasets
    >>> from specconv.apps.mri import calibrate_grappa
    >>> ksp = datasets.load("mri-bart").data
    >>> kernel = calibrate_grappa(ksp[:, 28:52], 3)
    >>> [l.weight.shape for l in kernel.layers]
    [(8, 8, 5, 5), (8, 8, 5, 5)]
    """
    acs = _kspace("acs", acs, ndim=3)
    R = _int("R", R, 2)
    if not isinstance(kernel_size, (tuple, list)) or len(kernel_size) != 2:
        raise ValueError(
            f"kernel_size must be a tuple (source lines, readout points), got {kernel_size!r}."
        )
    n_lines = _int("kernel_size[0]", kernel_size[0], 1)
    n_read = _int("kernel_size[1]", kernel_size[1], 1)
    if n_read % 2 == 0:
        raise ValueError(f"kernel_size[1] (readout points) must be odd, got {n_read}.")
    if not isinstance(reg, numbers.Real) or reg < 0:
        raise ValueError(f"reg must be a non-negative number, got {reg!r}.")
    n_coils, n_acs, nx = acs.shape
    if R > n_acs:  # no training line pairs: refuse before any work that grows with R
        raise ValueError(f"R ({R}) must be at most the number of ACS lines ({n_acs}).")
    offsets = _grappa_offsets(R, n_lines)
    half_y = int(max(np.abs(o).max() for o in offsets.values()))
    half_x = n_read // 2
    data = acs.astype(np.complex128)
    dtype = _complex_dtype(acs)
    layers, total = [], np.zeros((n_coils, n_coils, 2 * half_y + 1, n_read), dtype=dtype)
    for d, dys in offsets.items():
        lo, hi = -dys.min(), n_acs - dys.max()  # targets with all sources inside
        n_fit = max(hi - lo, 0) * max(nx - 2 * half_x, 0)
        n_src = n_coils * n_lines * n_read
        if n_fit < n_src:
            raise ValueError(
                f"acs has too few samples to calibrate a kernel of size {kernel_size} at "
                f"R={R}: {n_fit} training points for {n_src} unknowns (acs shape "
                f"{acs.shape}); use more ACS lines or a smaller kernel."
            )
        # source matrix: (training points, C, lines, readout) flattened
        cols = [
            data[:, lo + dy : hi + dy, dx : nx - 2 * half_x + dx]
            for dy in dys
            for dx in range(n_read)
        ]
        src = np.stack(cols, axis=1).reshape(n_coils, n_lines, n_read, -1)
        src = src.reshape(n_src, -1).T
        tgt = data[:, lo:hi, half_x : nx - half_x].reshape(n_coils, -1).T
        gram = src.conj().T @ src
        lam = reg * np.real(np.trace(gram)) / n_src
        sol = np.linalg.solve(gram + lam * np.eye(n_src), src.conj().T @ tgt)  # (n_src, C)
        weight = np.zeros_like(total)
        taps = sol.T.reshape(n_coils, n_coils, n_lines, n_read)
        weight[:, :, half_y + dys, :] = taps
        total += weight
        layers.append(SpectralConv(weight, padding="same", padding_mode="circular"))
        residual = np.linalg.norm(src @ sol - tgt) / np.linalg.norm(tgt)
        logger.info(
            "GRAPPA R=%d offset %d: %d training points, relative fit residual %.4f",
            R,
            d,
            n_fit,
            residual,
        )
    total[np.arange(n_coils), np.arange(n_coils), half_y, half_x] = 1.0
    layer = SpectralConv(total, padding="same", padding_mode="circular")
    return GrappaKernel(R, (n_lines, n_read), tuple(layers), layer)


def _sampled_rows(ksp, mask):
    ny = ksp.shape[1]
    if mask is None:
        return np.any(ksp != 0, axis=(0, 2))
    mask = np.asarray(mask)
    if mask.dtype != bool or mask.shape != (ny,):
        raise ValueError(
            f"mask must be a boolean array of shape (ny,) = ({ny},), got "
            f"dtype {mask.dtype} and shape {mask.shape}."
        )
    return mask


def _longest_run(rows):
    best, start = (0, 0), None
    for i, on in enumerate(np.append(rows, False)):
        if on and start is None:
            start = i
        elif not on and start is not None:
            best = max(best, (i - start, start))
            start = None
    return slice(best[1], best[1] + best[0])


def grappa(ksp, R, *, mask=None, kernel_size=(2, 5), reg=1e-2, domain="kspace"):
    """GRAPPA reconstruction of Cartesian k-space undersampled along ``ky``.

    Finds the autocalibration block (the longest run of sampled lines) and the regular
    lattice (every R-th line), calibrates the kernel on the block
    (:func:`calibrate_grappa`), fills the lattice's missing lines with it, and puts every
    measured line back (data consistency).

    Parameters
    ----------
    ksp : array_like [shape=(C, ny, nx)]
        Zero-filled k-space: the lattice lines plus the ACS block.
    R : int
        Acceleration of the lattice, ``>= 2``.
    mask : array_like of bool [shape=(ny,)], optional
        The sampled lines; default: the lines with any non-zero sample.
    kernel_size, reg
        See :func:`calibrate_grappa`.
    domain : {"kspace", "image"}
        Apply the kernel as a k-space conv, or as the per-pixel C × C unmixing of the
        aliased coil images (the same numbers up to rounding).

    Returns
    -------
    ndarray [shape=(C, ny, nx)]
        The reconstructed k-space (complex; complex64 for complex64 input).

    See Also
    --------
    undersample : Makes test data from a fully sampled scan.
    specconv.io.kspace_to_image, specconv.io.rss : To look at the result.

    Notes
    -----
    The kernel is applied as a circular conv so that it equals the image-domain product
    exactly; if ``ny`` is not a multiple of R the lattice does not wrap onto itself and the
    outermost ``ky`` lines (which carry little energy) are predicted from wrapped zeros.

    Examples
    --------
    >>> from specconv import datasets
    >>> from specconv.io import kspace_to_image, rss
    >>> from specconv.apps.mri import grappa, nrmse, undersample
    >>> ksp = datasets.load("mri-bart").data
    >>> ksp_us, mask = undersample(ksp, 2, n_acs=24)
    >>> recon = grappa(ksp_us, 2)
    >>> ref = rss(kspace_to_image(ksp))
    >>> err = nrmse(rss(kspace_to_image(recon)), ref)
    >>> err_zero_filled = nrmse(rss(kspace_to_image(ksp_us)), ref)
    >>> print(f"NRMSE: GRAPPA {err:.3f}, zero-filled {err_zero_filled:.3f}")
    NRMSE: GRAPPA 0.037, zero-filled 0.261
    """
    ksp = _kspace("ksp", ksp, ndim=3)
    R = _int("R", R, 2)
    domain = check_option("domain", domain, ("kspace", "image"))
    rows = _sampled_rows(ksp, mask)
    acs = _longest_run(rows)
    if R > len(rows):
        raise ValueError(f"R ({R}) must be at most the number of k-space lines ({len(rows)}).")
    lattice = [r for r in range(R) if rows[r::R].all()]
    if not lattice:
        raise ValueError(
            f"The sampled lines do not contain a regular lattice of every "
            f"R={R}-th line (sampled: {np.flatnonzero(rows).tolist()})."
        )
    offset = lattice[0]
    logger.info("GRAPPA: lattice offset %d, ACS lines %d:%d", offset, acs.start, acs.stop)
    kernel = calibrate_grappa(ksp[:, acs], R, kernel_size=kernel_size, reg=reg)
    regular = np.zeros_like(ksp)
    regular[:, offset::R] = ksp[:, offset::R]
    if domain == "kspace":
        out = kernel.kspace(regular)
    else:
        out = image_to_kspace(kernel.unmix(kspace_to_image(regular)))
    out = out.astype(_complex_dtype(ksp), copy=False)
    out[:, rows] = ksp[:, rows]
    return out


def nrmse(x, ref):
    """Normalised root-mean-square error ``||x - ref|| / ||ref||``.

    Examples
    --------
    >>> from specconv.apps.mri import nrmse
    >>> nrmse([1.0, 2.0, 2.0], [1.0, 2.0, 3.0])
    0.2672612419124244
    """
    x, ref = as_array("x", x), as_array("ref", ref)
    if x.shape != ref.shape:
        raise ValueError(f"x and ref must have the same shape, got {x.shape} and {ref.shape}.")
    scale = np.linalg.norm(ref)
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"ref must be finite and not all zeros (its norm is {scale}).")
    return float(np.linalg.norm(x - ref) / scale)
