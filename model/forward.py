"""The forward pass of a whole network: walk the blueprint, call each layer's forward.

The batch is cut into shards that worker threads carry through the network in
parallel (model/shards.py). A layer whose training forward must see the whole
batch at once (``LayerKind.whole_batch``: batch norm's statistics, dropout's
masks) runs on the re-joined batch; the runs of layers between such layers are
the *segments* of the pass.
"""

from functools import partial
from typing import NamedTuple

import numpy as np

from data.errors import UserError
from model.blueprints import layer_label, validate_blueprint
from model.layer_kinds import LAYER_KINDS
from model.shards import map_shards, shard_bounds


class Segment(NamedTuple):
    start: int  # blueprint index of its first layer
    stop: int  # one past its last layer
    bounds: list  # [(lo, hi), ...]: the shards of the batch it ran on
    caches: list  # caches[s][k]: shard s's cache of layer start + k (None when not kept)


class ForwardCaches(NamedTuple):
    segments: list  # the Segments, in blueprint order
    running_stats: dict  # training mode: the new batch-norm running statistics,
    # {"bn1.running_mean": ..., "bn1.running_var": ...}, for the training loop to merge


def layer_params(params, spec, label):
    """The arrays of one layer, keyed by their local names ("W", "b", "gamma", ...)."""
    kind = LAYER_KINDS[spec["type"]]
    if not kind.trainable:
        return {}
    prefix = spec["name"] + "."
    found = {k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix)}
    if not found:
        raise UserError(f"layer {label}: no parameters named '{prefix}*' in the parameter dict")
    return found


def segment_ranges(blueprint, train):
    """``[(start, stop, whole_batch), ...]`` covering the blueprint in order.

    In training, each layer that must see the whole batch is a segment of its
    own (``whole_batch`` True); the layers between them form sharded segments.
    In inference every layer works example by example: one sharded segment.
    """
    ranges, start = [], 0
    for i, spec in enumerate(blueprint):
        if train and LAYER_KINDS[spec["type"]].whole_batch:
            if start < i:
                ranges.append((start, i, False))
            ranges.append((i, i + 1, True))
            start = i + 1
    if start < len(blueprint):
        ranges.append((start, len(blueprint), False))
    return ranges


def _run_layers(params, x, blueprint, start, stop, train, rng, keep_caches, shard):
    """x[lo:hi] for shard (lo, hi) through layers start..stop-1:
    (out, [cache per layer], {new running stats})."""
    x = x[shard[0] : shard[1]]
    caches, running_stats = [], {}
    for i in range(start, stop):
        spec = blueprint[i]
        p = layer_params(params, spec, layer_label(spec, i))
        x, cache, new_stats = LAYER_KINDS[spec["type"]].forward(spec, p, x, train, rng)
        caches.append(cache if keep_caches else None)
        running_stats.update({f"{spec['name']}.{k}": v for k, v in new_stats.items()})
    return x, caches, running_stats


def forward(params, x, blueprint, train=False, rng=None, keep_caches=True):
    """Scores of a batch.

    params: flat dict {"<layer name>.<param>": array} (see initialize_parameters).
    x: (N, C, H, W) images or (N, D) vectors, float32 (or float64 for checks).
    train: batch statistics for batch norm, random masks for dropout (needs ``rng``).
    keep_caches: False for inference, to free each layer's cache as soon as it is used.
    Returns scores (N, K) and ForwardCaches(segments, running_stats). Nothing is
    modified in place: the training loop merges ``running_stats`` into its params.
    """
    blueprint = validate_blueprint(blueprint)
    segments, running_stats = [], {}
    for start, stop, whole_batch in segment_ranges(blueprint, train):
        bounds = [(0, len(x))] if whole_batch else shard_bounds(len(x))
        run = partial(_run_layers, params, x, blueprint, start, stop, train, rng, keep_caches)
        results = map_shards(run, bounds)
        x = results[0][0] if len(results) == 1 else np.concatenate([out for out, _, _ in results])
        segments.append(Segment(start, stop, bounds, [caches for _, caches, _ in results]))
        for _, _, stats in results:
            running_stats.update(stats)
    return x, ForwardCaches(segments, running_stats)


def forward_activations(params, x, blueprint):
    """Every layer's output for a batch, in inference mode: [(label, out), ...]."""
    blueprint = validate_blueprint(blueprint)
    outputs = []
    for i, spec in enumerate(blueprint):
        label = layer_label(spec, i)
        x, _, _ = LAYER_KINDS[spec["type"]].forward(
            spec, layer_params(params, spec, label), x, False, None
        )
        outputs.append((label, x))
    return outputs
