"""An exponential moving average of the weights (``train --ema DECAY``).

After every batch's update the average moves toward the weights: ``ema = DECAY * ema + (1 -
DECAY) * w`` (a mixed-precision step skipped for an overflow too: toward the unchanged
weights), starting from the initial weights (no bias correction, as PyTorch's ``AveragedModel``
with an EMA function and timm's ``ModelEmaV2``). Validation, the choice of the best epoch and
the saved model use the averaged weights; training goes on with the raw ones.

Batch norm's running statistics are averaged too, like every other array. They are batch
statistics of the raw weights' activations: copied, they would describe the current weights,
not the averaged ones; averaged over the same steps as the weights, they follow the averaged
weights as closely as an average of the past can, without an extra pass over the training set
to measure them anew (as stochastic weight averaging does).

The averages live in the optimizer state as one more slot, ``"ema.<param key>"`` (the keys of
core/learn/optim.py), so a checkpoint holds the raw weights and the averaged ones side by side
and a resumed run goes on with both, exactly. The optimizers pass slots they do not know
through untouched. Frozen keys (``--freeze``) get no slot: they never change, so their average
is the array itself.
"""

from data.errors import UserError

SLOT = "ema"


def slot_key(key):
    """The optimizer-state key of parameter ``key``'s average: ``"ema.conv1.W"``."""
    return f"{SLOT}.{key}"


def initial_average(params, frozen=frozenset()):
    """The average before the first update: a copy of every array of ``params`` but the
    ``frozen`` keys, as ``{"ema.<key>": array}`` slots (same shapes, dtypes and device)."""
    return {slot_key(key): p.copy() for key, p in params.items() if key not in frozen}


def updated_average(state, params, decay):
    """The optimizer ``state`` with each ``"ema.<key>"`` slot moved toward ``params[key]``:
    ``decay * ema + (1 - decay) * params[key]``, in the arrays' dtype (new arrays; nothing
    passed in is written). The other slots are the same objects."""
    keep = 1.0 - decay
    moved = {}
    for key in state:
        if key.startswith(SLOT + "."):
            moved[key] = decay * state[key] + keep * params[key[len(SLOT) + 1 :]]
    return {**state, **moved}


def averaged_params(params, state):
    """``params`` with each array that has an average in ``state`` replaced by it: the
    weights (and running statistics) that validation and the saved model use."""
    return {key: state.get(slot_key(key), p) for key, p in params.items()}


def check_average(state, params, frozen, source):
    """UserError unless ``state`` (a checkpoint's optimizer state, its run trained with
    --ema) holds an average of every parameter but the frozen ones."""
    if missing := [key for key in params if key not in frozen and slot_key(key) not in state]:
        raise UserError(
            f"{source}: the run trains with --ema, but its checkpoint holds no average of "
            f"{', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}; it is damaged or "
            "was written by another program"
        )
