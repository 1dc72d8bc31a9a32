"""One valid correlation, whatever the method: non-finite input, method choice, spectra cache.

Every public entry point (PyTorch-style, scipy-style, transposed) reduces to this call.

Non-finite input stays local. An FFT spreads a single NaN over its whole transform, so
non-finite samples are zeroed before transforming, and afterwards exactly the outputs whose
receptive field (the dilated taps, not the gaps between them) covers a non-finite input of a
connected channel are set to NaN -- where a direct convolution would give NaN or ±Inf. The
marking is a box count of the non-finite mask along each axis, not a second convolution.

Finding them is itself a pass over all of ``x``, which "propagate" saves where it can: every
sample of an FFT tile reaches its spectrum's DC bin, so the FFT methods check the few DC bins
of each chunk and stop at a NaN or ±Inf there (or an overflowing spectrum); the direct
method's outputs are non-finite wherever it read a non-finite sample, so where they are fewer
than the inputs they are checked instead. Only then does the call start again with the pass.
"raise" makes the pass first: it refuses every non-finite sample of ``x``, read or not.
"""

from __future__ import annotations

import functools
import hashlib
import math
import threading

import numpy as np

from . import _costmodel, _direct, _engine, _polyphase, _workers, fft

#: Arrays above twice this many bytes are summed or hashed in parts on the worker threads:
#: done whole, the NaN check and the weight's digest took several percent of a large call.
_PART_BYTES = 4 * 2**20


