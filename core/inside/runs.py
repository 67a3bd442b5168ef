"""The commands that look inside a trained model: load it, run a tool, write its files.

``attack``, ``explain`` and ``visualize`` each write into a new folder (data/files.py
``new_folder``): by default ``<model folder>/<model name>-<command>``, or ``--out``; a
folder that already holds files is never written into, the next free name
(``...-2``, ``...-3``) is used instead, so no run replaces another run's files.
"""

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from core.inside.attack import EXAMPLES, check_settings, predictions, robustness
from core.inside.explain import explain, gradcam_layer
from core.inside.plots import (
    CHANNELS_SHOWN,
    plot_adversarial_examples,
    plot_attack_curve,
    plot_class_models,
    plot_explanations,
    plot_top_activations,
)
from core.inside.visualize import check_map_layer, class_models, conv_layers, top_activations
from core.learn.eval import predict_proba, predict_scores, softmax, top_k
from core.learn.model_file import load_float_model
from core.learn.ood import verdict
from core.plots import plain, plot_filters, save_figure
from core.report import check_digit_model, is_regression, model_caption
from data import load_dataset
from data.digit_image import load_digit_image
from data.errors import UserError
from data.files import atomic_write_text, new_folder
from data.normalization import to_unit
from model.walk import KINDS


def load_with_test_pictures(path, purpose, data_dir=None, limit=None):
    """The model file ``path`` and its dataset's test pictures (the first ``limit`` of them).

    Returns (model, pixels, labels): the Model (model/trained.py), float32 pixels
    (N, C, H, W) on the [0, 1] scale, int64 labels (N,). Refuses, in one line naming the
    file: a quantized model (the tools need the float gradients), a regression model (no
    classes), a model of points rather than pictures.
    """
    model = load_float_model(path, purpose)
    source = os.fspath(path)
    if is_regression(model.meta):
        raise UserError(
            f"{source}: a regression model has no classes; {purpose} needs a classifier"
        )
    if len(model.meta["input_shape"]) != 3:
        raise UserError(
            f"{source}: this model takes points of shape {model.meta['input_shape']}, not "
            f"pictures; {purpose} needs a model of images (C, H, W)"
        )
    ds = load_dataset(model.meta["dataset"], data_dir)
    images, labels = ds.x_test, ds.y_test
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    pixels = to_unit(images) if images.dtype == np.uint8 else images.astype(np.float32)
    return model, pixels, labels


def output_folder(params_path, command, out=None):
    """A new folder for one run of ``command`` on the model file (see the module docstring)."""
    path = Path(params_path)
    return new_folder(out if out is not None else path.parent / f"{path.stem}-{command}")


def run_attack(params_path, eps_list, settings, limit=None, data_dir=None, out=None, echo=print):
    """The ``attack`` command: accuracy under attack for each ε, a table, a curve, examples.

    Writes attack.csv (method, eps, accuracy as a fraction), attack.png and
    adversarial_examples.png into a new folder; returns (table, folder).
    """
    check_settings(settings, eps_list)
    model, test_pixels, test_labels = load_with_test_pictures(
        params_path, f"the {settings.method} attack", data_dir, limit
    )
    folder = output_folder(params_path, "attack", out)
    n = len(test_labels)
    what = (f"PGD-{settings.steps}, step {settings.step_size:g}, seed {settings.seed}"
            if settings.method == "pgd" else "FGSM")  # fmt: skip
    echo(f"{params_path}: {model_caption(model)}")
    echo(f"{what} on {n:,} test images, ε = {', '.join(f'{e:g}' for e in eps_list)}")
    started = time.perf_counter()

    def show(row):
        minutes = (time.perf_counter() - started) / 60
        echo(f"  ε = {row['eps']:<5g} accuracy {100 * row['accuracy']:6.2f}%   ({minutes:.1f} min)")

    table, examples = robustness(model, test_pixels, test_labels, eps_list,
                                 settings, on_row=show)  # fmt: skip
    atomic_write_text(folder / "attack.csv", table.to_csv(index=False))
    caption = f"{what}, {n:,} test images; {model_caption(model)}"
    save_figure(plot_attack_curve(table, caption=caption), folder / "attack.png")
    pick = slice(0, EXAMPLES)
    fig = plot_adversarial_examples(
        test_pixels[pick], examples, test_labels[pick],
        lambda pixels: predictions(model, pixels), model.meta["class_names"], caption,
    )  # fmt: skip
    save_figure(fig, folder / "adversarial_examples.png")
    minutes = (time.perf_counter() - started) / 60
    echo(f"{minutes:.1f} min; files in {folder}: attack.csv, attack.png, adversarial_examples.png")
    return table, folder


