"""The peers specconv is timed against, all computing the same PyTorch-semantics conv layer.

specconv.conv and torch compute cross-correlation; scipy.signal and MNE compute true
convolution, so their kernels are flipped along every spatial axis (once, outside the timing;
complex kernels are flipped, not conjugated). Every peer returns ``(B, C_out, *out_spatial)``.

Memory: broadcasting every (output, input) channel pair at once through fftconvolve would hold
C_out x C_in full-length spectra (~10 GB for 64 x 64 channels on 300k samples), so the
broadcasting peers loop over chunks of output channels sized to a memory budget; the input
spectrum is recomputed once per chunk, which is what broadcasting costs a scipy user anyway.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import _machine
import numpy as np
import scipy.signal


@dataclass
class Peer:
    name: str
    fn: Callable  # fn(x) -> y; pair loops also take limit=<number of pairs>
    note: str = ""
    probe: str | None = None  # "truncate": cost ~ output length; "pairs": time a few pairs
    n_pairs: int = 0


def _flip(w):
    d = w.ndim - 2
    return np.ascontiguousarray(w[(slice(None), slice(None)) + (slice(None, None, -1),) * d])


def _scipy_mode(wl, broadcast):
    """How a scipy call reproduces the layer's padding: (mode, explicit pads or None).

    scipy's "same" is centred like PyTorch's "same" only for odd kernels, and it crops the
    broadcast axes to in1's shape too (so it fails when broadcasting); anything else is
    zero-padded explicitly (inside the timing) and computed as "valid".
    """
    pads = wl.pads()
    if all(lo == hi == 0 for lo, hi in pads):
        return "valid", None
    if wl.padding == "same" and all(k % 2 for k in wl.kernel) and not broadcast:
        return "same", None
    return "valid", pads


def _pad(x, pads):
    if pads is None:
        return x
    return np.pad(x, [(0, 0)] * (x.ndim - len(pads)) + list(pads))


def _pair_bytes(wl, dtype, factor):
    """Rough peak bytes one broadcast (output, input) pair costs in a scipy FFT convolution.

    ``factor`` full-size arrays per pair. Peaks measured on 1-D and 2-D layers with the
    factors used below: 1.0-1.15x the budget for fftconvolve (4), 0.45-1.05x for oaconvolve (9).
    """
    full = [n + lo + hi + k - 1 for n, k, (lo, hi) in zip(wl.spatial, wl.kernel, wl.pads())]
    return factor * math.prod(full) * np.dtype(dtype).itemsize


def _chunks(total, size):
    return [(i, min(i + size, total)) for i in range(0, total, size)]


def scipy_broadcast(fn, label, wl, w, budget_bytes, factor):
    """``fn`` (fftconvolve or oaconvolve) broadcast over (groups, out-per-group, in-per-group).

    x is viewed as (B, G, 1, cin_g, *S) and the flipped kernel as (1, G, m, cin_g, *K); the
    product is summed over cin_g. Chunked over m (then over G) to stay within the budget.
    """
    B, G, m, cg, d = wl.batch, wl.groups, wl.out_per_group, wl.cin_per_group, wl.ndim
    mode, pads = _scipy_mode(wl, broadcast=True)
    wf = _flip(w).reshape(1, G, m, cg, *wl.kernel)
    axes = tuple(range(-d, 0))
    per_pair = _pair_bytes(wl, w.dtype, factor)
    if B * G * m * cg * per_pair <= budget_bytes:
        g_step, m_step = G, m
    elif B * G * cg * per_pair <= budget_bytes:
        g_step, m_step = G, max(1, int(budget_bytes // (B * G * cg * per_pair)))
    else:
        g_step, m_step = max(1, int(budget_bytes // (B * cg * per_pair))), 1
    n_calls = math.ceil(G / g_step) * math.ceil(m / m_step)

    def run(x):
        xp = _pad(x, pads)
        xg = xp.reshape(B, G, 1, cg, *xp.shape[2:])
        y = np.empty((B, G, m, *wl.out_spatial()), dtype=np.result_type(x, w))
        for g0, g1 in _chunks(G, g_step):
            for j0, j1 in _chunks(m, m_step):
                part = fn(xg[:, g0:g1], wf[:, g0:g1, j0:j1], mode=mode, axes=axes)
                np.sum(part, axis=3, out=y[:, g0:g1, j0:j1])
        return y.reshape(B, wl.c_out, *y.shape[3:])

    note = (
        "broadcast in one call"
        if n_calls == 1
        else (
            f"{n_calls} calls of <= {g_step * m_step} output channels (memory budget "
            f"{budget_bytes / 2**30:g} GB)"
        )
    )
    return Peer(label, run, note)


def pair_loop(fn, label, wl, w):
    """One scipy call per (output, input) channel pair, broadcast over the batch only."""
    m, cg, d = wl.out_per_group, wl.cin_per_group, wl.ndim
    mode, pads = _scipy_mode(wl, broadcast=False)
    wf = _flip(w)
    axes = tuple(range(-d, 0))
    pairs = [(o, (o // m) * cg + c, c) for o in range(wl.c_out) for c in range(cg)]

    def run(x, limit=None):
        xp = _pad(x, pads)
        y = np.zeros((wl.batch, wl.c_out, *wl.out_spatial()), dtype=np.result_type(x, w))
        for o, ch, c in pairs[:limit]:
            y[:, o] += fn(xp[:, ch], wf[o, c][None], mode=mode, axes=axes)
        return y

    note = f"{len(pairs)} calls" + (", one per channel" if cg == 1 else "")
    return Peer(label, run, note, probe="pairs", n_pairs=len(pairs))


def mne_overlap_add(wl, w, n_jobs=1):
    """MNE's FIR overlap-add, one call per output channel (each has its own filter).

    MNE has no public function taking an arbitrary FIR (filter_data designs its own from
    l_freq/h_freq), so this calls the private ``mne.filter._overlap_add_filter`` with
    phase="zero" and its default edge padding; its output is the "same"-length filtered signal,
    from which the "valid" part is cut. MNE filters float64 only: float32 input is converted
    inside the timing, as an MNE user's data would be. Each call filters the channel's rows of
    every batch item. With ``n_jobs`` > 1 the calls run through ``mne.parallel.parallel_func``
    (MNE's own n_jobs splits the rows of one call, and a depthwise layer's call has one row per
    batch item: nothing to split at batch 1).
    """
    from mne.filter import _overlap_add_filter

    (k,) = wl.kernel
    m = wl.out_per_group
    off = k - 1 - (k - 1) // 2
    (n_out,) = wl.out_spatial()
    hf = _flip(w).astype(np.float64)

    def one(rows, h):
        return _overlap_add_filter(rows, h, phase="zero", n_jobs=None, copy=False)[
            :, off : off + n_out
        ]

    if n_jobs == 1:

        def run(x):
            y = np.empty((wl.batch, wl.c_out, n_out), dtype=x.dtype)
            for o in range(wl.c_out):
                y[:, o] = one(x[:, o // m].astype(np.float64), hf[o, 0])
            return y
    else:
        from mne.parallel import parallel_func

        parallel, p_one, _ = parallel_func(one, n_jobs)

        def run(x):
            y = np.empty((wl.batch, wl.c_out, n_out), dtype=x.dtype)
            parts = parallel(
                p_one(x[:, o // m].astype(np.float64), hf[o, 0]) for o in range(wl.c_out)
            )
            for o, part in enumerate(parts):
                y[:, o] = part
            return y

    name = "MNE overlap-add" + (f", n_jobs={n_jobs}" if n_jobs != 1 else "")
    return Peer(name, run, f"private _overlap_add_filter, {wl.c_out} calls, n_jobs={n_jobs}")


def torch_conv(wl, w):
    """torch.nn.functional.conv{1,2,3}d on CPU with all cores; complex tensors natively."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(_machine.cores())
    conv = getattr(F, f"conv{wl.ndim}d")
    wt = torch.from_numpy(w)
    pads = wl.pads()
    if wl.padding == "same":
        padding = "same"
    elif all(lo == hi for lo, hi in pads):
        padding = tuple(lo for lo, _ in pads)
    else:
        raise ValueError(f"torch cannot pad asymmetrically: {pads}")

    def run(x):
        with torch.inference_mode():
            return conv(
                torch.from_numpy(np.ascontiguousarray(x)), wt, padding=padding, groups=wl.groups
            ).numpy()

    note = f"{torch.get_num_threads()} threads" + (", native complex conv" if wl.is_complex else "")
    return Peer(f"torch conv{wl.ndim}d", run, note, probe="truncate")


