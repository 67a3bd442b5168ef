"""Each layer kind's ONNX nodes: ``TRANSLATIONS[spec["type"]](graph, spec, p, x) -> y``.

graph: the Graph being built (core/export/graph.py), which makes the nodes and constants and
walks composites' blueprints; spec: the validated layer spec; p: its arrays by local name
({"W": ..., "b": ...}; {} for a kind without arrays); x: the name of the input tensor.
Returns the name of the output tensor. Every tensor is float32, (N, C, H, W) or (N, D), the
batch axis N dynamic.

This table is to the exporter what the kind records (model/layer_kinds.py) are to the rest of
the program, and like them it names the kinds (tests/test_kinds.py lists it with them). A kind
without an entry is refused with one line naming the layer; tests/test_export.py checks that
every kind has one.

Batch norm reaches here only where it does not follow a conv or fc (graph.py folds the others
into them first, as ``predict_scores`` does), as ``BatchNormalization``. Dropout is the
identity at inference, so it adds no node. The int8 kinds (model/quantized_kinds.py) are the
integer arithmetic of layers/quantized.py, step for step:

    xq  = clip(QuantizeLinear(x, x_scale), -127, 127)       int8, rint(x / x_scale)
    acc = ConvInteger(xq, Wq) or MatMulInteger(xq, Wq)      int32: the exact integer sums
    y   = float32(double(acc) * rescale) + b                rescale per output channel

``rescale`` is layers.quantized.rescale_factors, held in float64: for sums of up to 1040
products numpy multiplies in float32, and a 24-bit integer times a float32 is exact in
float64, so rounding the product once to float32 gives numpy's float32 product; beyond, numpy
multiplies in float64, as here. DequantizeLinear would multiply in float32 throughout.
"""

import numpy as np
from onnx import TensorProto

from layers.quantized import QMAX, accumulator_dtype, rescale_factors
from model.layer_kinds import kernel_size


def _conv_attributes(spec):
    kh, kw = kernel_size(spec)
    pad, stride = spec["pad"], spec["stride"]
    return {
        "kernel_shape": [kh, kw],
        "strides": [stride, stride],
        "pads": [pad, pad, pad, pad],
        "group": spec["groups"],
    }


def _conv(graph, spec, p, x):
    weights = [graph.param(spec, "W", p), graph.param(spec, "b", p)]
    return graph.add("Conv", [x, *weights], spec["name"], **_conv_attributes(spec))


def _fc(graph, spec, p, x):
    weights = [graph.param(spec, "W", p), graph.param(spec, "b", p)]
    return graph.add("Gemm", [x, *weights], spec["name"])  # x (N, D) @ W (D, M) + b


def _batchnorm(graph, spec, p, x):
    arrays = [graph.param(spec, key, p) for key in ("gamma", "beta", "running_mean", "running_var")]
    return graph.add("BatchNormalization", [x, *arrays], spec["name"], epsilon=float(spec["eps"]))


def _identity(graph, spec, p, x):
    return x


def _op(op, **hyper):
    """A kind that is one ONNX operator without arrays; ``hyper``: {attribute: spec key} of
    its float attributes."""

    def translate(graph, spec, p, x):
        attributes = {attribute: float(spec[key]) for attribute, key in hyper.items()}
        return graph.add(op, [x], spec.get("name", spec["type"]), **attributes)

    return translate


def _pool(op):
    def translate(graph, spec, p, x):
        size, stride = spec["size"], spec["stride"]
        return graph.add(op, [x], spec["type"], kernel_shape=[size, size], strides=[stride, stride])

    return translate


def _global_avgpool(graph, spec, p, x):
    pooled = graph.add("GlobalAveragePool", [x], spec["type"])  # (N, C, 1, 1)
    return graph.add("Flatten", [pooled], spec["type"], axis=1)  # (N, C)


def _residual(graph, spec, p, x):
    body, shortcut = graph.walk(spec["body"], x), graph.walk(spec["shortcut"], x)
    return graph.add("Add", [body, shortcut], spec["name"])


def _quantized(integer_op, attributes, channel_shape, terms):
    """An int8 kind (see the module docstring). attributes(spec): the integer operator's;
    channel_shape: how the per-channel factors broadcast over its output; terms(W): the
    number of products in each of its sums."""

    def translate(graph, spec, p, x):
        name = spec["name"]
        int8 = graph.constant(f"{name}.zero_point", np.int8(0))
        xq = graph.add("QuantizeLinear", [x, graph.param(spec, "x_scale", p), int8], f"{name}_q")
        bounds = [graph.constant(f"{name}.q{side}", np.int8(side * QMAX)) for side in (-1, 1)]
        xq = graph.add("Clip", [xq, *bounds], f"{name}_q")  # symmetric: never -128
        acc = graph.add(integer_op, [xq, graph.param(spec, "W", p)], name, **attributes(spec))
        rescale = rescale_factors(p["x_scale"], p["w_scale"], accumulator_dtype(terms(p["W"])))
        factors = graph.constant(f"{name}.rescale", rescale.astype(np.float64).reshape(channel_shape))
        wide = graph.add("Cast", [acc], name, to=TensorProto.DOUBLE)
        y = graph.add("Cast", [graph.add("Mul", [wide, factors], name)], name, to=TensorProto.FLOAT)
        bias = graph.constant(f"{name}.b", p["b"].astype(np.float32).reshape(channel_shape))
        return graph.add("Add", [y, bias], name)

    return translate


TRANSLATIONS = {
    "conv": _conv,
    "fc": _fc,
    "batchnorm": _batchnorm,
    "dropout": _identity,
    "maxpool": _pool("MaxPool"),
    "avgpool": _pool("AveragePool"),
    "global_avgpool": _global_avgpool,
    "relu": _op("Relu"),
    "leaky_relu": _op("LeakyRelu", alpha="alpha"),
    "sigmoid": _op("Sigmoid"),
    "tanh": _op("Tanh"),
    "flatten": _op("Flatten"),  # axis 1: (N, C, H, W) -> (N, C*H*W), C order as numpy's
    "residual": _residual,
    "qconv": _quantized("ConvInteger", _conv_attributes, (1, -1, 1, 1), lambda W: W[0].size),
    "qfc": _quantized("MatMulInteger", lambda spec: {}, (1, -1), lambda W: W.shape[0]),
}
