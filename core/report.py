"""Evaluate a saved model on its dataset's test set and draw its figures."""

import hashlib
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from core import plots
from core.learn.config import TrainConfig
from core.learn.eval import (
    accuracy,
    confusion,
    most_confused_pairs,
    per_class_table,
    predict_proba,
    predict_scores,
    r_squared,
)
from core.learn.loss import regression_mse
from data import load_dataset, normalize
from data.errors import UserError
from data.normalization import Normalization
from data.registry import check_mirrorable
from model.forward import forward_activations
from model.walk import KINDS, quantized_layers

EVALUATE_DIR = Path("runs/evaluate")


def evaluation_dir(params, base=EVALUATE_DIR):
    """The folder for the figures of ``evaluate``: one per model file, one per ensemble.

    params: str or Path of one model (.npz) file, or a list (or tuple) of them, an ensemble.
    base:   the folder that holds every model's folder.
    Returns ``base / "<file stem>-<8 hex digits>"`` for one file and
    ``base / "ensemble-<8 hex digits>"`` for a list, the digits a hash of the absolute
    path(s), in order, one per line: two models never share a folder, even both named
    best_params.npz (runs/a/best_params.npz and runs/b/best_params.npz), and the same file
    (or list) always gets the same one, so evaluating it again replaces only its own figures.
    """
    one = isinstance(params, str | os.PathLike)
    where = [os.path.abspath(os.fspath(path)) for path in ([params] if one else params)]
    text = "\n".join(where)
    digest = hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return Path(base) / f"{Path(where[0]).stem if one else 'ensemble'}-{digest}"


class Evaluation(NamedTuple):
    accuracy: float
    n_errors: int
    probs: np.ndarray  # (N, K)
    per_class: pd.DataFrame
    confusion: np.ndarray  # (K, K), rows true, columns predicted
    confused_pairs: pd.DataFrame


class RegressionEvaluation(NamedTuple):
    mse: float
    r2: float  # 1 - mse / variance of the targets
    predictions: np.ndarray  # (N,)


def is_regression(meta):
    """True for a model trained with --loss mse (files from before --loss are classifiers)."""
    return meta.get("config", {}).get("loss") == "mse"


DIGIT_SHAPE = (1, 28, 28)


def check_digit_model(meta, source, command, hint=""):
    """UserError unless ``meta`` is a classifier of 1x28x28 digit pictures, the only pictures
    that ``command`` (predict, serve, explain) can prepare from a file; ``hint`` ends the line."""
    if is_regression(meta):
        raise UserError(
            f"{source}: a regression model ({meta['dataset']}) has no classes; {command} "
            f"needs a classifier of 1x28x28 digit images (MNIST){hint}"
        )
    if tuple(meta["input_shape"]) != DIGIT_SHAPE:
        raise UserError(
            f"{source}: this model takes {meta['input_shape']} inputs; {command} needs a "
            f"classifier of 1x28x28 digit images (MNIST){hint}"
        )


def model_inputs(images, meta, source="the model file"):
    """Raw images (N, C, H, W) uint8 -> the float32 inputs the model was trained on."""
    norm = meta["normalization"]
    return normalize(images, Normalization.from_arrays(norm["mean"], norm["std"], source))


def load_test_set(meta, data_dir=None, split="test"):
    """(x normalized float32, y, raw images) of the model's dataset.

    split: "test", or "train" for all of its training images (validation included).
    """
    ds = load_dataset(meta["dataset"], data_dir)
    images, labels = (ds.x_test, ds.y_test) if split == "test" else (ds.x_train, ds.y_train)
    return model_inputs(images, meta), labels, images


def evaluate(model, x, y, tta=None):
    """Accuracy, probabilities, per-class table and confusion matrix of ``model`` on (x, y).

    tta: None, or the test-time augmentation whose views' probabilities are averaged
         (``model_proba``).
    """
    return evaluation_of(model_proba(model, x, tta), y, model.meta["class_names"])


def model_proba(model, x, tta=None, source="the model file"):
    """Class probabilities (N, K) of ``model`` on its normalized inputs ``x``; with ``tta``
    ("flip", "shift", "flip+shift") the mean over its views of x, a shift filling the edge
    it uncovers with black. UserError if the model cannot take that ``tta``."""
    if tta is not None:
        check_tta(model.meta, tta, source)
    fill = black_pixel(model.meta, source) if tta is not None else 0.0
    return predict_proba(model.params, model.blueprint, x, tta=tta, fill=fill)


def check_tta(meta, tta, source):
    """UserError unless the model of ``meta`` classifies pictures that ``--tta tta`` may
    mirror and shift: a regression has no probabilities to average, vectors no pixels to
    shift, and a mirrored digit is no digit (the check of training's --flip)."""
    if is_regression(meta):
        raise UserError(f"{source}: --tta {tta} averages class probabilities; a regression "
                        f"model ({meta['dataset']}) has none")  # fmt: skip
    if len(meta["input_shape"]) != 3:
        raise UserError(f"{source}: --tta {tta} moves the pixels of pictures (C, H, W); this "
                        f"model takes {meta['input_shape']} inputs")  # fmt: skip
    if "flip" in tta:
        check_mirrorable(meta["dataset"], f"--tta {tta}")


