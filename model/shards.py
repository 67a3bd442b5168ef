"""Run a network's layers on shards of the batch, one worker thread per shard.

The forward and backward passes (model/forward.py, model/backward.py) split each batch into as many shards as there
are worker threads (``set_threads``; default: every core) and send each shard
through a run of layers on its own thread: data parallelism inside one process.
NumPy releases the GIL inside its heavy operations (matrix products, array
copies), and a thread that runs a whole stretch of the network makes few, long
NumPy calls, so the threads rarely wait for each other or for the GIL.

A layer that must see the whole batch (batch norm's statistics) would stop the
other threads; where its channels are independent of each other (the kind's
``per_channel``), it is cut by channel instead, one slice of channels per
thread, which gives the very same numbers as the whole layer.

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
    return _cut(n_items, min(_threads, n_items))


def channel_bounds(n_channels):
    """Like shard_bounds, for a per-channel layer: slices of at least two channels each.

    (On a slice of one channel, einsum drops that axis and sums batch norm's
    values in another order: the numbers would change by rounding.)
    """
    return _cut(n_channels, min(_threads, n_channels // 2))


def _cut(n_items, pieces):
    pieces = max(1, pieces)
    return list(pairwise(n_items * s // pieces for s in range(pieces + 1)))


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
    axis: int = 0  # the axis the shards cut: 0 the batch, 1 the channels (a per_channel layer)


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
        if whole and kind.per_channel and len(channel_bounds(x.shape[1])) > 1:
            x, segment, stats = _forward_by_channel(
                params, x, specs, start, train, rng, keep_caches
            )
            segments.append(segment)
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
        if segment.axis == 1:
            dout, layer_grads = _backward_by_channel(dout, specs, segment, first_dx)
            grads.update(layer_grads)
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


def _forward_by_channel(params, x, specs, start, train, rng, keep_caches):
    """The per-channel layer specs[start] on slices of x's channels, one per thread.

    Returns (out, its Segment, its running statistics), the slices joined in order.
    """
    spec = specs[start]
    bounds = channel_bounds(x.shape[1])
    run = partial(_forward_channels, params, x, spec, train, rng, keep_caches)
    results = map_shards(run, bounds)
    out = np.concatenate([out for out, _, _ in results], axis=1)
    stats = {key: np.concatenate([s[key] for _, _, s in results]) for key in results[0][2]}
    segment = Segment(start, start + 1, bounds, [caches for _, caches, _ in results], axis=1)
    return out, segment, stats


def _forward_channels(params, x, spec, train, rng, keep_caches, channels):
    lo, hi = channels
    prefix = spec["name"] + "."
    sliced = {k: v[lo:hi] for k, v in params.items() if k.startswith(prefix)}
    return walk_forward(sliced, x[:, lo:hi], [spec], train, rng, keep_caches)


def _backward_by_channel(dout, specs, segment, need_dx):
    """The backward of a _forward_by_channel segment: (dx, gradients), slices joined in order."""
    spec = specs[segment.start]
    back = partial(_backward_channels, dout, spec, segment, need_dx)
    results = map_shards(back, range(len(segment.bounds)))
    dx = None if results[0][0] is None else np.concatenate([dx for dx, _ in results], axis=1)
    return dx, {key: np.concatenate([g[key] for _, g in results]) for key in results[0][1]}


def _backward_channels(dout, spec, segment, need_dx, s):
    lo, hi = segment.bounds[s]
    return walk_backward(dout[:, lo:hi], segment.caches[s], [spec], need_dx)


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
