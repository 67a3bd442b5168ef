"""Run a network's layers on shards of the batch, one worker thread per shard.

The forward and backward passes split each batch into as many shards as there
are worker threads (``set_threads``; default: every core) and send each shard
through a run of layers on its own thread: data parallelism inside one process.
NumPy releases the GIL inside its heavy operations (matrix products, array
copies), and a thread that runs a whole stretch of the network makes few, long
NumPy calls, so the threads rarely wait for each other or for the GIL.

The shards' results are combined in shard order, so a run is repeatable for a
given thread count; another thread count sums the gradients in another order
and agrees up to float rounding. BLAS is limited to one thread, so that the
two levels of threading do not fight over the cores.
"""

import os
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise

from threadpoolctl import threadpool_limits

from data.checks import check_whole

_threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
_pool = None
_blas_limit = None


def set_threads(n):
    """Use ``n`` worker threads (a whole number >= 1), hence ``n`` shards per batch."""
    global _threads, _pool
    n = check_whole("threads", n, 1)
    if _pool is not None and n != _threads:
        _pool.shutdown(wait=True)
        _pool = None
    _threads = n


def get_threads():
    """The number of worker threads (and of shards per batch)."""
    return _threads


def shard_bounds(n_items):
    """``[(lo, hi), ...]``: ``range(n_items)`` cut into at most get_threads() near-equal shards."""
    shards = max(1, min(_threads, n_items))
    cuts = [n_items * s // shards for s in range(shards + 1)]
    return list(pairwise(cuts))


def map_shards(task, shards):
    """``[task(shard) for shard in shards]``, the shards on worker threads, results in order."""
    global _pool, _blas_limit
    if _blas_limit is None:
        _blas_limit = threadpool_limits(limits=1, user_api="blas")
    if len(shards) == 1:
        return [task(shards[0])]
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=_threads, thread_name_prefix="shard")
    return list(_pool.map(task, shards))
