"""The layer as a linear operator: ``.H``, ``specconv.aslinearoperator`` and its adjoint.

Oracles: the dot-product test ``<A x, y> = <x, A^H y>`` over every option (hypothesis), the
dense matrix of small operators built column by column (its conjugate transpose is the
adjoint, entry by entry), and the plain numpy reference for the forward products.
"""

from __future__ import annotations

import _reference as ref
import numpy as np
import pytest
import scipy.sparse.linalg
from _tolerances import assert_close, rtol
from hypothesis import given
from hypothesis import strategies as st

import specconv
from specconv import SpectralConv, SpectralConvTranspose
from specconv.linop import LayerOperator, adjoint, aslinearoperator


def _layer(cfg, dtype, method="auto", transposed=False):
    rng = np.random.default_rng(cfg["seed"])
    w = ref.random_array(rng, cfg["w_shape"], dtype)
    b = (
        ref.random_array(
            rng,
            cfg["w_shape"][1] * cfg["kwargs"]["groups"] if transposed else cfg["w_shape"][0],
            dtype,
        )
        if cfg["bias"]
        else None
    )
    cls = SpectralConvTranspose if transposed else SpectralConv
    return cls(w, b, method=method, **cfg["kwargs"]), rng


def _dot_test(A, rng, dtype):
    """|<A x, y> - <x, A^H y>| within the rounding of either product."""
    x = ref.random_array(rng, A.shape[1], dtype)
    y = ref.random_array(rng, A.shape[0], dtype)
    Ax, AHy = A.matvec(x), A.rmatvec(y)
    assert Ax.shape == (A.shape[0],) and AHy.shape == (A.shape[1],)
    lhs, rhs = np.vdot(Ax, y), np.vdot(x, AHy)
    # |<A x, y>| <= ||w||_1 ||x|| ||y|| times the copies a padding mode makes (<= 3 per axis
    # for reflect/replicate/circular): the scale of the rounding, also when both are ~0
    w = A.layer.weight
    scale = np.abs(w).sum() * np.linalg.norm(x) * np.linalg.norm(y) * 3**A.layer.ndim
    assert abs(lhs - rhs) <= rtol(dtype) * scale


# --------------------------------------------------------------------------------------------
# the dot-product test over every option


@ref.hypothesis_settings(max_examples=120)
@given(
    cfg=ref.conv_configs(),
    method=st.sampled_from(ref.METHODS),
    dtype=st.sampled_from(ref.FLOAT_DTYPES),
)
def test_conv_operator_adjoint_dot_product(cfg, method, dtype):
    """Every stride, padding (ints, pairs, "same", "valid"), dilation, groups, padding mode,
    batch, 1-3 dims and dtype; the bias (an affine part) is left out of the operator."""
    layer, rng = _layer(cfg, dtype, method)
    A = aslinearoperator(layer, cfg["x_shape"])
    assert A.dtype == np.dtype(dtype)
    _dot_test(A, rng, dtype)


@ref.hypothesis_settings(max_examples=80)
@given(
    cfg=ref.transpose_configs(),
    method=st.sampled_from(ref.METHODS),
    dtype=st.sampled_from(ref.FLOAT_DTYPES),
)
def test_transpose_operator_adjoint_dot_product(cfg, method, dtype):
    """Also output_padding >= stride (dilation > stride), whose extra outputs no input reaches."""
    layer, rng = _layer(cfg, dtype, method, transposed=True)
    _dot_test(specconv.aslinearoperator(layer, cfg["x_shape"]), rng, dtype)


