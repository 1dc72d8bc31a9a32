"""specconv: conv layers as per-frequency channel matrices.

A conv layer ``y_i = b_i + sum_j h_ij ⋆ x_j`` is a C_out × C_in matrix of kernels applied to a
vector-valued signal. In the frequency domain it is an ordinary complex matrix at every
frequency: specconv transforms every input channel once (FFTW), multiplies by that matrix
(BLAS; block-diagonal for groups), and transforms every output channel back once, over
overlap-save tiles so memory stays bounded.

Layers of the package, each importing only from the lines below it (and, without a
circle, its own line); ``tests/test_layout.py`` reads this list and enforces it::

    cli, __main__                           the command line
    datasets, apps, plot, dask              samples, applications, pictures, clusters
    io                                      file formats in and out (the adapters)
    outofcore, stream, kernels, signal      long signals, kernel-matrix algebra, VectorSignal
    conv                                    the public functions, two semantic families
    layers                                  layer objects, validated once; compose, add, scale
    _standard_form                          a layer as taps and per-side pads; its arithmetic
    _correlate                              non-finite handling, method dispatch, spectra cache
    _costmodel                              which method and tiles, in modelled seconds
    _engine, _direct                        the methods: overlap-save FFT engine, direct taps
    fft, _compiled                          FFTW planning (only it imports pyfftw); C loops
    _geometry, _workers, _blas              a correlation's shapes, the thread pool, BLAS
    _validate, _optional                    argument checks, dtype policy, optional imports
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
