"""Figures of training runs, predictions, decision boundaries and network internals.

Every function draws into the ``ax`` (one panel) or ``fig`` (a grid) it is
given, creating one when None, and returns the matplotlib Figure. Library
code never picks a backend: scripts and CI choose Agg. ``save_figure``
writes a PNG atomically and closes the figure. Accuracies passed in are
fractions in [0, 1]; figures show them in percent. An optional ``caption``
says how the figure was made (e.g. "minivgg-bn, seed 0, 15 epochs").
"""

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from core.learn.eval import misclassified, predict_scores
from data.errors import UserError
from data.files import atomic_write
from model.meta_checks import label as one_line

SPLITS = ("train", "val")
HISTORY_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc")
REGRESSION_HISTORY_COLUMNS = ("epoch", "train_loss", "train_r2", "val_loss", "val_r2")
SWEEP_COLUMNS = ("config", "n", "test_mean", "test_std", "val_mean", "val_std")
SWEEP_SPLITS = {"test": "tab:blue", "val": "tab:orange"}  # bar colour of each accuracy
WRONG_COLOUR = "tab:red"
PANEL_INCHES_PER_CHAR = 0.085  # an 8-point character is about 0.06 inch wide, plus a gap


def plain(name):
    """A class name as plain text in a figure: ``label`` (one line, cut), and "$" escaped so
    that matplotlib never parses it as mathtext (a name "$\\frac{1}{0}$" is shown as it is)."""
    return one_line(name).replace("$", r"\$")