@ref.hypothesis_settings(max_examples=60)
@given(cfg=ref.conv_configs(modes=("zeros",)), is_complex=st.booleans())
def test_H_is_the_adjoint_layer(cfg, is_complex):
    dtype = np.complex128 if is_complex else np.float64
    layer, rng = _layer(cfg, dtype)
    x = ref.random_array(rng, cfg["x_shape"], dtype)
    y = ref.random_array(rng, layer(x).shape, dtype)
    n = x.shape[-layer.ndim :]
    lhs = np.vdot(
        layer(x) - (0 if layer.bias is None else layer.bias.reshape((-1,) + (1,) * layer.ndim)), y
    )
    rhs = np.vdot(x, layer.H(y, output_size=n))
    scale = np.abs(layer.weight).sum() * np.linalg.norm(x) * np.linalg.norm(y)
    assert abs(lhs - rhs) <= rtol(dtype) * scale
    # and the transposed layer's H is the forward layer again (conjugated twice)
    assert_close(layer.H.H(x), ref.conv(x, layer.weight, **cfg["kwargs"]))


# --------------------------------------------------------------------------------------------
# entry by entry, on dense matrices


def _dense(A):
    return A.matmat(np.eye(A.shape[1], dtype=A.dtype))


@pytest.mark.parametrize("padding_mode", ref.PADDING_MODES)
@pytest.mark.parametrize("is_complex", [False, True])
def test_adjoint_is_the_conjugate_transpose_matrix(padding_mode, is_complex):
    rng = np.random.default_rng(7)
    dtype = np.complex128 if is_complex else np.float64
    w = ref.random_array(rng, (4, 1, 3, 2), dtype)
    layer = SpectralConv(
        w,
        stride=(2, 1),
        padding=((2, 1), (1, 0)),
        dilation=(1, 2),
        groups=2,
        padding_mode=padding_mode,
    )
    A = specconv.aslinearoperator(layer, (2, 7, 5))
    M = _dense(A)
    MH = A.H.matmat(np.eye(A.shape[0], dtype=dtype))
    np.testing.assert_allclose(MH, M.conj().T, rtol=0, atol=1e-12)
    # the forward matrix is the reference's conv, column by column
    x = ref.random_array(rng, (2, 7, 5), dtype)
    y = ref.conv(
        x,
        w,
        stride=(2, 1),
        padding=((2, 1), (1, 0)),
        dilation=(1, 2),
        groups=2,
        padding_mode=padding_mode,
    )
    assert_close((M @ x.ravel()).reshape(y.shape), y)


@pytest.mark.parametrize("padding_mode", ["reflect", "replicate", "circular"])
def test_padding_adjoint_adds_the_copies_back(padding_mode):
    """1-D, by hand: the pad's samples return to the samples they copied."""
    layer = SpectralConv(np.ones((1, 1, 1)), padding=2, padding_mode=padding_mode)
    # a 1-tap identity kernel: the layer is the padding operator itself
    y = np.zeros((1, 8))
    y[0, 0] = 1.0  # the first padded sample
    src = {"reflect": 2, "replicate": 0, "circular": 2}[padding_mode]
    expected = np.zeros((1, 4))
    expected[0, src] = 1.0
    np.testing.assert_array_equal(adjoint(layer, y, (4,)), expected)


# --------------------------------------------------------------------------------------------
# products, shapes, batching


def test_matvec_matmat_and_batch_agree_with_the_layer():
    rng = np.random.default_rng(3)
    layer = SpectralConv(
        rng.standard_normal((3, 2, 7)),
        rng.standard_normal(3),
        stride=2,
        padding="valid",
        padding_mode="reflect",
    )
    x = rng.standard_normal((4, 2, 50))  # batch 4
    A = aslinearoperator(layer, x.shape)
    y = layer(x) - layer.bias[:, None]  # the bias is not part of the linear operator
    assert A.output_shape == y.shape and A.shape == (y.size, x.size)
    assert_close((A @ x.ravel()).reshape(y.shape), y)
    X = rng.standard_normal((A.shape[1], 3))
    Y = A @ X
    for j in range(3):
        assert_close(Y[:, j], A @ X[:, j])
    Z = rng.standard_normal((A.shape[0], 3))
    XH = A.H @ Z
    for j in range(3):
        assert_close(XH[:, j], A.rmatvec(Z[:, j]))
    assert repr(A).startswith(f"<{A.shape[0]}x{A.shape[1]} LayerOperator")


