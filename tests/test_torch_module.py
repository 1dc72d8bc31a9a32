"""specconv.torch: autograd functions and nn.Module drop-ins computed by specconv.

Oracles: torch itself -- its modules with the same state_dict (outputs and gradients), its
gradcheck (finite differences) in float64, and a small model's loss curve with torch's
layers swapped for the drop-ins.
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
sct = pytest.importorskip("specconv.torch")

import _reference as ref
from _tolerances import assert_close

_CONV = {1: "Conv1d", 2: "Conv2d", 3: "Conv3d"}
_CONV_T = {1: "ConvTranspose1d", 2: "ConvTranspose2d", 3: "ConvTranspose3d"}


def _pair(module_name, args, kwargs, dtype, seed):
    torch.manual_seed(seed)
    ours = getattr(sct, module_name)(*args, dtype=dtype, **kwargs)
    theirs = getattr(torch.nn, module_name)(*args, dtype=dtype, **kwargs)
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


def _compare(ours, theirs, x, **call):
    xa = x.clone().requires_grad_()
    xb = x.clone().requires_grad_()
    ya = ours(xa, **call)
    with warnings.catch_warnings():  # torch's note about copying for even "same" kernels
        warnings.simplefilter("ignore", UserWarning)
        yb = theirs(xb, **call)
    assert ya.shape == yb.shape and ya.dtype == yb.dtype
    g = torch.randn_like(yb)
    ya.backward(g)
    yb.backward(g)
    floor = float(np.sqrt(g.numel()))
    assert_close(ya.detach().numpy(), yb.detach().numpy().astype(np.complex128), floor=floor)
    assert_close(xa.grad.numpy(), xb.grad.numpy(), floor=floor)
    for (name, pa), (_, pb) in zip(ours.named_parameters(), theirs.named_parameters()):
        assert_close(pa.grad.numpy(), pb.grad.numpy(), floor=floor), name


@ref.hypothesis_settings(max_examples=60)
@given(
    cfg=ref.conv_configs(),
    bias=st.booleans(),
    dtype=st.sampled_from([torch.float64, torch.float32, torch.complex128]),
)
def test_conv_modules_match_torch(cfg, bias, dtype):
    kw = cfg["kwargs"]
    if isinstance(kw["padding"], tuple) and isinstance(kw["padding"][0], tuple):
        return  # torch's modules take no (before, after) pairs
    if dtype.is_complex and kw["padding_mode"] != "zeros":
        return  # torch pads complex tensors only with zeros
    d = len(cfg["w_shape"]) - 2
    C_out, ci = cfg["w_shape"][:2]
    args = (ci * kw["groups"], C_out, cfg["w_shape"][2:])
    ours, theirs = _pair(_CONV[d], args, dict(kw, bias=bias), dtype, cfg["seed"] % 2**31)
    x = torch.randn(cfg["x_shape"], dtype=dtype, generator=torch.Generator().manual_seed(1))
    _compare(ours, theirs, x)


@ref.hypothesis_settings(max_examples=40)
@given(
    cfg=ref.transpose_configs(),
    bias=st.booleans(),
    dtype=st.sampled_from([torch.float64, torch.float32]),
)
def test_conv_transpose_modules_match_torch(cfg, bias, dtype):
    kw = dict(cfg["kwargs"])
    if isinstance(kw["padding"][0], tuple):
        kw["padding"] = tuple(min(a, b) for a, b in kw["padding"])
    d = len(cfg["w_shape"]) - 2
    ci, co = cfg["w_shape"][:2]
    args = (ci, co * kw["groups"], cfg["w_shape"][2:])
    ours, theirs = _pair(_CONV_T[d], args, dict(kw, bias=bias), dtype, cfg["seed"] % 2**31)
    x = torch.randn(cfg["x_shape"], dtype=dtype, generator=torch.Generator().manual_seed(2))
    _compare(ours, theirs, x)


def test_output_size_picks_the_output_padding():
    ours, theirs = _pair("ConvTranspose1d", (3, 2, 4), {"stride": 3}, torch.float64, 0)
    x = torch.randn(2, 3, 10, dtype=torch.float64)
    _compare(ours, theirs, x, output_size=[32])


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("complex_", [False, True])
def test_gradcheck_float64(transposed, complex_):
    dtype = torch.complex128 if complex_ else torch.float64
    g = torch.Generator().manual_seed(3)
    if transposed:
        x = torch.randn(1, 4, 4, 3, dtype=dtype, generator=g, requires_grad=True)
        w = torch.randn(4, 1, 3, 2, dtype=dtype, generator=g, requires_grad=True)
        b = torch.randn(2, dtype=dtype, generator=g, requires_grad=True)

        def fn(x, w, b):
            return sct.conv_transpose(
                x,
                w,
                b,
                stride=(2, 1),
                padding=(1, 0),
                output_padding=(1, 0),
                groups=2,
                dilation=(1, 2),
            )
    else:
        x = torch.randn(1, 4, 7, 4, dtype=dtype, generator=g, requires_grad=True)
        w = torch.randn(4, 2, 3, 2, dtype=dtype, generator=g, requires_grad=True)
        b = torch.randn(4, dtype=dtype, generator=g, requires_grad=True)
        mode = "zeros" if complex_ else "reflect"

        def fn(x, w, b):
            return sct.conv(
                x, w, b, stride=(2, 1), padding=(1, 1), dilation=(1, 2), groups=2, padding_mode=mode
            )

    assert torch.autograd.gradcheck(fn, (x, w, b))


@pytest.mark.parametrize("method", ["fft", "direct"])
def test_swapping_the_conv_leaves_the_loss_curve_unchanged(method):
    """A small 1-D model trained 30 SGD steps, torch's Conv1d against the drop-in (same seed,
    same state_dict): the same losses."""

    def model(conv1d):
        torch.manual_seed(0)
        return torch.nn.Sequential(
            conv1d(2, 8, 65, padding="same", **kw),
            torch.nn.Tanh(),
            conv1d(8, 1, 33, padding=16, padding_mode="circular", **kw),
        ).double()

    def train(net):
        torch.manual_seed(1)
        x = torch.randn(4, 2, 400, dtype=torch.float64)
        target = torch.randn(4, 1, 400, dtype=torch.float64)
        opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
        losses = []
        for _ in range(30):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(net(x), target)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return np.array(losses)

    kw = {}
    reference = train(model(torch.nn.Conv1d))
    kw = {"method": method}
    ours = train(model(sct.Conv1d))
    assert reference[-1] < 0.9 * reference[0]  # it learned something
    np.testing.assert_allclose(ours, reference, rtol=1e-10)


def test_state_dict_repr_and_device_check():
    a = sct.Conv2d(3, 4, (3, 5), stride=2, bias=False, method="direct")
    b = torch.nn.Conv2d(3, 4, (3, 5), stride=2, bias=False)
    assert a.state_dict().keys() == b.state_dict().keys()
    b.load_state_dict(a.state_dict())
    assert "method='direct'" in repr(a) and repr(a).startswith("Conv2d(3, 4, kernel_size=(3, 5)")
    assert isinstance(a, torch.nn.Conv2d)
    x = torch.randn(1, 3, 10, 10).to("meta")
    with pytest.raises(ValueError, match="input must be a CPU tensor.*device meta"):
        sct.conv(x, torch.randn(4, 3, 3, 3))


def test_import_specconv_does_not_import_torch():
    code = "import sys, specconv; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(("method", "taps", "n"), [("fft", 201, 3000), ("auto", 1001, 20000)])
def test_backward_reuses_the_forward_spectra(monkeypatch, method, taps, n):
    """A long-kernel drop-in keeps its input spectra in the forward pass and its weight
    gradient reads them (no transform of the input in the backward pass); the gradients equal
    torch's. Under ``no_grad`` or with a frozen weight, nothing is kept."""
    from specconv import gradients

    calls = []
    saved = gradients._saved_weight_grad

    def spy(*args):
        calls.append(True)
        return saved(*args)

    monkeypatch.setattr(gradients, "_saved_weight_grad", spy)
    torch.manual_seed(0)
    ours = sct.Conv1d(3, 4, taps, padding="same", method=method, dtype=torch.float64)
    theirs = torch.nn.Conv1d(3, 4, taps, padding="same", dtype=torch.float64)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, 3, n, dtype=torch.float64)
    _compare(ours, theirs, x)
    assert len(calls) == 1
    # retained graph: a second backward gives the same gradients from the same saved spectra
    xa = x.clone().requires_grad_()
    y = ours(xa)
    g = torch.randn_like(y)
    first = torch.autograd.grad(y, (xa, ours.weight), g, retain_graph=True)
    second = torch.autograd.grad(y, (xa, ours.weight), g)
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    assert len(calls) == 3
    with torch.no_grad():
        ours(x)
    ours.weight.requires_grad_(False)
    ours(x.clone().requires_grad_()).sum().backward()
    assert len(calls) == 3
