"""The check on every export: the ONNX checker, then ONNX Runtime against numpy-cnn.

The checker (``full_check``: shape inference too) says the file is valid ONNX; ONNX Runtime,
an engine that shares no code with this one, then runs it on the model's own test images,
and its outputs are compared with what numpy-cnn computes (``predict_scores``, batch norm
folded, and its softmax) from the same pictures.

Tolerances. A float model: the largest difference of a probability at most 1e-5
(FLOAT_TOLERANCE; logits and regression predictions: 1e-5 times their largest magnitude, at
least 1e-5). The engines add in different orders, so they differ by float rounding, about
1e-7. An int8 model: the same class for every image but at most INT8_TIE_SHARE of them. Its
integer sums are exact in both engines, and so is every step between them but the float
layers (average pooling, an unfolded batch norm, sigmoid, tanh, the shortcut's sum): their
rounding can move a value across the midpoint between two int8 levels, a tie that rounds
one way here and the other way there, and then changes the scores by a step of the grid.
"""

from typing import NamedTuple

import numpy as np
import onnx
import onnxruntime

from core.export.graph import INPUT, output_name
from core.learn.eval import predict_scores, softmax
from core.report import model_inputs
from data.errors import UserError
from data.normalization import to_unit
from model.walk import quantized_layers

FLOAT_TOLERANCE = 1e-5
INT8_TIE_SHARE = 0.002  # 2 images in 1,000 may change class at a tie of the int8 rounding


class Agreement(NamedTuple):
    """How ONNX Runtime's outputs compare with numpy-cnn's on ``images`` inputs."""

    images: int
    output: str  # "probabilities", "logits" or "predictions"
    largest: float  # the largest absolute difference of an output
    tolerance: float  # for ``largest`` (float models)
    same_class: int  # images given the same class (argmax) by both
    int8: bool  # an int8 model: judged by same_class, up to INT8_TIE_SHARE

    @property
    def passed(self):
        if self.int8:
            return self.images - self.same_class <= INT8_TIE_SHARE * self.images
        return self.largest <= self.tolerance

    def __str__(self):
        if self.int8:
            allowed = f"int8: at most {int(INT8_TIE_SHARE * self.images)} may differ, at ties"
        else:
            allowed = f"tolerance {self.tolerance:.2g}"
        return (
            f"ONNX Runtime {onnxruntime.__version__} on {self.images} test inputs: largest "
            f"difference of the {self.output} {self.largest:.2g}, the same class for "
            f"{self.same_class} of {self.images} ({allowed})"
        )


def check_onnx(proto, model, raw, logits=False):
    """Check the exported ``proto`` of ``model`` on the raw test inputs ``raw``.

    raw: uint8 images (N, C, H, W), fed to ONNX Runtime on the [0, 1] scale, or float points
    (N, D), fed as they are. Returns the Agreement; raises UserError (one line) when the
    checker refuses the model, ONNX Runtime cannot run it, or the outputs pass the tolerance.
    """
    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
        raise UserError(f"the ONNX checker refuses the export: {_first_line(err)}") from None
    theirs = run_onnx(proto.SerializeToString(), pixels_of(raw))
    ours = predict_scores(model.params, model.blueprint, model_inputs(raw, model.meta))
    name = output_name(model.meta, logits)
    if name == "probabilities":
        ours = softmax(ours)
        tolerance = FLOAT_TOLERANCE
    else:
        tolerance = FLOAT_TOLERANCE * max(1.0, float(np.abs(ours).max()))
    agreement = Agreement(
        images=len(raw),
        output=name,
        largest=float(np.abs(theirs.astype(np.float64) - ours).max()),
        tolerance=tolerance,
        same_class=int((theirs.argmax(axis=1) == ours.argmax(axis=1)).sum()),
        int8=bool(quantized_layers(model.blueprint)),
    )
    if not agreement.passed:
        raise UserError(f"the export disagrees with numpy-cnn: {agreement}")
    return agreement


def pixels_of(raw):
    """The graph's input for raw test inputs: uint8 images / 255, float points as float32."""
    return to_unit(raw) if raw.dtype == np.uint8 else raw.astype(np.float32)


def run_onnx(serialized, pixels):
    """The first output of the ONNX model ``serialized`` (bytes) for ``pixels``, by ONNX
    Runtime on the CPU; UserError (one line) when it cannot load or run the model."""
    try:
        session = onnxruntime.InferenceSession(serialized, providers=["CPUExecutionProvider"])
        return session.run(None, {INPUT: pixels})[0]
    except Exception as err:  # ONNX Runtime raises its own classes, not one base for all
        raise UserError(f"ONNX Runtime cannot run the export: {_first_line(err)}") from None


def _first_line(err):
    text = str(err).strip()
    return text.splitlines()[0][:300] if text else type(err).__name__