def test_the_operator_is_exported_lazily_and_as_a_method():
    layer = SpectralConv(np.ones((2, 2, 3)))
    assert isinstance(specconv.aslinearoperator(layer, (2, 9)), LayerOperator)
    assert isinstance(specconv.aslinearoperator(layer, (2, 9)), specconv.LayerOperator)
    assert specconv.aslinearoperator(layer, (2, 9), dtype=np.complex64).dtype == np.complex64
    single = SpectralConv(np.ones((2, 2, 3), dtype=np.float32))
    assert specconv.aslinearoperator(single, (2, 9)).dtype == np.float32
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        specconv.nonexistent  # noqa: B018


def test_H_matches_T_for_real_weights_and_refuses_padding_modes():
    rng = np.random.default_rng(0)
    layer = SpectralConv(rng.standard_normal((3, 2, 5)), stride=2, padding=1)
    y = rng.standard_normal((3, 9))
    np.testing.assert_array_equal(layer.H(y, output_size=(20,)), layer.T(y, output_size=(20,)))
    with pytest.raises(ValueError, match="padding_mode='circular'.*aslinearoperator"):
        SpectralConv(np.ones((1, 1, 3)), padding=1, padding_mode="circular").H  # noqa: B018


@pytest.mark.parametrize(
    "input_shape, match",
    [
        ((3, 20), "C_in = 2"),
        ((2,), "1 spatial dimension"),
        ((1, 1, 2, 20), "C_in = 2"),
        ((2, 2), "empty output"),
    ],
)
def test_bad_input_shape(input_shape, match):
    layer = SpectralConv(np.ones((1, 2, 5)))
    with pytest.raises(ValueError, match=match):
        aslinearoperator(layer, input_shape)


def test_not_a_layer():
    with pytest.raises(TypeError, match="layer must be a SpectralConv or SpectralConvTranspose"):
        aslinearoperator(np.ones((1, 1, 3)), (1, 9))


# --------------------------------------------------------------------------------------------
# solvers


def test_lsqr_deconvolves_a_mixing_and_filtering_layer():
    """A 2 x 2 system with a longer output than input ("full" padding) is injective: LSQR
    recovers the input to the solver tolerance."""
    rng = np.random.default_rng(11)
    h = rng.standard_normal((2, 2, 16)) * np.exp(-np.arange(16) / 4)
    layer = SpectralConv(h, padding=15)
    x = rng.standard_normal((2, 300))
    A = specconv.aslinearoperator(layer, x.shape)
    sol = scipy.sparse.linalg.lsqr(A, layer(x).ravel(), atol=1e-12, btol=1e-12, iter_lim=2000)
    assert sol[1] in (1, 2)  # converged: an exact or least-squares solution to tolerance
    np.testing.assert_allclose(sol[0].reshape(x.shape), x, atol=1e-7)


def test_cg_on_the_normal_equations_and_gmres_on_a_square_layer():
    rng = np.random.default_rng(5)
    h = np.zeros((2, 2, 9))
    h[:, :, 4] = np.eye(2) * 2
    h += 0.1 * rng.standard_normal(h.shape)
    layer = SpectralConv(h, padding="same", padding_mode="circular")
    x = rng.standard_normal((2, 128))
    A = specconv.aslinearoperator(layer, x.shape)
    b = A @ x.ravel()
    normal = scipy.sparse.linalg.LinearOperator(
        (A.shape[1], A.shape[1]), matvec=lambda v: A.rmatvec(A.matvec(v))
    )
    x_cg, info = scipy.sparse.linalg.cg(normal, A.rmatvec(b), rtol=1e-12, maxiter=500)
    assert info == 0
    np.testing.assert_allclose(x_cg, x.ravel(), atol=1e-8)
    x_gm, info = scipy.sparse.linalg.gmres(A, b, rtol=1e-12, restart=200, maxiter=10)
    assert info == 0
    np.testing.assert_allclose(x_gm, x.ravel(), atol=1e-8)
