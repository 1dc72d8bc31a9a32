"""PyTorch drop-ins: conv layers whose forward and backward run through specconv (CPU).

PyTorch conv-layer semantics. :class:`Conv1d`, :class:`Conv2d`, :class:`Conv3d`,
:class:`ConvTranspose1d`, :class:`ConvTranspose2d` and :class:`ConvTranspose3d` *are* torch's
modules (subclasses: the same constructor arguments, parameters, ``state_dict``, ``repr`` and
initialisation), with the convolution replaced by an autograd function computed by specconv:
the forward pass by :class:`~specconv.SpectralConv` / :class:`~specconv.SpectralConvTranspose`,
the backward pass by the layer's exact adjoint (input gradient),
:func:`~specconv.conv_weight_grad` (weight) and a sum (bias). Long kernels train in the
frequency domain; torch's CPU convolution is direct.

Needs the optional dependency torch (``pip install "specconv[torch]"``); ``import specconv``
never imports it. Tensors must be on the CPU; float32, float64, complex64 and complex128.
The backward pass is not itself differentiable (no double backward).

Examples
--------
>>> import torch
>>> import specconv.torch as sct
>>> _ = torch.manual_seed(0)
>>> conv = sct.Conv1d(4, 8, kernel_size=101, padding="same")
>>> x = torch.randn(2, 4, 1000, requires_grad=True)
>>> y = conv(x)
>>> y.shape
torch.Size([2, 8, 1000])
>>> y.square().sum().backward()
>>> conv.weight.grad.shape, x.grad.shape
(torch.Size([8, 4, 101]), torch.Size([2, 4, 1000]))
>>> ref = torch.nn.Conv1d(4, 8, kernel_size=101, padding="same")
>>> _ = ref.load_state_dict(conv.state_dict())         # the same parameters
>>> bool(torch.allclose(ref(x), y, atol=1e-4))
True
"""

from __future__ import annotations

import numpy as np

from . import gradients
from ._optional import soft_import
from .layers import SpectralConv, SpectralConvTranspose

torch = soft_import("torch", "torch", purpose="specconv.torch")

__all__ = [
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "ConvTranspose3d",
    "conv",
    "conv_transpose",
]


def _numpy(t, name):
    if t.device.type != "cpu":
        raise ValueError(
            f"{name} must be a CPU tensor (specconv computes on the CPU), got device "
            f"{t.device}; move it with .cpu()."
        )
    return t.detach().resolve_conj().numpy()


def _layer(weight, bias, options):
    w = _numpy(weight, "weight")
    b = None if bias is None else _numpy(bias, "bias")
    if options["transposed"]:
        return SpectralConvTranspose(
            w,
            b,
            stride=options["stride"],
            padding=options["padding"],
            output_padding=options["output_padding"],
            groups=options["groups"],
            dilation=options["dilation"],
            method=options["method"],
        )
    return SpectralConv(
        w,
        b,
        stride=options["stride"],
        padding=options["padding"],
        dilation=options["dilation"],
        groups=options["groups"],
        padding_mode=options["padding_mode"],
        method=options["method"],
    )


class _Conv(torch.autograd.Function):
    """``y = conv(x, w, b)`` (or conv_transpose) with specconv's forward and vector-Jacobian
    product; ``options`` is a dict of the layer's keyword arguments. With ``keep``, the
    forward pass keeps its input spectra for the weight gradient (see
    :class:`specconv.gradients.Pullback`)."""

    @staticmethod
    def forward(ctx, x, weight, bias, options, keep):
        layer = _layer(weight, bias, options)
        xn = _numpy(x, "input")
        ctx.kept = None
        if keep:
            y, pullback = gradients.vjp(layer, xn, method=options["method"])
            kept = pullback.saved_spectra()
            if kept is not None:
                spectra, ctx.kept = kept
                # saved as a tensor, torch frees them after the backward pass (unless the
                # graph is retained), as it frees x
                ctx.save_for_backward(x, weight, torch.from_numpy(spectra))
        else:
            y = layer(xn)
        if ctx.kept is None:
            ctx.save_for_backward(x, weight)
        ctx.options = options
        ctx.has_bias = bias is not None
        return torch.from_numpy(np.ascontiguousarray(y))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        x, weight, *spectra = ctx.saved_tensors
        opts = ctx.options
        layer = _layer(weight, None, opts)
        saved = None if ctx.kept is None else (spectra[0].numpy(), ctx.kept)
        pullback = gradients.Pullback(layer, _numpy(x, "input"), saved, opts["method"])
        g = _numpy(grad_output, "grad_output")
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.from_numpy(np.ascontiguousarray(pullback.input_grad(g)))
        if ctx.needs_input_grad[1]:
            gw = pullback.weight_grad(g)
            grad_w = torch.from_numpy(gw.astype(layer.weight.dtype, copy=False))
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = torch.from_numpy(np.ascontiguousarray(gradients.bias_grad(g, layer.ndim)))
        return grad_x, grad_w, grad_b, None, None


def _apply(x, weight, bias, options):
    # the input spectra are worth keeping only for a weight gradient that will be computed
    keep = torch.is_grad_enabled() and weight.requires_grad
    return _Conv.apply(x, weight, bias, options, keep)


