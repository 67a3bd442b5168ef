"""Adversarial examples: FGSM and PGD in an L∞ ball, and accuracy under attack.

ε is an L∞ budget in pixel units on the [0, 1] scale, before normalization, and every
adversarial picture stays in [0, 1]. The gradient is that of the cross-entropy with the
true label, the model in inference mode (core/inside/gradients.py).

- FGSM (Goodfellow et al. 2015): ``x_adv = clip(x + ε · sign(∇ₓ CE(f(x), y)), 0, 1)``.
- PGD (Madry et al. 2018): from a random start in the ε-ball, ``steps`` signed steps of
  ``step_size``, each followed by the projection back into the ε-ball and [0, 1].

The ball is computed in float64 and rounded inwards to the pixels' float32, so
``|x_adv - x| <= ε`` holds exactly in the stored numbers, and ε = 0 returns x itself.
"""

from typing import NamedTuple

import numpy as np
import pandas as pd

from core.inside.gradients import loss_gradient
from core.learn.adversarial import ball
from core.learn.eval import predict_scores
from data.checks import check_real, check_whole, is_real
from data.errors import UserError

ATTACK_METHODS = ("fgsm", "pgd")
BATCH = 500  # pictures attacked at once: bounds the layer caches' memory
EXAMPLES = 8  # pictures kept per ε for the figure of examples


def fgsm(model, pixels, labels, eps):
    """The FGSM pictures of a batch: one signed gradient step of size ε.

    pixels: (N, C, H, W) float32 in [0, 1]; labels: (N,) the true classes.
    Returns adversarial pixels shaped and typed like ``pixels``.
    """
    if eps == 0:
        return pixels.copy()
    low, high = ball(pixels, eps)
    _, grad = loss_gradient(model, pixels, labels)
    return np.clip(pixels + eps * np.sign(grad), low, high).astype(pixels.dtype)


def pgd(model, pixels, labels, eps, steps, step_size, rng):
    """The PGD pictures of a batch: ``steps`` projected signed steps from a random start.

    rng: numpy Generator for the random start, uniform in the ε-ball (then clipped to [0, 1]).
    Returns adversarial pixels shaped and typed like ``pixels``.
    """
    if eps == 0:
        return pixels.copy()
    low, high = ball(pixels, eps)
    start = rng.uniform(-eps, eps, size=pixels.shape)
    x = np.clip(pixels + start, low, high).astype(pixels.dtype)
    for _ in range(steps):
        _, grad = loss_gradient(model, x, labels)
        x = np.clip(x + step_size * np.sign(grad), low, high).astype(pixels.dtype)
    return x


class AttackSettings(NamedTuple):
    method: str = "fgsm"
    steps: int = 40  # PGD only
    step_size: float = 0.01  # PGD only
    seed: int = 0  # PGD's random starts


def check_settings(settings, eps_list):
    """UserError unless the method, budgets, steps and step size make sense."""
    if settings.method not in ATTACK_METHODS:
        raise UserError(
            f"--method must be one of {', '.join(ATTACK_METHODS)}, got {settings.method!r}"
        )
    for eps in eps_list:
        check_real("--eps", eps, 0, 1)
    check_whole("--steps", settings.steps, 1)
    if not is_real(settings.step_size, 0, 1) or settings.step_size == 0:
        raise UserError(f"--step-size must be a number in (0, 1], got {settings.step_size!r}")


def attack(model, pixels, labels, eps, settings):
    """Adversarial pictures for every picture, BATCH at a time.

    The PGD random starts come from ``settings.seed`` and ε, and each batch draws its own
    stream, so a result does not depend on how many batches ran before it.
    """
    out = np.empty_like(pixels)
    for start in range(0, len(pixels), BATCH):
        part = slice(start, start + BATCH)
        if settings.method == "fgsm":
            out[part] = fgsm(model, pixels[part], labels[part], eps)
        else:
            rng = np.random.default_rng([settings.seed, round(eps * 1e6), start])
            out[part] = pgd(model, pixels[part], labels[part], eps, settings.steps,
                            settings.step_size, rng)  # fmt: skip
    return out


def predictions(model, pixels):
    """The predicted class (N,) of each picture, in inference mode."""
    return predict_scores(model.params, model.blueprint, model.inputs(pixels)).argmax(axis=1)


def robustness(model, pixels, labels, eps_list, settings, on_row=None):
    """Accuracy under attack for each ε.

    Returns (table, examples): table a DataFrame with columns method, eps, accuracy (a
    fraction); examples {eps: adversarial pixels} for the first pictures (for the figure).
    on_row: called with each finished row (a dict), to print progress.
    """
    check_settings(settings, eps_list)
    rows, examples = [], {}
    for eps in eps_list:
        adversarial = attack(model, pixels, labels, eps, settings)
        row = {
            "method": settings.method,
            "eps": float(eps),
            "accuracy": float(np.mean(predictions(model, adversarial) == labels)),
        }
        rows.append(row)
        examples[eps] = adversarial[:EXAMPLES]
        if on_row is not None:
            on_row(row)
    return pd.DataFrame(rows, columns=["method", "eps", "accuracy"]), examples
