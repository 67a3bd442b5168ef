"""What a trained network has learned to look for: class models and channels' favourite inputs.

- Class model visualization (Simonyan et al. 2014; CS231n): start from a black picture (the
  background of a digit) and climb the gradient of one class's score, ``score - l2 · ||x||²``
  (ink costs), with the picture jittered
  (shifted at random) before each step and blurred now and then, so the result shows shapes
  rather than high-frequency noise. Pixels stay in [0, 1].
- Top activations: for each channel of a layer, the test pictures whose strongest response in
  that channel (the maximum over its map) is the largest.
"""

from typing import NamedTuple

import numpy as np

from core.inside.gradients import class_score_gradient, split_after
from data.errors import UserError
from model.forward import forward
from model.shapes import trace_shapes


class ClassModelSettings(NamedTuple):
    steps: int = 200
    step_size: float = 0.05  # the largest change of a pixel per step
    l2: float = 0.1  # weight of the L2 penalty on the pixels
    jitter: int = 2  # largest random shift, in pixels
    blur_every: int = 10  # steps between two blurs
    blur_sigma: float = 0.5  # the blur's Gaussian, in pixels


def gaussian_blur(pictures, sigma):
    """Pictures (N, C, H, W) blurred by a separable Gaussian of ``sigma`` pixels (3 sigma wide),
    the edges repeated; same shape and dtype."""
    radius = max(1, int(3 * sigma + 0.5))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    out = pictures
    for axis in (2, 3):
        pad = [(0, 0)] * 4
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="edge")
        size = out.shape[axis]
        out = sum(
            w * np.take(padded, np.arange(i, i + size), axis=axis) for i, w in enumerate(taps)
        )
    return out.astype(pictures.dtype)


def class_models(model, classes, input_shape, rng, settings=None):
    """One picture per class that the network scores highly for that class.

    classes: (N,) class indices; input_shape: (C, H, W); rng: for the start and the jitter.
    Returns (pictures (N, C, H, W) float32 in [0, 1], scores (N,) of each picture's class).
    """
    settings = settings or ClassModelSettings()
    classes = np.asarray(classes)
    x = np.abs(0.01 * rng.standard_normal((len(classes), *input_shape))).astype(np.float32)
    for step in range(settings.steps):
        dy, dx = rng.integers(-settings.jitter, settings.jitter + 1, size=2)
        shifted = np.roll(x, (dy, dx), axis=(2, 3))
        _, grad = class_score_gradient(model, shifted, classes)
        grad = np.roll(grad, (-dy, -dx), axis=(2, 3)) - 2 * settings.l2 * x
        top = np.abs(grad).max(axis=(1, 2, 3), keepdims=True)
        x = np.clip(x + settings.step_size * grad / np.maximum(top, 1e-12), 0, 1)
        if settings.blur_every and (step + 1) % settings.blur_every == 0:
            x = gaussian_blur(x, settings.blur_sigma)
    scores, _ = class_score_gradient(model, x, classes)
    return x.astype(np.float32), scores[np.arange(len(classes)), classes]


def conv_layers(blueprint, input_shape):
    """The labels of the top-level layers whose output is a map (C, h, w), in order."""
    return [
        row.label
        for row in trace_shapes(blueprint, input_shape)
        if row.depth == 0 and len(row.out_shape) == 3
    ]


def layer_outputs(model, pixels, label, batch_size=500):
    """The output of top-level layer ``label`` for every picture, ``batch_size`` at a time."""
    below, _ = split_after(model.blueprint, pixels.shape[1:], label)
    return np.concatenate([
        forward(model.params, model.inputs(pixels[i : i + batch_size]), below, keep_caches=False)[0]
        for i in range(0, len(pixels), batch_size)
    ])  # fmt: skip


class TopActivations(NamedTuple):
    indices: np.ndarray  # (C, k) int64: the pictures, strongest first
    values: np.ndarray  # (C, k): each one's strongest response in the channel


def check_map_layer(blueprint, input_shape, label):
    """UserError unless ``label`` is a top-level layer whose output is a map (C, h, w)."""
    if label not in conv_layers(blueprint, input_shape):
        raise UserError(
            f"--layer {label}: choose a layer that makes maps (C, h, w), one of "
            f"{', '.join(conv_layers(blueprint, input_shape))}"
        )


def top_activations(model, pixels, label, k=6):
    """For each channel of layer ``label`` (a map (C, h, w)), the k pictures it responds to
    most, by the maximum of its map."""
    check_map_layer(model.blueprint, pixels.shape[1:], label)
    outputs = layer_outputs(model, pixels, label)
    strongest = outputs.max(axis=(2, 3)).T  # (C, N)
    k = min(k, strongest.shape[1])
    indices = np.argsort(-strongest, axis=1, kind="stable")[:, :k]
    return TopActivations(indices, np.take_along_axis(strongest, indices, axis=1))
