"""Run a layer's work over chunks of the batch on worker threads.

NumPy releases the GIL inside its heavy operations (matrix products, array
copies), so threads give real parallelism here without copying data between
processes. A layer splits its batch into chunks whose size depends only on
the layer's shapes, never on the thread count, and combines the per-chunk
results in chunk order: the result is bit-identical for any number of threads.

BLAS is limited to one thread while the pool is in use, so the two levels of
threading do not fight over the cores.
"""

import os
from concurrent.futures import ThreadPoolExecutor

from threadpoolctl import threadpool_limits

from core.errors import UserError

_CHUNK_BYTES = 1 << 20  # keep a chunk's im2col buffer near L2-cache size
_threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
_pool = None
_blas_limit = None


def set_threads(n):
    """Use ``n`` worker threads (>= 1) for the layers' chunked work."""
    global _threads, _pool
    if int(n) != n or n < 1:
        raise UserError(f"threads must be a whole number >= 1, got {n}")
    if _pool is not None and n != _threads:
        _pool.shutdown(wait=True)
        _pool = None
    _threads = int(n)


def get_threads():
    """The number of worker threads the layers use."""
    return _threads


def chunk_size(bytes_per_example):
    """How many examples go in one chunk: enough to fill about 1 MiB, at least one."""
    return max(1, _CHUNK_BYTES // max(1, bytes_per_example))


def map_chunks(task, n_items, chunk):
    """``[task(lo, hi) for each chunk]`` over ``range(n_items)`` in chunks of ``chunk``.

    The results come back in chunk order whatever the thread count.
    """
    global _pool, _blas_limit
    bounds = [(lo, min(lo + chunk, n_items)) for lo in range(0, n_items, chunk)]
    if _blas_limit is None:
        _blas_limit = threadpool_limits(limits=1, user_api="blas")
    if _threads == 1 or len(bounds) == 1:
        return [task(lo, hi) for lo, hi in bounds]
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=_threads, thread_name_prefix="layers")
    return list(_pool.map(lambda b: task(*b), bounds))
