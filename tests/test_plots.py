"""Tests of core.plots: each figure has the panels and images it promises; save_figure is atomic."""

import matplotlib

matplotlib.use("Agg")  # the test picks the backend; the library never does

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image  # noqa: E402

from core.plots import (  # noqa: E402
    plot_confusion_matrix,
    plot_decision_boundary,
    plot_feature_maps,
    plot_filters,
    plot_fitted_curve,
    plot_history,
    plot_misclassified,
    plot_predictions,
    plot_pruning,
    plot_regression_history,
    plot_sweep,
    save_figure,
)
from data.errors import UserError  # noqa: E402
from model.blueprints import validate_blueprint  # noqa: E402

DIGITS = [str(d) for d in range(10)]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture
def history():
    return pd.DataFrame(
        {
            "epoch": [1, 2, 3, 4, 5],
            "lr": [0.01] * 5,
            "train_loss": [0.9, 0.2, 0.08, 0.03, 0.01],
            "train_acc": [0.80, 0.95, 0.985, 0.995, 1.0],
            "val_loss": [0.4, 0.15, 0.07, 0.04, 0.03],
            "val_acc": [0.90, 0.97, 0.985, 0.993, 0.996],
            "seconds": [10.0] * 5,
            "images_per_s": [5000.0] * 5,
        }
    )


def _images(rng, shape):
    return rng.standard_normal(shape).astype(np.float32)


def test_plot_history_two_panels_with_caption(history):
    fig = plot_history(history, caption="minivgg-bn, seed 0, 5 epochs")
    assert isinstance(fig, Figure)
    loss_ax, acc_ax = fig.axes
    assert len(loss_ax.lines) == 2
    assert len(acc_ax.lines) == 4  # train, val, the 100 % line, best-val marker
    assert "minivgg-bn" in fig.get_suptitle()
    assert "99.60 %" in acc_ax.get_legend().get_texts()[3].get_text()


def test_plot_history_separates_99_3_from_99_6_and_puts_better_higher(history):
    fig = plot_history(history)
    fig.canvas.draw()
    acc_ax = fig.axes[1]
    val_line = acc_ax.lines[1]
    points = np.column_stack(val_line.get_data())
    heights = acc_ax.transAxes.inverted().transform(acc_ax.transData.transform(points))[:, 1]
    assert np.all(np.diff(heights) > 0)  # accuracy rises every epoch: so does the curve
    assert heights[4] - heights[3] > 0.1  # 99.3 % -> 99.6 % spans over a tenth of the panel
    labels = {t.get_text() for t in acc_ax.get_yticklabels()}
    assert {"90", "99"} <= labels


def test_plot_history_draws_100_percent_on_a_marked_line_above_the_best_error(history):
    acc_ax = plot_history(history).axes[1]  # train_acc reaches 1.0 at epoch 5
    train_errors = acc_ax.lines[0].get_ydata()
    floor = acc_ax.lines[2].get_ydata()[0]
    assert acc_ax.lines[2].get_label().startswith("100 %")
    np.testing.assert_allclose(floor, 0.4 / 3)  # a third of the smallest error (val 0.4 %)
    np.testing.assert_allclose(train_errors, [20, 5, 1.5, 0.5, floor])
    assert np.all(np.isfinite(train_errors))


def test_plot_history_draws_into_given_axes(history):
    fig, axes = plt.subplots(1, 2)
    assert plot_history(history, axes=axes) is fig
    assert len(fig.axes) == 2


def test_plot_history_rejects_percent_and_missing_columns(history):
    with pytest.raises(UserError, match="fractions"):
        plot_history(history.assign(val_acc=history.val_acc * 100))
    with pytest.raises(UserError, match="val_loss"):
        plot_history(history.drop(columns="val_loss"))


def test_plot_confusion_matrix_annotates_every_cell_and_masks_diagonal():
    rng = np.random.default_rng(0)
    cm = rng.integers(0, 5, size=(10, 10)) + np.diag(np.full(10, 980))
    fig = plot_confusion_matrix(cm, DIGITS, caption="seed 0")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2  # matrix and colorbar
    ax = fig.axes[0]
    assert len(ax.images) == 1
    shown = ax.images[0].get_array()
    assert np.all(shown.mask == np.eye(10, dtype=bool))  # diagonal left out of the colours
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == 100 and texts[0] == str(cm[0, 0])
    assert "mistakes" in ax.get_title() and "seed 0" in ax.get_title()


