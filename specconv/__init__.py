"""specconv: conv layers as per-frequency channel matrices.

A conv layer ``y_i = b_i + sum_j h_ij ⋆ x_j`` is a C_out × C_in matrix of kernels applied to a
vector-valued signal. In the frequency domain it is an ordinary complex matrix at every
frequency: specconv transforms every input channel once (FFTW), multiplies by that matrix
(BLAS; block-diagonal for groups), and transforms every output channel back once, over
overlap-save tiles so memory stays bounded.

Layers of the package, dependencies pointing down only::

    cli, io/, datasets/, apps/, plot      the edge: formats, samples, applications, pictures
    outofcore, dask, stream, kernels      long signals and the kernel-matrix algebra
    signal (VectorSignal)                 a C-channel signal with its sampling and metadata
    conv (conv, convolve, ...)            the public functions, two semantic families
    layers (SpectralConv, ...)            layer objects: validated once, spectra cached;
                                          compose / add / scale of layers
    _standard_form                        a layer as taps and per-side pads, and its arithmetic
    _correlate                            non-finite handling, method choice, spectra cache
    _costmodel, _engine, _direct          the methods: overlap-save FFT engine, direct taps
    fft                                   FFTW planning (the only module importing pyfftw)
    _validate                             argument checks and the dtype policy
"""

from ._validate import result_dtype
from .conv import conv, conv_transpose, convolve, correlate
from .fft import get_num_threads, set_num_threads
from .layers import SpectralConv, SpectralConvTranspose
from .signal import VectorSignal
from .stream import StreamingConv

__version__ = "0.1.0"

__all__ = [
    "conv",
    "conv_transpose",
    "convolve",
    "correlate",
    "SpectralConv",
    "SpectralConvTranspose",
    "StreamingConv",
    "VectorSignal",
    "result_dtype",
    "get_num_threads",
    "set_num_threads",
]
