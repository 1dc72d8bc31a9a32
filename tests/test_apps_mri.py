"""specconv.apps.mri: coil compression and GRAPPA, on a synthetic phantom and on real data.

The synthetic tests always run; the real-data tests use the fully sampled 8-coil brain
(BART ``full.cfl``) and the SigPy tutorial k-space from ../shared/data and skip without them.
The NRMSE and energy figures are printed (``pytest -s``) and kept under stated bounds.
"""

from __future__ import annotations

import numpy as np
import pytest

from specconv import SpectralConv
from specconv.apps import mri
from specconv.io import image_to_kspace, kspace_to_image, rss

#: max|a - b| / max|b| allowed between two float computations of the same numbers
RTOL = {np.dtype(np.complex64): 1e-5, np.dtype(np.complex128): 1e-11}


def assert_close(actual, expected):
    scale = np.abs(expected).max()
    err = np.abs(actual - expected).max() / scale
    assert err <= RTOL[np.result_type(actual, expected)], err


def phantom(n_coils=6, shape=(48, 40), dtype=np.complex128, noise=2e-3):
    """Multi-coil k-space: ellipses seen by coils on a ring (smooth |s|, phase), white noise.

    The noise (standard deviation ``noise`` per real and imaginary part, image peak ~1) keeps
    the per-position coil matrices full rank, as in real data.
    """
    ny, nx = shape
    y, x = np.meshgrid(np.linspace(-1, 1, ny), np.linspace(-1, 1, nx), indexing="ij")
    img = (
        1.0 * ((x / 0.7) ** 2 + (y / 0.85) ** 2 < 1)
        - 0.4 * (((x - 0.2) / 0.2) ** 2 + (y / 0.35) ** 2 < 1)
        + 0.3 * (((x + 0.25) / 0.15) ** 2 + ((y + 0.3) / 0.2) ** 2 < 1)
    ) * np.exp(0.5j * x)
    angles = 2 * np.pi * np.arange(n_coils) / n_coils
    sens = np.stack(
        [
            np.exp(-((x - 1.3 * np.cos(a)) ** 2 + (y - 1.3 * np.sin(a)) ** 2) / 1.2)
            * np.exp(1j * (a + 0.6 * (x * np.cos(a) + y * np.sin(a))))
            for a in angles
        ]
    )
    rng = np.random.default_rng(20240605)
    white = rng.standard_normal((n_coils,) + shape) + 1j * rng.standard_normal((n_coils,) + shape)
    return (image_to_kspace(sens * img) + noise * white).astype(dtype)


@pytest.fixture(scope="module")
def ksp():
    return phantom()


def rss_nrmse(k, ref_k):
    return mri.nrmse(rss(kspace_to_image(k)), rss(kspace_to_image(ref_k)))


# -- SVD coil compression -------------------------------------------------------------------------
def test_svd_compression_is_a_1x1_layer_with_orthonormal_rows(ksp):
    cc = mri.svd_coil_compression(ksp, 3)
    assert isinstance(cc.layer, SpectralConv)
    assert cc.layer.weight.shape == (3, 6, 1, 1) and cc.n_virtual == 3
    w = cc.matrix
    np.testing.assert_allclose(w @ w.conj().T, np.eye(3), atol=1e-12)
    assert_close(cc(ksp), np.einsum("vc,cyx->vyx", w, ksp))


def test_svd_compression_energy_matches_numpy_svd(ksp):
    s_ref = np.linalg.svd(ksp.reshape(6, -1), compute_uv=False)
    cc = mri.svd_coil_compression(ksp, 2)
    np.testing.assert_allclose(cc.singular_values, s_ref, rtol=1e-8)
    expected = np.sum(s_ref[:2] ** 2) / np.sum(s_ref**2)
    measured = np.sum(np.abs(cc(ksp)) ** 2) / np.sum(np.abs(ksp) ** 2)
    assert cc.retained_energy == pytest.approx(expected, rel=1e-10)
    assert measured == pytest.approx(expected, rel=1e-10)


def test_svd_compression_is_the_same_matrix_in_both_domains(ksp):
    cc = mri.svd_coil_compression(ksp, 4)
    assert_close(kspace_to_image(cc(ksp)), cc(kspace_to_image(ksp)))


def test_svd_compression_energy_threshold_picks_fewest_coils(ksp):
    s = np.linalg.svd(ksp.reshape(6, -1), compute_uv=False)
    fraction = np.cumsum(s**2) / np.sum(s**2)
    target = (fraction[1] + fraction[2]) / 2  # needs three coils
    assert mri.svd_coil_compression(ksp, energy=target).n_virtual == 3
    assert mri.svd_coil_compression(ksp, energy=1.0).n_virtual == 6


