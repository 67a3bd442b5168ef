"""Mixed precision (``--precision mixed``, on the GPU): float16 products, float32 for what adds up.

The parameters the optimizer updates (the master weights) and its state stay float32. Each
step computes with float16 copies of the arrays of the kinds whose weights multiply the input
(conv and fc: their record is ``weighted``) on a float16 batch, so that the matrix products
run on the GPU's tensor cores. Batch norm keeps its float32 arrays and takes its statistics
in float32 (layers/batchnorm.py); the loss is taken on the scores in float32.

Dynamic loss scaling: float16 holds nothing below about 6e-8, where many gradients lie, so
the loss gradient is multiplied by ``scale`` before the backward pass and the gradients are
divided by it after, in float32. A step whose gradients are not all finite (the scale was
too large: float16 overflowed) is skipped, the weights and optimizer state left as they were,
and the scale halves; after GROWTH_INTERVAL finite steps in a row it doubles. The values are
those of PyTorch's GradScaler. The skipped steps are counted in the run's log.

All of it is array arithmetic in the library of the arrays given: the tests run it on NumPy.
"""

from typing import NamedTuple

import numpy as np

from layers.arraylib import array_module
from model.walk import KINDS, iter_layers

HALF = np.float16  # the dtype of the products
INITIAL_SCALE = 2.0**16
GROWTH_INTERVAL = 2000  # finite steps in a row before the scale doubles


class Scaling(NamedTuple):
    """Where the loss scaling stands. The training loop keeps it in its RunState
    (core/learn/runs.py), which has these fields, so that a resumed run goes on exactly."""

    loss_scale: float = INITIAL_SCALE
    scale_streak: int = 0  # finite steps since the scale last changed
    skipped: int = 0  # steps skipped (their gradients not finite) in the epoch so far


def scaling_of(state):
    """The Scaling held in ``state`` (a RunState)."""
    return Scaling(*(getattr(state, field) for field in Scaling._fields))


def half_keys(specs):
    """The parameter keys computed in float16: ``W`` and ``b`` of the layers whose weight
    multiplies the input (their record is ``weighted``: conv, fc), in validated ``specs``."""
    return [
        f"{spec['name']}.{key}"
        for spec in iter_layers(specs)
        if KINDS[spec["type"]].weighted
        for key in ("W", "b")
    ]


def half_copies(params, keys):
    """``params`` with the arrays of ``keys`` as float16 copies (the rest: the same arrays)."""
    return {**params, **{key: params[key].astype(HALF) for key in keys}}


def scaled(dscores, scale):
    """The float32 loss gradient times ``scale``, in float16 for the backward pass (an entry
    too large for float16 becomes inf: the step is then skipped)."""
    with np.errstate(over="ignore"):  # NumPy warns of the inf; CuPy never does
        return (dscores * scale).astype(HALF)


def unscaled(grads, scale):
    """(grads in float32 divided by ``scale``, True if every entry of every one is finite)."""
    inverse = 1.0 / scale  # exact: the scale is a power of two
    grads = {key: g.astype(np.float32) * inverse for key, g in grads.items()}
    if not grads:
        return grads, True
    xp = array_module(*grads.values())
    finite = bool(xp.stack([xp.isfinite(g).all() for g in grads.values()]).all())  # one sync
    return grads, finite


def next_scaling(scaling, finite):
    """The Scaling after a step whose gradients were ``finite`` (or not: skipped)."""
    scale, streak, skipped = scaling
    if not finite:
        return Scaling(scale / 2, 0, skipped + 1)
    if streak + 1 == GROWTH_INTERVAL:
        return Scaling(scale * 2, 0, skipped)
    return Scaling(scale, streak + 1, skipped)
