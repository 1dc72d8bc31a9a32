"""The run loop: compute one chunk while the I/O thread reads the next and writes the last.

Also the progress bar every writer shares.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

from .._optional import has_module, soft_import

#: How much lower the I/O thread's priority is than the caller's (Linux niceness). Its work
#: has slack (a whole chunk's computation), while the engine's workers share each chunk in
#: lockstep: a worker preempted by the I/O thread holds up the other at the next barrier.
#: Not lower: next to busy processes a lower priority starves the I/O thread (measurements:
#: ``benchmarks/RESULTS.md``, "Measurements behind the code's constants").
IO_NICENESS = 5


def _yield_to_compute():
    """Lower the calling thread's priority (Linux only: elsewhere it is the process's)."""
    if sys.platform.startswith("linux") and IO_NICENESS:
        tid = threading.get_native_id()
        with contextlib.suppress(OSError):
            os.setpriority(
                os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + IO_NICENESS)
            )


def run(chunker, writer, progress):
    # one I/O thread reads the next chunk and writes the previous one while this one is
    # computed (file reads and writes release the GIL): two input and two output chunks exist
    # at a time
    starts = range(0, chunker.n_out, chunker.chunk)
    # They take turns in two buffers each (the inputs where the source fills buffers): a new
    # array per chunk, freed in the other thread, left freed memory resident (measured +50 MB
    # peak on 1.8 GB for the inputs; one output chunk more in some runs, but not others).
    spare = None
    outputs = [chunker.output_buffer() for _ in starts[:2]]
    with (
        progress_bar(chunker.n_out, progress, "specconv") as update,
        ThreadPoolExecutor(
            1, thread_name_prefix="specconv-io", initializer=_yield_to_compute
        ) as io,
    ):
        reading, writing = io.submit(chunker.read, starts[0]), None
        for i, m0 in enumerate(starts):
            x = reading.result()
            if i + 1 < len(starts):
                reading = io.submit(chunker.read, starts[i + 1], spare)
            y = chunker.run(m0, x, outputs[i % 2])
            spare = x if chunker.src.fills_buffers else None
            del x
            if writing is not None:
                writing.result()
            writing = io.submit(writer.write, m0, y)
            update(y.shape[chunker.axis])
            del y
        if writing is not None:
            writing.result()


@contextlib.contextmanager
def progress_bar(total, progress, desc):
    """Yield an ``update(n)`` callable: a tqdm bar, or nothing when progress is off.

    ``progress=None`` shows a bar only on a terminal and only if tqdm is installed.
    """
    if progress is None:
        progress = sys.stderr is not None and sys.stderr.isatty() and has_module("tqdm")
    if not progress:
        yield lambda n: None
        return
    tqdm = soft_import("tqdm", "progress", purpose="progress bars")
    with tqdm.tqdm(total=total, unit="sample", unit_scale=True, desc=desc, leave=False) as bar:
        yield bar.update
