"""The backward pass of a network: walk the blueprint in reverse, call each layer's backward."""

from model.blueprints import validate_blueprint
from model.layer_kinds import LAYER_KINDS


def backward(dscores, caches, blueprint):
    """Gradients of the loss with respect to every trainable parameter.

    dscores: (N, K) gradient of the loss with respect to the scores.
    caches: the ForwardCaches of the forward pass that produced the scores.
    Returns {"<layer name>.<param>": gradient}, exactly the trainable keys
    (batch-norm running statistics have none), each shaped like its parameter.
    """
    blueprint = validate_blueprint(blueprint)
    grads, dout = {}, dscores
    for i in reversed(range(len(blueprint))):
        spec = blueprint[i]
        kind = LAYER_KINDS[spec["type"]]
        dout, local_grads = kind.backward(spec, dout, caches.layers[i], i > 0)
        grads.update({f"{spec['name']}.{k}": g for k, g in local_grads.items()})
    return grads