def test_svd_compression_keeps_float32_policy():
    k = phantom(dtype=np.complex64)
    cc = mri.svd_coil_compression(k, 2)
    assert cc.layer.weight.dtype == np.complex64 and cc(k).dtype == np.complex64


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({}, ValueError, "exactly one of n_virtual and energy"),
        ({"n_virtual": 2, "energy": 0.9}, ValueError, "exactly one of n_virtual and energy"),
        ({"n_virtual": 7}, ValueError, r"at most the number of coils \(6\), got 7"),
        ({"n_virtual": 0}, ValueError, "n_virtual must be >= 1, got 0"),
        ({"n_virtual": 2.0}, TypeError, r"n_virtual must be an int, got float \(2.0\)"),
        ({"energy": 1.5}, ValueError, r"energy must be a number in \(0, 1\], got 1.5"),
    ],
)
def test_svd_compression_errors(ksp, kwargs, err, match):
    with pytest.raises(err, match=match):
        mri.svd_coil_compression(ksp, **kwargs)


# -- geometric coil compression -------------------------------------------------------------------
def test_gcc_matrices_are_the_per_position_svd(ksp):
    gcc = mri.geometric_coil_compression(ksp, 3)
    nx = ksp.shape[-1]
    assert gcc.matrices.shape == (nx, 3, 6) and gcc.n_virtual == 3
    hybrid = np.fft.fftshift(
        np.fft.ifft(np.fft.ifftshift(ksp, axes=-1), axis=-1, norm="ortho"), axes=-1
    )
    for x in (0, nx // 3, nx // 2):
        w = gcc.matrices[x]
        np.testing.assert_allclose(w @ w.conj().T, np.eye(3), atol=1e-10)
        s = np.linalg.svd(hybrid[..., x], compute_uv=False)
        kept = np.sum(np.abs(w @ hybrid[..., x]) ** 2) / np.sum(s**2)
        assert kept == pytest.approx(np.sum(s[:3] ** 2) / np.sum(s**2), rel=1e-8)
        assert gcc.energy_per_position[x] == pytest.approx(kept, rel=1e-8)


def test_gcc_keeps_more_energy_than_svd(ksp):
    for n in (1, 2, 3):
        gcc = mri.geometric_coil_compression(ksp, n)
        measured = np.sum(np.abs(gcc(ksp)) ** 2) / np.sum(np.abs(ksp) ** 2)
        assert measured == pytest.approx(gcc.retained_energy, rel=1e-10)
        assert gcc.retained_energy > mri.svd_coil_compression(ksp, n).retained_energy


def test_gcc_alignment_makes_neighbours_close_without_losing_energy(ksp):
    aligned = mri.geometric_coil_compression(ksp, 3)
    raw = mri.geometric_coil_compression(ksp, 3, align=False)
    assert aligned.retained_energy == pytest.approx(raw.retained_energy, rel=1e-12)

    def step(m):
        return np.linalg.norm(np.diff(m, axis=0), axis=(1, 2))

    assert step(aligned.matrices).mean() < 0.5 * step(raw.matrices).mean()
    # each aligned matrix spans the same row space as the unaligned one
    p_aligned = aligned.matrices.conj().swapaxes(1, 2) @ aligned.matrices
    p_raw = raw.matrices.conj().swapaxes(1, 2) @ raw.matrices
    np.testing.assert_allclose(p_aligned, p_raw, atol=1e-9)


def test_gcc_layer_frequency_response_is_the_matrices(ksp):
    gcc = mri.geometric_coil_compression(ksp, 3)
    nx = ksp.shape[-1]
    layer = gcc.as_layer()
    assert layer.weight.shape == (3, 6, 1, nx)
    H = layer.frequency_response((1, nx))[0]  # (nx, C_v, C), DFT order
    pixel_of = (nx // 2 - np.arange(nx)) % nx
    np.testing.assert_allclose(H, gcc.matrices[pixel_of], atol=1e-12)
    assert_close(layer(ksp), gcc(ksp))


def test_gcc_applies_to_batches_and_other_ndims(ksp):
    gcc = mri.geometric_coil_compression(ksp, 2)
    batch = np.stack([ksp, 2 * ksp])
    out = gcc(batch)
    assert_close(out[1], 2 * gcc(ksp))
    three_d = ksp[:, np.newaxis].repeat(2, axis=1)  # (C, 2, ny, nx)
    assert_close(gcc.as_layer(3)(three_d)[:, 1], gcc(ksp))


def test_gcc_errors(ksp):
    with pytest.raises(ValueError, match=r"shape \(C, \.\.\., nx\)"):
        mri.geometric_coil_compression(ksp[:, 0], 2)
    with pytest.raises(ValueError, match="at most the number of coils"):
        mri.geometric_coil_compression(ksp, 9)
    gcc = mri.geometric_coil_compression(ksp, 2)
    with pytest.raises(ValueError, match="must have 40 readout samples"):
        gcc(ksp[..., :-1])
    with pytest.raises(ValueError, match="must have 6 coils"):
        gcc(ksp[:5])


# -- undersampling --------------------------------------------------------------------------------
def test_undersample_keeps_lattice_and_centre(ksp):
    out, mask = mri.undersample(ksp, 3, n_acs=8, offset=1)
    rows = np.flatnonzero(mask)
    expected = sorted(set(range(1, 48, 3)) | set(range(20, 28)))
    assert rows.tolist() == expected
    np.testing.assert_array_equal(out[:, mask], ksp[:, mask])
    assert not out[:, ~mask].any()
    assert out is not ksp


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"R": 2, "offset": 2}, r"offset must be smaller than R \(2\), got 2"),
        ({"R": 2, "n_acs": 49}, r"n_acs must be at most ny \(48\), got 49"),
        ({"R": 0}, "R must be >= 1, got 0"),
    ],
)
def test_undersample_errors(ksp, kwargs, match):
    with pytest.raises(ValueError, match=match):
        mri.undersample(ksp, **kwargs)


