"""The ONNX graph of a trained model: pixels in, the model's normalization, its layers, the
softmax, and what the file says of the model.

The graph's input ``pixels`` is what a user has: pictures on the [0, 1] scale (uint8 / 255),
(N, C, H, W), or the points themselves for vector data, (N, D); N, the batch axis, is
dynamic. Its first two nodes are the normalization the model was trained with, ``pixels *
gain - shift`` per channel, the numbers ``normalize`` takes. Each batch norm after a conv or
fc is folded into it first (model/fold.py), as ``predict_scores`` runs the network; the
layers then come from each kind's entry in core/export/kinds.py. The output is
``probabilities`` (N, K) (a softmax of the scores), ``logits`` (N, K) when asked, or
``predictions`` (N, K) for a regression model.
"""

import hashlib
import json
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from core.export.kinds import TRANSLATIONS
from core.report import is_regression, model_caption
from data.errors import UserError
from data.normalization import normalization_affine
from model.fold import fold_batchnorm
from model.walk import KINDS, local_params

DEFAULT_OPSET = 21  # ONNX 1.16 (2024): read by ONNX Runtime 1.18 and later, and by Netron
MIN_OPSET = 13  # per-axis QuantizeLinear, Softmax over one axis
INPUT = "pixels"
BATCH = "N"  # the name of the dynamic batch axis


class Graph:
    """An ONNX graph being built: its nodes and constants, every name unique.

    params: the model's flat dict {"<layer>.<param>": array}, read by ``walk``.
    """

    def __init__(self, params):
        self.params = params
        self.nodes, self.initializers, self._names = [], [], set()

    def fresh(self, base):
        """``base``, or ``base_2``, ``base_3``, ...: a name not used yet."""
        name, n = base, 1
        while name in self._names:
            n += 1
            name = f"{base}_{n}"
        self._names.add(name)
        return name

    def constant(self, base, array):
        """The name of a new initializer holding ``array`` (its dtype kept)."""
        name = self.fresh(base)
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def param(self, spec, key, p):
        """A layer's array ``p[key]`` as an initializer named like its key in the model file."""
        return self.constant(f"{spec['name']}.{key}", p[key])

    def add(self, op, inputs, base, output=None, **attributes):
        """One node ``op`` of ``inputs``; returns its output's name (``output``, or a fresh
        one from ``base``)."""
        out = self.fresh(output or base)
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attributes))
        return out

    def walk(self, specs, x):
        """The nodes of ``specs`` fed the tensor ``x``; returns the last output's name."""
        for spec in specs:
            kind, translate = KINDS[spec["type"]], TRANSLATIONS.get(spec["type"])
            if translate is None:
                label = spec.get("name", spec["type"])
                raise UserError(
                    f"layer {label} ({spec['type']}): no ONNX translation for this kind; add "
                    "one to core/export/kinds.py"
                )
            p = local_params(self.params, spec) if kind.params is not None else {}
            x = translate(self, spec, p, x)
        return x


def output_name(meta, logits):
    """The graph's output: "probabilities", "logits" or (regression) "predictions"."""
    if is_regression(meta):
        return "predictions"
    return "logits" if logits else "probabilities"


def build_onnx(model, source, opset=DEFAULT_OPSET, logits=False):
    """The ONNX model (onnx.ModelProto) of ``model`` (model/trained.py), not yet checked.

    source: the model file's path, named in the metadata with its SHA-256 (None: a model
    not read from a file); opset: the ONNX operator set;
    logits: output the scores, not their softmax (a regression model outputs its
    predictions either way).
    """
    params, blueprint, _ = fold_batchnorm(model.params, model.blueprint)
    graph = Graph(params)
    shape = model.meta["input_shape"]
    gain, shift = normalization_affine(model.norm, 1 + len(shape))
    x = graph.add("Mul", [INPUT, graph.constant("normalization.gain", gain)], "normalized")
    x = graph.add("Sub", [x, graph.constant("normalization.shift", shift)], "normalized")
    x = graph.walk(blueprint, x)
    name = output_name(model.meta, logits)
    if name == "probabilities":
        graph.add("Softmax", [x], name, output=name, axis=1)
    else:
        graph.add("Identity", [x], name, output=name)
    outputs = len(model.meta["class_names"])
    onnx_graph = helper.make_graph(
        graph.nodes,
        model.meta.get("config", {}).get("arch", "numpy-cnn"),
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [BATCH, *shape])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [BATCH, outputs])],
        graph.initializers,
    )
    opsets = [helper.make_opsetid("", opset)]
    proto = helper.make_model(onnx_graph, opset_imports=opsets, producer_name="numpy-cnn")
    proto.ir_version = helper.find_min_ir_version_for(opsets)  # readable by older runtimes
    proto.doc_string = model_caption(model)
    helper.set_model_props(proto, metadata(model, source, name))
    return proto


def metadata(model, source, output):
    """{key: text} for the ONNX file's metadata_props: what the model is and came from."""
    meta = model.meta
    props = {
        "class_names": json.dumps(meta["class_names"]),
        "dataset": meta["dataset"],
        "input_shape": json.dumps(meta["input_shape"]),
        "input": f"{INPUT}: on the [0, 1] scale (uint8 / 255), or a vector data set's points",
        "normalization": json.dumps(meta["normalization"]),
        "output": output,
        "numpy_cnn_model": model_caption(model),
    }
    if source is not None:
        with open(source, "rb") as file:
            digest = hashlib.file_digest(file, "sha256").hexdigest()
        props |= {"source": os.path.basename(os.fspath(source)), "source_sha256": digest}
    return props


def onnx_opset_range():
    """(lowest, highest) opset an export may ask for: MIN_OPSET to the onnx package's own."""
    return MIN_OPSET, onnx.defs.onnx_opset_version()
