"""The backward pass of a network: walk the blueprint in reverse, call each layer's backward.

Each segment of the forward pass (model/forward.py) is walked back on the same
shards of the batch, on worker threads; the shards' parameter gradients are
summed in shard order.
"""

from functools import partial

import numpy as np

from model.blueprints import validate_blueprint
from model.layer_kinds import LAYER_KINDS
from model.shards import map_shards


def _run_layers_back(dout, blueprint, segment, s):
    """dout back through shard s of a segment: (dx or None, {param key: gradient})."""
    (lo, hi), caches = segment.bounds[s], segment.caches[s]
    dout, grads = dout[lo:hi], {}
    for i in reversed(range(segment.start, segment.stop)):
        spec = blueprint[i]
        cache = caches[i - segment.start]
        dout, local_grads = LAYER_KINDS[spec["type"]].backward(spec, dout, cache, i > 0)
        grads.update({f"{spec['name']}.{k}": g for k, g in local_grads.items()})
    return dout, grads


def backward(dscores, caches, blueprint):
    """Gradients of the loss with respect to every trainable parameter.

    dscores: (N, K) gradient of the loss with respect to the scores.
    caches: the ForwardCaches of the forward pass that produced the scores.
    Returns {"<layer name>.<param>": gradient}, exactly the trainable keys
    (batch-norm running statistics have none), each shaped like its parameter.
    """
    blueprint = validate_blueprint(blueprint)
    grads, dout = {}, dscores
    for segment in reversed(caches.segments):
        run = partial(_run_layers_back, dout, blueprint, segment)
        results = map_shards(run, range(len(segment.bounds)))
        dxs = [dx for dx, _ in results]
        dout = dxs[0] if len(dxs) == 1 or dxs[0] is None else np.concatenate(dxs)
        for key in results[0][1]:
            grads[key] = sum(shard_grads[key] for _, shard_grads in results)
    return grads