def test_plot_confusion_matrix_normalized_rows_and_given_ax():
    cm = np.array([[3, 1], [0, 0]])
    fig, ax = plt.subplots()
    assert plot_confusion_matrix(cm, ["cat", "dog"], ax=ax, normalize=True) is fig
    assert [t.get_text() for t in ax.texts] == ["75.0", "25.0", "0.0", "0.0"]
    with pytest.raises(ValueError, match="3 class names"):
        plot_confusion_matrix(cm, ["a", "b", "c"])


def test_plot_predictions_grid_titles_and_red_mistakes():
    rng = np.random.default_rng(1)
    images = _images(rng, (10, 1, 8, 8))
    y_true = np.arange(10)
    y_pred = np.where(y_true == 3, 5, y_true)
    probs = np.full((10, 10), 0.05)
    probs[np.arange(10), y_pred] = 0.55
    fig = plot_predictions(images, y_true, y_pred, DIGITS, probs=probs, n=6)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 6
    assert all(len(ax.images) == 1 for ax in fig.axes)
    assert fig.axes[0].get_title() == "true: 0\npred: 0 (0.55)"
    assert fig.axes[3].get_title() == "true: 3\npred: 5 (0.55)"
    assert fig.axes[3].title.get_color() == "tab:red"
    assert fig.axes[0].title.get_color() == "black"


@pytest.mark.slow
def test_long_class_names_with_slashes_do_not_overlap(tmp_path):
    names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat"]
    names += ["Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    rng = np.random.default_rng(5)
    y_true, y_pred = np.arange(25) % 10, (np.arange(25) * 7) % 10
    probs = np.full((25, 10), 0.01)
    probs[np.arange(25), y_pred] = 0.91
    fig = plot_predictions(_images(rng, (25, 1, 8, 8)), y_true, y_pred, names, probs=probs)
    assert fig.axes[0].get_title() == "true: T-shirt/top\npred: T-shirt/top (0.91)"
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [ax.title.get_window_extent(renderer) for ax in fig.axes]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not a.overlaps(b), (a, b)
    save_figure(fig, tmp_path / "fashion.png")


def test_plot_predictions_rgb_and_hw_images():
    rng = np.random.default_rng(2)
    fig = plot_predictions(_images(rng, (4, 3, 6, 6)), [0, 1, 2, 3], [0, 1, 2, 3], DIGITS)
    rgb = fig.axes[0].images[0].get_array()
    assert rgb.shape == (6, 6, 3) and rgb.min() == 0 and rgb.max() == 1
    fig = plot_predictions(_images(rng, (30, 5, 5)), np.zeros(30, int), np.zeros(30, int), DIGITS)
    assert len(fig.axes) == 25  # default n


def test_plot_predictions_into_given_figure():
    rng = np.random.default_rng(3)
    fig = plt.figure()
    assert plot_predictions(_images(rng, (3, 4, 4)), [1, 2, 3], [1, 2, 3], DIGITS, fig=fig) is fig
    assert len(fig.axes) == 3


def test_plot_misclassified_shows_mistakes_most_confident_first():
    rng = np.random.default_rng(4)
    images = _images(rng, (5, 1, 4, 4))
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7], [0.05, 0.95]])
    fig = plot_misclassified(images, np.array([0, 0, 1, 1, 0]), probs, ["a", "b"])
    assert [ax.get_title() for ax in fig.axes] == [
        "true: a\npred: b (0.95)",
        "true: a\npred: b (0.80)",
        "true: b\npred: a (0.60)",
    ]
    # the first panel is image 4, min-max scaled
    img = images[4, 0]
    np.testing.assert_allclose(
        fig.axes[0].images[0].get_array(), (img - img.min()) / (img.max() - img.min()), rtol=1e-6
    )


def test_plot_misclassified_without_mistakes_gives_a_note():
    fig = plot_misclassified(np.zeros((2, 4, 4)), np.array([0, 1]), np.eye(2), ["a", "b"])
    assert isinstance(fig, Figure)
    assert fig.axes == []
    assert any("nothing to show" in t.get_text() for t in fig.texts)


def test_plot_filters_gray_and_rgb():
    rng = np.random.default_rng(5)
    fig = plot_filters(rng.standard_normal((8, 1, 3, 5)))
    assert len(fig.axes) == 8
    assert fig.axes[0].images[0].get_array().shape == (3, 5)
    assert fig.axes[0].images[0].get_cmap().name == "gray"
    fig = plot_filters(rng.standard_normal((4, 3, 5, 5)), caption="epoch 3")
    assert len(fig.axes) == 4
    assert fig.axes[0].images[0].get_array().shape == (5, 5, 3)
    assert "epoch 3" in fig.get_suptitle()
    with pytest.raises(UserError, match="C = 1 or 3"):
        plot_filters(rng.standard_normal((4, 16, 3, 3)))


