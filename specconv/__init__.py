"""specconv: conv layers as per-frequency channel matrices.

A conv layer ``y_i = b_i + sum_j h_ij ⋆ x_j`` is a C_out × C_in matrix of kernels applied to a
vector-valued signal. In the frequency domain it is an ordinary complex matrix at every
frequency: specconv transforms every input channel once (FFTW), multiplies by that matrix
(BLAS; block-diagonal for groups), and transforms every output channel back once, over
overlap-save tiles so memory stays bounded.

Layers of the package, each importing only from the lines below it (and, without a
circle, its own line); ``tests/test_layout.py`` reads this list and enforces it::

    cli, __main__                           the command line
    sklearn, torch                          a scikit-learn transformer; torch modules
    datasets, apps, plot, dask              samples, applications, pictures, clusters
    outofcore                               long recordings from file to file
    io                                      file formats in and out (the adapters)
    stream, kernels, signal, gradients      streaming, kernel-matrix algebra, VectorSignal,
                                            weight gradients and vector-Jacobian products
    linop                                   a layer as a scipy LinearOperator, its adjoint
    conv                                    the public functions, two semantic families
    layers                                  layer objects, validated once; compose, add, scale
    _standard_form                          a layer as taps and per-side pads; its arithmetic
    _measure                                times the engine to calibrate the cost model
    _correlate                              non-finite handling, method dispatch, spectra cache
    _polyphase                              strided layers as their phases' stride-1 layer
    _costmodel                              which method and tiles, in modelled seconds
    _calibration                            the measured constants, stored per machine
    _engine, _direct                        the methods: overlap-save FFT engine, direct taps
    fft, _compiled                          FFTW planning (only it imports pyfftw); C loops
    _geometry, _workers, _blas              a correlation's shapes, the thread pool, BLAS
    _validate, _optional, _typing           argument checks, dtype policy, optional imports,
                                            the public signatures' type aliases
    _atomic                                 all-or-nothing output files; output-is-input checks
"""

from . import _measure  # noqa: F401  (registers how the calibration measures: it sits above the engine)
from ._validate import result_dtype
from .conv import conv, conv_transpose, convolve, correlate
from .fft import get_num_threads, set_num_threads
from .gradients import conv_transpose_weight_grad, conv_weight_grad, vjp
from .layers import SpectralConv, SpectralConvTranspose
from .signal import VectorSignal
from .stream import StreamingConv

__version__ = "0.1.0"

#: imported on first use: scipy.sparse.linalg would add a sixth to ``import specconv``
_LAZY = {"aslinearoperator": "linop", "LayerOperator": "linop"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "conv",
    "conv_transpose",
    "convolve",
    "correlate",
    "conv_weight_grad",
    "conv_transpose_weight_grad",
    "vjp",
    "SpectralConv",
    "SpectralConvTranspose",
    "StreamingConv",
    "LayerOperator",
    "aslinearoperator",
    "VectorSignal",
    "result_dtype",
    "get_num_threads",
    "set_num_threads",
]
