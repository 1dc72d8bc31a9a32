"""The worker threads every method shares: one pool, calls run side by side.

FFTW, BLAS and the compiled loops release the GIL, so the engine's chunks and the direct
method's slabs run on threads of one long-lived pool.
"""

from __future__ import annotations

import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np


def run_parallel(fns):
    """``[fn() for fn in fns]``, the first in the calling thread, the others on the pool.

    Returns once every call has finished; raises the first real error (a team member's, not
    the broken barrier the others then see).
    """
    first, *rest = fns
    # numpy's error state is the calling thread's (a context variable): the pool's threads
    # take it too, so a caller's np.errstate covers all the work it starts
    state = np.geterr()
    futures = _submit([functools.partial(_with_errstate, state, fn) for fn in rest])
    results, broken = [None], None
    try:
        results[0] = first()
    except threading.BrokenBarrierError as exc:  # a team member failed: raise its error
        broken = exc
    finally:
        wait(futures)
    errors = [e for e in (f.exception() for f in futures) if e is not None]
    errors.sort(key=lambda e: isinstance(e, threading.BrokenBarrierError))  # real first
    if errors:
        raise errors[0]
    if broken is not None:
        raise broken
    return results + [f.result() for f in futures]


# One pool of worker threads for every call: starting threads anew costs about a millisecond
# a call (measurements: benchmarks/RESULTS.md, "Measurements behind the code's constants"). A
# forked child gets a fresh pool (threads do not survive a fork, and a lock held in the parent
# would stay held).
_pool_lock = threading.Lock()
_pool = None  # (size, ThreadPoolExecutor)


def _submit(fns):
    """Futures of the calls ``fns`` on the shared pool (grown to ``len(fns)`` threads).

    Submitted together, under the lock: a team's members wait for each other at barriers,
    so they must sit next to each other in the queue (with at least as many threads as
    members, FIFO then starts them all before anything queued later).
    """
    global _pool
    if not fns:
        return []
    with _pool_lock:  # also: a replaced pool takes no new work
        if _pool is None or _pool[0] < len(fns):
            size = len(fns)
            old, _pool = _pool, (size, ThreadPoolExecutor(size, thread_name_prefix="specconv"))
            if old is not None:
                old[1].shutdown(wait=False)  # its queued work still runs
        return [_pool[1].submit(fn) for fn in fns]


def _with_errstate(state, fn):
    with np.errstate(**state):
        return fn()


def _forget_pool():
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)
