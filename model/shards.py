"""The threads-over-shards executor: the plain walk run on shards of the batch, one thread each.

``THREADS`` (an Executor, model/executor.py) is the walk the forward and backward passes
(model/forward.py, model/backward.py) run by default. It cuts each batch into as many
shards as there are threads (``set_threads``; default: every core) and sends each shard
through a run of layers, walk_forward and walk_backward of model/walk.py, on its own
thread (the first on the calling thread, the others on worker threads): data parallelism
inside one process. NumPy releases the GIL inside its heavy operations (matrix products,
array copies), and a thread that runs a whole stretch of the network makes few, long NumPy
calls, so the threads rarely wait for each other or for the GIL.

The batch stays cut from the first layer to the last: between layers it is a
``Shards``, the list of its parts. A layer that must see the whole batch in
training (batch norm's statistics, dropout's masks: the kind's
``forward_parts``) takes the parts as they are, and does its per-part work on
the worker threads too: batch norm sums its statistics over the parts, then
normalizes each part where it lies. A residual node adds its branches shard by
shard. Nothing is joined until the network's output.

The shards' results are combined in shard order, so a run is repeatable for a
given thread count, and on one thread it is the plain walk bit for bit; another
thread count sums in another order and agrees up to float rounding. BLAS is
limited to one thread, so that the two levels of threading do not fight over the cores.
"""

import os
from concurrent.futures import ThreadPoolExecutor, wait
from functools import partial
from itertools import pairwise
from typing import NamedTuple

import numpy as np
from threadpoolctl import threadpool_limits

from data.checks import check_whole
from layers.parts import in_order_sum
from model.executor import Executor
from model.walk import KINDS, local_params, walk_backward, walk_forward, whole_batch

_threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
_pool = None
_blas_limit = None


def set_threads(n):
    """Use ``n`` threads (a whole number >= 1), hence ``n`` shards per batch."""
    global _threads, _pool
    n = check_whole("threads", n, 1)
    if _pool is not None and n != _threads:
        _pool.shutdown(wait=True)
        _pool = None
    _threads = n


def get_threads():
    """The number of threads (and of shards per batch)."""
    return _threads


def shard_bounds(n_items):
    """``[(lo, hi), ...]``: ``range(n_items)`` cut into at most get_threads() near-equal shards."""
    return _cut(n_items, min(_threads, n_items))


