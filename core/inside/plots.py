"""Figures of what a trained network looks at: attacks, explanations, visualizations.

As in core/plots.py, each function draws into the ``fig`` or ``ax`` it is given (a new one
when None) and returns the Figure; ``caption`` says how the figure was made. Pictures are
pixels on the [0, 1] scale, (C, H, W) with C = 1 or 3, drawn as they are (not rescaled), so
a perturbation of 0.1 looks like one.
"""

import matplotlib.pyplot as plt
import numpy as np

from core.plots import _check_fractions, plain

MAP_COLOURS = "inferno"  # saliency and occlusion maps: dark = no effect, bright = strong
SIGNED_COLOURS = "RdBu_r"  # perturbations: red brighter, blue darker


def show_pixels(ax, pixels, title=None):
    """Draw one picture (C, H, W) or (H, W) of [0, 1] pixels, without ticks."""
    pixels = np.asarray(pixels, dtype=np.float64)
    if pixels.ndim == 3:
        pixels = pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0)
    ax.imshow(np.clip(pixels, 0, 1), cmap="gray" if pixels.ndim == 2 else None, vmin=0, vmax=1)
    _no_ticks(ax, title)


def show_map(ax, values, title=None, under=None, cmap=MAP_COLOURS):
    """Draw a heat map (H, W) scaled to its own maximum, over the grey picture ``under``."""
    values = np.asarray(values, dtype=np.float64)
    top = values.max()
    if under is not None:
        show_pixels(ax, under)
        ax.imshow(values / (top if top > 0 else 1), cmap=cmap, vmin=0, vmax=1, alpha=0.6)
    else:
        ax.imshow(values, cmap=cmap, vmin=0, vmax=top if top > 0 else 1)
    _no_ticks(ax, title)


def _no_ticks(ax, title):
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)


def plot_attack_curve(table, ax=None, caption=None):
    """Accuracy under attack against ε: one line per (model, method).

    table: DataFrame with columns method, eps, accuracy (a fraction) and optionally model
    (a name per row, for several models in one figure).
    """
    _check_fractions("plot_attack_curve", table["accuracy"].to_numpy())
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    keys = ["model", "method"] if "model" in table else ["method"]
    for key, rows in table.groupby(keys, sort=False):
        name = " ".join(str(k) for k in np.atleast_1d(key))
        ax.plot(rows["eps"], 100 * rows["accuracy"], marker="o", label=name)
    ax.set_xlabel("ε (L∞ budget, pixels in [0, 1])")
    ax.set_ylabel("test accuracy under attack (%)")
    ax.set_ylim(0, 100.5)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("Accuracy under attack" + (f"\n{caption}" if caption else ""), fontsize=10)
    return ax.figure


def plot_adversarial_examples(clean, examples, labels, predict, class_names, caption=None):
    """Pictures, their perturbations and the adversarial pictures, with both predictions.

    clean: (n, C, H, W) pictures; examples: {ε: adversarial pictures (n, C, H, W)} (ε > 0
    only are drawn); labels: (n,) true classes; predict: function from pictures to classes.
    One block of three rows per ε: original, perturbation (x_adv - x, at ±ε), adversarial.
    """
    budgets = [eps for eps in examples if eps > 0]
    n = len(clean)
    fig = plt.figure(figsize=(1.3 * n, 1.45 * 3 * max(1, len(budgets)) + 0.6), layout="constrained")
    if not budgets:
        fig.text(0.5, 0.5, "no ε > 0 to show", ha="center")
        return fig
    axes = fig.subplots(3 * len(budgets), n, squeeze=False)
    clean_pred = predict(clean)
    for b, eps in enumerate(budgets):
        adversarial = examples[eps]
        adv_pred = predict(adversarial)
        for i in range(n):
            top, middle, bottom = axes[3 * b, i], axes[3 * b + 1, i], axes[3 * b + 2, i]
            show_pixels(top, clean[i], f"true {plain(class_names[labels[i]])}, "
                                       f"pred {plain(class_names[clean_pred[i]])}")  # fmt: skip
            delta = (adversarial[i] - clean[i]).astype(np.float64)
            middle.imshow(delta.reshape(-1, *delta.shape[-2:]).mean(axis=0),
                          cmap=SIGNED_COLOURS, vmin=-eps, vmax=eps)  # fmt: skip
            _no_ticks(middle, f"perturbation ±{eps:g}")
            wrong = adv_pred[i] != labels[i]
            show_pixels(bottom, adversarial[i], f"adversarial: {plain(class_names[adv_pred[i]])}")
            if wrong:
                bottom.title.set_color("tab:red")
    fig.suptitle("Adversarial examples (red: the attack changed the prediction to a wrong class)"
                 + (f"\n{caption}" if caption else ""), fontsize=10)  # fmt: skip
    return fig


