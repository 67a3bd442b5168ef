"""The backward pass of a network: the forward's walk in reverse (model/walk.py).

Each segment of the forward pass is walked back on the same shards of the
batch, on worker threads (model/shards.py).
"""

from model.blueprints import validate_blueprint
from model.shards import sharded_backward


def backward(dscores, caches, blueprint):
    """Gradients of the loss with respect to every trainable parameter.

    dscores: (N, K) gradient of the loss with respect to the scores.
    caches: the ForwardCaches of the forward pass of ``blueprint`` that produced the scores.
    Returns {"<layer name>.<param>": gradient}, exactly the trainable keys
    (batch-norm running statistics have none), each shaped like its parameter.
    The first layer's input is the data: its gradient is not computed.
    """
    _, grads = sharded_backward(dscores, caches, validate_blueprint(blueprint), need_dx=False)
    return grads


def input_gradient(dscores, caches, blueprint):
    """The gradient of the loss with respect to the network's input x.

    dscores: (N, K) gradient of the loss with respect to the scores.
    caches: the ForwardCaches of the forward pass of ``blueprint`` that produced the scores.
    Returns dx, shaped like the x of that forward pass: the backward pass carried one layer
    further than training needs (saliency, adversarial examples, class visualization).
    """
    dx, _ = sharded_backward(dscores, caches, validate_blueprint(blueprint), need_dx=True)
    return dx
