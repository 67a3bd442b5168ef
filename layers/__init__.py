"""Stateless layer function pairs: ``*_forward(...) -> (out, cache)``, ``*_backward(dout, cache)``.

Each module holds one kind of layer; the ``*_naive`` functions are the plain-loop
references the fast versions are tested against.
"""

from layers.activations import (
    leaky_relu_backward,
    leaky_relu_forward,
    relu_backward,
    relu_forward,
    sigmoid_backward,
    sigmoid_forward,
    tanh_backward,
    tanh_forward,
)
from layers.batchnorm import (
    batchnorm_backward,
    batchnorm_backward_parts,
    batchnorm_forward,
    batchnorm_forward_parts,
)
from layers.conv import conv_backward, conv_forward
from layers.conv_naive import conv_backward_naive, conv_forward_naive
from layers.dropout import dropout_backward, dropout_forward, dropout_forward_parts
from layers.fc import fc_backward, fc_forward
from layers.flatten import flatten_backward, flatten_forward
from layers.global_avgpool import global_avgpool_backward, global_avgpool_forward
from layers.pool import (
    avgpool_backward,
    avgpool_backward_naive,
    avgpool_forward,
    avgpool_forward_naive,
    maxpool_backward,
    maxpool_backward_naive,
    maxpool_forward,
    maxpool_forward_naive,
)
from layers.quantized import qconv_forward, qfc_forward, quantize

__all__ = [
    "avgpool_backward",
    "avgpool_backward_naive",
    "avgpool_forward",
    "avgpool_forward_naive",
    "batchnorm_backward",
    "batchnorm_backward_parts",
    "batchnorm_forward",
    "batchnorm_forward_parts",
    "conv_backward",
    "conv_backward_naive",
    "conv_forward",
    "conv_forward_naive",
    "dropout_backward",
    "dropout_forward",
    "dropout_forward_parts",
    "fc_backward",
    "fc_forward",
    "flatten_backward",
    "flatten_forward",
    "global_avgpool_backward",
    "global_avgpool_forward",
    "leaky_relu_backward",
    "leaky_relu_forward",
    "maxpool_backward",
    "maxpool_backward_naive",
    "maxpool_forward",
    "maxpool_forward_naive",
    "qconv_forward",
    "qfc_forward",
    "quantize",
    "relu_backward",
    "relu_forward",
    "sigmoid_backward",
    "sigmoid_forward",
    "tanh_backward",
    "tanh_forward",
]
