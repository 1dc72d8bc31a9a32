# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 7. Long recordings: streaming, out-of-core, and a Dask cluster
#
# So far every signal fitted in memory and was processed in one call. Real recordings are
# often too long (hours of 64-channel EEG), arrive live (an audio callback, an amplifier), or
# come by the thousand (a study's worth of files). The same conv layer handles all three,
# with the same numbers as the in-memory call:
#
# 1. **streaming** (`specconv.stream.StreamingConv`): block in, block out, fixed latency;
# 2. **out-of-core** (`specconv.outofcore.apply`): from a file on disk to a file on disk,
#    with memory bounded independently of the recording's length;
# 3. **Dask** (`specconv.dask`): a lazy, chunked array, and a read → conv → write pipeline
#    over many files on a `dask.distributed` cluster.
#
# Everything here is kept tiny so that it runs in seconds; the same calls scale up.
#
# **Your own data:** set `LONG_FILE` to a long recording — a `.npy` array `(channels,
# samples)` (opened memory-mapped) or any file `mne.io.read_raw` reads (read with
# `preload=False`, e.g. the 4-minute EEGLAB tutorial recording `eeglab_data.set`). By default
# the notebook writes a 10-minute, 32-channel float32 recording made of the bundled EEG sample.

# %%
LONG_FILE = None  # e.g. "data/eeg/eeglab_sample/eeglab_data.set"

# %%
import logging
import sys
import time
from pathlib import Path

import matplotlib.pyplot as plt
import mne
import numpy as np
import scipy.signal

import specconv
from specconv import datasets, io, outofcore
from specconv.apps import audio as audioapps
from specconv.apps import eeg as eegapps
from specconv.stream import StreamingConv

# show specconv's own log lines (chunk plans) in the notebook
log = logging.getLogger("specconv")
log.setLevel(logging.INFO)
log.addHandler(logging.StreamHandler(sys.stdout))
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. Streaming: a live signal, block by block
#
# `StreamingConv(layer, block_size)` turns a 1-D layer into a stateful filter:
# `process(block)` returns the output for exactly the samples of that block — so the only
# latency is the time it takes to collect a block — and `flush()` returns the tail that rings
# on after the last input. Long kernels (reverbs) are cut into partitions and convolved in the
# frequency domain (partitioned overlap-save, with larger partitions for the later taps), so
# the cost per sample grows only with the logarithm of the kernel length, and blocks may have
# any size, changing from call to call.
#
# Here the true-stereo reverb of notebook 5 runs on the bundled sound, fed in blocks of
# random sizes as an audio interface with a jittery buffer might deliver them. The
# concatenated output equals the offline (full) convolution:

# %%
sound = datasets.load("audio-pcm16")
fs = sound.sfreq
x = sound.data.astype(np.float32)
reverb = audioapps.true_stereo_reverb(datasets.load("ir-true-stereo"))
print(reverb)

stream = StreamingConv(reverb, block_size=256)
print(f"latency {stream.latency} samples = {stream.latency / fs * 1e3:.1f} ms")
print("kernel partitions:", stream.levels)
pieces, pos = [], 0
while pos < x.shape[1]:
    n = int(rng.integers(1, 1000))  # any block size
    pieces.append(stream.process(x[:, pos : pos + n]))
    pos += n
pieces.append(stream.flush())
streamed = np.concatenate(pieces, axis=-1)
offline = reverb(x)
print(streamed.shape, "== offline", offline.shape)
assert np.allclose(streamed, offline, atol=1e-5 * np.abs(offline).max())  # float32 stream

# %% [markdown]
# How fast? A real-time audio loop calls `process` with fixed blocks of 256 samples
# (5.3 ms at 48 kHz); the loop must finish each call well within that time.

# %%
stream = StreamingConv(reverb, block_size=256)
t0 = time.perf_counter()
for i in range(0, x.shape[1], 256):
    stream.process(x[:, i : i + 256])
