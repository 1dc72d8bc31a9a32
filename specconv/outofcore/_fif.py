"""FIF targets: MNE writes the file and asks for each buffer; the chunker computes it.

MNE has no public way to write a FIF file piece by piece; the Raw it saves here is built by
:func:`specconv.io._mne_compat.raw_from_reader`, the one place that relies on MNE's
internals (outside the MNE versions it was tested with, it builds the output in memory when it
fits the memory budget).
"""

from __future__ import annotations

import numpy as np

from .._optional import soft_import
from ..io._mne_compat import raw_from_reader, with_sfreq
from ._loop import progress_bar
from ._sources import RawSource

FIF_SUFFIXES = (".fif", ".fif.gz")


def write_fif(chunker, path, progress, sfreq, ch_names):
    mne = soft_import("mne", "eeg", purpose="writing FIF files")
    layer, src = chunker.layer, chunker.src
    if chunker.batched or layer.ndim != 1:
        raise ValueError(
            f"A FIF target needs a (C, n_times) time series and a 1-D layer, got input shape "
            f"{src.shape} and a {layer.ndim}-D layer."
        )
    if chunker.dtype.kind == "c":
        raise ValueError("A FIF target needs real data; the result is complex.")
    C_out, n_out = chunker.out_shape
    raw = src.raw if isinstance(src, RawSource) else None
    aligned = raw is not None and chunker.stride == 1 and n_out == chunker.n_in
    if sfreq is None:
        if raw is None:
            raise ValueError("sfreq is required to write a FIF file from a non-MNE source.")
        sfreq = raw.info["sfreq"] / chunker.stride
    if ch_names is None and raw is not None and C_out == len(src.picks):
        info = with_sfreq(mne.pick_info(raw.info, src.picks), sfreq)
        for ch in info["chs"]:  # the computed Raw below hands over physical values
            ch["cal"], ch["range"] = 1.0, 1.0
    else:
        names = list(ch_names) if ch_names is not None else [f"ch{i:03d}" for i in range(C_out)]
        if len(names) != C_out:
            raise ValueError(f"ch_names has {len(names)} names for {C_out} output channels.")
        info = mne.create_info(names, float(sfreq), "misc")
        if raw is not None:
            info.set_meas_date(raw.info["meas_date"])
    first, annot = 0, None
    if aligned and raw is not None:  # (aligned implies a raw: said again for the type checker)
        first = raw.first_samp
        annot = raw.annotations if len(raw.annotations) else None
        if annot is not None and annot.orig_time is None:
            # onsets then count from the first sample: re-base them
            annot = mne.Annotations(
                annot.onset - raw.first_time,
                annot.duration,
                annot.description,
                ch_names=annot.ch_names,
            )
    fmt = "double" if chunker.dtype == np.float64 else "single"
    cache = _ChunkCache(chunker, first)
    with progress_bar(n_out, progress, "specconv") as update:
        cache.update = update
        out = raw_from_reader(info, n_out, cache.get, first_samp=first, max_bytes=chunker.budget)
        if annot is not None:
            out.set_annotations(annot)
        # MNE rounds the buffer up: ask for a hair less than one chunk to get exactly one
        out.save(
            path,
            fmt=fmt,
            buffer_size_sec=(chunker.chunk - 0.5) / float(sfreq),
            overwrite=True,
            verbose="error",
        )


class _ChunkCache:
    """The chunker's outputs for MNE's buffer requests, keeping the newest chunk.

    MNE's buffers may straddle two chunks; keeping one chunk computes each chunk once.
    """

    def __init__(self, chunker, first_samp):
        self.chunker, self.first_samp = chunker, first_samp
        self.update = None
        self._m0, self._y = None, None

    def _chunk(self, m0):
        if self._m0 != m0:
            self._m0, self._y = None, None
            self._y = self.chunker.compute(m0)
            self._m0 = m0
        return self._y

    def get(self, start, stop):
        """Output samples ``start .. stop - 1`` (in MNE's sample numbering)."""
        start, stop = start - self.first_samp, stop - self.first_samp
        size = self.chunker.chunk
        pieces, m = [], start
        while m < stop:
            m0 = m // size * size
            y = self._chunk(m0)
            pieces.append(y[:, m - m0 : min(stop - m0, y.shape[1])])
            m = m0 + y.shape[1]
        if self.update is not None:
            self.update(stop - start)
        return np.concatenate(pieces, axis=1) if len(pieces) > 1 else pieces[0]
