"""Gradients with respect to the input pixels, and to one layer's output, in inference mode.

The tools that look inside a trained network (saliency, Grad-CAM, adversarial examples,
class visualization) all ask one question: how does a score change when the picture
changes? The answer is the backward pass carried one layer further than training needs,
down to the input (model/backward.py ``input_gradient``).

Pixels here are on the [0, 1] scale, before normalization: the model sees
``(pixels - mean) / std`` per channel (data/normalization.py), so by the chain rule
d/d pixels = (d/d inputs) / std. Batch norm uses its running statistics and dropout is off,
as in ``evaluate``. float32 pixels go through ``normalize`` itself, so a picture gets
exactly the scores ``evaluate`` gives it; float64 pixels (for gradient checks) stay float64.
"""

import numpy as np

from core.learn.eval import softmax
from core.learn.loss import one_hot
from data.errors import UserError
from model.backward import input_gradient
from model.forward import forward
from model.shapes import trace_shapes


def score_gradient(model, pixels, dscores_of):
    """The scores of a batch and the gradient of a function of them with respect to the pixels.

    model: a Model (model/trained.py): its params, blueprint and input normalization.
    pixels: (N, C, H, W) on the [0, 1] scale, float32 (or float64 for checks).
    dscores_of: function from the scores (N, K) to d f / d scores (N, K), where f is the
        quantity to explain (a class score: a one-hot; the loss: softmax minus one-hot).
    Returns (scores (N, K), d f / d pixels shaped like pixels).
    """
    scores, caches = forward(model.params, model.inputs(pixels), model.blueprint)
    dscores = np.asarray(dscores_of(scores), dtype=scores.dtype)
    return scores, model.pixel_gradient(input_gradient(dscores, caches, model.blueprint))


def class_score_gradient(model, pixels, classes):
    """(scores (N, K), d score[n, classes[n]] / d pixels): each example's own class score."""
    return score_gradient(model, pixels, lambda s: one_hot(classes, s.shape[1], s.dtype))


def loss_gradient(model, pixels, labels):
    """(scores (N, K), d CE / d pixels): each example's own cross-entropy with its label.

    The per-example losses are summed, not averaged, so each example's gradient is its own
    loss's, whatever the batch size.
    """
    return score_gradient(
        model, pixels, lambda s: softmax(s) - one_hot(labels, s.shape[1], s.dtype)
    )


def top_level_labels(blueprint, input_shape):
    """The labels of the blueprint's own layers, in order, as ``summary`` shows them."""
    return [row.label for row in trace_shapes(blueprint, input_shape) if row.depth == 0]


def split_after(blueprint, input_shape, label):
    """(the layers up to and including top-level layer ``label``, the layers after it).

    Raises UserError naming the network's layers when there is no such layer.
    """
    labels = top_level_labels(blueprint, input_shape)
    if label not in labels:
        raise UserError(f"no layer {label!r} in this network; its layers: {', '.join(labels)}")
    cut = labels.index(label) + 1
    return blueprint[:cut], blueprint[cut:]


def layer_gradient(model, pixels, label, classes):
    """The output of layer ``label`` and the gradient of each example's class score with
    respect to it (Grad-CAM's two ingredients).

    label: a top-level layer's label (``top_level_labels``); classes: (N,) the class whose
    score is explained for each example.
    Returns (activations, d score / d activations), both shaped like the layer's output.
    """
    below, above = split_after(model.blueprint, pixels.shape[1:], label)
    activations, _ = forward(model.params, model.inputs(pixels), below, keep_caches=False)
    if not above:  # the scores themselves
        return activations, one_hot(classes, activations.shape[1], activations.dtype)
    scores, caches = forward(model.params, activations, above)
    dscores = one_hot(classes, scores.shape[1], scores.dtype)
    return activations, input_gradient(dscores, caches, above)