def test_plot_feature_maps_one_row_per_layer():
    rng = np.random.default_rng(6)
    activations = [
        ("conv1", rng.random((16, 6, 6))),
        ("pool1", rng.random((1, 3, 3, 3))),  # batch axis of 1 dropped
        ("fc_scores", rng.standard_normal(10)),
        ("fc_hidden", rng.random(100)),
    ]
    activations.insert(1, ("signed", rng.standard_normal((2, 4, 4)) - 0.5))
    fig = plot_feature_maps(activations)
    assert isinstance(fig, Figure)
    # each map row has a colour bar, and so has the long vector drawn as a one-row image
    assert len(fig.axes) == (8 + 1) + (2 + 1) + (3 + 1) + 1 + (1 + 1)
    assert sum(len(ax.images) for ax in fig.axes) == 8 + 2 + 3 + 1  # the bar chart has no image
    assert len(fig.axes[16].patches) == 10
    assert fig.axes[0].get_ylabel().startswith("conv1")
    # a non-negative map keeps a 0-based sequential scale; a signed one is centred on 0
    assert fig.axes[0].images[0].get_cmap().name == "viridis"
    signed = fig.axes[9].images[0]
    low, high = signed.get_clim()
    assert signed.get_cmap().name == "RdBu_r" and low == -high
    assert high == pytest.approx(np.abs(activations[1][1]).max())
    with pytest.raises(ValueError, match="'bad'"):
        plot_feature_maps([("bad", np.zeros((2, 3)))])


def test_plot_sweep_bars_with_error_bars_and_given_ax():
    summary = pd.DataFrame(
        {
            "config": ["mlp", "lenet", "minivgg-bn"],
            "n": [3, 3, 1],
            "test_mean": [0.981, 0.993, 0.996],
            "test_std": [0.002, 0.001, np.nan],
            "val_mean": [0.98, 0.99, 0.995],
            "val_std": [0.003, 0.0, np.nan],
        }
    )
    fig, ax = plt.subplots()
    assert plot_sweep(summary, ax=ax, caption="3 seeds") is fig
    widths = [p.get_width() for p in ax.patches]  # the test bars, then the validation bars
    np.testing.assert_allclose(widths, [1.9, 0.7, 0.4, 2.0, 1.0, 0.5])
    labels = ["mlp (n=3)", "lenet (n=3)", "minivgg-bn (n=1)"]
    assert [t.get_text() for t in ax.get_yticklabels()] == labels
    texts = [t.get_text().strip() for t in ax.texts]
    # each bar is labelled with the error it draws; one run (n=1) has no spread to show
    assert texts[:3] == ["1.90 ± 0.20 % error", "0.70 ± 0.10 % error", "0.40 % error"]
    assert texts[3:] == ["2.00 ± 0.30 % error", "1.00 ± 0.00 % error", "0.50 % error"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "test error",
        "validation error",
    ]
    assert isinstance(plot_sweep(summary), Figure)
    with pytest.raises(UserError, match="val_std"):
        plot_sweep(summary.drop(columns="val_std"))


def one_fc(W, b):
    """A network of one fc layer with the weights given: (params, blueprint)."""
    W = np.asarray(W, dtype=np.float32)
    blueprint = validate_blueprint([{"type": "fc", "name": "fc", "units": W.shape[1]}])
    return {"fc.W": W, "fc.b": np.asarray(b, dtype=np.float32)}, blueprint


def grid_centres(image, axis):
    """The grid values of an imshow'n region image along x (axis 0) or y (axis 1)."""
    low, high = image.get_extent()[2 * axis : 2 * axis + 2]
    n = image.get_array().shape[1 - axis]
    return low + (np.arange(n) + 0.5) * (high - low) / n


def test_plot_decision_boundary_splits_the_plane_where_the_model_does():
    # Scores (-x0, x0): class 1 exactly where x0 > 0.
    params, blueprint = one_fc([[-1.0, 1.0], [0.0, 0.0]], [0.0, 0.0])
    x = np.array([[-1.0, -1.0], [2.0, 1.0], [0.5, 0.0]], dtype=np.float32)
    y = np.array([0, 1, 1])
    fig, ax = plt.subplots()
    assert plot_decision_boundary(ax, params, blueprint, x, y, resolution=31) is fig
    image = ax.images[0]
    regions = np.asarray(image.get_array())
    assert regions.shape == (31, 31)
    x0 = grid_centres(image, 0)
    assert x0[0] < -1 and x0[-1] > 2  # the data's range and a margin
    assert 0 < (x0 > 0).sum() < 31  # the split lies inside the picture
    assert np.array_equal(regions, np.broadcast_to(x0 > 0, regions.shape))
    assert ax.collections[0].get_offsets().shape == (3, 2)  # the points on top

    # With an input transform, the boundary is where the transformed x0 is 0: x0 = 0.5.
    _, ax = plt.subplots()
    plot_decision_boundary(ax, params, blueprint, x, y, inputs=lambda p: p - [0.5, 0.0])
    image = ax.images[0]
    x0 = grid_centres(image, 0)
    assert np.array_equal(image.get_array(), np.broadcast_to(x0 > 0.5, image.get_array().shape))