def black_pixel(meta, source="the model file"):
    """(C,) float32: the model's input for a black pixel (0), after its normalization."""
    channels = meta["input_shape"][0]
    return model_inputs(np.zeros((1, channels, 1, 1), np.uint8), meta, source).reshape(channels)


def evaluation_of(probs, y, names):
    """The Evaluation of class probabilities ``probs`` (N, K) against labels ``y`` (N,)."""
    pred = probs.argmax(axis=1)
    cm = confusion(y, pred, len(names))
    return Evaluation(
        accuracy(y, pred),
        int((pred != y).sum()),
        probs,
        per_class_table(y, pred, names),
        cm,
        most_confused_pairs(cm, names),
    )


def evaluate_regression(model, x, y):
    """MSE, R² and predictions (N,) of a one-output regression ``model`` on (x, y)."""
    predictions = predict_scores(model.params, model.blueprint, x)
    mse, _ = regression_mse(predictions, y)
    return RegressionEvaluation(mse, r_squared(mse, y), predictions[:, 0])


# Every figure write_figures may write: a run folder's figures/ is the run's only where these are.
FIGURE_FILES = (
    "confusion_matrix.png",
    "history.png",
    "fitted_curve.png",
    "decision_boundary.png",
    "predictions.png",
    "misclassified.png",
    "feature_maps.png",
    "filters.png",
)


def write_figures(model, evaluation, images, y, out_dir, caption, log=None):
    """Every figure of a trained model into ``out_dir``; returns the paths written.

    images: the raw test inputs, images (N, C, H, W) or points (N, D); y: their
    labels (or targets); evaluation: from ``evaluate`` (or ``evaluate_regression``);
    log: the training log DataFrame (for the loss and accuracy curves).
    A regression gets its fitted curve and curves of MSE and R². A classifier gets its
    confusion matrix; of 2-D points, its decision regions; of images, the predictions,
    mistakes and feature maps; and the filters if it starts with a convolution.
    """
    out_dir = Path(out_dir)
    figures = (
        _regression_figures(model, evaluation, images, y, caption, log)
        if is_regression(model.meta)
        else _classifier_figures(model, evaluation, images, y, caption, log)
    )
    assert set(figures) <= set(FIGURE_FILES), set(figures) - set(FIGURE_FILES)
    return [plots.save_figure(fig, out_dir / name) for name, fig in figures.items()]


def _regression_figures(model, evaluation, x, y, caption, log):
    """{file name: Figure} of a regression model (see ``write_figures``)."""
    figures = {
        "fitted_curve.png": plots.plot_fitted_curve(
            None,
            model.params,
            model.blueprint,
            x,
            y,
            lambda points: model_inputs(points, model.meta),
            caption=f"test points: MSE {evaluation.mse:.4f}, R² {evaluation.r2:.4f}; {caption}",
        )
    }
    if log is not None:
        figures["history.png"] = plots.plot_regression_history(log, caption=caption)
    return figures


def _classifier_figures(model, evaluation, images, y, caption, log):
    """{file name: Figure} of a classifier (see ``write_figures``)."""
    names = model.meta["class_names"]
    pred = evaluation.probs.argmax(axis=1)
    figures = {
        "confusion_matrix.png": plots.plot_confusion_matrix(
            evaluation.confusion, names, caption=caption
        )
    }
    if log is not None:
        figures["history.png"] = plots.plot_history(log, caption=caption)
    if images.ndim == 2 and images.shape[1] == 2:
        figures["decision_boundary.png"] = plots.plot_decision_boundary(
            None,
            model.params,
            model.blueprint,
            images,
            y,
            lambda points: model_inputs(points, model.meta),
            names,
            caption=f"test points; {caption}",
        )
    if images.ndim == 4:
        x_one = model_inputs(images[:1], model.meta)
        figures["predictions.png"] = plots.plot_predictions(
            images, y, pred, names, evaluation.probs, caption=caption
        )
        figures["misclassified.png"] = plots.plot_misclassified(
            images, y, evaluation.probs, names, caption=caption
        )
        figures["feature_maps.png"] = plots.plot_feature_maps(
            forward_activations(model.params, x_one, model.blueprint),
            caption=f"test image 0 (label {names[y[0]]}); {caption}",
            class_names=names,
        )
    first = model.blueprint[0]
    if KINDS[first["type"]].image_filters:
        key = f"{first['name']}.W"
        figures["filters.png"] = plots.plot_filters(model.params[key], caption=f"{key}; {caption}")
    return figures


def model_caption(model):
    """A short caption saying how a model was made, for figures and the first line printed:
    e.g. "minivgg, mnist, seed 0, epoch 12, augmented"."""
    config = model.meta.get("config", {})
    parts = [
        config.get("arch", "?"),
        f"{config.get('dataset', model.meta.get('dataset'))}",
        f"seed {model.meta.get('seed', '?')}",
        f"epoch {model.meta.get('epoch', '?')}",
    ]
    if config.get("augment"):
        parts.append("augmented")
    if config.get("adversarial"):
        parts.append(f"adversarial {config['adversarial']} ε {config.get('adv_eps', TrainConfig.adv_eps):g}")
    if quantized_layers(model.blueprint):
        parts.append("int8")
    return ", ".join(parts)