def _cut(n_items, pieces):
    pieces = max(1, pieces)
    return list(pairwise(n_items * s // pieces for s in range(pieces + 1)))


def map_shards(task, shards):
    """``[task(shard) for shard in shards]``, results in order: the first shard on the calling
    thread, the others on worker threads. (The caller would only wait for them otherwise;
    and waking one thread fewer saves about 0.1 ms a call on a virtual machine, where batch
    norm makes a few calls per layer.)"""
    global _pool, _blas_limit
    if _blas_limit is None:
        _blas_limit = threadpool_limits(limits=1, user_api="blas")
    if len(shards) == 1:
        return [task(shards[0])]
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=_threads - 1, thread_name_prefix="shard")
    others = [_pool.submit(task, shard) for shard in shards[1:]]
    try:
        first = task(shards[0])
    finally:
        wait(others)  # even when the first shard failed: no thread is left working
    return [first, *(future.result() for future in others)]


# -- the sharded walk ---------------------------------------------------------------------------


class Shards:
    """A batch held as its parts, cut along the first axis, one per thread.

    ``a + b`` adds two batches cut alike part by part (a residual node's branches).
    """

    __slots__ = ("parts",)

    def __init__(self, parts):
        self.parts = list(parts)

    def __add__(self, other):
        return Shards(map_shards(_add, list(zip(self.parts, other.parts, strict=True))))

    def joined(self):
        """The whole batch, one array."""
        return self.parts[0] if len(self.parts) == 1 else np.concatenate(self.parts)


def cut(x):
    """The batch x (N, ...) as Shards: shard_bounds(N), views of x."""
    return Shards([x[lo:hi] for lo, hi in shard_bounds(len(x))])


def _add(pair):
    return pair[0] + pair[1]


class Segment(NamedTuple):
    """A stretch of the walk and its caches: the executor's caches are a list of Segments."""

    start: int  # index of its first layer in the list of specs it belongs to
    stop: int  # one past its last layer
    whole: bool  # a layer that sees the whole batch (its parts), or a node that holds one
    caches: list  # a run of layers: caches[s] for shard s, one per layer (None when not
    # kept); a whole-batch layer or node: its own cache


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
    """walk_forward (model/walk.py) of validated specs, on the shards of the batch.

    x: the batch (N, ...), cut here into shards, or a composite node's branch input,
    already Shards. A run of layers goes through walk_forward on each shard; a layer
    that must see the whole batch gets all the parts (its kind's forward_parts); a
    composite node that holds one walks its branches with this function.
    Returns walk_forward's (out, caches, {new running stats}), the caches a list of
    Segments; out is Shards if x was.
    """
    batch = x if isinstance(x, Shards) else cut(x)
    segments, running_stats = [], {}
    for start, stop, whole in segment_ranges(specs, train):
        spec = specs[start]
        kind = KINDS[spec["type"]]
        if whole and kind.nested:
            walk = partial(sharded_forward, keep_caches=keep_caches)
            batch, cache, stats = kind.forward(spec, params, batch, train, rng, walk=walk)
        elif whole:
            p = local_params(params, spec) if "name" in spec else {}
            parts, cache, local = kind.forward_parts(spec, p, batch.parts, rng, map_shards)
            batch = Shards(parts)
            stats = {f"{spec['name']}.{k}": v for k, v in local.items()}
        else:
            run = partial(_forward_part, params, specs[start:stop], train, rng, keep_caches)
            results = map_shards(run, batch.parts)
            batch = Shards([out for out, _, _ in results])
            cache = [caches for _, caches, _ in results]
            stats = {key: v for _, _, part_stats in results for key, v in part_stats.items()}
        segments.append(Segment(start, stop, whole, cache))
        running_stats.update(stats)
    out = batch if isinstance(x, Shards) else batch.joined()
    return out, segments, running_stats


def sharded_backward(dout, segments, specs, need_dx=True):
    """walk_backward through sharded_forward's Segments, on the shards the forward ran on.

    dout: the gradient of the output (N, ...), or Shards (a composite node's branch).
    Returns (dx, {"<layer name>.<param>": gradient}), dx like dout (None when not
    needed), the shards' gradients summed in shard order. need_dx: False when the
    specs' input is the data.
    """
    grad = dout if isinstance(dout, Shards) else cut(dout)
    grads = {}
    for segment in reversed(segments):
        first_dx = need_dx or segment.start > 0
        spec = specs[segment.start]
        kind = KINDS[spec["type"]]
        if segment.whole and kind.nested:
            grad, local = kind.backward(
                spec, grad, segment.caches, first_dx, walk_back=sharded_backward
            )
        elif segment.whole:
            parts, local = kind.backward_parts(
                spec, grad.parts, segment.caches, first_dx, map_shards
            )
            grad = None if parts is None else Shards(parts)
            local = {f"{spec['name']}.{k}": g for k, g in local.items()}
        else:
            back = partial(_backward_part, specs[segment.start : segment.stop], first_dx)
            results = map_shards(back, list(zip(grad.parts, segment.caches, strict=True)))
            grad = None if results[0][0] is None else Shards([dx for dx, _ in results])
            local = {key: in_order_sum([part[key] for _, part in results]) for key in results[0][1]}
        grads.update(local)
    if grad is None or isinstance(dout, Shards):
        return grad, grads
    return grad.joined(), grads


def _forward_part(params, specs, train, rng, keep_caches, part):
    return walk_forward(params, part, specs, train, rng, keep_caches)


def _backward_part(specs, need_dx, pair):
    dout, caches = pair
    return walk_backward(dout, caches, specs, need_dx)


THREADS = Executor("threads over shards of the batch", sharded_forward, sharded_backward)
"""The walk on get_threads() shards of each batch, one thread each: forward's default."""
