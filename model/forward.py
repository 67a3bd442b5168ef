"""The forward pass of a whole network: walk the blueprint, call each layer's forward."""

from typing import NamedTuple

from core.errors import UserError
from model.blueprints import layer_label, validate_blueprint
from model.layer_kinds import LAYER_KINDS


class ForwardCaches(NamedTuple):
    layers: list  # one cache per layer, in blueprint order (None when not kept)
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


def forward(params, x, blueprint, train=False, rng=None, keep_caches=True):
    """Scores of a batch.

    params: flat dict {"<layer name>.<param>": array} (see initialize_parameters).
    x: (N, C, H, W) images or (N, D) vectors, float32 (or float64 for checks).
    train: batch statistics for batch norm, random masks for dropout (needs ``rng``).
    keep_caches: False for inference, to free each layer's cache as soon as it is used.
    Returns scores (N, K) and ForwardCaches(layers, running_stats). Nothing is
    modified in place: the training loop merges ``running_stats`` into its params.
    """
    blueprint = validate_blueprint(blueprint)
    caches, running_stats = [], {}
    for i, spec in enumerate(blueprint):
        label = layer_label(spec, i)
        p = layer_params(params, spec, label)
        x, cache, new_stats = LAYER_KINDS[spec["type"]].forward(spec, p, x, train, rng)
        caches.append(cache if keep_caches else None)
        running_stats.update({f"{spec['name']}.{k}": v for k, v in new_stats.items()})
    return x, ForwardCaches(caches, running_stats)


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
