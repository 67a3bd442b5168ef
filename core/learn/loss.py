"""Loss functions: each returns (loss, gradient with respect to its first argument)."""

import functools

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
    xp, y, shifted, exp, sum_exp = _log_softmax_parts(scores, y, "softmax_cross_entropy")
    n = scores.shape[0]
    rows = xp.arange(n)
    log_prob_true = shifted[rows, y] - xp.log(sum_exp[:, 0])
    loss = float(-log_prob_true.mean())
    dscores = exp
    dscores /= sum_exp  # softmax probabilities, in place
    dscores[rows, y] -= 1
    dscores /= n
    return loss, dscores


def smoothed_cross_entropy(scores, y, eps):
    """Cross-entropy against labels smoothed by ``eps``, as PyTorch's
    ``F.cross_entropy(scores, y, label_smoothing=eps)``.

    The target of example i is q = (1 - eps) * onehot(y[i]) + eps / K, so its loss is
    (1 - eps) * (-log p[y[i]]) + eps * mean over the K classes of (-log p[k]).
    scores (N, K) float logits; y (N,) integer labels in [0, K); eps: a float in [0, 1).
    Returns (loss: a Python float, the mean over the batch, and dscores (N, K) in scores'
    dtype: (softmax(scores) - q) / N). eps = 0 is ``softmax_cross_entropy`` itself, the
    very same numbers.
    The mean of -log p[k] is log-sum-exp minus the mean shifted logit: no log of a
    probability that underflowed to 0 is ever taken.
    """
    if eps == 0:
        return softmax_cross_entropy(scores, y)
    xp, y, shifted, exp, sum_exp = _log_softmax_parts(scores, y, "smoothed_cross_entropy")
    n, k = scores.shape
    rows = xp.arange(n)
    log_sum_exp = xp.log(sum_exp[:, 0])
    nll_true = log_sum_exp - shifted[rows, y]  # -log p[y]
    nll_mean = log_sum_exp - shifted.mean(axis=1)  # mean over k of -log p[k]
    loss = float(((1 - eps) * nll_true + eps * nll_mean).mean())
    dscores = exp
    dscores /= sum_exp  # softmax probabilities, in place
    dscores -= eps / k
    dscores[rows, y] -= 1 - eps
    dscores /= n
    return loss, dscores


def _log_softmax_parts(scores, y, name):
    """The checked labels and the pieces of a stable log-softmax of ``scores`` (N, K):
    (xp, y, shifted = scores - row max, exp(shifted), its row sums (N, 1) >= 1).

    Raises ValueError for shapes that do not fit or labels that are no integers, UserError
    for labels outside [0, K) (a dataset's labels, not a caller's bug). ``name`` opens the
    messages.
    """
    xp = array_module(scores)
    y = xp.asarray(y)
    if scores.ndim != 2 or y.ndim != 1 or y.shape[0] != scores.shape[0] or scores.size == 0:
        raise ValueError(
            f"{name}: scores {scores.shape} and labels {y.shape} do not fit; "
            "expected scores (N, K) and labels (N,) with the same N >= 1 and K >= 1"
        )
    k = scores.shape[1]
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name}: labels must be integers, got dtype {y.dtype}")
    if y.min() < 0 or y.max() >= k:
        raise UserError(
            f"{name}: labels must lie in [0, {k}) for {k} classes, "
            f"got values from {y.min()} to {y.max()}; check the dataset's labels"
        )
    shifted = scores - scores.max(axis=1, keepdims=True)  # <= 0: exp cannot overflow
    with np.errstate(under="ignore"):  # exp of very negative logits -> 0 is exact enough
        exp = xp.exp(shifted)
    sum_exp = exp.sum(axis=1, keepdims=True)  # >= 1: the row maximum contributes exp(0)
    return xp, y, shifted, exp, sum_exp


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


def training_loss(name, label_smoothing=0.0):
    """The function(scores, y) -> (loss, dscores) a run trains with: ``LOSSES[name]``, or
    for ``label_smoothing`` > 0 (cross-entropy only) ``smoothed_cross_entropy`` with it."""
    if not label_smoothing:
        return LOSSES[name]
    return functools.partial(smoothed_cross_entropy, eps=label_smoothing)


def one_hot(classes, k, dtype=np.float32):
    """(N, K) rows with a 1 at each of ``classes`` (N,)."""
    rows = np.zeros((len(classes), k), dtype=dtype)
    rows[np.arange(len(classes)), classes] = 1
    return rows
