"""BLAS thread control for the per-frequency products and the direct method's GEMMs.

specconv's products are many small matmuls. A multithreaded OpenBLAS spins while it waits for
its threads, which on a busy machine made them 10-100x slower (measured), so specconv runs
them single-threaded and gets its parallelism from its own worker threads instead.
"""

from __future__ import annotations

import threadpoolctl

_controller = None


def limit(n):
    """Context manager: at most ``n`` BLAS threads inside it (process-wide)."""
    global _controller
    if _controller is None:
        _controller = threadpoolctl.ThreadpoolController()
    return _controller.limit(limits=n, user_api="blas")
