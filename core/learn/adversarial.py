"""Adversarial training's step: each training batch replaced by its FGSM pictures from a
random start in the eps-ball around the pixels (fast adversarial training, Wong, Rice and
Kolter 2020)."""

import numpy as np

from core.learn.eval import softmax
from core.learn.loss import one_hot
from model.backward import input_gradient
from model.forward import forward
from model.trained import inputs_to_pixels, pixels_to_inputs


def ball(pixels, eps):
    """(low, high): the bounds of the ε-ball around ``pixels`` intersected with [0, 1].

    Both are in the pixels' dtype, rounded towards ``pixels``, so any value between them is
    within ε of the pixel and inside [0, 1] in exact arithmetic.
    """
    exact = pixels.astype(np.float64)
    low = np.maximum(exact - eps, 0.0)
    high = np.minimum(exact + eps, 1.0)
    low_cast, high_cast = low.astype(pixels.dtype), high.astype(pixels.dtype)
    low_cast = np.where(low_cast < low, np.nextafter(low_cast, pixels.dtype.type(1)), low_cast)
    high_cast = np.where(high_cast > high, np.nextafter(high_cast, pixels.dtype.type(0)), high_cast)
    return low_cast, high_cast


FAST_STEP = 1.25  # fast adversarial training's step, in units of ε (Wong, Rice and Kolter 2020)


def fast_fgsm_inputs(params, blueprint, norm, inputs, labels, eps, rng):
    """A training batch turned adversarial by FGSM from a random start ("fast adversarial
    training", Wong, Rice and Kolter 2020).

    inputs: (N, C, H, W) normalized inputs (as the training loop holds them); labels (N,);
    norm: their Normalization; rng: numpy Generator (the random start, dropout's masks).
    The start is uniform in the ε-ball around the pixels, then one signed step of 1.25 ε
    on the cross-entropy, projected back into the ball and [0, 1]. The gradient comes from
    the model in training mode, as the batch's own update will see it (its batch-norm
    statistics are not kept). Returns the normalized adversarial inputs, shaped like inputs.
    """
    pixels = inputs_to_pixels(inputs, norm)
    low, high = ball(pixels, eps)
    x = np.clip(pixels + rng.uniform(-eps, eps, size=pixels.shape), low, high).astype(pixels.dtype)
    scores, caches = forward(params, pixels_to_inputs(x, norm), blueprint, train=True, rng=rng)
    dscores = softmax(scores) - one_hot(labels, scores.shape[1], scores.dtype)
    grad = input_gradient(dscores, caches, blueprint)  # same signs as d/d pixels (std > 0)
    x = np.clip(x + FAST_STEP * eps * np.sign(grad), low, high).astype(pixels.dtype)
    return pixels_to_inputs(x, norm)