elapsed = time.perf_counter() - t0
print(
    f"{x.shape[1] / fs:.1f} s of stereo audio through a {reverb.kernel_size[0]}-tap 2 × 2 "
    f"reverb in {elapsed * 1e3:.0f} ms: {x.shape[1] / fs / elapsed:.0f}× faster than real time"
)

# %% [markdown]
# ### Swapping kernels without a click
#
# `set_kernel` replaces the kernels mid-stream (a listener moves to another room). The stream
# keeps its input history, so the new kernel's output is exact from the first sample, and the
# two outputs are crossfaded over one block. Here the reverb becomes a darker one (its impulse
# responses low-passed at 2 kHz) at t = 0.75 s:

# %%
sos = scipy.signal.butter(2, 2000, fs=fs, output="sos")
dark_ir = scipy.signal.sosfilt(sos, datasets.load("ir-true-stereo").data).astype(np.float32)
dark = audioapps.true_stereo_reverb(dark_ir)

swap = 256 * round(0.75 * fs / 256)  # at a block boundary
stream = StreamingConv(reverb, block_size=256)
pieces = []
for i in range(0, x.shape[1], 256):
    if i == swap:
        stream.set_kernel(dark.weight)  # crossfade over one block (256 samples)
    pieces.append(stream.process(x[:, i : i + 256]))
pieces.append(stream.flush())
swapped = np.concatenate(pieces, axis=-1)
old, new = reverb(x), dark(x)
scale = np.abs(old).max()
assert np.allclose(swapped[:, :swap], old[:, :swap], atol=1e-5 * scale)  # before: old room
assert np.allclose(swapped[:, swap + 256 :], new[:, swap + 256 :], atol=1e-5 * scale)  # after: new

t_ms = (np.arange(swap - 600, swap + 900) - swap) / fs * 1e3
fig, ax = plt.subplots(figsize=(10, 3))
ax.plot(t_ms, old[0, swap - 600 : swap + 900], lw=0.8, label="old reverb (offline)")
ax.plot(t_ms, new[0, swap - 600 : swap + 900], lw=0.8, label="new reverb (offline)")
ax.plot(t_ms, swapped[0, swap - 600 : swap + 900], "k", lw=1.2, label="stream with set_kernel")
ax.axvspan(0, 256 / fs * 1e3, color="0.9", label="crossfade (one block)")
ax.set(xlabel="ms from the swap", ylabel="left output")
ax.legend(fontsize=8, loc="lower left")
plt.show()

# %% [markdown]
# ### Causal filters and the latency of zero phase
#
# A stream can only be causal. The zero-phase EEG filter bank of notebook 4 looks at future
# samples (half its kernel), so streamed it gives the same numbers *delayed by that half*:
# `stream.layer_delay` samples — the price of zero phase in real time.

# %%
eeg = datasets.load("eeg-fif")
bank = eegapps.filter_bank(eeg.sfreq, [(8.0, 13.0), (13.0, 30.0)], eeg.n_channels)
live = StreamingConv(bank, block_size=32)  # 32 samples = 125 ms at 256 Hz
chunks = [live.process(eeg.data[:, i : i + 32]) for i in range(0, eeg.data.shape[1], 32)]
online = np.concatenate(chunks, axis=-1)
d = live.layer_delay
print(f"zero-phase bank streamed: delayed by {d} samples = {d / eeg.sfreq:.2f} s")
reference = bank(eeg.data)
assert np.allclose(online[:, d:], reference[:, :-d], atol=1e-9 * np.abs(reference).max())

# %% [markdown]
# ## 2. Out-of-core: a recording larger than memory
#
# `outofcore.apply(layer, source, target)` reads the input in chunks along time, each with
# the halo the kernel needs, runs the layer, and writes the chunk's output before reading the
# next one. Sources: `np.memmap` / `.npy` files, HDF5 datasets, MNE raw files read with
# `preload=False`; targets: `.npy`, HDF5 or FIF files, written atomically (a temporary file
# renamed when complete: an error or Ctrl-C leaves nothing behind). `memory_budget` sets the
# chunk length — here a deliberately small 16 MB, so that even this recording takes many
# chunks; the default is 256 MB, and peak memory does not grow with the recording's length.

