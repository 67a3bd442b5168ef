"""The forward pass of a whole network: walk the blueprint.

A walk carries the batch through the blueprint's specs in order. Each spec's kind
record (model/layer_kinds.py) computes its layer and keeps a cache for the backward
pass (model/backward.py); a residual node walks its branches the same way. The walk
is the plain loop ``walk_forward`` of model/walk.py:

    for spec in specs:
        x, cache, new_stats = KINDS[spec["type"]].forward(spec, p, x, train, rng)

Who runs it is an executor (model/executor.py), given to ``forward`` or else the
current one, ``get_executor()``: by default ``THREADS``, threads over shards of the
batch (model/shards.py), which gives the plain walk's numbers, bit for bit on one thread.
A batch that is on the GPU already (a CuPy array) is walked there by ``GPU`` (model/gpu.py).
"""

from typing import Any, NamedTuple

from layers.arraylib import on_gpu
from model.blueprints import validate_blueprint
from model.executor import Executor
from model.gpu import GPU
from model.shapes import trace_shapes
from model.shards import THREADS
from model.walk import walk_forward


def forward(params, x, blueprint, train=False, rng=None, keep_caches=True, executor=None):
    """Scores of a batch.

    params: flat dict {"<layer name>.<param>": array} (see initialize_parameters).
    x: (N, C, H, W) images or (N, D) vectors, float32 (or float64 for checks).
    train: batch statistics for batch norm, random masks for dropout (needs ``rng``).
    keep_caches: False for inference, to free each layer's cache as soon as it is used.
    executor: who runs the walk (model/executor.py); None: get_executor(), or GPU for a
    batch on the GPU.
    Returns scores (N, K) and ForwardCaches(executor, walk_caches, running_stats).
    Nothing is modified in place: the training loop merges ``running_stats`` into its params.
    """
    if executor is None:
        executor = GPU if on_gpu(x) else _executor
    specs = validate_blueprint(blueprint)
    scores, walk_caches, running_stats = executor.forward(params, x, specs, train, rng, keep_caches)
    return scores, ForwardCaches(executor, walk_caches, running_stats)


class ForwardCaches(NamedTuple):
    """What the backward pass needs of a forward pass."""

    executor: Executor  # who ran the walk: its backward walks back
    walk_caches: Any  # the executor's caches of the walk
    running_stats: dict  # training mode: the new batch-norm running statistics,
    # {"bn1.running_mean": ..., "bn1.running_var": ...}, for the training loop to merge


def forward_activations(params, x, blueprint):
    """The output of each of the blueprint's layers for a batch, in inference mode.

    Returns [(label, out), ...], one per layer of the blueprint (a residual
    node's output is its sum), labelled as in ``summary``: the plain walk, one layer
    at a time.
    """
    rows = [row for row in trace_shapes(blueprint, x.shape[1:]) if row.depth == 0]
    outputs = []
    for row in rows:
        x, _, _ = walk_forward(params, x, [row.spec], keep_caches=False)
        outputs.append((row.label, x))
    return outputs


# -- the current executor: the one seam between the walk and the machine that runs it ---------

_executor = THREADS


def set_executor(executor):
    """Run the forward passes that are given no executor on ``executor`` (an Executor)."""
    global _executor
    _executor = executor


def get_executor():
    """The executor of the forward passes that are given none."""
    return _executor
