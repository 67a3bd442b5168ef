"""Batch norm folded into the layer before it, for inference.

In evaluation mode a batch norm is a fixed affine map of each channel, and after a conv or
fc it can join that layer's weights and bias: one layer instead of two, the same function up
to float rounding, and one pass over the activations fewer. ``core.learn.eval.predict_scores``
(evaluate, predict, validation) runs the folded network; ``model/quantize.py`` folds before
it quantizes. The layer-by-layer views (``forward_activations``, the live page's layers,
gradients) keep the batch norms.
"""

import numpy as np

from model.walk import KINDS


def fold_batchnorm(params, blueprint):
    """(params, blueprint, folded) with each batch norm after a conv or fc folded into it.

    params: {"<layer>.<param>": float array}; blueprint: validated specs (residual nodes
    are walked inside). For a conv or fc (W, b) followed by a batch norm (gamma, beta,
    running mean mu, running var v, eps), with s = gamma / sqrt(v + eps) per channel:
        W' = W * s (per output channel),  b' = (b - mu) * s + beta,
    so that layer'(x) equals batchnorm(layer(x)) in evaluation mode. Computed in float64,
    returned in the params' dtype.
    Returns the new params (a new dict: the batch norms' arrays gone), the new blueprint
    (without those batch norms) and the folded batch norms' names, in order.
    """
    params, folded = dict(params), []
    return params, _fold_specs(params, blueprint, folded), folded


def _fold_specs(params, specs, folded):
    """The specs with foldable batch norms removed; ``params`` and ``folded`` updated."""
    out = []
    for spec in specs:
        kind = KINDS[spec["type"]]
        if kind.nested:
            spec = {**spec, **{key: _fold_specs(params, spec[key], folded) for key in kind.nested}}
        previous = out[-1] if out else None
        if spec["type"] == "batchnorm" and previous and previous["type"] in ("conv", "fc"):
            _fold_into(params, previous, spec)
            folded.append(spec["name"])
            continue
        out.append(spec)
    return out


def _fold_into(params, layer, bn):
    """Fold the batch norm ``bn`` into the conv or fc ``layer`` (params changed in place)."""
    w, b = f"{layer['name']}.W", f"{layer['name']}.b"
    gamma, beta, mean, var = (
        params.pop(f"{bn['name']}.{k}").astype(np.float64)
        for k in ("gamma", "beta", "running_mean", "running_var")
    )
    s = gamma / np.sqrt(var + bn["eps"])
    dtype = params[w].dtype
    shape = (-1, 1, 1, 1) if layer["type"] == "conv" else (1, -1)  # the output channel axis
    params[w] = (params[w].astype(np.float64) * s.reshape(shape)).astype(dtype)
    params[b] = ((params[b].astype(np.float64) - mean) * s + beta).astype(dtype)
