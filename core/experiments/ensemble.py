"""Ensembles: several model files of one dataset, their softmax probabilities averaged.

Each member normalizes the raw inputs with its own statistics (they were fitted on
its own training split), so the ensemble takes raw images, never inputs already
normalized for one member. Quantized (int8) files are members like any other:
``load_model`` reads them and the forward pass runs their int8 arithmetic.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from core.learn.eval import accuracy
from core.learn.model_file import load_model
from core.report import is_regression, model_inputs, model_proba
from data.errors import UserError

SHARED = ("dataset", "class_names", "input_shape")  # what every member must agree on


def load_members(paths):
    """The models of ``paths`` (two or more .npz files), checked to fit together.

    Returns a list of Model, in the order given. Raises one UserError naming the first
    file that differs from the first file in dataset, class names or input shape (with
    both values), or that is a regression model (no probabilities to average).
    """
    models = [load_model(path) for path in paths]
    first = models[0].meta
    for path, model in zip(paths, models, strict=True):
        if is_regression(model.meta):
            raise UserError(f"{path}: a regression model; an ensemble averages class probabilities")
        for key in SHARED:
            mine, theirs = _plain(model.meta[key]), _plain(first[key])
            if mine != theirs:
                raise UserError(
                    f"{path}: {key} {mine} differs from {theirs} of {paths[0]}; the members of "
                    "an ensemble must share dataset, class names and input shape"
                )
    return models


def _plain(value):
    """A meta value as a comparable, printable plain value (lists and tuples alike)."""
    return list(value) if isinstance(value, list | tuple) else value


def member_probs(models, images, source="the model file", tta=None):
    """Each member's class probabilities of the raw ``images`` (N, ...): (M, N, K) float;
    with ``tta`` ("flip", "shift", "flip+shift") each member's mean over those views."""
    return np.stack(
        [model_proba(m, model_inputs(images, m.meta, source), tta, source) for m in models]
    )


def member_names(paths):
    """The shortest ends of ``paths`` that tell the members apart: ``seed3/best_params.npz``
    rather than ``best_params.npz`` twelve times."""
    parts = [Path(path).parts for path in paths]
    for depth in range(1, max(map(len, parts)) + 1):
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    return [str(path) for path in paths]  # the same file given twice


def ensemble_table(paths, probs, y):
    """Accuracy of each member and of the ensemble on labels ``y`` (N,).

    probs: (M, N, K) from ``member_probs``. Returns a DataFrame model, accuracy, errors:
    one row per member, then the row "ensemble" (the mean of the M probabilities).
    """
    rows = [(name, p.argmax(axis=1)) for name, p in zip(member_names(paths), probs, strict=True)]
    rows.append(("ensemble", probs.mean(axis=0).argmax(axis=1)))
    return pd.DataFrame(
        {
            "model": [name for name, _ in rows],
            "accuracy": [accuracy(y, pred) for _, pred in rows],
            "errors": [int((pred != y).sum()) for _, pred in rows],
        }
    )
