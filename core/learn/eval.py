"""Evaluation metrics: from class scores and labels to numbers and tables.

Everything here works on plain arrays: integer labels ``y (N,)`` in
``0 .. K-1`` and class probabilities ``probs (N, K)``, or float targets
``y (N,)`` for regression. Accuracies are fractions in [0, 1]. Tables are
pandas DataFrames; ``format_table`` turns one into text for the terminal.
"""

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from core.learn.loss import LOSSES
from data.augment import tta_views
from data.errors import UserError
from layers.arraylib import array_module, to_numpy
from model.blueprints import validate_blueprint
from model.fold import fold_batchnorm
from model.forward import forward

# ----------------------------- running the model ----------------------------


def predict_scores(params, blueprint, x, batch_size=500):
    """Class scores of ``x`` (N, ...) in inference mode, ``batch_size`` examples at a time.

    Returns scores (N, K) in the params' dtype, where x is (on the GPU for a CuPy x; a NumPy x
    gives NumPy scores whatever the executor). Each batch norm that follows a conv or fc
    is folded into it first (model/fold.py): the same scores up to float rounding, with
    one pass over the activations fewer per batch norm. Layer caches are dropped as soon
    as they are made, so memory stays small for any N.
    """
    params, blueprint, _ = fold_batchnorm(params, validate_blueprint(blueprint))
    batches = [
        forward(params, x[i : i + batch_size], blueprint, keep_caches=False)[0]
        for i in range(0, len(x), batch_size)
    ]
    return array_module(*batches).concatenate(batches)


def predict_proba(params, blueprint, x, batch_size=500, tta=None, fill=0.0):
    """Class probabilities (N, K) of ``x`` (N, ...) in inference mode.

    tta: None, or a test-time augmentation of data/augment.py ``TTA_VIEWS`` ("flip",
         "shift", "flip+shift"): the mean of the probabilities of each of its views of ``x``
         (N, C, H, W), the batch itself among them. fill: (C,) what a shifted view's
         uncovered edge holds (the normalized value of a black pixel).
    """
    if tta is None:
        return softmax(predict_scores(params, blueprint, x, batch_size))
    views = tta_views(x, tta, fill, array_module(x))
    total = sum(softmax(predict_scores(params, blueprint, view, batch_size)) for view in views)
    return total / len(views)


# The score a run with each loss is judged by, as its log names it; higher is better for both.
SCORE_OF_LOSS = {"cross_entropy": "acc", "mse": "r2"}


def loss_and_score(params, blueprint, x, y, loss="cross_entropy", batch_size=500):
    """Mean loss and score of the model on (x, y), in inference mode.

    loss: a key of core.learn.loss.LOSSES. The score is the accuracy for "cross_entropy" and
    R² for "mse" (``r_squared``: the lower the MSE, the higher R²).
    Returns (loss, score), two floats. Scores and labels on the GPU are brought to NumPy first.
    """
    scores, y = to_numpy(predict_scores(params, blueprint, x, batch_size)), to_numpy(y)
    value, _ = LOSSES[loss](scores, y)
    if loss == "mse":
        return value, r_squared(value, y)
    return value, accuracy(y, scores.argmax(axis=1))


# ----------------------------- metrics on arrays ----------------------------


def softmax(scores):
    """Class probabilities from class scores, row by row.

    scores: (N, K) array of scores (logits); float dtype is kept, integer
            input gives float64. Any leading shape works; K is the last axis.
    Returns probs, same shape: each row is non-negative and sums to 1.
    The row maximum is subtracted first, so large scores (±1e4) cannot
    overflow ``exp``.
    """
    scores = np.asarray(scores)
    if not np.issubdtype(scores.dtype, np.floating):
        scores = scores.astype(np.float64)
    shifted = scores - scores.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def accuracy(y_true, y_pred):
    """Fraction of correct predictions.

    y_true: (N,) integer labels.
    y_pred: (N,) integer predicted labels.
    Returns a Python float in [0, 1].
    """
    y_true, y_pred = _check_label_pair(y_true, y_pred)
    return float(np.mean(y_true == y_pred))


def r_squared(mse, y_true):
    """The coefficient of determination R² = 1 - MSE / variance of the targets.

    mse:    the mean squared error of the predictions of ``y_true``.
    y_true: (N,) float targets.
    Returns a float: 1 for a perfect fit, 0 for predicting the targets' mean, below 0
    for worse; NaN when the targets do not vary.
    """
    variance = float(np.var(np.asarray(y_true, dtype=np.float64)))
    return 1.0 - mse / variance if variance > 0 else float("nan")


def confusion(y_true, y_pred, n_classes):
    """Confusion matrix: rows are true classes, columns predicted classes.

    y_true:    (N,) integer labels in 0 .. n_classes-1.
    y_pred:    (N,) integer predicted labels in 0 .. n_classes-1.
    n_classes: K, the number of classes (classes absent from both arrays
               still get their row and column).
    Returns cm (K, K) int64; ``cm[i, j]`` counts examples of class i
    predicted as j, so ``cm.sum() == N`` and the diagonal holds the hits.
    """
    y_true, y_pred = _check_label_pair(y_true, y_pred, n_classes)
    cm = confusion_matrix(y_true, y_pred, labels=np.arange(n_classes))
    return cm.astype(np.int64)


