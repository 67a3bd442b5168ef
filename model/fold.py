"""Batch norm folded into the layer before it, for inference.

In evaluation mode a batch norm is a fixed affine map of each channel (its record's
``eval_affine``), and after a layer whose record ``folds_batchnorm`` (conv, fc) it can join
that layer's weights and bias: one layer instead of two, the same function up
to float rounding, and one pass over the activations fewer. ``core.learn.eval.predict_scores``
(evaluate, predict, validation) runs the folded network; ``model/quantize.py`` folds before
it quantizes. The layer-by-layer views (``forward_activations``, the live page's layers,
gradients) keep the batch norms.
"""

import numpy as np

from model.walk import KINDS, local_params


def fold_batchnorm(params, blueprint):
    """(params, blueprint, folded) with each batch norm after a conv or fc folded into it.

    params: {"<layer>.<param>": float array}; blueprint: validated specs (composites'
    blueprints are walked inside). For a layer (W, b) whose record ``folds_batchnorm``
    (conv, fc) followed by a batch norm (gamma, beta, running mean mu, running var v, eps),
    with s = gamma / sqrt(v + eps) per channel:
        W' = W * s (along W's output-channel axis),  b' = (b - mu) * s + beta,
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
        if kind.eval_affine and previous and KINDS[previous["type"]].folds_batchnorm:
            _fold_into(params, previous, spec)
            folded.append(spec["name"])
            continue
        out.append(spec)
    return out


def _fold_into(params, layer, bn):
    """Fold the batch norm ``bn`` into ``layer``, a conv or fc (params changed in place)."""
    w, b = f"{layer['name']}.W", f"{layer['name']}.b"
    arrays = local_params(params, bn)
    mean, s, beta = KINDS[bn["type"]].eval_affine(bn, arrays)
    for key in arrays:
        del params[f"{bn['name']}.{key}"]
    dtype = params[w].dtype
    s_along_w = KINDS[layer["type"]].along_out_channels(s, params[w].ndim)
    params[w] = (params[w].astype(np.float64) * s_along_w).astype(dtype)
    params[b] = ((params[b].astype(np.float64) - mean) * s + beta).astype(dtype)