# %%
if LONG_FILE is None:
    repeats = 10  # 10 × 60 s
    C, n = eeg.data.shape
    long = np.lib.format.open_memmap(
        "long_eeg.npy", mode="w+", dtype=np.float32, shape=(C, repeats * n)
    )
    for r in range(repeats):
        long[:, r * n : (r + 1) * n] = eeg.data
    long.flush()
    del long
    source, sfreq = Path("long_eeg.npy").resolve(), eeg.sfreq
else:
    info = io.info(LONG_FILE)
    source, sfreq, C = Path(LONG_FILE).resolve(), info["sfreq"], info["channels"]
print("source:", source)

bands = [(8.0, 13.0), (13.0, 30.0)]
bank = eegapps.filter_bank(sfreq, bands, C)
bank32 = specconv.SpectralConv(
    bank.weight.astype(np.float32), padding=bank.padding, groups=bank.groups
)  # float32 in, float32 out
t0 = time.perf_counter()
target = outofcore.apply(
    bank32, source, "long_eeg_bands.npy", memory_budget=16 * 2**20, progress=False, overwrite=True
)
print(f"out-of-core: {time.perf_counter() - t0:.2f} s ->", target)

# %% [markdown]
# The result is the in-memory result (which we can still afford here), chunk boundaries
# included:

# %%
if source.suffix == ".npy":
    x_mem = np.load(source)
else:
    x_mem = mne.io.read_raw(source, preload=False, verbose=False).get_data()
y_disk = np.load(target, mmap_mode="r")
y_mem = bank32(x_mem)
print(
    "max |out-of-core - in memory| / max =",
    float(np.abs(y_disk - y_mem).max() / np.abs(y_mem).max()),
)
assert y_disk.shape == y_mem.shape
assert np.allclose(y_disk, y_mem, atol=1e-5 * np.abs(y_mem).max())

sl = slice(0, int(5 * sfreq))
fig, axes = plt.subplots(2, 1, figsize=(10, 4), sharex=True)
axes[0].plot(np.arange(sl.stop) / sfreq, y_disk[1, sl] * 1e6, lw=0.8)
axes[0].set(ylabel="µV", title="channel 0, beta band, read back from long_eeg_bands.npy")
axes[1].plot(np.arange(sl.stop) / sfreq, (y_disk[1, sl] - y_mem[1, sl]) * 1e6, lw=0.8)
axes[1].set(xlabel="s", ylabel="µV", title="difference to the in-memory result")
plt.show()

# %% [markdown]
# The same for an MNE raw file read with `preload=False` (only the chunks being processed are
# ever in memory), written as FIF with new channel names:

# %%
raw = mne.io.read_raw_fif(datasets.path("eeg-fif"), preload=False, verbose=False)
names = [f"{ch}-{band}" for ch in raw.ch_names for band in ("alpha", "beta")]
fif = outofcore.apply(
    bank,
    raw,
    "eeg_bands_raw.fif",
    ch_names=names,
    memory_budget=8 * 2**20,
    progress=False,
    overwrite=True,
)
back = mne.io.read_raw_fif(fif, preload=True, verbose=False)
print(back)
expected = bank(raw.get_data())
assert back.ch_names == names
assert np.allclose(back.get_data(), expected, atol=1e-6 * np.abs(expected).max())

# %% [markdown]
# ## 3. Dask: lazy chunked arrays, and many files on a cluster
#
# `specconv.dask.conv_dask(x, layer)` applies a layer to a dask array chunked along time and
# returns a lazy dask array: every chunk is extended by the kernel's halo and convolved on its
# own, so the result equals the layer on the computed array.
#
# We build the input lazily too, one task per chunk that reads its samples from the file, so
# that workers on a cluster read the data themselves instead of receiving it from the notebook.

# %%
import dask
import dask.array as da
from dask.distributed import Client
from distributed.deploy.subprocess import SubprocessCluster

from specconv.dask import conv_dask, map_files

n_samples = io.info(source)["shape"][-1]
dtype = np.float32 if source.suffix == ".npy" else np.float64