# -- GRAPPA ---------------------------------------------------------------------------------------
def naive_grappa_lines(ksp, acs, R, n_lines, n_read):
    """An independent GRAPPA: loop over every point, plain lstsq, no conv and no FFT.

    Returns {row: predicted (C, nx) line} for the missing rows whose sources are inside the
    matrix (lattice offset 0), with the interior readout points filled.
    """
    n_coils, n_acs, nx = acs.shape
    ny = ksp.shape[1]
    w = n_read // 2
    js = np.arange(-((n_lines - 1) // 2), n_lines // 2 + 1)
    out = {}
    for d in range(1, R):
        dys = [R * j - d for j in js]

        def sources(block, ky, kx):
            return np.concatenate(
                [block[:, ky + dy, kx + dx] for dy in dys for dx in range(-w, w + 1)]
            )

        rows, targets = [], []
        for ky in range(n_acs):
            if min(ky + dy for dy in dys) < 0 or max(ky + dy for dy in dys) >= n_acs:
                continue
            for kx in range(w, nx - w):
                rows.append(sources(acs, ky, kx))
                targets.append(acs[:, ky, kx])
        weights = np.linalg.lstsq(np.array(rows), np.array(targets), rcond=None)[0]
        for ky in range(d, ny, R):
            if min(ky + dy for dy in dys) < 0 or max(ky + dy for dy in dys) >= ny:
                continue
            line = np.zeros((n_coils, nx), dtype=complex)
            for kx in range(w, nx - w):
                line[:, kx] = sources(ksp, ky, kx) @ weights
            out[ky] = line
    return out


@pytest.mark.parametrize(("R", "kernel_size"), [(2, (2, 3)), (3, (2, 3)), (2, (3, 3))])
def test_grappa_kernel_matches_a_naive_loop(ksp, R, kernel_size):
    acs = ksp[:, 12:36]
    lattice = np.zeros_like(ksp)
    lattice[:, ::R] = ksp[:, ::R]
    kernel = mri.calibrate_grappa(acs, R, kernel_size=kernel_size, reg=0.0)
    filled = kernel.kspace(lattice)
    expected = naive_grappa_lines(lattice, acs, R, *kernel_size)
    assert expected
    w = kernel_size[1] // 2
    for ky, line in expected.items():
        np.testing.assert_allclose(filled[:, ky, w:-w], line[:, w:-w], rtol=1e-7, atol=1e-9)


def test_grappa_combined_layer_is_identity_plus_each_offset(ksp):
    R = 3
    kernel = mri.calibrate_grappa(ksp[:, 12:36], R)
    assert len(kernel.layers) == R - 1 and kernel.R == R and kernel.kernel_size == (2, 5)
    lattice = np.zeros_like(ksp)
    lattice[:, 1::R] = ksp[:, 1::R]  # any lattice offset
    full = kernel.kspace(lattice)
    assert_close(full[:, 1::R], lattice[:, 1::R])
    for d, layer in enumerate(kernel.layers, start=1):
        assert_close(full[:, 1 + d :: R], layer(lattice)[:, 1 + d :: R])
        hy = layer.kernel_size[0] // 2
        nonzero_rows = np.flatnonzero(np.abs(layer.weight).sum(axis=(0, 1, 3)))
        assert all((row - hy + d) % R == 0 for row in nonzero_rows)


@pytest.mark.parametrize("R", [2, 3])
@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_grappa_kspace_conv_equals_image_domain_unmixing(R, dtype):
    k = phantom(dtype=dtype)
    kernel = mri.calibrate_grappa(k[:, 12:36], R)
    lattice = np.zeros_like(k)
    lattice[:, ::R] = k[:, ::R]
    in_kspace = kernel.kspace(lattice)
    in_image = image_to_kspace(kernel.unmix(kspace_to_image(lattice)))
    assert in_kspace.dtype == in_image.dtype == dtype
    assert_close(in_image, in_kspace)
    weights = kernel.image_weights(k.shape[1:])
    assert weights.shape == (48, 40, 6, 6)
    # the per-pixel matrix at the image centre is the kernel's response at DC
    np.testing.assert_allclose(
        weights[24, 20], kernel.layer.weight.sum(axis=(2, 3)), rtol=1e-5, atol=1e-5
    )


def test_grappa_unmix_accepts_a_batch(ksp):
    kernel = mri.calibrate_grappa(ksp[:, 12:36], 2)
    img = kspace_to_image(ksp)
    out = kernel.unmix(np.stack([img, 1j * img]))
    assert_close(out[1], 1j * kernel.unmix(img))
    with pytest.raises(ValueError, match=r"images must have shape \(C, ny, nx\)"):
        kernel.unmix(img[:4])


#: measured 0.0067 and 0.0275 (zero-filled 0.067 and 0.091)
@pytest.mark.parametrize(("R", "bound"), [(2, 0.015), (3, 0.04)])
def test_grappa_reconstructs_the_phantom(ksp, R, bound):
    ksp_us, mask = mri.undersample(ksp, R, n_acs=24)
    recon = mri.grappa(ksp_us, R)
    err, err_zf = rss_nrmse(recon, ksp), rss_nrmse(ksp_us, ksp)
    print(f"phantom R={R}: GRAPPA NRMSE {err:.4f}, zero-filled {err_zf:.4f}")
    assert err < bound and err < 0.5 * err_zf
    np.testing.assert_array_equal(recon[:, mask], ksp[:, mask])  # data consistency
    via_image = mri.grappa(ksp_us, R, domain="image")
    assert_close(via_image, recon)
    np.testing.assert_array_equal(mri.grappa(ksp_us, R, mask=mask), recon)


def test_grappa_errors(ksp):
    ksp_us, mask = mri.undersample(ksp, 2, n_acs=24)
    with pytest.raises(ValueError, match="regular lattice of every R=3-th line"):
        mri.grappa(ksp_us, 3)
    with pytest.raises(ValueError, match="Invalid value for the 'domain' parameter"):
        mri.grappa(ksp_us, 2, domain="hybrid")
    with pytest.raises(ValueError, match=r"mask must be a boolean array of shape \(ny,\)"):
        mri.grappa(ksp_us, 2, mask=mask.astype(int))
    with pytest.raises(ValueError, match=r"ksp must have shape \(C, ny, nx\)"):
        mri.grappa(ksp_us[0], 2)
    with pytest.raises(ValueError, match="R must be >= 2, got 1"):
        mri.calibrate_grappa(ksp[:, 12:36], 1)
    with pytest.raises(ValueError, match="too few samples to calibrate"):
        mri.calibrate_grappa(ksp[:, 20:23], 2)
    with pytest.raises(ValueError, match=r"kernel_size\[1\] \(readout points\) must be odd"):
        mri.calibrate_grappa(ksp[:, 12:36], 2, kernel_size=(2, 4))
    with pytest.raises(ValueError, match="kernel_size must be a tuple"):
        mri.calibrate_grappa(ksp[:, 12:36], 2, kernel_size=3)
    with pytest.raises(ValueError, match="reg must be a non-negative number"):
        mri.calibrate_grappa(ksp[:, 12:36], 2, reg=-1.0)


def test_nrmse():
    assert mri.nrmse([3.0, 4.0], [3.0, 4.0]) == 0.0
    assert mri.nrmse([0.0, 0.0], [3.0, 4.0]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"same shape, got \(2,\) and \(3,\)"):
        mri.nrmse([1.0, 2.0], [1.0, 2.0, 3.0])


# -- real data ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def brain(request):
    shared = request.getfixturevalue("shared_data")
    from specconv import io

    path = shared / "mri" / "espirit_matlab_examples" / "full.cfl"
    if not path.exists():
        pytest.skip(f"{path} not available")
    k = io.read(path).data
    assert k.shape == (8, 230, 180) and k.dtype == np.complex64
    return k


#: NRMSE of the RSS image against the fully sampled RSS, 24 ACS lines (measured: 0.033 and
#: 0.055 with the default 2 x 5 kernel; zero-filled: 0.110 and 0.145)
BRAIN_BOUNDS = {2: 0.04, 3: 0.065}


@pytest.mark.parametrize("R", [2, 3])
def test_grappa_on_the_real_brain(brain, R):
    ksp_us, _ = mri.undersample(brain, R, n_acs=24)
    recon = mri.grappa(ksp_us, R)
    via_image = mri.grappa(ksp_us, R, domain="image")
    err, err_zf = rss_nrmse(recon, brain), rss_nrmse(ksp_us, brain)
    print(
        f"brain R={R}, 24 ACS lines: GRAPPA NRMSE {err:.4f} (zero-filled {err_zf:.4f}); "
        f"k-space vs image domain max diff "
        f"{np.abs(via_image - recon).max() / np.abs(recon).max():.1e}"
    )
    assert err < BRAIN_BOUNDS[R] and err < 0.5 * err_zf
    assert_close(via_image, recon)


def test_coil_compression_on_the_real_brain(brain):
    acs = brain[:, 103:127]
    energies = {}
    for n in (2, 4, 6):
        svd = mri.svd_coil_compression(acs, n)
        gcc = mri.geometric_coil_compression(acs, n)
        on_full = [np.sum(np.abs(c(brain)) ** 2) / np.sum(np.abs(brain) ** 2) for c in (svd, gcc)]
        energies[n] = on_full
        print(
            f"brain 8 -> {n} coils (ACS-calibrated), energy kept on the full data: "
            f"SVD {on_full[0]:.4f}, geometric {on_full[1]:.4f}"
        )
        assert on_full[1] > on_full[0]
    assert energies[4][1] > 0.99 and energies[4][0] > 0.97


def test_grappa_after_geometric_compression_needs_alignment(brain):
    errors = {}
    for align in (True, False):
        gcc = mri.geometric_coil_compression(brain[:, 103:127], 4, align=align)
        virtual = gcc(brain)
        ksp_us, _ = mri.undersample(virtual, 3, n_acs=24)
        errors[align] = rss_nrmse(mri.grappa(ksp_us, 3), virtual)
    print(
        f"brain 8 -> 4 geometric, GRAPPA R=3 NRMSE: aligned {errors[True]:.4f}, "
        f"unaligned {errors[False]:.4f}"
    )
    assert errors[True] < 0.065 and errors[True] < 0.8 * errors[False]


def test_sigpy_kspace_calibration_block(shared_data):
    """Second real scan: the SigPy tutorial k-space (Poisson-disc, fully sampled centre)."""
    path = shared_data / "mri" / "sigpy_mri_tutorial" / "cartesian_ksp.npy"
    if not path.exists():
        pytest.skip(f"{path} not available")
    k = np.load(path)
    sampled = np.all(k != 0, axis=0)
    cy, cx = k.shape[1] // 2, k.shape[2] // 2
    h = 0
    while sampled[cy - h - 1 : cy + h + 1, cx - h - 1 : cx + h + 1].all():
        h += 1
    block = k[:, cy - h : cy + h, cx - h : cx + h]
    assert block.shape[1] >= 20
    svd = mri.svd_coil_compression(block, 4)
    gcc = mri.geometric_coil_compression(block, 4)
    print(
        f"sigpy calibration block {block.shape}: 8 -> 4 coils keeps SVD "
        f"{svd.retained_energy:.4f}, geometric {gcc.retained_energy:.4f}"
    )
    assert gcc.retained_energy > svd.retained_energy > 0.95
    # the identity k-space conv == per-pixel image unmixing, on real data of another scan
    kernel = mri.calibrate_grappa(block, 2, kernel_size=(2, 3))
    assert_close(image_to_kspace(kernel.unmix(kspace_to_image(k))), kernel.kspace(k))
