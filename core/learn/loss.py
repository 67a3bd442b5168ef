"""Loss functions: each returns (loss, gradient with respect to its first argument)."""

import numpy as np

from data.errors import UserError
from layers.arraylib import array_module


def softmax_cross_entropy(scores, y):
    """Mean cross-entropy of softmax(scores) against integer labels, fused for stability.

    scores (N, K) float logits; y (N,) integer labels in [0, K).
    Returns loss: a Python float, the mean over the batch of -log softmax(scores)[i, y[i]]
    (computed in scores' dtype), and dscores (N, K) in scores' dtype:
    (softmax(scores) - onehot(y)) / N.
    log-softmax is taken via log-sum-exp with the row maximum subtracted, so logits of
    any finite size (e.g. +-1e4) give a finite loss and gradient.
    """
    xp = array_module(scores)
    y = xp.asarray(y)
    if scores.ndim != 2 or y.ndim != 1 or y.shape[0] != scores.shape[0] or scores.size == 0:
        raise ValueError(
            f"softmax_cross_entropy: scores {scores.shape} and labels {y.shape} do not fit; "
            "expected scores (N, K) and labels (N,) with the same N >= 1 and K >= 1"
        )
    n, k = scores.shape
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"softmax_cross_entropy: labels must be integers, got dtype {y.dtype}")
    if y.min() < 0 or y.max() >= k:
        raise UserError(
            f"softmax_cross_entropy: labels must lie in [0, {k}) for {k} classes, "
            f"got values from {y.min()} to {y.max()}; check the dataset's labels"
        )
    shifted = scores - scores.max(axis=1, keepdims=True)  # <= 0: exp cannot overflow
    with np.errstate(under="ignore"):  # exp of very negative logits -> 0 is exact enough
        exp = xp.exp(shifted)
    sum_exp = exp.sum(axis=1, keepdims=True)  # >= 1: the row maximum contributes exp(0)
    rows = xp.arange(n)
    log_prob_true = shifted[rows, y] - xp.log(sum_exp[:, 0])
    loss = float(-log_prob_true.mean())
    dscores = exp
    dscores /= sum_exp  # softmax probabilities, in place
    dscores[rows, y] -= 1
    dscores /= n
    return loss, dscores


def mse(pred, target):
    """Mean squared error over ALL elements (not summed per example).

    pred, target: arrays of one shape (any); target is cast to pred's dtype.
    Returns loss: a Python float, mean((pred - target) ** 2) over every element, and
    dpred (shape of pred, pred's dtype) = 2 * (pred - target) / pred.size.
    """
    if pred.shape != target.shape or pred.size == 0:
        raise ValueError(
            f"mse: pred {pred.shape} and target {target.shape} must have the same, non-empty shape"
        )
    xp = array_module(pred)
    diff = pred - xp.asarray(target, dtype=pred.dtype)
    loss = float(xp.mean(xp.square(diff)))
    diff *= 2.0 / diff.size
    return loss, diff


def regression_mse(scores, y):
    """MSE of a one-output network's scores against float targets.

    scores (N, 1) float; y (N,) float targets. Returns (loss, dscores (N, 1)), as ``mse``.
    """
    return mse(scores, np.reshape(y, (-1, 1)))


# The losses ``train --loss`` chooses from: name -> function(scores, y) -> (loss, dscores).
LOSSES = {"cross_entropy": softmax_cross_entropy, "mse": regression_mse}


def one_hot(classes, k, dtype=np.float32):
    """(N, K) rows with a 1 at each of ``classes`` (N,)."""
    rows = np.zeros((len(classes), k), dtype=dtype)
    rows[np.arange(len(classes)), classes] = 1
    return rows