def load(start, stop):
    """Samples start:stop of every channel, read from the file (runs inside a task)."""
    if source.suffix == ".npy":
        return np.array(np.load(source, mmap_mode="r")[:, start:stop])
    raw = mne.io.read_raw(source, preload=False, verbose=False)
    return raw.get_data(start=start, stop=stop)


step = 16384
lazy_in = da.concatenate(
    [
        da.from_delayed(
            dask.delayed(load)(a, min(a + step, n_samples)),
            shape=(C, min(a + step, n_samples) - a),
            dtype=dtype,
        )
        for a in range(0, n_samples, step)
    ],
    axis=1,
)
lazy_out = conv_dask(lazy_in, bank)
print(lazy_in)
print(lazy_out)
print("output chunks along time:", lazy_out.chunks[1][:4], "...")

# %% [markdown]
# Now a cluster. `SubprocessCluster(n_workers=2)` starts a scheduler and two workers as
# programs of their own on this machine, as `dask scheduler` and `dask worker` do on a real
# cluster; a real cluster only changes the line that makes the client (see below). (Dask's
# `LocalCluster(processes=True)` would start its workers with `multiprocessing`, which
# re-runs a plain script in every worker unless the whole script sits under an
# `if __name__ == "__main__":` guard; separate programs keep this notebook a plain script.)
# `map_files` runs read → layer → write on every file, one task per file, the layer sent to
# the workers once. We make four small "subject" recordings to process.

# %%
rec_dir, out_dir = Path("recordings").resolve(), Path("filtered").resolve()
rec_dir.mkdir(exist_ok=True)
out_dir.mkdir(exist_ok=True)
paths = []
for k in range(4):
    subject = eeg.replace(data=np.roll(eeg.data, 2000 * k, axis=-1))  # four different signals
    paths.append(rec_dir / f"subject{k:02d}_raw.fif")
    io.write(subject, paths[-1], overwrite=True)

t0 = time.perf_counter()
with (
    SubprocessCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster,
    Client(cluster) as client,
):
    client.wait_for_workers(2)
    n_workers = len(client.scheduler_info()["workers"])
    print(f"{n_workers} workers, scheduler at {cluster.scheduler_address}")
    outputs = map_files(paths, bank, out_dir, client=client, overwrite=True)
    y_cluster = lazy_out.compute()  # the lazy array, computed by the workers
print(f"cluster work (including starting it): {time.perf_counter() - t0:.1f} s")
print([p.name for p in outputs])

for path, out in zip(paths, outputs):
    got, want = io.read(out).data, bank(io.read(path).data)
    assert np.allclose(got, want, atol=1e-9 * np.abs(want).max()), out.name
y_mem = bank(np.asarray(lazy_in))
assert np.allclose(y_cluster, y_mem, atol=1e-9 * np.abs(y_mem).max())
print("every file and the lazy array equal the in-memory layer")

# %% [markdown]
# **On a real cluster** the code is the same except for the client:
#
# ```python
# client = Client("tcp://scheduler-host:8786")   # `dask scheduler` + `dask worker` on the nodes
# # or: from dask_jobqueue import SLURMCluster; client = Client(SLURMCluster(cores=1, ...))
# outputs = map_files(all_my_files, layer, "/shared/results", client=client)
# ```
#
# Every worker needs the same specconv installed (with the extras the file formats need), and
# the input and output paths must be visible to all workers under the same names (a shared
# file system). Give workers one thread each and as many workers as cores. For single
# recordings larger than a worker's memory, call `specconv.outofcore.apply` inside your own
# task instead.
#
# ## Summary
#
# * `StreamingConv`: exact block-by-block output, latency of one block, any block sizes,
#   click-free kernel swaps; zero-phase filters cost their half-length in latency.
# * `outofcore.apply`: disk to disk in bounded memory, atomic outputs, equal to in memory.
# * `dask.conv_dask` and `dask.map_files`: the same layer, lazily and over many files on a
#   cluster.
#
# Back to the start: [tutorials/README.md](README.md).