def _map_parts(fn, flat):
    """``[fn(part) ...]`` over consecutive parts of the 1-D ``flat``, in parallel if large."""
    parts = min(fft.get_num_threads(), flat.nbytes // _PART_BYTES)
    if parts < 2:
        return [fn(flat)]
    bounds = [len(flat) * k // parts for k in range(parts + 1)]
    return _workers.run_parallel(
        [functools.partial(fn, flat[a:b]) for a, b in zip(bounds, bounds[1:])]
    )


def has_nonfinite(x):
    """Whether ``x`` holds a NaN or ±Inf, at the cost of one sum in the common finite case."""
    with np.errstate(all="ignore"):
        if x.flags.c_contiguous:
            total = sum(_map_parts(np.sum, x.reshape(-1)))
        else:
            total = np.sum(x)
    return not np.isfinite(total) and not np.isfinite(x).all()


def _dilated_box_any(mask, axis, taps, dilation, stride, n_out):
    """``out[n] = any(mask[n*stride + k*dilation] for k < taps)`` along ``axis``."""
    mask = np.moveaxis(mask, axis, -1)
    length = mask.shape[-1]
    rows = -(-length // dilation)
    padded = np.zeros(mask.shape[:-1] + (rows * dilation,), dtype=np.int32)
    padded[..., :length] = mask
    # running count within each residue class modulo the dilation
    csum = np.cumsum(padded.reshape(mask.shape[:-1] + (rows, dilation)), axis=-2)
    csum = csum.reshape(padded.shape)
    start = np.arange(n_out) * stride
    end = start + (taps - 1) * dilation
    counts = csum[..., end] - np.where(start >= dilation, csum[..., start - dilation], 0)
    return np.moveaxis(counts > 0, -1, axis)


def nonfinite_outputs(bad, pads, geom):
    """Boolean ``(B, C_out, *out)``: outputs whose receptive field covers a ``bad`` input."""
    B = bad.shape[0]
    G = geom.groups
    per_group = _direct.zero_pad(bad, pads).reshape((B, G, -1) + geom.padded).any(axis=2)
    for a in range(geom.ndim):
        per_group = _dilated_box_any(
            per_group, 2 + a, geom.kernel[a], geom.dilation[a], geom.stride[a], geom.out_shape[a]
        )
    co = geom.out_channels // G
    return np.repeat(per_group, co, axis=1)


def weight_digest(weight):
    """A SHA-256 digest of the weight's bytes (shape and dtype are keyed separately).

    Large weights: the SHA-256 of the SHA-256 digests of consecutive parts, computed in
    parallel (hashlib releases the GIL).
    """
    data = np.ascontiguousarray(weight).reshape(-1).view(np.uint8)
    digests = _map_parts(_sha256, data)
    return digests[0] if len(digests) == 1 else hashlib.sha256(b"".join(digests)).digest()


def _sha256(data):
    return hashlib.sha256(data).digest()


class SpectraCache:
    """Kernel spectra, newest kept, keyed on the weight's contents and the tile shape.

    The key holds a SHA-256 digest of the weight, so a weight changed in place is a new entry,
    never a stale hit. At most ``max_entries`` entries and, if given, ``max_bytes`` bytes are
    kept (an entry larger than that is used once and dropped). Thread-safe.
    """

    #: digests of the weights :meth:`seen` remembers
    SEEN = 64

    def __init__(self, max_entries=4, max_bytes=None):
        self._entries = {}
        self._seen = {}
        self._max_entries, self._max_bytes = max_entries, max_bytes
        self._lock = threading.Lock()

    def seen(self, digest):
        """Whether a weight of this digest was asked about before (it is remembered now)."""
        with self._lock:
            known = self._seen.pop(digest, False) is None
            self._seen[digest] = None
            if len(self._seen) > self.SEEN:
                self._seen.pop(next(iter(self._seen)))
        return known

    def get(self, weight, geom, tiling, dtype, digest=None):
        """The spectra (``digest``: :func:`weight_digest` of ``weight``, if already known).

        ``weight`` may also be a function that makes it, called only when the spectra are not
        cached; ``digest`` then identifies it, shape and dtype included.
        """
        if callable(weight):
            make, shape_key = weight, None
        else:
            digest = digest or weight_digest(weight)
            make, shape_key = (lambda: weight), (weight.shape, weight.dtype.str)
        key = (
            digest,
            shape_key,
            geom.groups,
            geom.kernel,
            geom.dilation,
            geom.is_complex,
            tiling.fft_shape,
            np.dtype(dtype).str,
            _engine.uses_matmul(geom),
            _engine.compiled_product(geom, dtype),
        )
        with self._lock:
            spectra = self._entries.pop(key, None)
        if spectra is None:
            spectra = _engine.kernel_spectra(make(), geom, tiling, dtype)
        with self._lock:
            self._entries[key] = spectra
            while self._entries and (
                len(self._entries) > self._max_entries
                or self._max_bytes is not None
                and sum(a.nbytes for a in self._entries.values()) > self._max_bytes
            ):
                self._entries.pop(next(iter(self._entries)))
        return spectra

    def __getstate__(self):  # a pickled layer travels light: spectra are recomputed on arrival
        return self._max_entries, self._max_bytes

    def __setstate__(self, state):
        type(self).__init__(self, *state)


#: Spectra of the functions (``conv``, ``convolve``, ...), which build a layer per call: a
#: script calling them again with the same weights transforms the kernels once. The byte bound
#: is the cost model's per-layer one, so any layer's spectra can be kept.
SHARED_SPECTRA = SpectraCache(max_entries=8, max_bytes=_costmodel.SPECTRA_BUDGET)


def split_nonfinite(x, nan_policy):
    """``(x with non-finite samples zeroed, their mask)``, or ``(x, None)`` when all are finite.

    Raises for ``nan_policy="raise"`` when some are not.
    """
    if not has_nonfinite(x):
        return x, None
    if nan_policy == "raise":
        count = int(np.count_nonzero(~np.isfinite(x)))
        raise ValueError(
            f"x contains {count} non-finite value(s) (NaN or ±Inf) and nan_policy='raise'; "
            f"use nan_policy='propagate' to keep them local to their receptive fields."
        )
    bad = ~np.isfinite(x)
    return np.where(bad, 0, x), bad


def choose(geom, pads, method, itemsize, workers, **planning):
    """The method for a valid correlation: the cost model's choice, or for a strided layer its
    input phases' stride-1 layer where that is cheaper (a :class:`~specconv._polyphase.Plan`)."""
    return _polyphase.choose_strided(geom, pads, method, itemsize, workers, **planning)


def correlate(
    x,
    weight,
    geom,
    pads,
    dtype,
    *,
    method,
    nan_policy,
    cache=None,
    choice=None,
    digest=None,
    out=None,
    keep=None,
):
    """Valid correlation of the zero-padded ``x`` (B, C_in, *spatial) with ``weight``.

    ``pads`` are (before, after) zeros per spatial axis; ``choice`` a precomputed
    :class:`~specconv._costmodel.Choice` or :class:`~specconv._polyphase.Plan` (from
    :func:`choose`; layers keep theirs so the cached spectra match); ``cache`` a
    :class:`SpectraCache` (default: the shared one) and ``digest`` the weight's; ``out`` a
    C-contiguous array of the result's shape and ``dtype`` to write it to. ``keep``: a
    function of ``(geom, pads, tiling, dtype)`` that returns an array to copy the input tiles'
    spectra to (see :func:`~specconv._engine.correlate_fft`) or None; called only where the
    engine transforms tiles of ``x`` itself (finite ``x``, no phase plan).
    """
    if choice is None:
        choice = choose(geom, pads, method, np.dtype(dtype).itemsize, fft.get_num_threads())
    if (
        nan_policy == "propagate" and keep is None
    ):  # finite x, no pass of its own (module docstring)
        if isinstance(choice, _polyphase.Plan) or choice.method == "fft":
            try:
                return _finite_correlation(
                    x, weight, geom, pads, dtype, choice, cache, digest, out, check_finite=True
                )
            except _engine.NonFiniteInput:
                pass
        elif geom.batch * geom.out_channels * math.prod(geom.out_shape) <= x.size:
            y = _finite_correlation(x, weight, geom, pads, dtype, choice, cache, digest, out)
            if not has_nonfinite(y) or not has_nonfinite(x):  # non-finite taps, or overflow
                return y
    x, bad = split_nonfinite(x, nan_policy)
    kept = None if bad is not None else keep
    y = _finite_correlation(x, weight, geom, pads, dtype, choice, cache, digest, out, kept)
    if bad is not None:
        y[nonfinite_outputs(bad, pads, geom)] = math.nan
    return y


def _finite_correlation(
    x, weight, geom, pads, dtype, choice, cache, digest, out, keep=None, check_finite=False
):
    """:func:`correlate` of a finite ``x`` (or any ``x`` with ``check_finite``, see
    :func:`~specconv._engine.correlate_fft`) by the ``choice`` made."""
    # a non-finite tap (allowed under "propagate") makes its output channel NaN, as documented:
    # numpy's "invalid value" warnings on the way say nothing more
    with np.errstate(invalid="ignore"):
        if isinstance(choice, _polyphase.Plan):
            return run_plan(choice, x, weight, dtype, cache, digest, out, check_finite)
        if choice.method == "direct":
            workers = fft.get_num_threads()
            y = _direct.correlate_direct(x, pads, weight, geom, dtype, workers, choice.columns)
            if out is not None:
                np.copyto(out, y)
                y = out
            return y
        cache = cache or SHARED_SPECTRA
        spectra = cache.get(weight, geom, choice.tiling, dtype, digest)
        kept = None if keep is None else keep(geom, pads, choice.tiling, dtype)
        return _engine.correlate_fft(
            x,
            pads,
            spectra,
            geom,
            choice.tiling,
            dtype,
            fft.get_num_threads(),
            out,
            kept,
            check_finite,
        )


def run_plan(plan, x, weight, dtype, cache=None, digest=None, out=None, check_finite=False):
    """A strided or transposed layer of the finite ``x`` (or any ``x`` with ``check_finite``,
    see :func:`~specconv._engine.correlate_fft`) by its phase layer (see
    :mod:`specconv._polyphase`): ``weight`` is the layer's forward correlation taps."""
    cache = cache or SHARED_SPECTRA
    digest = plan.digest(weight, digest or weight_digest(weight))
    spectra = cache.get(
        functools.partial(plan.weight, weight), plan.geom, plan.tiling, dtype, digest
    )
    workers = fft.get_num_threads()
    run = functools.partial(
        _engine.correlate_fft,
        pads=plan.pads,
        spectra=spectra,
        geom=plan.geom,
        tiling=plan.tiling,
        dtype=dtype,
        workers=workers,
        check_finite=check_finite,
    )
    if not plan.transposed:
        return run(plan.phase_input(x), out=out)
    y, phases = plan.output(x.shape[0], dtype)
    run(x, out=phases)
    if out is not None:
        np.copyto(out, y)
        y = out
    return y


def correlate_transposed(
    x, weight, plan, geom, pads, stride, dtype, *, nan_policy, cache=None, digest=None
):
    """A strided transposed layer by its output phases' layer (``plan``, from
    :func:`~specconv._polyphase.transposed_plan`; None: no tap reaches the output).

    ``geom`` and ``pads`` describe the equivalent correlation of ``x`` zero-stuffed by
    ``stride``, with the forward taps ``weight``; they place the NaNs of non-finite input
    exactly where that correlation's taps read it.
    """
    if plan is not None and nan_policy == "propagate":
        try:  # finite x, no pass of its own (module docstring)
            with np.errstate(invalid="ignore"):
                return run_plan(plan, x, weight, dtype, cache, digest, check_finite=True)
        except _engine.NonFiniteInput:
            pass
    x, bad = split_nonfinite(x, nan_policy)
    if plan is None:
        y = np.zeros((x.shape[0], geom.out_channels) + geom.out_shape, dtype)
    else:
        with np.errstate(invalid="ignore"):  # as in correlate: a NaN tap's channel is NaN
            y = run_plan(plan, x, weight, dtype, cache, digest)
    if bad is not None:
        mark_nonfinite_transposed(y, bad, geom, pads, stride)
    return y


def mark_nonfinite_transposed(y, bad, geom, pads, stride):
    """NaN in ``y`` wherever the transposed layer's taps read a ``bad`` input (``geom`` and
    ``pads``: its equivalent correlation of the input zero-stuffed by ``stride``)."""
    stuffed = np.zeros(
        bad.shape[:2] + tuple(p - a - b for p, (a, b) in zip(geom.padded, pads)), bool
    )
    stuffed[(Ellipsis,) + tuple(slice(None, None, s) for s in stride)] = bad
    y[nonfinite_outputs(stuffed, pads, geom)] = math.nan
