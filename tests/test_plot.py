"""specconv.plot: the figures render with the expected panels, titles and drawn data.

No image baselines: the tests count axes, read titles, and check that what is drawn is the
layer's kernels and frequency response (recomputed independently with numpy).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402

from specconv import SpectralConv, SpectralConvTranspose  # noqa: E402
from specconv.plot import plot_frequency_response, plot_layer, plot_signals  # noqa: E402
from specconv.signal import VectorSignal  # noqa: E402

SHADE = to_rgba("0.85")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def is_shaded(ax):
    return ax.get_facecolor() == SHADE


# -- plot_layer -----------------------------------------------------------------------------------
def test_layer_grid_with_stacks_and_group_blocks(rng):
    layer = SpectralConv(rng.standard_normal((4, 2, 9)), groups=2, padding="same")
    x = rng.standard_normal((4, 100))
    fig = plot_layer(layer, x)
    assert fig.get_suptitle() == "SpectralConv: 4 × 4 kernels of size (9,), groups=2"
    assert len(fig.axes) == 16 + 4 + 4
    cells = fig.axes[:16]
    shaded = np.array([is_shaded(ax) for ax in cells]).reshape(4, 4)
    block = np.kron(np.eye(2, dtype=bool), np.ones((2, 2), dtype=bool))
    np.testing.assert_array_equal(shaded, ~block)
    # the drawn taps are the weights: row 3, column 2 is weight[3, 0] (second group)
    np.testing.assert_allclose(cells[3 * 4 + 2].lines[0].get_ydata(), layer.weight[3, 0])
    assert all(not ax.lines for ax, s in zip(cells, shaded.ravel()) if s)
    titles = [ax.get_title() for ax in fig.axes[16:20]]
    assert titles == ["x0", "x1", "x2", "x3"]
    outputs = fig.axes[20:]
    assert [ax.get_ylabel() for ax in outputs] == ["y0", "y1", "y2", "y3"]
    np.testing.assert_allclose(outputs[2].lines[0].get_ydata(), layer(x)[2])


def test_layer_stacks_take_names_from_vector_signals(rng):
    x = VectorSignal(rng.standard_normal((2, 60)), ("Cz", "Pz"), sfreq=100.0)
    y = VectorSignal(rng.standard_normal((1, 60)), ("mix",), sfreq=100.0)
    fig = plot_layer(rng.standard_normal((1, 2, 3)), x, y)
    assert [ax.get_title() for ax in fig.axes[2:4]] == ["Cz", "Pz"]
    assert fig.axes[4].get_ylabel() == "mix"


def test_layer_alone_and_with_given_output(rng):
    w = rng.standard_normal((3, 2, 5))
    assert len(plot_layer(w).axes) == 6
    fig = plot_layer(w, y=rng.standard_normal((3, 50)))
    assert len(fig.axes) == 6 + 3
    assert fig.get_suptitle().startswith("SpectralConv: 3 × 2 kernels")
    assert plot_layer(w, title="mixing").get_suptitle() == "mixing"


def test_layer_2d_complex_kernels_are_images(rng):
    w = rng.standard_normal((2, 2, 3, 5)) + 1j * rng.standard_normal((2, 2, 3, 5))
    layer = SpectralConv(w, padding="same", padding_mode="circular")
    x = rng.standard_normal((2, 16, 12)) + 0j
    fig = plot_layer(layer, x)
    assert len(fig.axes) == 4 + 2 + 2
    for ax in fig.axes:
        assert len(ax.images) == 1
    np.testing.assert_allclose(fig.axes[1].images[0].get_array(), np.abs(w[0, 1]))


def test_layer_transposed_shows_its_kernel_matrix(rng):
    layer = SpectralConvTranspose(rng.standard_normal((4, 3, 5)), groups=2)  # 4 -> 6
    assert (layer.in_channels, layer.out_channels) == (4, 6)
    fig = plot_layer(layer)
    assert fig.get_suptitle().startswith("SpectralConvTranspose: 6 × 4 kernels")
    assert len(fig.axes) == 6 * 4
    sums = np.array(
        [ax.lines[0].get_ydata().sum() if ax.lines else 0.0 for ax in fig.axes]
    ).reshape(6, 4)
    # the entry (o, c) drawn sums to the layer's response at DC (zero off the blocks)
    np.testing.assert_allclose(sums, layer.frequency_response(8)[0].real, atol=1e-12)


def test_layer_large_matrix_becomes_a_norm_image(rng):
    w = rng.standard_normal((32, 8, 5))
    fig = plot_layer(SpectralConv(w, groups=4), rng.standard_normal((32, 40)))
    assert len(fig.axes) == 2  # the image and its colorbar
    image = fig.axes[0].images[0].get_array()
    assert image.shape == (32, 32)
    assert np.ma.count_masked(image) == 32 * 32 - 4 * 8 * 8
    np.testing.assert_allclose(image[0, 0], np.linalg.norm(w[0, 0]))


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"layer": "conv"}, TypeError, "layer must be a SpectralConv"),
        ({"x": np.zeros((3, 10))}, ValueError, r"x must have C_in = 2 channels on axis 0"),
        ({"x": np.zeros((2, 2, 10))}, ValueError, r"x must be one unbatched signal"),
        ({"y": np.zeros((2, 10))}, ValueError, r"y must have C_out = 3 channels"),
        ({"x": np.zeros(10)}, ValueError, r"x must have shape \(C, \*spatial\)"),
    ],
)
def test_layer_errors(rng, kwargs, err, match):
    kwargs.setdefault("layer", rng.standard_normal((3, 2, 5)))
    with pytest.raises(err, match=match):
        plot_layer(**kwargs)


# -- plot_frequency_response ----------------------------------------------------------------------
def test_frequency_response_1d_draws_magnitude_and_phase(rng):
    w = rng.standard_normal((2, 3, 7))
    fig = plot_frequency_response(w, 64, sfreq=200.0)
    assert [sub.get_suptitle() for sub in fig.subfigs] == ["magnitude (dB)", "phase (rad)"]
    assert len(fig.axes) == 2 * 6
    mag_axes = fig.subfigs[0].axes
    assert [ax.get_title() for ax in mag_axes] == ["H00", "H01", "H02", "H10", "H11", "H12"]
    line = mag_axes[4].lines[0]  # H11
    taps = w[1, 1]
    # cross-correlation: H(f) = sum_m h[m] exp(+2 pi i f m / n)
    expected = np.fft.rfft(taps, 64).conj()
    np.testing.assert_allclose(line.get_xdata(), np.fft.rfftfreq(64, 1 / 200.0))
    np.testing.assert_allclose(line.get_ydata(), 20 * np.log10(np.abs(expected)), atol=1e-9)
    phase = fig.subfigs[1].axes[4].lines[0].get_ydata()
    np.testing.assert_allclose(np.exp(1j * phase), np.exp(1j * np.angle(expected)), atol=1e-9)
    assert mag_axes[-1].get_xlabel() == "Hz"


def test_frequency_response_groups_linear_and_complex(rng):
    layer = SpectralConv(rng.standard_normal((4, 1, 5)) + 1j, groups=4)
    fig = plot_frequency_response(layer, 32, db=False)
    assert fig.subfigs[0].get_suptitle() == "magnitude"
    axes = fig.subfigs[0].axes
    assert len(axes) == 16
    assert [is_shaded(ax) for ax in axes] == list(~np.eye(4, dtype=bool).ravel())
    x = axes[0].lines[0].get_xdata()
    assert x.size == 32 and x[0] == -0.5  # complex: whole, centred
    # frequency labels under the lowest drawn cell of each column (here the diagonal)
    assert axes[0].get_xlabel() == axes[15].get_xlabel() == "cycles/sample"
    assert axes[12].get_xlabel() == ""


def test_frequency_response_2d_images(rng):
    layer = SpectralConv(rng.standard_normal((2, 2, 3, 3)), padding=1)
    fig = plot_frequency_response(layer, (16, 12))
    assert len(fig.axes) == 8
    image = fig.subfigs[0].axes[0].images[0].get_array()
    assert image.shape == (16, 12)
    H = np.fft.fftshift(layer.frequency_response((16, 12), whole=True)[..., 0, 0])
    np.testing.assert_allclose(image, 20 * np.log10(np.abs(H)), atol=1e-9)


def test_frequency_response_refuses_huge_matrices(rng):
    with pytest.raises(ValueError, match=r"12 × 2 kernels; .* at most max_channels=8"):
        plot_frequency_response(rng.standard_normal((12, 2, 3)), 16)


# -- plot_signals ---------------------------------------------------------------------------------
def test_signals_two_stacks(rng):
    before = rng.standard_normal((3, 400))
    fig = plot_signals(before, before[:2] * 2, sfreq=100.0, labels=("raw", "filtered"))
    assert len(fig.axes) == 5
    assert fig.axes[0].get_title() == "raw" and fig.axes[3].get_title() == "filtered"
    np.testing.assert_allclose(fig.axes[2].lines[0].get_xdata(), np.arange(400) / 100.0)
    assert fig.axes[2].get_xlabel() == "time (s)"
    np.testing.assert_allclose(fig.axes[4].lines[0].get_ydata(), before[1] * 2)


def test_signals_from_vector_signal_and_truncation(rng):
    sig = VectorSignal(rng.standard_normal((20, 50)), tuple(f"E{i}" for i in range(20)), sfreq=10.0)
    fig = plot_signals(sig, max_channels=4)
    assert len(fig.axes) == 4
    assert fig.axes[0].get_title() == "before (first 4 of 20)"
    assert [ax.get_ylabel() for ax in fig.axes] == ["E0", "E1", "E2", "E3"]
    np.testing.assert_allclose(fig.axes[0].lines[0].get_xdata()[-1], 4.9)


def test_signals_images(rng):
    images = rng.standard_normal((2, 8, 6)) + 1j * rng.standard_normal((2, 8, 6))
    fig = plot_signals(images, images)
    assert len(fig.axes) == 4
    np.testing.assert_allclose(fig.axes[1].images[0].get_array(), np.abs(images[1]))


def test_signals_errors(rng):
    with pytest.raises(ValueError, match=r"before must have shape \(C, \*spatial\)"):
        plot_signals(np.zeros(5))
    with pytest.raises(ValueError, match="labels must be a tuple of 2 str"):
        plot_signals(np.zeros((1, 5)), np.zeros((1, 5)), labels=("only",))


# -- optional dependency --------------------------------------------------------------------------
def test_import_does_not_load_matplotlib():
    code = "import sys, specconv, specconv.plot; print('matplotlib' in sys.modules)"
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    assert out.stdout.strip() == "False"


def test_missing_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r'pip install "specconv\[plot\]"'):
        plot_signals(np.zeros((1, 5)))