EXPLAINED = 4  # test pictures explained of each kind (right, wrong) when no picture is given


def chosen_test_pictures(model, pixels, labels, count=EXPLAINED):
    """Indices of the first ``count`` test pictures the model gets right and the first
    ``count`` it gets wrong (fewer when it makes fewer mistakes)."""
    wrong = predictions(model, pixels) != labels
    return np.concatenate([np.flatnonzero(~wrong)[:count], np.flatnonzero(wrong)[:count]])


def digit_pictures(paths, model, source):
    """The pictures at ``paths`` prepared as ``predict`` prepares them: (N, 1, 28, 28) pixels."""
    check_digit_model(
        model.meta,
        source,
        "a picture on the command line",
        "; without pictures, explain uses the model's own test images",
    )
    return to_unit(np.stack([load_digit_image(path) for path in paths])[:, None])


def run_explain(params_path, images, methods, layer=None, seed=0, limit=None, data_dir=None,
                out=None, echo=print):  # fmt: skip
    """The ``explain`` command: for each picture, its top-3 and the maps of ``methods``.

    images: paths of digit pictures, or empty for a handful of test pictures, right and
    wrong ones (among the first ``limit`` test pictures). Writes explain.csv, explain.png (all pictures) and explain_<i>.png (one per
    picture) into a new folder; returns (table, folder).
    """
    model, test_pixels, test_labels = load_with_test_pictures(params_path, "explain", data_dir,
                                                              limit)  # fmt: skip
    names_of = [plain(name) for name in model.meta["class_names"]]  # one line each, plain text
    if layer is not None:
        check_map_layer(model.blueprint, test_pixels.shape[1:], layer)
    if images:
        pixels = digit_pictures(images, model, os.fspath(params_path))
        names, labels = [str(p) for p in images], [""] * len(images)
    else:
        picked = chosen_test_pictures(model, test_pixels, test_labels)
        pixels = test_pixels[picked]
        names = [f"test image {i}" for i in picked]
        labels = [names_of[k] for k in test_labels[picked]]
    if layer is None and "gradcam" in methods:
        layer = gradcam_layer(model.blueprint, pixels.shape[1:])
    folder = output_folder(params_path, "explain", out)
    logits = predict_scores(model.params, model.blueprint, model.inputs(pixels))
    foreign = [verdict(model, s, np.round(p[0] * 255).astype(np.uint8), os.fspath(params_path))
               for s, p in zip(logits, pixels, strict=True)]  # fmt: skip
    classes, top = top_k(softmax(logits), 3)
    predicted = classes[:, 0]
    maps = explain(model, pixels, predicted, methods, np.random.default_rng(seed), layer)
    ranked = [", ".join(f"{names_of[c]} {100 * q:.1f}%" for c, q in zip(cs, ps, strict=True))
              for cs, ps in zip(classes, top, strict=True)]  # fmt: skip
    table = pd.DataFrame({"picture": names, "true": labels,
                          "predicted": [names_of[c] for c in predicted], "top3": ranked})  # fmt: skip
    atomic_write_text(folder / "explain.csv", table.to_csv(index=False))
    titles = [f"{'true ' + t + ', ' if t else ''}top: {r.split(', ')[0]}" for t, r in
              zip(labels, ranked, strict=True)]  # fmt: skip
    caption = f"{model_caption(model)}; maps for the predicted class"
    save_figure(plot_explanations(pixels, maps, titles, caption=caption, layer=layer),
                folder / "explain.png")  # fmt: skip
    for i, row in table.iterrows():
        one = {method: values[i : i + 1] for method, values in maps.items()}
        title = f"{row['picture']}\ntop 3: {row['top3']}"
        save_figure(plot_explanations(pixels[i : i + 1], one, [title], caption=caption,
                                      layer=layer), folder / f"explain_{i + 1}.png")  # fmt: skip
        echo(f"{row['picture']}: {foreign[i] or row['predicted']}   top 3: {row['top3']}"
             + (f"   (true {row['true']})" if row["true"] else ""))  # fmt: skip
    echo(f"files in {folder}: explain.csv, explain.png, explain_1.png .. explain_{len(table)}.png"
         + (f" (Grad-CAM of layer {layer})" if "gradcam" in methods else ""))  # fmt: skip
    return table, folder


def first_conv_weights(model):
    """The weights (F, C, KH, KW) of the blueprint's first layer when it is a conv, else None."""
    spec = model.blueprint[0]
    return model.params[f"{spec['name']}.W"] if KINDS[spec["type"]].image_filters else None


