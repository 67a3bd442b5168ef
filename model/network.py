"""A trained network as the tools that look inside it hold it: its parameters and blueprint,
and the normalization between pixels on the [0, 1] scale and the inputs it takes."""

from typing import NamedTuple

import numpy as np

from data.normalization import Normalization, normalize


class Network(NamedTuple):
    """A trained classifier and the normalization of its inputs."""

    params: dict
    blueprint: list
    norm: Normalization

    @classmethod
    def of(cls, model, source="the model file"):
        """The Network of a loaded model (model/params_io.py ``Model``)."""
        stats = model.meta["normalization"]
        norm = Normalization.from_arrays(stats["mean"], stats["std"], source)
        return cls(model.params, model.blueprint, norm)

    def inputs(self, pixels):
        """Pixels (N, C, ...) on the [0, 1] scale -> the normalized inputs the model takes."""
        if pixels.dtype == np.float64:
            return (pixels - _per_channel(self.norm.mean, pixels)) / _per_channel(
                self.norm.std, pixels
            )
        return normalize(pixels, self.norm)

    def pixels(self, inputs):
        """The inverse of ``inputs``: normalized inputs -> pixels, clipped to [0, 1]."""
        std, mean = _per_channel(self.norm.std, inputs), _per_channel(self.norm.mean, inputs)
        return np.clip(inputs * std + mean, 0, 1).astype(inputs.dtype)

    def pixel_gradient(self, dinputs):
        """d/d inputs (N, C, ...) -> d/d pixels: the chain rule through the normalization."""
        return (dinputs / _per_channel(self.norm.std, dinputs)).astype(dinputs.dtype)


def _per_channel(values, like):
    """(C,) statistics shaped to broadcast over ``like`` (N, C, ...), in float64."""
    return values.astype(np.float64).reshape(-1, *[1] * (like.ndim - 2))