def _with_workers(peer, workers):
    """A scipy peer run inside ``scipy.fft.set_workers(workers)`` (scipy's default is 1)."""
    import scipy.fft

    inner = peer.fn

    def run(x, **kw):
        with scipy.fft.set_workers(workers):
            return inner(x, **kw)

    return Peer(
        f"{peer.name}, {workers} workers",
        run,
        f"{peer.note}, {workers} scipy.fft workers",
        peer.probe,
        peer.n_pairs,
    )


def build(wl, w, budget_bytes, scipy_workers=None, mne_jobs=None):
    """The peers that apply to workload ``wl``, with the (probe-able) functions to time.

    Peers at their best: every scipy peer with each of ``scipy_workers`` scipy.fft workers
    (default 1 and all cores) and MNE with each of ``mne_jobs`` (default 1 and all cores),
    each a row of its own; the summaries take the fastest.
    Returns ``(peers, unavailable)`` where ``unavailable`` lists (name, reason) pairs.
    """
    cores = _machine.cores()
    scipy_workers = sorted(set(scipy_workers or (1, cores)))
    mne_jobs = sorted(set(mne_jobs or (1, cores)))
    peers, missing = [], []
    if wl.ndim <= 3:
        try:
            peers.append(torch_conv(wl, w))
        except ImportError as exc:
            missing.append(("torch", f"not importable ({exc})"))
    else:
        missing.append(("torch", f"no conv{wl.ndim}d"))
    label = "scipy oaconvolve per channel" if wl.cin_per_group == 1 else "scipy oaconvolve per pair"
    for peer in (
        scipy_broadcast(
            scipy.signal.fftconvolve, "scipy fftconvolve bcast", wl, w, budget_bytes, 4
        ),
        scipy_broadcast(scipy.signal.oaconvolve, "scipy oaconvolve bcast", wl, w, budget_bytes, 9),
        pair_loop(scipy.signal.oaconvolve, label, wl, w),
    ):
        peers += [peer if n == 1 else _with_workers(peer, n) for n in scipy_workers]
    if wl.ndim == 1 and wl.depthwise and not wl.is_complex and wl.padding in (0, "valid"):
        try:
            peers += [mne_overlap_add(wl, w, n) for n in mne_jobs]
        except ImportError as exc:
            missing.append(("MNE", f"not importable ({exc})"))
    return peers, missing


def estimate_pairs(peer, x, seconds=0.2):
    """Time the first pairs of a pair loop for about ``seconds`` and extrapolate to all pairs."""
    k, t = 1, 0.0
    while True:
        t0 = time.perf_counter()
        peer.fn(x, limit=k)
        t = time.perf_counter() - t0
        if t > seconds or k >= peer.n_pairs:
            return t * peer.n_pairs / k
        k = min(peer.n_pairs, max(k * 2, int(k * seconds / max(t, 1e-6))))