def write_class_models(model, classes, input_shape, seed, folder, echo=print):
    """One class model per class of ``classes``: class_models.csv (class, score,
    probability) and class_models.png in ``folder``. Returns the names written."""
    names = model.meta["class_names"]
    pictures, scores = class_models(model, classes, input_shape, np.random.default_rng(seed))
    probs = predict_proba(model.params, model.blueprint, model.inputs(pictures))
    table = pd.DataFrame({"class": [names[k] for k in classes],
                          "score": scores, "probability": probs[np.arange(len(classes)),
                                                                classes]})  # fmt: skip
    atomic_write_text(folder / "class_models.csv", table.to_csv(index=False))
    titles = [f"{row['class']}: p {100 * row['probability']:.0f}%"
              for _, row in table.iterrows()]  # fmt: skip
    fig = plot_class_models(
        pictures, titles, caption=f"{model_caption(model)}; visualize --seed {seed}"
    )
    written = [save_figure(fig, folder / "class_models.png").name, "class_models.csv"]
    echo("class models (score, probability): " + ", ".join(
        f"{row['class']} {row['score']:.1f} {100 * row['probability']:.0f}%"
        for _, row in table.iterrows()))  # fmt: skip
    return written


def write_top_activations(model, pixels, labels, layer, folder, echo=print):
    """The test pictures that most activate each channel of ``layer``: top_activations.csv
    and top_activations_<layer>.png in ``folder``. Returns the names written."""
    names = model.meta["class_names"]
    top = top_activations(model, pixels, layer)
    channels, k = top.indices.shape
    table = pd.DataFrame({
        "layer": layer,
        "channel": np.repeat(np.arange(channels), k),
        "rank": np.tile(np.arange(1, k + 1), channels),
        "test_index": top.indices.ravel(),
        "label": [names[c] for c in labels[top.indices.ravel()]],
        "activation": top.values.ravel(),
    })  # fmt: skip
    atomic_write_text(folder / "top_activations.csv", table.to_csv(index=False))
    fig = plot_top_activations(pixels, top, layer, names, labels, caption=model_caption(model))
    written = [save_figure(fig, folder / f"top_activations_{layer}.png").name,
               "top_activations.csv"]  # fmt: skip
    shown = "" if channels <= CHANNELS_SHOWN else f" (the figure shows the first {CHANNELS_SHOWN})"
    echo(f"layer {layer}: the {k} test images that most activate each of its {channels} "
         f"channels in top_activations.csv{shown}")  # fmt: skip
    return written


def run_visualize(params_path, classes=None, layer=None, seed=0, limit=None, data_dir=None,
                  out=None, echo=print):  # fmt: skip
    """The ``visualize`` command: class models, the first layer's filters, and the test
    pictures that most activate each channel of a layer.

    classes: class indices to visualize; layer: the layer for the top activations. With
    neither, everything is drawn: every class, the filters, and Grad-CAM's default layer.
    The top activations are searched among the first ``limit`` test pictures (default: all).
    Writes the figures, class_models.csv and top_activations.csv into a new folder.
    """
    model, test_pixels, test_labels = load_with_test_pictures(params_path, "visualize",
                                                              data_dir, limit)  # fmt: skip
    everything = classes is None and layer is None
    n_classes = len(model.meta["class_names"])
    if classes is not None and not all(0 <= k < n_classes for k in classes):
        raise UserError(f"--class must be between 0 and {n_classes - 1}, got {classes}")
    if layer is not None:
        check_map_layer(model.blueprint, test_pixels.shape[1:], layer)
    folder = output_folder(params_path, "visualize", out)
    started = time.perf_counter()
    written = []
    if everything or classes is not None:
        classes = list(range(n_classes)) if classes is None else classes
        written += write_class_models(model, classes, test_pixels.shape[1:], seed, folder, echo)
    if everything and (weights := first_conv_weights(model)) is not None:
        if weights.shape[1] in (1, 3):
            fig = plot_filters(weights, caption=model_caption(model))
            written.append(save_figure(fig, folder / "filters.png").name)
    shape = test_pixels.shape[1:]
    if everything and not conv_layers(model.blueprint, shape):
        echo("no layer of this network makes maps (C, h, w): no top activations to show")
    elif everything or layer is not None:
        layer = layer or gradcam_layer(model.blueprint, shape)
        written += write_top_activations(model, test_pixels, test_labels, layer, folder, echo)
    minutes = (time.perf_counter() - started) / 60
    echo(f"{minutes:.1f} min; files in {folder}: {', '.join(written)}")
    return folder
