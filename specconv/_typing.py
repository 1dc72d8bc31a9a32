"""The type aliases of specconv's public signatures, in one place.

They are for readers and type checkers only: every public function still validates its
arguments at run time (:mod:`specconv._validate`) and its numpydoc docstring stays the
reference for what each parameter accepts.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Literal, TypeAlias

import numpy.typing as npt

#: Anything ``np.asarray`` turns into a numeric array: inputs of the public functions.
ArrayLike: TypeAlias = npt.ArrayLike
#: Anything ``np.dtype`` accepts.
DTypeLike: TypeAlias = npt.DTypeLike
#: An int for every spatial axis, or one int per axis (stride, dilation, kernel sizes...).
IntOrTuple: TypeAlias = int | Sequence[int]
#: Padding as an int, one per axis, or one ``(before, after)`` pair per axis.
Pads: TypeAlias = int | Sequence[int] | Sequence[Sequence[int]]
#: A conv layer's padding: :data:`Pads` or a name.
Padding: TypeAlias = Pads | Literal["same", "valid"]
#: A window as :func:`scipy.signal.get_window` takes it (name, (name, parameter)), or taps.
Window: TypeAlias = str | tuple[Any, ...] | npt.ArrayLike
#: An array shape.
Shape: TypeAlias = Sequence[int]
#: A file name.
PathLike: TypeAlias = str | os.PathLike[str]

#: How a correlation is computed (see :func:`specconv.conv`).
Method = Literal["auto", "fft", "direct"]
#: What non-finite inputs do: propagate as in a direct sum, or raise.
NanPolicy = Literal["propagate", "raise"]
#: How a conv layer pads its input (PyTorch's names).
PaddingMode = Literal["zeros", "reflect", "replicate", "circular"]
#: The same padding in ``np.pad``'s names.
NumpyPadMode = Literal["constant", "reflect", "edge", "wrap"]
#: The output extent of the scipy.signal family (:func:`specconv.convolve`).
ConvolveMode = Literal["full", "same", "valid"]
#: Where a FIR layer's output sits (:func:`specconv.kernels.fir_layer`).
FirMode = Literal["full", "causal", "same"]
#: What the spatial axes of a :class:`~specconv.signal.VectorSignal` are.
Domain = Literal["time", "image", "kspace"]