def save_figure(fig, path, dpi=120):
    """Write ``fig`` to a PNG file atomically, then close the figure.

    fig:  a matplotlib Figure.
    path: destination ending in ``.png``; its folder is created if missing.
    dpi:  resolution in dots per inch.
    Returns the Path written. The image goes to a temporary file in the same
    folder first and is renamed over ``path``, so a crash never leaves a
    half-written PNG behind. Raises UserError when the file cannot be written.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"save_figure: '{path}' does not end in .png; figures are saved as PNG.")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight"))
    finally:
        plt.close(fig)
    return path


def plot_history(log_df, axes=None, caption=None):
    """Loss and accuracy per epoch, train and validation, in two panels.

    log_df:  DataFrame with columns epoch, train_loss, train_acc, val_loss,
             val_acc (accuracies as fractions; other columns such as lr,
             seconds, images_per_s are ignored; NaN values leave gaps).
    axes:    two Axes (loss, accuracy) to draw into, or None for a new figure.
    caption: optional line under the figure title.
    Returns the Figure. Loss uses a log scale. Accuracy uses a log scale of
    the error rate (100 - accuracy), labelled in accuracy %, so 99.3 % and
    99.6 % are far apart while 90 % still fits. Epochs at 100 % (error 0,
    which a log axis cannot show) are drawn on a dotted line above the best
    error. The best validation accuracy is marked.
    """
    missing = [col for col in HISTORY_COLUMNS if col not in log_df.columns]
    if missing:
        raise UserError(
            f"plot_history: the log has no column(s) {missing}; it needs {HISTORY_COLUMNS}."
        )
    _check_fractions("plot_history", log_df[["train_acc", "val_acc"]].to_numpy())
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    loss_ax, acc_ax = axes
    fig = loss_ax.figure
    epoch = log_df["epoch"].to_numpy()

    errors = {split: 100 * (1 - log_df[f"{split}_acc"].to_numpy(np.float64)) for split in SPLITS}
    all_errors = np.concatenate(list(errors.values()))
    floor = _zero_error_floor(all_errors)
    shown = {split: np.where(error == 0, floor, error) for split, error in errors.items()}
    for split, style in zip(SPLITS, ("--", "-"), strict=True):
        loss_ax.plot(epoch, log_df[f"{split}_loss"], style, marker=".", label=split)
        acc_ax.plot(epoch, shown[split], style, marker=".", label=split)
    loss_ax.set_yscale("log")
    loss_ax.set(title="Loss (log scale)", xlabel="epoch", ylabel="cross-entropy loss")

    if np.any(all_errors == 0):
        acc_ax.axhline(floor, ls=":", color="grey", label="100 % (no error) drawn on this line")
    val_acc = log_df["val_acc"].to_numpy(dtype=np.float64)
    if np.isfinite(val_acc).any():
        best = np.nanargmax(val_acc)
        acc_ax.plot(
            epoch[best],
            shown["val"][best],
            "*",
            color="black",
            markersize=12,
            label=f"best val {100 * val_acc[best]:.2f} % (epoch {epoch[best]})",
        )
    _error_rate_axis(acc_ax)
    if np.any(all_errors == 0):  # the axis ends just past the 100 % line: no tick beyond it
        worst, _ = acc_ax.get_ylim()  # inverted: (largest error, smallest)
        acc_ax.set_ylim(worst, floor / 1.25)
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, which="major", alpha=0.3)
        ax.legend()
    if caption:
        fig.suptitle(caption)
    return fig


def _error_rate_axis(ax):
    """An error-rate (%) axis on a log scale, inverted so that better is higher, its ticks
    named as accuracy."""
    ax.set_yscale("log")
    ax.invert_yaxis()
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_formatter(FuncFormatter(lambda err, _: f"{100 - err:.6g}"))
    ax.set(title="Accuracy (log scale of the error rate)", xlabel="epoch", ylabel="accuracy (%)")


def plot_regression_history(log_df, axes=None, caption=None):
    """MSE and R² per epoch of a regression run, train and validation, in two panels.

    log_df:  DataFrame with columns epoch, train_loss, train_r2, val_loss, val_r2 (the
             log of a run trained with --loss mse; other columns are ignored).
    axes:    two Axes (MSE, R²) to draw into, or None for a new figure.
    caption: optional line under the figure title.
    Returns the Figure. MSE uses a log scale; the epoch of the best (highest) validation
    R², which is the lowest validation MSE, is marked.
    """
    missing = [col for col in REGRESSION_HISTORY_COLUMNS if col not in log_df.columns]
    if missing:
        raise UserError(
            f"plot_regression_history: the log has no column(s) {missing}; it needs "
            f"{REGRESSION_HISTORY_COLUMNS}."
        )
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    loss_ax, r2_ax = axes
    epoch = log_df["epoch"].to_numpy()
    for split, style in zip(SPLITS, ("--", "-"), strict=True):
        loss_ax.plot(epoch, log_df[f"{split}_loss"], style, marker=".", label=split)
        r2_ax.plot(epoch, log_df[f"{split}_r2"], style, marker=".", label=split)
    val_r2 = log_df["val_r2"].to_numpy(dtype=np.float64)
    if np.isfinite(val_r2).any():
        best = np.nanargmax(val_r2)
        label = f"best val R² {val_r2[best]:.4f} (epoch {epoch[best]})"
        r2_ax.plot(epoch[best], val_r2[best], "*", color="black", markersize=12, label=label)
    loss_ax.set_yscale("log")
    loss_ax.set(title="Loss (log scale)", xlabel="epoch", ylabel="mean squared error")
    r2_ax.set(title="R² = 1 - MSE / variance of the targets", xlabel="epoch", ylabel="R²")
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, which="major", alpha=0.3)
        ax.legend()
    if caption:
        loss_ax.figure.suptitle(caption)
    return loss_ax.figure


def plot_decision_boundary(
    ax, params, blueprint, x, y, inputs=None, class_names=None, resolution=200, caption=None
):
    """The class a model predicts at every point of the plane, with the data points on top.

    ax:          Axes to draw into, or None for a new figure.
    params, blueprint: a classifier of 2-D points (K outputs).
    x:           (N, 2) points; the grid spans their range and a tenth more on each side.
    y:           (N,) integer labels; each point has its class's colour.
    inputs:      function from grid points float32 (M, 2) to the model's inputs (e.g. the
                 run's normalization); default: the points themselves.
    class_names: K names for the legend (default "0", "1", ...).
    resolution:  grid points per side.
    caption:     optional second line of the title.
    Returns the Figure. The regions are an image, ``ax.images[0]``, whose array (resolution,
    resolution) holds the predicted classes: row i at the i-th grid value of x[:, 1] (from
    the bottom), column j at the j-th of x[:, 0].
    """
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 2 or x.shape[1] != 2:
        raise UserError(f"plot_decision_boundary: x must be 2-D points (N, 2), got {x.shape}")
    low, high = x.min(axis=0), x.max(axis=0)
    margin = 0.1 * np.where(high > low, high - low, 1.0)
    g0, g1 = (
        np.linspace(a, b, resolution, dtype=np.float32)
        for a, b in zip(low - margin, high + margin, strict=True)
    )
    grid = np.stack(np.meshgrid(g0, g1), axis=-1).reshape(-1, 2)  # rows follow x[:, 1]
    scores = predict_scores(params, blueprint, grid if inputs is None else inputs(grid), 4096)
    regions = scores.argmax(axis=1).reshape(resolution, resolution)
    k = scores.shape[1]
    colours = ListedColormap([plt.get_cmap("tab10")(i % 10) for i in range(k)])
    half0, half1 = (g0[1] - g0[0]) / 2, (g1[1] - g1[0]) / 2  # the image's edges, not centres
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 5), layout="constrained")
    style = {"cmap": colours, "vmin": -0.5, "vmax": k - 0.5}
    extent = (g0[0] - half0, g0[-1] + half0, g1[0] - half1, g1[-1] + half1)
    ax.imshow(regions, origin="lower", extent=extent, aspect="auto", alpha=0.35, **style)
    ax.scatter(x[:, 0], x[:, 1], c=y, s=10, edgecolors="black", linewidths=0.3, **style)
    names = class_names if class_names is not None else [str(i) for i in range(k)]
    handles = [Patch(color=colours(i), label=plain(name)) for i, name in enumerate(names)]
    ax.legend(handles=handles, fontsize=8, loc="upper right", framealpha=0.8)
    ax.set(xlabel="x[0]", ylabel="x[1]")
    title = "Decision regions: the predicted class at each point"
    ax.set_title(title + (f"\n{caption}" if caption else ""), fontsize=10)
    return ax.figure


def plot_fitted_curve(ax, params, blueprint, x, y, inputs=None, resolution=400, caption=None):
    """A 1-D regression: the data points and the model's curve over their range.

    ax:         Axes to draw into, or None for a new figure.
    params, blueprint: a model of one input and one output.
    x:          (N, 1) or (N,) inputs; y: (N,) targets.
    inputs:     function from grid points float32 (M, 1) to the model's inputs (e.g. the
                run's normalization); default: the points themselves.
    resolution: points on the curve.
    caption:    optional second line of the title.
    Returns the Figure; the curve is ``ax.lines[0]``.
    """
    x = np.asarray(x).reshape(len(x), -1)
    if x.shape[1] != 1:
        raise UserError(f"plot_fitted_curve: x must be one number per point, got {x.shape}")
    grid = np.linspace(x.min(), x.max(), resolution, dtype=np.float32)[:, None]
    curve = predict_scores(params, blueprint, grid if inputs is None else inputs(grid))
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4.5), layout="constrained")
    ax.plot(grid[:, 0], curve[:, 0], color="tab:red", linewidth=2, label="model")
    ax.scatter(x[:, 0], y, s=8, alpha=0.5, color="tab:blue", label="data")
    ax.set(xlabel="x", ylabel="y")
    ax.grid(True, alpha=0.3)
    ax.legend()
    ax.set_title("Fitted curve" + (f"\n{caption}" if caption else ""), fontsize=10)
    return ax.figure


def plot_confusion_matrix(cm, class_names, ax=None, normalize=False, caption=None):
    """Confusion matrix with every cell annotated; colour shows only the mistakes.

    cm:          (K, K) integer counts, rows true class, columns predicted.
    class_names: K names for the axes.
    ax:          Axes to draw into, or None for a new figure.
    normalize:   False: print counts. True: print each row as % of its true
                 class (a row's diagonal cell is then that class's recall).
    caption:     optional second line of the title.
    Returns the Figure. The diagonal (correct predictions, much larger than
    the rest) is left out of the colour scale and drawn grey with bold text,
    so the off-diagonal mistakes get the full colour range and stay visible.
    """
    cm = np.asarray(cm)
    n = len(class_names)
    if cm.shape != (n, n):
        raise ValueError(
            f"plot_confusion_matrix: cm has shape {cm.shape} but there are {n} class names; "
            f"pass the ({n}, {n}) matrix from core.learn.eval.confusion."
        )
    if normalize:
        row_sums = cm.sum(axis=1, keepdims=True)
        values = 100 * np.divide(cm, row_sums, out=np.zeros(cm.shape), where=row_sums > 0)
        text, unit = "{:.1f}", "% of true class"
    else:
        values, text, unit = cm, "{:.0f}", "count"
    if ax is None:
        _, ax = plt.subplots(figsize=(0.6 * n + 3, 0.6 * n + 2), layout="constrained")
    fig = ax.figure

    diagonal = np.eye(n, dtype=bool)
    mistakes = np.ma.masked_array(values, mask=diagonal)
    top = max(float(values[~diagonal].max(initial=0)), 1.0)  # colour range at least 0..1
    cmap = plt.get_cmap("Reds").with_extremes(bad="lightgrey")
    image = ax.imshow(mistakes, cmap=cmap, vmin=0, vmax=top)
    fig.colorbar(image, ax=ax, label=f"mistakes ({unit})")
    for (i, j), value in np.ndenumerate(values):
        ax.text(
            j,
            i,
            text.format(value),
            ha="center",
            va="center",
            fontsize=8,
            fontweight="bold" if i == j else "normal",
            color=_cell_text_colour(value, top, on_diagonal=diagonal[i, j]),
        )
    class_names = [plain(name) for name in class_names]
    words = max(len(name) for name in class_names) > 3  # digits stay upright
    ax.set_xticks(
        range(n),
        labels=class_names,
        rotation=45 if words else 0,
        ha="right" if words else "center",
        rotation_mode="anchor",
    )
    ax.set_yticks(range(n), labels=class_names)
    ax.set(xlabel="predicted class", ylabel="true class")
    title = f"Confusion matrix ({unit}); colour: mistakes only, diagonal grey"
    ax.set_title(title + (f"\n{caption}" if caption else ""))
    return fig


def plot_predictions(
    images, y_true, y_pred, class_names, probs=None, n=25, fig=None, caption=None, title=None
):
    """A grid of images titled "true: X" over "pred: Y (p)", wrong predictions in red.

    Two labelled lines, not "X/Y": class names may hold a slash ("T-shirt/top").

    images:      (N, C, H, W) with C = 1 or 3, or (N, H, W); any value range
                 (each image is min-max scaled; C = 1 is drawn grey).
    y_true:      (N,) integer labels.
    y_pred:      (N,) integer predicted labels.
    class_names: K names.
    probs:       optional (N, K) class probabilities; adds the probability of
                 the predicted class to each title.
    n:           how many images to show (the first n; fewer if N < n).
    fig:         Figure to draw into (should be empty), or None for a new one.
    caption:     optional line under the figure title.
    title:       figure title (default explains the panel titles).
    Returns the Figure, with one Axes per image shown.
    """
    images, y_true, y_pred = np.asarray(images), np.asarray(y_true), np.asarray(y_pred)
    count = min(n, len(images))
    labels = [
        f"true: {plain(class_names[y_true[i]])}\npred: {plain(class_names[y_pred[i]])}"
        + ("" if probs is None else f" ({probs[i][y_pred[i]]:.2f})")
        for i in range(count)
    ]
    # Wide enough for the longest line ("pred: Ankle boot (1.00)") at 8 points, so that
    # neighbouring titles never run into each other.
    longest = max((len(line) for label in labels for line in label.split("\n")), default=0)
    axes = _grid(fig, count, panel_size=max(1.5, PANEL_INCHES_PER_CHAR * longest))
    fig = axes[0].figure if axes else _empty_figure(fig, "nothing to show")
    for i, ax in enumerate(axes):
        _show_image(ax, images[i])
        colour = WRONG_COLOUR if y_true[i] != y_pred[i] else "black"
        ax.set_title(labels[i], color=colour, fontsize=8, linespacing=1.1)
    title = title or "true and predicted class (probability); wrong in red"
    fig.suptitle(title + (f"\n{caption}" if caption else ""))
    return fig


def plot_misclassified(images, y_true, probs, class_names, n=25, fig=None, caption=None):
    """A grid of the most confident mistakes (see ``plot_predictions``).

    images:      (N, C, H, W) or (N, H, W), as for ``plot_predictions``.
    y_true:      (N,) integer labels.
    probs:       (N, K) class probabilities; the prediction is the argmax.
    class_names: K names.
    n:           how many mistakes to show at most.
    fig:         Figure to draw into, or None for a new one.
    caption:     optional line under the figure title.
    Returns the Figure, one Axes per mistake shown (a note if there is none).
    """
    wrong = misclassified(y_true, probs).head(n)
    idx = wrong["index"].to_numpy()
    return plot_predictions(
        np.asarray(images)[idx],
        wrong["true"].to_numpy(),
        wrong["predicted"].to_numpy(),
        class_names,
        probs=np.asarray(probs)[idx],
        n=n,
        fig=fig,
        caption=caption,
        title=f"Most confident mistakes ({len(idx)} shown): true and predicted class (probability)",
    )


def plot_filters(W, fig=None, caption=None):
    """First convolution layer filters as a grid of small images.

    W:       (F, C, KH, KW) weights with C = 1 (drawn grey) or C = 3 (RGB).
    fig:     Figure to draw into, or None for a new one.
    caption: optional line under the figure title.
    Returns the Figure, one Axes per filter; each filter is min-max scaled
    on its own, so the panels show patterns, not magnitudes.
    """
    W = np.asarray(W)
    if W.ndim != 4 or W.shape[1] not in (1, 3):
        raise UserError(
            f"plot_filters: W has shape {W.shape}; it needs (F, C, KH, KW) with C = 1 or 3 "
            f"(the first convolution layer's weights)."
        )
    axes = _grid(fig, len(W), panel_size=0.8)
    fig = axes[0].figure
    for ax, w in zip(axes, W, strict=True):
        _show_image(ax, w)
    F, C, KH, KW = W.shape
    title = f"First conv layer filters ({F} x {C} x {KH} x {KW})\neach min-max scaled"
    fig.suptitle(title + (f"\n{caption}" if caption else ""))
    return fig


def plot_feature_maps(activations, fig=None, max_channels=8, caption=None, class_names=None):
    """Activations of one image through the network: one row per layer.

    activations:  list of (layer_name, array) with array (C, H, W) for a
                  convolutional map or (D,) for a vector (a leading batch
                  axis of size 1 is dropped).
    fig:          Figure to draw into, or None for a new one.
    max_channels: how many channels of a (C, H, W) map to show (the first ones).
    caption:      optional line under the figure title.
    class_names:  the classes, which name the last layer's bars (its outputs are their scores).
    Returns the Figure: a map gets one Axes per shown channel, sharing one
    colour scale per layer (so weak channels look weak) with its colour bar
    beside the row; a signed map (before a ReLU) is drawn on a diverging
    scale centred on 0, so a negative value never looks like a weak positive
    one. A vector gets one Axes, a bar chart if D <= 64, otherwise a one-row image.
    """
    arrays = [_drop_batch_axis(name, a) for name, a in activations]
    if fig is None:
        fig = plt.figure(figsize=(1.6 * max_channels + 1, 1.7 * len(arrays)), layout="constrained")
    grid = fig.add_gridspec(len(arrays), max_channels + 1, width_ratios=[1] * max_channels + [0.15])
    for row, ((name, _), a) in enumerate(zip(activations, arrays, strict=True)):
        label = f"{name}\n{a.shape}"
        if a.ndim == 1:
            last = row == len(arrays) - 1 and class_names is not None
            names = class_names if last and len(a) == len(class_names) else None
            as_bars = names is not None or len(a) <= 64
            ax = fig.add_subplot(grid[row, :] if as_bars else grid[row, :-1])
            image = _show_vector(ax, a, names)
            if image is not None:
                fig.colorbar(image, cax=fig.add_subplot(grid[row, -1]))
            ax.set_ylabel(label)
            continue
        shown = a[:max_channels]
        cmap, low, high = _activation_scale(shown)
        for ch, channel in enumerate(shown):
            ax = fig.add_subplot(grid[row, ch])
            image = ax.imshow(channel, cmap=cmap, vmin=low, vmax=high)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"ch {ch}", fontsize=8)
            if ch == 0:
                ax.set_ylabel(label)
        fig.colorbar(image, cax=fig.add_subplot(grid[row, -1]))
    title = f"Feature maps of one image (first {max_channels} channels per layer)"
    fig.suptitle(title + (f"\n{caption}" if caption else ""))
    return fig


def plot_sweep(summary_df, ax=None, caption=None):
    """Mean ± std test and validation error of each configuration of a sweep, as bars.

    summary_df: DataFrame with columns config (name), n (number of runs), and
                test_mean, test_std, val_mean, val_std (of the final accuracy over
                seeds, fractions; a std may be NaN when n == 1), as core/experiments/sweep.py's
                ``summarize`` makes it; two bars per row (test, then validation), in order.
    ax:         Axes to draw into, or None for a new figure.
    caption:    optional second line of the title.
    Returns the Figure. Bars show the error rate (100 - accuracy %), which
    starts at zero honestly and keeps 99.3 % and 99.6 % visibly apart; the error
    bars are one standard deviation; each bar is labelled with the error it draws, ± its std
    (a configuration of one run has no spread, and no ±).
    """
    missing = [col for col in SWEEP_COLUMNS if col not in summary_df.columns]
    if missing:
        raise UserError(
            f"plot_sweep: the summary has no column(s) {missing}; it needs {SWEEP_COLUMNS}."
        )
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 1 + 0.8 * len(summary_df)), layout="constrained")
    fig = ax.figure
    rows = np.arange(len(summary_df))
    for offset, (split, colour) in zip((-0.2, 0.2), SWEEP_SPLITS.items(), strict=True):
        mean = summary_df[f"{split}_mean"].to_numpy(dtype=np.float64)
        std = np.nan_to_num(summary_df[f"{split}_std"].to_numpy(dtype=np.float64))  # n == 1
        _check_fractions("plot_sweep", mean)
        error, spread = 100 * (1 - mean), 100 * std
        name = "test" if split == "test" else "validation"
        ax.barh(rows + offset, error, height=0.4, xerr=spread, capsize=3, color=colour,
                alpha=0.8, label=f"{name} error")  # fmt: skip
        for row, e, s, n in zip(rows + offset, error, spread, summary_df["n"], strict=True):
            label = f"  {e:.2f}" + (f" ± {s:.2f}" if n > 1 else "") + " % error"
            ax.text(e + s, row, label, va="center", fontsize=7)
    labels = [f"{c} (n={k})" for c, k in zip(summary_df["config"], summary_df["n"], strict=True)]
    ax.set_yticks(rows, labels=labels)
    ax.invert_yaxis()  # first row on top, as in the table
    ax.margins(x=0.35)  # room for the labels right of the bars
    # beside the axes: inside, it would hide the label of the longest bar
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    several = bool((summary_df["n"] > 1).any())
    spread = "; error bars: ± 1 std over seeds" if several else ""
    ax.set_xlabel(f"error (%) = 100 - accuracy; lower is better{spread}")
    title = "Sweep: mean ± std over seeds" if several else "Sweep: one run each"
    ax.set_title(title + (f"\n{caption}" if caption else ""))
    return fig


def plot_pruning(table, baseline, ax=None, caption=None):
    """Test error against sparsity, before and after fine-tuning, on a log scale.

    table:    DataFrame with columns sparsity, accuracy_before, accuracy_after (fractions;
              accuracy_after may be NaN when there was no fine-tuning).
    baseline: the unpruned model's test accuracy (a fraction), drawn as a dashed line.
    ax:       Axes to draw into, or None for a new figure. caption: optional second title line.
    Returns the Figure. The error rate (100 - accuracy %) on a log axis keeps 0.4% and 0.6%
    apart on the same plot as a collapsed 90%.
    """
    for column in ("accuracy_before", "accuracy_after"):
        _check_fractions("plot_pruning", table[column].dropna().to_numpy(dtype=np.float64))
    _check_fractions("plot_pruning", np.array([baseline], dtype=np.float64))
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    fig = ax.figure
    sparsity = 100 * table["sparsity"].to_numpy(dtype=np.float64)
    errors = {
        column: 100 * (1 - table[column].to_numpy(dtype=np.float64))
        for column in ("accuracy_before", "accuracy_after")
    }
    base_error = 100 * (1 - baseline)
    floor = _zero_error_floor(np.concatenate([*errors.values(), [base_error]]))
    for error, label, marker in zip(
        errors.values(), ("pruned, before fine-tuning", "pruned and fine-tuned"), "os", strict=True
    ):
        ax.plot(sparsity, np.where(error > 0, error, floor), marker=marker, label=label)
    ax.axhline(max(base_error, floor), color="grey", linestyle="--", label="unpruned")
    ax.set_yscale("log")
    ax.set_xlabel("sparsity of the conv and fc weights (%)")
    ax.set_ylabel("test error (%), log scale")
    ax.legend()
    ax.set_title("Global magnitude pruning" + (f"\n{caption}" if caption else ""))
    return fig


def plot_augmentations(variants, fig=None, caption=None):
    """Examples of training augmentations: one row per variant, one column per image.

    variants: {name: images (n, C, H, W)}, the same n images each time, e.g.
    {"original": x, "flip": flipped, ...}. Each image is min-max scaled on its own.
    Returns the figure.
    """
    names = list(variants)
    n = len(variants[names[0]])
    if fig is None:
        fig = plt.figure(figsize=(1.3 * n + 1.6, 1.35 * len(names) + 0.6), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(names), n))
    for row, name in zip(axes, names, strict=True):
        for ax, image in zip(row, variants[name], strict=True):
            _show_image(ax, image)
        row[0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle(caption or "training augmentations, drawn at random per image", fontsize=9)
    return fig


def _zero_error_floor(errors):
    """Where to draw an error of 0 on a log axis: a third of the smallest positive error.

    errors: 1-D error rates in % (NaN allowed). Returns a float; 0.01 (% error,
    i.e. 99.99 % accuracy) when no error is positive.
    """
    positive = errors[errors > 0]
    # A third, not a half: 1/2 of a 1-2-5 value often lands on a labelled tick (0.4 -> "99.8").
    return float(positive.min()) / 3 if positive.size else 0.01


def _check_fractions(where, values):
    """Raise UserError if accuracies (any shape, NaN allowed) are not fractions in [0, 1]."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if finite.size and (finite.min() < 0 or finite.max() > 1):
        raise UserError(
            f"{where}: accuracies must be fractions in [0, 1]; found values in "
            f"[{finite.min():g}, {finite.max():g}] (divide percentages by 100)."
        )


