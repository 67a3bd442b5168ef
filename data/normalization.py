"""Per-channel normalization: statistics fitted on the training set, applied everywhere.

Pixels (uint8) are first scaled to [0, 1] by 1/255; floating inputs (the 2-D toy
points, or images already in [0, 1]) are used as they are. The fitted statistics
are two float32 arrays, so a checkpoint stores them next to the weights and
evaluation and prediction rebuild exactly the same transform::

    np.savez(path, norm_mean=norm.mean, norm_std=norm.std)
    with np.load(path, allow_pickle=False) as f:
        norm = Normalization.from_arrays(f["norm_mean"], f["norm_std"], source=path)
"""

from typing import NamedTuple

import numpy as np

from data.errors import UserError

# Examples per chunk when summing squared deviations: bounds the float64 temporary.
FIT_CHUNK = 4096
# What a stored normalization may hold: ``normalize`` multiplies by 1/std in float32, so a
# std of 1e-40 (positive, finite) gives infinite inputs and NaN outputs. Fitted statistics
# of [0, 1] pixels or toy points are far inside these bounds.
MIN_STD, MAX_STD, MAX_ABS_MEAN = 1e-6, 1e6, 1e6


class Normalization(NamedTuple):
    """The statistics ``normalize`` uses, on the [0, 1] scale.

    mean: float32 (C,), per-channel mean.
    std:  float32 (C,), per-channel standard deviation, > 0.
    """

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def from_arrays(cls, mean, std, source="normalization"):
        """Rebuild a Normalization from stored arrays, checking them.

        mean, std: array-likes of shape (C,).
        source:    str naming where they came from (a checkpoint path), for messages.
        Returns Normalization with float32 (C,) arrays.
        """
        # checked in float64 first: a mean of 1e300 would overflow to inf in the cast
        mean = np.asarray(mean, dtype=np.float64)
        std = np.asarray(std, dtype=np.float64)
        if mean.ndim != 1 or mean.shape != std.shape:
            raise UserError(
                f"{source}: normalization mean and std must both have shape (C,), "
                f"got {mean.shape} and {std.shape}; re-save it from fit_normalization"
            )
        sane = (
            np.all(np.abs(mean) <= MAX_ABS_MEAN)
            and np.all(std >= MIN_STD)
            and np.all(std <= MAX_STD)
        )  # NaN fails every comparison, so it is refused here too
        if not sane:
            raise UserError(
                f"{source}: normalization needs means within ±{MAX_ABS_MEAN:g} and stds "
                f"between {MIN_STD:g} and {MAX_STD:g}, got mean={mean.tolist()!s:.80} "
                f"std={std.tolist()!s:.80}; re-save it from fit_normalization"
            )
        return cls(mean.astype(np.float32), std.astype(np.float32))


def fit_normalization(x_train):
    """Per-channel mean and std of the training inputs, on the [0, 1] scale.

    x_train: uint8 (N, C, H, W) images (scaled by 1/255), or floating (N, C, ...)
             inputs, e.g. toy points (N, 2) whose "channels" are the 2 coordinates.
    Returns Normalization, mean and std float32 (C,). A constant channel gets
    std 1 so that normalizing it cannot divide by zero.
    """
    x = np.asarray(x_train)
    scale = _input_scale(x, "x_train")
    if x.ndim < 2 or len(x) == 0:
        raise UserError(f"x_train must have shape (N, C, ...) with N >= 1 examples, got {x.shape}")
    axes = (0, *range(2, x.ndim))
    count = x.size // x.shape[1]
    # dtype=float64 makes the reductions accumulate in float64 through a small buffer,
    # without a float64 copy of the whole set.
    mean = x.sum(axis=axes, dtype=np.float64) / count
    mean_b = mean.reshape(-1, *[1] * (x.ndim - 2))
    squares = np.zeros_like(mean)
    for start in range(0, len(x), FIT_CHUNK):
        deviation = x[start : start + FIT_CHUNK].astype(np.float64) - mean_b
        squares += np.square(deviation).sum(axis=axes)
    std = np.sqrt(squares / count)
    std = np.where(std > 0, std, 1.0 / scale)  # constant channel -> std 1 after scaling
    return Normalization.from_arrays(mean * scale, std * scale)


def to_unit(images):
    """uint8 pixels (any shape) on the [0, 1] scale, float32: ``images * float32(1/255)``.

    ``normalize`` takes uint8 images through this very step, so an attack or a
    visualization that works on [0, 1] pixels feeds the model exactly the inputs that
    evaluation does for the same picture.
    """
    return np.multiply(images, np.float32(1.0 / 255.0), dtype=np.float32)


def normalize(x, norm):
    """``(x / 255 - mean) / std`` per channel for uint8 x; ``(x - mean) / std`` for float x.

    x:    uint8 or floating (N, C, ...), C matching ``norm``.
    norm: Normalization.
    Returns float32 array shaped like x, computed in float32 (uint8 pixels first on
    the [0, 1] scale by ``to_unit``), with no float64 temporaries.
    """
    x = np.asarray(x)
    _input_scale(x, "x")
    channels = len(norm.mean)
    if x.ndim < 2 or x.shape[1] != channels:
        raise UserError(
            f"normalize: x has shape {x.shape} but the normalization has {channels} "
            f"channel(s); expected (N, {channels}, ...) — fit and apply it on the same data kind"
        )
    gain, shift = normalization_affine(norm, x.ndim)
    if x.dtype == np.uint8:
        out = to_unit(x)
        out *= gain
    else:
        out = np.multiply(x, gain, dtype=np.float32)
    out -= shift
    return out


def normalization_affine(norm, ndim):
    """(gain, shift), float32, shaped (C, 1, ...) to broadcast over a batch of ``ndim`` axes
    (N, C, ...): ``normalize`` of inputs on the [0, 1] scale is ``x * gain - shift``, with
    gain = 1 / std and shift = mean / std, each computed in float64 and rounded once (an
    exported model's first two steps take these same numbers: core/export/graph.py)."""
    shape = (len(norm.mean), *[1] * (ndim - 2))
    gain = (1.0 / norm.std.astype(np.float64)).astype(np.float32).reshape(shape)
    shift = (norm.mean / norm.std.astype(np.float64)).astype(np.float32).reshape(shape)
    return gain, shift


def _input_scale(x, name):
    """1/255 for uint8 pixels, 1 for floating inputs; UserError for other dtypes."""
    if x.dtype == np.uint8:
        return 1.0 / 255.0
    if np.issubdtype(x.dtype, np.floating):
        return 1.0
    raise UserError(f"{name} must be uint8 pixels or floating point, got dtype {x.dtype}")