def _options(
    *,
    stride,
    padding,
    dilation,
    groups,
    padding_mode="zeros",
    output_padding=0,
    transposed=False,
    method="auto",
):
    return {
        "stride": stride,
        "padding": padding,
        "dilation": dilation,
        "groups": groups,
        "padding_mode": padding_mode,
        "output_padding": output_padding,
        "transposed": transposed,
        "method": method,
    }


def conv(
    x,
    weight,
    bias=None,
    *,
    stride=1,
    padding=0,
    dilation=1,
    groups=1,
    padding_mode="zeros",
    method="auto",
):
    """``torch.nn.functional.conv{1,2,3}d`` through specconv, differentiable.

    Parameters
    ----------
    x : torch.Tensor [shape=(C_in, *spatial) or (B, C_in, *spatial)]
    weight : torch.Tensor [shape=(C_out, C_in/groups, *kernel)]
    bias : torch.Tensor [shape=(C_out,)], optional
    stride, padding, dilation, groups, padding_mode, method : see :func:`specconv.conv`

    Returns
    -------
    y : torch.Tensor

    Examples
    --------
    >>> import torch
    >>> import specconv.torch as sct
    >>> x = torch.randn(1, 2, 50, dtype=torch.float64, requires_grad=True)
    >>> w = torch.randn(3, 2, 7, dtype=torch.float64, requires_grad=True)
    >>> torch.autograd.gradcheck(lambda x, w: sct.conv(x, w, stride=2), (x, w))
    True
    """
    return _apply(
        x,
        weight,
        bias,
        _options(
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            padding_mode=padding_mode,
            method=method,
        ),
    )


def conv_transpose(
    x,
    weight,
    bias=None,
    *,
    stride=1,
    padding=0,
    output_padding=0,
    groups=1,
    dilation=1,
    method="auto",
):
    """``torch.nn.functional.conv_transpose{1,2,3}d`` through specconv, differentiable.

    Examples
    --------
    >>> import torch
    >>> import specconv.torch as sct
    >>> x = torch.randn(1, 3, 20, dtype=torch.float64, requires_grad=True)
    >>> w = torch.randn(3, 2, 4, dtype=torch.float64, requires_grad=True)
    >>> torch.autograd.gradcheck(lambda x, w: sct.conv_transpose(x, w, stride=2), (x, w))
    True
    """
    return _apply(
        x,
        weight,
        bias,
        _options(
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            output_padding=output_padding,
            transposed=True,
            method=method,
        ),
    )


def _padding_arg(module):
    """The module's padding as specconv takes it (torch keeps "same"/"valid" or d ints)."""
    return module.padding if isinstance(module.padding, str) else tuple(module.padding)


class _ConvMixin:
    """``_conv_forward`` of torch's ``_ConvNd`` replaced by specconv's autograd function."""

    def _conv_forward(self, input, weight, bias):
        return conv(
            input,
            weight,
            bias,
            stride=tuple(self.stride),
            padding=_padding_arg(self),
            dilation=tuple(self.dilation),
            groups=self.groups,
            padding_mode=self.padding_mode,
            method=self.method,
        )


class _ConvTransposeMixin:
    def forward(self, input, output_size=None):
        d = len(self.kernel_size)
        output_padding = self._output_padding(
            input, output_size, self.stride, self.padding, self.kernel_size, d, self.dilation
        )
        return conv_transpose(
            input,
            self.weight,
            self.bias,
            stride=tuple(self.stride),
            padding=tuple(self.padding),
            output_padding=tuple(output_padding),
            groups=self.groups,
            dilation=tuple(self.dilation),
            method=self.method,
        )


def _make(base, mixin, name, doc):
    def __init__(self, *args, method="auto", **kwargs):
        base.__init__(self, *args, **kwargs)
        self.method = method

    def extra_repr(self):
        return base.extra_repr(self) + f", method={self.method!r}"

    return type(
        name,
        (mixin, base),
        {"__init__": __init__, "extra_repr": extra_repr, "__doc__": doc, "__module__": __name__},
    )


_DOC = """``torch.nn.{name}`` computed by specconv (forward and backward, CPU).

The same constructor arguments, parameters and ``state_dict`` as torch's module (it is a
subclass), plus the keyword-only ``method`` ({{"auto", "fft", "direct"}}, as
:class:`~specconv.SpectralConv`). Swap it for torch's in a model: load the same
``state_dict`` and the outputs and gradients agree to rounding.
"""

Conv1d = _make(torch.nn.Conv1d, _ConvMixin, "Conv1d", _DOC.format(name="Conv1d"))
Conv2d = _make(torch.nn.Conv2d, _ConvMixin, "Conv2d", _DOC.format(name="Conv2d"))
Conv3d = _make(torch.nn.Conv3d, _ConvMixin, "Conv3d", _DOC.format(name="Conv3d"))
ConvTranspose1d = _make(
    torch.nn.ConvTranspose1d,
    _ConvTransposeMixin,
    "ConvTranspose1d",
    _DOC.format(name="ConvTranspose1d"),
)
ConvTranspose2d = _make(
    torch.nn.ConvTranspose2d,
    _ConvTransposeMixin,
    "ConvTranspose2d",
    _DOC.format(name="ConvTranspose2d"),
)
ConvTranspose3d = _make(
    torch.nn.ConvTranspose3d,
    _ConvTransposeMixin,
    "ConvTranspose3d",
    _DOC.format(name="ConvTranspose3d"),
)