def _grid(fig, count, panel_size):
    """``count`` Axes in a near-square grid on ``fig`` (new if None); unused cells removed."""
    if count == 0:
        return []
    cols = math.ceil(math.sqrt(count))
    rows = math.ceil(count / cols)
    if fig is None:
        fig = plt.figure(figsize=(panel_size * cols, panel_size * rows + 0.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax in axes[count:]:
        ax.remove()
    return list(axes[:count])


def _empty_figure(fig, message):
    """``fig`` (new if None) with ``message`` in the middle, for a grid with nothing in it."""
    fig = fig or plt.figure(figsize=(4, 2), layout="constrained")
    fig.text(0.5, 0.5, message, ha="center", va="center")
    return fig


def _show_image(ax, image):
    """Draw one (H, W), (1, H, W) or (3, H, W) image min-max scaled, without ticks."""
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 3 and image.shape[0] == 1:
        image = image[0]
    if image.ndim == 3 and image.shape[0] == 3:
        image = image.transpose(1, 2, 0)
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(
            f"plots: an image has shape {image.shape}; use (H, W), (1, H, W) or (3, H, W)."
        )
    span = image.max() - image.min()
    scaled = (image - image.min()) / (span if span > 0 else 1.0)  # a constant image stays black
    ax.imshow(scaled, cmap="gray" if scaled.ndim == 2 else None, vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])


def _activation_scale(values):
    """(colour map, low, high) for drawing activations: a signed array (before a ReLU) on a
    diverging scale centred on 0, so that a negative value never looks like a weak positive
    one; a non-negative one on a sequential scale from its minimum."""
    low, high = float(values.min()), float(values.max())
    if low < 0:
        high = max(-low, high)
        return "RdBu_r", -high, high
    return "viridis", low, high


def _show_vector(ax, vector, class_names=None):
    """Draw a (D,) activation: bars when short enough to read, else a one-row image (which
    is returned, for its colour bar); the scores of ``class_names`` (D of them) as bars
    named by their class."""
    if class_names is not None:
        ax.bar(np.arange(len(vector)), vector, color="tab:blue")
        ax.set_xticks(np.arange(len(vector)), labels=[str(c) for c in class_names], fontsize=7)
        ax.set_xlabel("class (its score)")
    elif len(vector) <= 64:
        ax.bar(np.arange(len(vector)), vector, color="tab:blue")
        ax.set_xlabel("unit")
    else:
        cmap, low, high = _activation_scale(vector)
        image = ax.imshow(vector[None, :], aspect="auto", cmap=cmap, vmin=low, vmax=high)
        ax.set_yticks([])
        ax.set_xlabel("unit")
        return image
    return None


def _drop_batch_axis(name, array):
    """``array`` as (C, H, W) or (D,), dropping a leading batch axis of size 1."""
    array = np.asarray(array)
    if array.ndim in (2, 4) and array.shape[0] == 1:
        array = array[0]
    if array.ndim not in (1, 3):
        raise ValueError(
            f"plot_feature_maps: layer '{name}' has activation shape {array.shape}; "
            f"pass one image's activation, (C, H, W) or (D,)."
        )
    return array


def _cell_text_colour(value, top, on_diagonal):
    """Text colour of a confusion-matrix cell: white on dark red, grey for zero mistakes."""
    if on_diagonal:
        return "black"
    if value == 0:
        return "darkgrey"  # fades the many empty cells so the mistakes stand out
    return "white" if value > 0.6 * top else "black"