def per_class_table(y_true, y_pred, class_names):
    """Precision, recall, F1 and support of every class, with averages.

    y_true:      (N,) integer labels in 0 .. K-1.
    y_pred:      (N,) integer predicted labels in 0 .. K-1.
    class_names: K names; row i describes class i.
    Returns a DataFrame with columns class (str), precision, recall, f1
    (floats in [0, 1]) and support (int: examples of the class in y_true):
    K class rows, then "macro avg" (plain mean over classes) and
    "weighted avg" (mean weighted by support); both average rows have the
    total support N. A class never predicted has precision 0 (and a class
    absent from y_true recall 0) instead of a division warning.
    """
    names = [str(name) for name in class_names]
    y_true, y_pred = _check_label_pair(y_true, y_pred, len(names))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=np.arange(len(names)), zero_division=0
    )
    table = pd.DataFrame(
        {"class": names, "precision": precision, "recall": recall, "f1": f1, "support": support}
    )
    metrics = table[["precision", "recall", "f1"]]
    averages = pd.DataFrame(
        {
            "class": ["macro avg", "weighted avg"],
            **{
                col: [metrics[col].mean(), np.average(metrics[col], weights=support)]
                for col in metrics
            },
            "support": [support.sum()] * 2,
        }
    )
    table = pd.concat([table, averages], ignore_index=True)
    table["support"] = table["support"].astype(np.int64)
    return table


def format_table(df, decimals=4):
    """Text of a DataFrame for the terminal: no index, floats to ``decimals`` places.

    df:       any DataFrame (e.g. from ``per_class_table``).
    decimals: digits after the point for float columns.
    Returns a multi-line str.
    """
    return df.to_string(index=False, float_format=lambda v: f"{v:.{decimals}f}")


def most_confused_pairs(cm, class_names, k=5):
    """The k most frequent mistakes (true class, predicted class) in a confusion matrix.

    cm:          (K, K) integer confusion matrix (rows true, columns predicted).
    class_names: K names.
    k:           how many pairs to keep at most (None keeps all).
    Returns a DataFrame with columns true, predicted (class names) and count
    (int64), off-diagonal cells only, zero counts dropped, sorted by count
    descending (ties in row-major order of the matrix).
    """
    cm = np.asarray(cm)
    names = np.asarray([str(name) for name in class_names])
    if cm.ndim != 2 or cm.shape != (len(names), len(names)):
        raise ValueError(
            f"most_confused_pairs: cm has shape {cm.shape} but there are {len(names)} "
            f"class names; pass the ({len(names)}, {len(names)}) matrix from confusion()."
        )
    off_diagonal = np.where(np.eye(len(names), dtype=bool), 0, cm)
    true_idx, pred_idx = np.nonzero(off_diagonal)  # row-major order
    counts = off_diagonal[true_idx, pred_idx]
    order = np.argsort(-counts, kind="stable")[:k]
    return pd.DataFrame(
        {
            "true": names[true_idx[order]],
            "predicted": names[pred_idx[order]],
            "count": counts[order].astype(np.int64),
        }
    )


def misclassified(y_true, probs):
    """The wrong predictions, the most confident mistakes first.

    y_true: (N,) integer labels in 0 .. K-1.
    probs:  (N, K) class probabilities; the prediction is the argmax.
    Returns a DataFrame with one row per mistake and columns index (int64,
    position in y_true), true and predicted (int64 labels), prob (the
    probability given to the predicted class) and prob_true (the one given
    to the true class); sorted by prob descending, ties by index.
    """
    probs = np.asarray(probs)
    if probs.ndim != 2:
        raise ValueError(f"misclassified: probs must be (N, K); got shape {probs.shape}.")
    y_pred = probs.argmax(axis=1)
    y_true, y_pred = _check_label_pair(y_true, y_pred, probs.shape[1])
    wrong = np.flatnonzero(y_true != y_pred)
    prob = probs[wrong, y_pred[wrong]]
    order = np.argsort(-prob, kind="stable")
    wrong = wrong[order]
    return pd.DataFrame(
        {
            "index": wrong.astype(np.int64),
            "true": y_true[wrong].astype(np.int64),
            "predicted": y_pred[wrong].astype(np.int64),
            "prob": prob[order],
            "prob_true": probs[wrong, y_true[wrong]],
        }
    )


def top_k(probs, k=3):
    """The k most probable classes of every example.

    probs: (N, K) class probabilities (or scores: only the order matters).
    k:     1 <= k <= K.
    Returns (classes (N, k) int64, their probs (N, k) in probs' dtype),
    most probable first; ties go to the lower class index.
    """
    probs = np.asarray(probs)
    if probs.ndim != 2:
        raise ValueError(f"top_k: probs must be (N, K); got shape {probs.shape}.")
    if not 1 <= k <= probs.shape[1]:
        raise ValueError(f"top_k: k={k} is out of range; use 1 <= k <= {probs.shape[1]} (K).")
    classes = np.argsort(-probs, axis=1, kind="stable")[:, :k].astype(np.int64)
    return classes, np.take_along_axis(probs, classes, axis=1)


def _check_label_pair(y_true, y_pred, n_classes=None):
    """Both label arrays as 1-D integer arrays of one length (and in range if n_classes given)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.ndim != 1 or y_true.shape != y_pred.shape or y_true.size == 0:
        raise ValueError(
            f"labels: y_true {y_true.shape} and y_pred {y_pred.shape} must be two non-empty "
            f"1-D arrays of the same length (one integer label per example)."
        )
    if not (np.issubdtype(y_true.dtype, np.integer) and np.issubdtype(y_pred.dtype, np.integer)):
        raise ValueError(
            f"labels: y_true ({y_true.dtype}) and y_pred ({y_pred.dtype}) must hold integer "
            f"class indices; take probs.argmax(axis=1) of class probabilities first."
        )
    if n_classes is not None:
        low, high = min(y_true.min(), y_pred.min()), max(y_true.max(), y_pred.max())
        if low < 0 or high >= n_classes:
            raise UserError(
                f"labels: found label {low if low < 0 else high} but there are {n_classes} "
                f"classes (labels 0 .. {n_classes - 1}); check the class names / n_classes."
            )
    return y_true, y_pred
