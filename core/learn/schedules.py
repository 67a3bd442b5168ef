"""Learning rate as a pure function of the training step.

``lr_at(step, total_steps, base_lr, schedule, warmup_steps, **options)``:

- ``step`` is 0-based: the update about to be made, ``0 .. total_steps - 1``
  (``total_steps`` itself is also accepted, as the end point of a plotted
  curve). The optimizers count the same update 1-based: the update made with
  ``lr_at(i, ...)`` is passed ``step=i + 1``.
- Linear warm-up: during the first ``warmup_steps`` updates the rate is
  multiplied by ``(step + 1) / warmup_steps``, rising from ``base_lr /
  warmup_steps`` (never exactly 0: a zero-rate update would be wasted) to the
  full rate at ``step = warmup_steps - 1``. It combines with every schedule.
- ``"constant"``: ``base_lr``.
- ``"step"``: ``base_lr * gamma ** k`` where ``k`` counts the ``milestones``
  (fractions of ``total_steps``, default ``(0.5, 0.75)``) with ``step >=
  milestone * total_steps``; ``gamma`` defaults to 0.1.
- ``"cosine"``: from ``base_lr`` at the end of the warm-up down to ``min_lr``
  (default 0) at ``step = total_steps``, along half a cosine period.
"""

import math

from data.checks import is_real, is_whole
from data.errors import UserError

# Each schedule's options with their defaults.
_OPTIONS = {
    "constant": {},
    "step": {"milestones": (0.5, 0.75), "gamma": 0.1},
    "cosine": {"min_lr": 0.0},
}
SCHEDULES = tuple(_OPTIONS)


def _check(schedule, total_steps, base_lr, warmup_steps, options):
    """Raise UserError unless the schedule settings are valid."""
    if schedule not in _OPTIONS:
        raise UserError(f"unknown lr schedule '{schedule}'; choose one of {', '.join(SCHEDULES)}")
    unknown = options.keys() - _OPTIONS[schedule].keys()
    if unknown:
        takes = ", ".join(_OPTIONS[schedule]) or "no options"
        raise UserError(
            f"lr schedule '{schedule}' has no option {sorted(unknown)}; it takes {takes}"
        )
    if not is_whole(total_steps) or total_steps < 1:
        raise UserError(f"total_steps must be an integer >= 1, got {total_steps!r}")
    if not is_real(base_lr) or base_lr <= 0:
        raise UserError(f"base_lr must be a positive number, got {base_lr!r}")
    if not is_whole(warmup_steps) or not 0 <= warmup_steps < total_steps:
        raise UserError(
            f"warmup_steps must be an integer in [0, total_steps={total_steps}), "
            f"got {warmup_steps!r}"
        )
    if "gamma" in options and not (is_real(options["gamma"]) and options["gamma"] > 0):
        raise UserError(
            f"lr schedule 'step': gamma must be a positive number, got {options['gamma']!r}"
        )
    if "milestones" in options:
        ms = options["milestones"]
        if not isinstance(ms, tuple | list) or not all(is_real(m) and 0 < m < 1 for m in ms):
            raise UserError(
                "lr schedule 'step': milestones must be a list of fractions of the run in (0, 1), "
                f"e.g. (0.5, 0.75); got {ms!r}"
            )
    if "min_lr" in options and not (
        is_real(options["min_lr"]) and 0 <= options["min_lr"] <= base_lr
    ):
        raise UserError(
            f"lr schedule 'cosine': min_lr must be in [0, base_lr={base_lr}], "
            f"got {options['min_lr']!r}"
        )


def lr_at(step, total_steps, base_lr, schedule="constant", warmup_steps=0, **options):
    """The learning rate for 0-based update ``step`` of a ``total_steps``-update run.

    step:         int in [0, total_steps] (0-based; see the module docstring).
    total_steps:  int >= 1, the number of updates in the run.
    base_lr:      float > 0, the peak learning rate.
    schedule:     one of ``SCHEDULES``: "constant", "step", "cosine".
    warmup_steps: int in [0, total_steps), length of the linear warm-up.
    options:      "step": ``milestones`` (fractions in (0, 1), default (0.5, 0.75)),
                  ``gamma`` (> 0, default 0.1); "cosine": ``min_lr`` (in [0, base_lr],
                  default 0); "constant": none.
    Returns the learning rate, a Python float.
    Raises UserError for an unknown schedule or option, or a value out of range.
    """
    _check(schedule, total_steps, base_lr, warmup_steps, options)
    if not is_whole(step) or not 0 <= step <= total_steps:
        raise UserError(f"step must be an integer in [0, total_steps={total_steps}], got {step!r}")
    opts = {**_OPTIONS[schedule], **options}
    warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0

    if schedule == "step":
        passed = sum(step >= m * total_steps for m in opts["milestones"])
        return float(warm * base_lr * opts["gamma"] ** passed)
    if schedule == "cosine":
        progress = max(0, step - warmup_steps) / (total_steps - warmup_steps)
        min_lr = opts["min_lr"]
        return float(
            warm * (min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress)))
        )
    return float(warm * base_lr)
