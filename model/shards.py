"""Run a network's layers on shards of the batch, one worker thread per shard.

The forward and backward passes (model/forward.py, model/backward.py) split each batch into as many shards as there
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
from functools import partial
from itertools import pairwise
from typing import NamedTuple

import numpy as np
from threadpoolctl import threadpool_limits

from data.checks import check_whole
from model.walk import KINDS, walk_backward, walk_forward, whole_batch

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


# -- the sharded walk ---------------------------------------------------------------------------


class Segment(NamedTuple):
    start: int  # index of its first layer in the list of specs it belongs to
    stop: int  # one past its last layer
    bounds: list | None  # [(lo, hi), ...]: the shards of the batch it ran on; None for a
    # composite node that runs its own branches sharded (its cache is then the node's)
    caches: list  # caches[s]: shard s's caches, one per layer (None when not kept)


class ForwardCaches(NamedTuple):
    segments: list  # the Segments, in blueprint order
    running_stats: dict  # training mode: the new batch-norm running statistics,
    # {"bn1.running_mean": ..., "bn1.running_var": ...}, for the training loop to merge


def segment_ranges(blueprint, train):
    """``[(start, stop, whole_batch), ...]`` covering the blueprint in order.

    In training, each layer that must see the whole batch (or holds one that
    must) is a segment of its own (``whole_batch`` True); the layers between
    them form sharded segments. In inference every layer works example by
    example: one sharded segment.
    """
    ranges, start = [], 0
    for i, spec in enumerate(blueprint):
        if train and whole_batch(spec):
            if start < i:
                ranges.append((start, i, False))
            ranges.append((i, i + 1, True))
            start = i + 1
    if start < len(blueprint):
        ranges.append((start, len(blueprint), False))
    return ranges


def sharded_forward(params, x, specs, train=False, rng=None, keep_caches=True):
    """walk_forward (model/walk.py) of validated specs, each segment on shards of the batch.

    A composite node that holds a whole-batch layer (a residual block with batch
    norm) runs its own branches through this function, so that only the
    whole-batch layers inside it see the joined batch.
    Returns (out, ForwardCaches(segments, running_stats)).
    """
    segments, running_stats = [], {}
    for start, stop, whole in segment_ranges(specs, train):
        kind = KINDS[specs[start]["type"]]
        if whole and kind.nested:
            walk = partial(_sharded_walk, keep_caches=keep_caches)
            x, cache, stats = kind.forward(specs[start], params, x, train, rng, walk=walk)
            segments.append(Segment(start, stop, None, cache))
            running_stats.update(stats)
            continue
        bounds = [(0, len(x))] if whole else shard_bounds(len(x))
        walk = partial(_forward_shard, params, x, specs[start:stop], train, rng, keep_caches)
        results = map_shards(walk, bounds)
        x = results[0][0] if len(results) == 1 else np.concatenate([out for out, _, _ in results])
        segments.append(Segment(start, stop, bounds, [caches for _, caches, _ in results]))
        for _, _, stats in results:
            running_stats.update(stats)
    return x, ForwardCaches(segments, running_stats)


def sharded_backward(dout, caches, specs, need_dx=True):
    """walk_backward through ForwardCaches, each segment on the shards it ran on.

    Returns (dx, {"<layer name>.<param>": gradient}), the shards' gradients
    summed in shard order. need_dx: False when the specs' input is the data.
    """
    grads = {}
    for segment in reversed(caches.segments):
        first_dx = need_dx or segment.start > 0
        if segment.bounds is None:
            spec = specs[segment.start]
            dout, node_grads = KINDS[spec["type"]].backward(
                spec, dout, segment.caches, first_dx, walk_back=sharded_backward
            )
            grads.update(node_grads)
            continue
        back = partial(
            _backward_shard, dout, specs[segment.start : segment.stop], segment, first_dx
        )
        results = map_shards(back, range(len(segment.bounds)))
        dxs = [dx for dx, _ in results]
        dout = dxs[0] if len(dxs) == 1 or dxs[0] is None else np.concatenate(dxs)
        for key in results[0][1]:
            grads[key] = sum(shard_grads[key] for _, shard_grads in results)
    return dout, grads


def _sharded_walk(params, x, specs, train, rng, keep_caches):
    """sharded_forward with walk_forward's results: (out, caches, running stats)."""
    out, caches = sharded_forward(params, x, specs, train, rng, keep_caches)
    return out, caches, caches.running_stats


def _forward_shard(params, x, specs, train, rng, keep_caches, shard):
    lo, hi = shard
    return walk_forward(params, x[lo:hi], specs, train, rng, keep_caches)


def _backward_shard(dout, specs, segment, need_dx, s):
    lo, hi = segment.bounds[s]
    return walk_backward(dout[lo:hi], segment.caches[s], specs, need_dx)
