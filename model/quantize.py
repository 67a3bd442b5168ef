"""Post-training int8 quantization of a float model: fold batch norm, calibrate, quantize.

1. ``fold_batchnorm`` (model/fold.py): each batch norm that directly follows a conv or fc (in
   the same list of specs) becomes part of that layer's weights and bias, in its evaluation form
   (running mean and variance); a batch norm that follows anything else stays, in float.
2. ``calibrate``: the float (folded) model runs on calibration images, and each conv and fc
   records the largest |value| of its input.
3. ``quantize_model``: each conv becomes a qconv and each fc a qfc (model/quantized_kinds.py;
   a float kind's record names its int8 kind, ``quantized_as``, and its weights' output-channel
   axis, ``out_axis``): weights int8 with one scale per output channel (max |W| of the channel / 127), input
   scale max |x| / 127, bias kept in float32. Every other layer (ReLU, pooling, flatten,
   dropout, a residual node's sum) is unchanged and runs in float between them.

Why the bias stays float32 (not int32 in the accumulator's scale): the sums are rescaled to
float anyway (NumPy has no integer pipeline to stay in), so an int32 bias would only add a
rounding error, for no gain: the biases are a few hundred values of the file.
"""

import numpy as np

from layers.quantized import QMAX, quantize
from model.fold import fold_batchnorm
from model.walk import KINDS, iter_layers, walk_forward


def calibrate(params, blueprint, x, batch_size=500):
    """{conv or fc name: the largest |value| of its input} over the inputs ``x``.

    params, blueprint: a float model (batch norm folded or not); x (N, ...) its inputs,
    normalized as for training. Runs in inference mode, ``batch_size`` examples at a time.
    """
    maxima = {}
    for i in range(0, len(x), batch_size):
        _calibrate_specs(params, x[i : i + batch_size], blueprint, maxima)
    return maxima


def _calibrate_specs(params, x, specs, maxima):
    """x through ``specs``, recording each conv and fc input's max |x|; returns the output.

    A composite runs its own forward, given this function as the walk of its blueprints,
    so that the layers inside it are recorded too.
    """

    def walk(params, branch_input, branch, train, rng):  # walk_forward's arguments and results
        return _calibrate_specs(params, branch_input, branch, maxima), None, {}

    for spec in specs:
        kind = KINDS[spec["type"]]
        if kind.quantized_as:
            name = spec["name"]
            maxima[name] = max(maxima.get(name, 0.0), float(np.abs(x).max()))
        if kind.nested:
            x = kind.forward(spec, params, x, False, None, walk=walk)[0]
        else:
            x = walk_forward(params, x, [spec], keep_caches=False)[0]
    return x


def scale_of(largest):
    """The symmetric int8 scale of values up to ``largest`` in magnitude (1 for all zeros),
    float32, as stored."""
    largest = np.asarray(largest, dtype=np.float32)
    return np.where(largest > 0, largest / np.float32(QMAX), np.float32(1)).astype(np.float32)


def quantize_weights(W, axis):
    """(Wq int8, w_scale (channels,) float32): symmetric, one scale per output channel.

    W: the weights; axis: its output-channel axis, the kind's ``out_axis`` (conv
    (F, C/g, KH, KW): 0; fc (D, M): 1).
    """
    other = tuple(a for a in range(W.ndim) if a != axis)
    w_scale = scale_of(np.abs(W).max(axis=other))
    shape = [1] * W.ndim
    shape[axis] = -1
    return quantize(W, w_scale.reshape(shape)), w_scale


def quantize_model(params, blueprint, x_calibration):
    """An int8 model of a float one: (params, blueprint, folded batch norms).

    params, blueprint: the float model (validated blueprint); x_calibration (N, ...): inputs
    normalized as for training, the calibration images.
    Returns the quantized params ({"conv1.W": int8, "conv1.w_scale", "conv1.x_scale",
    "conv1.b": float32, ...}, the other layers' arrays unchanged), its blueprint (each conv a
    qconv, each fc a qfc) and the names of the batch norms folded away.
    """
    params, folded_blueprint, folded = fold_batchnorm(params, blueprint)
    maxima = calibrate(params, folded_blueprint, x_calibration)
    return (
        params | _quantized_arrays(params, folded_blueprint, maxima),
        _as_quantized(folded_blueprint),
        folded,
    )


def _quantized_arrays(params, specs, maxima):
    """{key: array} of every conv and fc in ``specs`` (nested ones too), quantized."""
    arrays = {}
    for spec in iter_layers(specs):
        kind = KINDS[spec["type"]]
        if kind.quantized_as:
            name = spec["name"]
            Wq, w_scale = quantize_weights(params[f"{name}.W"], kind.out_axis)
            arrays |= {
                f"{name}.W": Wq,
                f"{name}.w_scale": w_scale,
                f"{name}.x_scale": scale_of(maxima[name]),
                f"{name}.b": params[f"{name}.b"].astype(np.float32),
            }
    return arrays


def _as_quantized(specs):
    """The specs with each conv a qconv and each fc a qfc (same hyper-parameters)."""
    out = []
    for spec in specs:
        kind = KINDS[spec["type"]]
        spec = {**spec, **{key: _as_quantized(spec[key]) for key in kind.nested}}
        out.append({**spec, "type": kind.quantized_as or spec["type"]})
    return out
