"""A trained model as one record: its parameters, its blueprint and what its file says of it.

``load_model`` (model/params_io.py) returns a Model; evaluation, the tools that look inside
a network and the live page all take one. A picture reaches the network through the
normalization that the meta holds, fitted on the training set (data/normalization.py):
the network takes ``(pixels - mean) / std`` per channel, pixels on the [0, 1] scale.
``Model.inputs``, ``Model.pixels`` and ``Model.pixel_gradient`` cross that step; the
training loop, which holds a Normalization and no meta, crosses it with the functions below.
"""

from typing import NamedTuple

import numpy as np

from data.normalization import Normalization, normalize


class Model(NamedTuple):
    """A trained model, as a model file holds it.

    params:    {"conv1.W": float32 array, ...}, the keys and shapes the blueprint gives
               (a quantized layer's weights are int8).
    blueprint: the validated blueprint (list of layer spec dicts, defaults filled in).
    meta:      dict: input_shape, dataset, class_names, normalization, config, seed, ...
               (model/params_io.py's docstring lists them).
    """

    params: dict
    blueprint: list
    meta: dict

    @property
    def norm(self):
        """The Normalization of the inputs, from ``meta["normalization"]``."""
        stats = self.meta["normalization"]
        return Normalization.from_arrays(stats["mean"], stats["std"])

    def inputs(self, pixels):
        """Pixels (N, C, ...) on the [0, 1] scale -> the normalized inputs the model takes."""
        return pixels_to_inputs(pixels, self.norm)

    def pixels(self, inputs):
        """The inverse of ``inputs``: normalized inputs -> pixels, clipped to [0, 1]."""
        return inputs_to_pixels(inputs, self.norm)

    def pixel_gradient(self, dinputs):
        """d/d inputs (N, C, ...) -> d/d pixels: the chain rule through the normalization."""
        return pixel_gradient(dinputs, self.norm)


def pixels_to_inputs(pixels, norm):
    """Pixels (N, C, ...) on the [0, 1] scale -> ``(pixels - mean) / std`` per channel.

    float32 pixels go through ``normalize`` itself, so a picture gets exactly the inputs
    ``evaluate`` gives it; float64 pixels (for gradient checks) stay float64.
    """
    if pixels.dtype == np.float64:
        return (pixels - _per_channel(norm.mean, pixels)) / _per_channel(norm.std, pixels)
    return normalize(pixels, norm)


def inputs_to_pixels(inputs, norm):
    """Normalized inputs (N, C, ...) -> pixels ``inputs * std + mean``, clipped to [0, 1]."""
    std, mean = _per_channel(norm.std, inputs), _per_channel(norm.mean, inputs)
    return np.clip(inputs * std + mean, 0, 1).astype(inputs.dtype)


def pixel_gradient(dinputs, norm):
    """d/d inputs (N, C, ...) -> d/d pixels = (d/d inputs) / std per channel."""
    return (dinputs / _per_channel(norm.std, dinputs)).astype(dinputs.dtype)


def _per_channel(values, like):
    """(C,) statistics shaped to broadcast over ``like`` (N, C, ...), in float64."""
    return values.astype(np.float64).reshape(-1, *[1] * (like.ndim - 2))