def test_plot_decision_boundary_rows_follow_the_second_coordinate():
    params, blueprint = one_fc([[0.0, 0.0], [-1.0, 1.0]], [0.0, 0.0])  # class 1 where x1 > 0
    x = np.array([[0.0, -2.0], [1.0, 1.0]], dtype=np.float32)
    _, ax = plt.subplots()
    plot_decision_boundary(ax, params, blueprint, x, np.array([0, 1]), class_names=["a", "b"])
    image = ax.images[0]
    x1 = grid_centres(image, 1)
    assert np.array_equal(image.get_array(), np.broadcast_to((x1 > 0)[:, None], (200, 200)))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b"]
    with pytest.raises(UserError, match=r"\(N, 2\)"):
        plot_decision_boundary(None, params, blueprint, np.zeros((4, 3)), np.zeros(4, int))


def test_plot_fitted_curve_draws_the_model_over_the_data():
    params, blueprint = one_fc([[2.0]], [1.0])  # y = 2x + 1
    x = np.array([[-1.0], [3.0], [0.0]], dtype=np.float32)
    fig = plot_fitted_curve(None, params, blueprint, x, np.array([-1.0, 7.0, 1.0]))
    curve = fig.axes[0].lines[0]
    assert curve.get_xdata()[0] == -1 and curve.get_xdata()[-1] == 3
    np.testing.assert_allclose(curve.get_ydata(), 2 * curve.get_xdata() + 1, rtol=1e-6)
    with pytest.raises(UserError, match="one number per point"):
        plot_fitted_curve(None, params, blueprint, np.zeros((3, 2)), np.zeros(3))


def test_plot_regression_history_marks_the_best_validation_r2():
    log = pd.DataFrame(
        {
            "epoch": [1, 2, 3],
            "train_loss": [0.5, 0.1, 0.05],
            "train_r2": [0.5, 0.9, 0.95],
            "val_loss": [0.6, 0.08, 0.09],
            "val_r2": [0.4, 0.92, 0.91],
        }
    )
    fig = plot_regression_history(log, caption="run")
    loss_ax, r2_ax = fig.axes
    assert loss_ax.get_yscale() == "log"
    assert "best val R² 0.9200 (epoch 2)" in [t.get_text() for t in r2_ax.get_legend().get_texts()]
    with pytest.raises(UserError, match="val_r2"):
        plot_regression_history(log.drop(columns="val_r2"))


def test_save_figure_writes_png_atomically_and_closes(tmp_path, history):
    fig = plot_history(history)
    path = save_figure(fig, tmp_path / "figs" / "history.png")
    assert path == tmp_path / "figs" / "history.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 500
    assert [p.name for p in path.parent.iterdir()] == ["history.png"]  # no temp file left
    assert not plt.fignum_exists(fig.number)


def test_save_figure_rejects_other_formats(tmp_path):
    fig, _ = plt.subplots()
    with pytest.raises(ValueError, match=r"\.png"):
        save_figure(fig, tmp_path / "plot.jpg")
    assert list(tmp_path.iterdir()) == []


def test_plot_pruning_draws_error_before_and_after_on_a_log_axis():
    table = pd.DataFrame(
        {"sparsity": [0.5, 0.9], "accuracy_before": [0.99, 0.5], "accuracy_after": [1.0, 0.98]}
    )
    fig, ax = plt.subplots()
    assert plot_pruning(table, 0.995, ax=ax, caption="test") is fig
    before, after = (line.get_ydata() for line in ax.get_lines()[:2])
    np.testing.assert_allclose(before, [1.0, 50.0])
    assert after[1] == pytest.approx(2.0) and 0 < after[0] < 0.5  # an error of 0 drawn low
    assert ax.get_yscale() == "log" and len(ax.get_lines()) == 3  # with the unpruned line
    with pytest.raises(UserError, match="fractions"):
        plot_pruning(table.assign(accuracy_after=[99.0, 98.0]), 0.995)