METHOD_TITLES = {
    "saliency": "saliency |d score / d pixel|",
    "smoothgrad": "SmoothGrad",
    "gradcam": "Grad-CAM",
    "occlusion": "occlusion: probability drop",
}


def plot_explanations(pictures, maps, titles, fig=None, caption=None, layer=None):
    """One row per picture: the picture (titled), then each method's map over it.

    pictures: (N, C, H, W) pixels; maps: {method: (N, H, W)} (core/inside/explain.py); titles: N
    strings (e.g. the top-3); layer: Grad-CAM's layer, for its column title.
    """
    methods = list(maps)
    n = len(pictures)
    if fig is None:
        fig = plt.figure(figsize=(2.1 * (1 + len(methods)), 2.3 * n + 0.7), layout="constrained")
    axes = fig.subplots(n, 1 + len(methods), squeeze=False)
    for i in range(n):
        show_pixels(axes[i, 0], pictures[i], titles[i])
        for j, method in enumerate(methods, start=1):
            title = METHOD_TITLES[method] + (
                f"\nof {layer}" if method == "gradcam" and layer else ""
            )
            overlay = None if method in ("saliency", "smoothgrad") else pictures[i]
            show_map(axes[i, j], np.maximum(maps[method][i], 0), title if i == 0 else None, overlay)
    fig.suptitle("What the prediction rests on (bright: important for the predicted class)"
                 + (f"\n{caption}" if caption else ""), fontsize=10)  # fmt: skip
    return fig


def plot_class_models(pictures, titles, fig=None, caption=None):
    """Class model visualizations: one panel per picture (C, H, W), each scaled to its own
    brightest pixel so that faint strokes show."""
    n = len(pictures)
    if fig is None:
        fig = plt.figure(figsize=(1.6 * min(n, 5), 1.9 * -(-n // 5) + 0.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(-(-n // 5), min(n, 5), squeeze=False)).ravel()
    for ax, picture, title in zip(axes, pictures, titles, strict=False):
        top = float(picture.max())
        show_pixels(ax, picture / (top if top > 0 else 1), title)
    for ax in axes[n:]:
        ax.remove()
    fig.suptitle("Class model visualization: pictures the network scores highly\n(gradient "
                 "ascent on the class score, with L2, jitter and blur; each panel scaled to "
                 "its brightest pixel)" + (f"\n{caption}" if caption else ""), fontsize=9)  # fmt: skip
    return fig


CHANNELS_SHOWN = 16  # rows of the top-activations figure; its table holds every channel


def plot_top_activations(pictures, top, label, class_names, labels, max_channels=CHANNELS_SHOWN,
                         caption=None):  # fmt: skip
    """For each channel of a layer (the first ``max_channels``), the test pictures it
    responds to most: one row per channel, strongest first.

    pictures: (N, C, H, W) test pixels; top: core/inside/visualize.py TopActivations; labels (N,).
    """
    channels = min(len(top.indices), max_channels)
    k = top.indices.shape[1]
    fig = plt.figure(figsize=(1.1 * k + 0.6, 1.15 * channels + 0.8), layout="constrained")
    axes = fig.subplots(channels, k, squeeze=False)
    for c in range(channels):
        for r in range(k):
            i = top.indices[c, r]
            show_pixels(
                axes[c, r], pictures[i], f"{plain(class_names[labels[i]])}: {top.values[c, r]:.1f}"
            )
        axes[c, 0].set_ylabel(f"ch {c}", fontsize=8)
    fig.suptitle(f"Test pictures that most activate each channel of {label}\n(title: true "
                 "class and the channel's strongest response)"
                 + (f"\n{caption}" if caption else ""), fontsize=9)  # fmt: skip
    return fig
