"""The int8 layer kinds of a quantized model: ``qconv`` and ``qfc``, for inference only.

``python main.py quantize`` (model/quantize.py) turns each conv into a qconv and each fc into
a qfc (the float kind's record names its int8 kind: ``quantized_as``), with the same
hyper-parameters. Their arrays, by local name:
- ``W``: int8 weights, shaped like the float layer's (conv (F, C/groups, KH, KW), fc (D, M));
- ``w_scale``: (F,) or (M,) float32, one positive scale per output channel;
- ``x_scale``: () float32, the positive scale of the layer's input;
- ``b``: (F,) or (M,) float32, the bias (batch norm folded in), added after rescaling.
A blueprint that holds one of them is a quantized model: it is evaluated, never trained.
"""

from data.errors import UserError
from layers import qconv_forward, qfc_forward
from model.layer_kinds import CONV, FC, LayerKind, Param


def _quantized_params(weight_shape, channels):
    return {
        "W": Param(shape=weight_shape, init="zeros", trainable=False, dtype="int8"),
        "w_scale": Param(shape=channels, init="ones", trainable=False, positive=True),
        "x_scale": Param(shape=(), init="ones", trainable=False, positive=True),
        "b": Param(shape=channels, init="zeros", trainable=False),
    }


def _qconv_params(spec, in_shape):
    return _quantized_params(CONV.params(spec, in_shape)["W"].shape, (spec["filters"],))


def _qfc_params(spec, in_shape):
    return _quantized_params(FC.params(spec, in_shape)["W"].shape, (spec["units"],))


def _qconv_forward(spec, p, x, train, rng):
    out = qconv_forward(
        x, p["W"], p["w_scale"], p["x_scale"], p["b"], spec["stride"], spec["pad"], spec["groups"]
    )
    return out, None, {}


def _qfc_forward(spec, p, x, train, rng):
    return qfc_forward(x, p["W"], p["w_scale"], p["x_scale"], p["b"]), None, {}


def _no_backward(spec, dout, cache, need_dx):
    raise UserError(
        f"layer {spec['name']} ({spec['type']}) is quantized: it runs inference only; train "
        "the float model and quantize it again"
    )


QCONV = LayerKind(
    hyper=CONV.hyper,
    params=_qconv_params,
    out_shape=CONV.out_shape,
    forward=_qconv_forward,
    backward=_no_backward,
    gradcheck=(),
    out_axis=CONV.out_axis,
    quantized=True,
)
QFC = LayerKind(
    hyper=FC.hyper,
    params=_qfc_params,
    out_shape=FC.out_shape,
    forward=_qfc_forward,
    backward=_no_backward,
    gradcheck=(),
    out_axis=FC.out_axis,
    quantized=True,
)

QUANTIZED_KINDS = {"qconv": QCONV, "qfc": QFC}
"""The int8 kinds, by type: each float kind's record names its own (``quantized_as``)."""
