"""The backward pass of a network: the forward's walk in reverse (model/walk.py).

The gradient goes back through the specs from the last to the first, each kind's
backward turning the gradient of its output into the gradients of its input and of its
arrays (the plain loop ``walk_backward``). The executor that ran the forward pass
(model/executor.py) walks it back, on the caches it kept.
"""

from model.blueprints import validate_blueprint


def backward(dscores, caches, blueprint):
    """Gradients of the loss with respect to every trainable parameter.

    dscores: (N, K) gradient of the loss with respect to the scores.
    caches: the ForwardCaches of the forward pass of ``blueprint`` that produced the scores.
    Returns {"<layer name>.<param>": gradient}, exactly the trainable keys
    (batch-norm running statistics have none), each shaped like its parameter.
    The first layer's input is the data: its gradient is not computed.
    """
    _, grads = _walk_back(dscores, caches, blueprint, need_dx=False)
    return grads


def input_gradient(dscores, caches, blueprint):
    """The gradient of the loss with respect to the network's input x.

    dscores: (N, K) gradient of the loss with respect to the scores.
    caches: the ForwardCaches of the forward pass of ``blueprint`` that produced the scores.
    Returns dx, shaped like the x of that forward pass: the backward pass carried one layer
    further than training needs (saliency, adversarial examples, class visualization).
    """
    dx, _ = _walk_back(dscores, caches, blueprint, need_dx=True)
    return dx


def _walk_back(dscores, caches, blueprint, need_dx):
    """(dx or None, grads): the forward's executor walks ``dscores`` back through its caches."""
    specs = validate_blueprint(blueprint)
    return caches.executor.backward(dscores, caches.walk_caches, specs, need_dx)
