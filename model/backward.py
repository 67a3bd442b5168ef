"""The backward pass of a network: the forward's walk in reverse (model/walk.py).

Each segment of the forward pass is walked back on the same shards of the
batch, on worker threads (model/shards.py).
"""

from model.shards import sharded_backward


def backward(dscores, caches, blueprint=None):
    """Gradients of the loss with respect to every trainable parameter.

    dscores: (N, K) gradient of the loss with respect to the scores.
    caches: the ForwardCaches of the forward pass that produced the scores (they
    hold the blueprint's layers, so ``blueprint`` is not needed).
    Returns {"<layer name>.<param>": gradient}, exactly the trainable keys
    (batch-norm running statistics have none), each shaped like its parameter.
    """
    return sharded_backward(dscores, caches)
