"""Tests of core.learn.eval against small cases worked out by hand."""

import numpy as np
import pytest

from core.learn.eval import (
    accuracy,
    confusion,
    format_table,
    misclassified,
    most_confused_pairs,
    per_class_table,
    predict_scores,
    r_squared,
    softmax,
    top_k,
)
from data.errors import UserError
from model.blueprints import load_blueprint, validate_blueprint
from model.fold import fold_batchnorm
from model.forward import forward
from model.initialize_parameters import initialize_parameters
from model.shapes import trace_shapes

# Three classes, six examples: 0 0 0 1 1 2 predicted as 0 0 1 1 2 2.
Y_TRUE = np.array([0, 0, 0, 1, 1, 2])
Y_PRED = np.array([0, 0, 1, 1, 2, 2])
NAMES = ["zero", "one", "two"]


def test_softmax_is_finite_and_normalized_for_huge_scores():
    scores = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1.0, 2.0, 3.0]])
    probs = softmax(scores)
    assert np.all(np.isfinite(probs))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(probs[0], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(probs[1], [1 / 3] * 3)
    expected = np.exp([1.0, 2.0, 3.0]) / np.exp([1.0, 2.0, 3.0]).sum()
    np.testing.assert_allclose(probs[2], expected, rtol=1e-12)


def test_softmax_keeps_float32_and_is_shift_invariant():
    scores = np.array([[0.5, -1.0, 2.0, 3e3]], dtype=np.float32)
    probs = softmax(scores)
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs, softmax(scores - 3e3), rtol=1e-6)
    assert softmax(np.array([[1, 2]])).dtype == np.float64


def test_accuracy_counts_hits():
    assert accuracy(Y_TRUE, Y_PRED) == pytest.approx(4 / 6)
    assert isinstance(accuracy(Y_TRUE, Y_PRED), float)
    assert accuracy([3, 1], [3, 1]) == 1.0


@pytest.mark.parametrize(
    "y_true, y_pred",
    [([0, 1, 2], [0, 1]), ([0.0, 1.0], [0, 1]), ([], []), ([[0, 1]], [[0, 1]])],
)
def test_accuracy_rejects_bad_labels(y_true, y_pred):
    with pytest.raises(ValueError, match="y_true"):
        accuracy(y_true, y_pred)


def test_confusion_known_example():
    cm = confusion(Y_TRUE, Y_PRED, 3)
    np.testing.assert_array_equal(cm, [[2, 1, 0], [0, 1, 1], [0, 0, 1]])
    assert cm.dtype == np.int64


def test_confusion_keeps_absent_classes_and_rejects_out_of_range():
    cm = confusion(Y_TRUE, Y_PRED, 4)
    assert cm.shape == (4, 4)
    assert cm[3].sum() == 0 and cm[:, 3].sum() == 0
    with pytest.raises(UserError, match="found label 2 but there are 2 classes"):
        confusion(Y_TRUE, Y_PRED, 2)


def test_per_class_table_matches_hand_computation():
    table = per_class_table(Y_TRUE, Y_PRED, NAMES)
    assert list(table.columns) == ["class", "precision", "recall", "f1", "support"]
    assert list(table["class"]) == NAMES + ["macro avg", "weighted avg"]
    # class 0: predicted 0 twice, both right; 2 of its 3 examples found.
    # class 1: predicted 1 twice, once right; 1 of 2 found.
    # class 2: predicted 2 twice, once right; 1 of 1 found.
    precision = [1.0, 0.5, 0.5]
    recall = [2 / 3, 0.5, 1.0]
    f1 = [0.8, 0.5, 2 / 3]
    support = [3, 2, 1]
    np.testing.assert_allclose(table["precision"][:3], precision)
    np.testing.assert_allclose(table["recall"][:3], recall)
    np.testing.assert_allclose(table["f1"][:3], f1)
    np.testing.assert_array_equal(table["support"], support + [6, 6])
    macro = table.iloc[3]
    np.testing.assert_allclose([macro.precision, macro.recall, macro.f1], [2 / 3, 13 / 18, 59 / 90])
    weighted = table.iloc[4]
    np.testing.assert_allclose(
        [weighted.precision, weighted.recall, weighted.f1], [0.75, 4 / 6, (2.4 + 1 + 2 / 3) / 6]
    )


def test_per_class_table_gives_zero_for_a_class_never_seen():
    table = per_class_table(Y_TRUE, Y_PRED, NAMES + ["three"])
    row = table.iloc[3]
    assert row["class"] == "three"
    assert (row.precision, row.recall, row.f1, row.support) == (0.0, 0.0, 0.0, 0)


def test_format_table_prints_four_decimals_without_index():
    text = format_table(per_class_table(Y_TRUE, Y_PRED, NAMES))
    lines = text.splitlines()
    assert lines[0].split() == ["class", "precision", "recall", "f1", "support"]
    assert len(lines) == 1 + 5
    assert "0.6667" in text and "macro avg" in text
    assert lines[1].split() == ["zero", "1.0000", "0.6667", "0.8000", "3"]


def test_most_confused_pairs_sorted_and_zeros_dropped():
    cm = np.array([[5, 3, 0], [1, 7, 4], [3, 0, 9]])
    pairs = most_confused_pairs(cm, ["a", "b", "c"], k=10)
    assert list(pairs.columns) == ["true", "predicted", "count"]
    # Ties (two 3s) keep row-major order: (a, b) before (c, a).
    assert list(pairs.itertuples(index=False, name=None)) == [
        ("b", "c", 4),
        ("a", "b", 3),
        ("c", "a", 3),
        ("b", "a", 1),
    ]
    assert len(most_confused_pairs(cm, ["a", "b", "c"], k=2)) == 2
    assert most_confused_pairs(np.diag([4, 5]), ["a", "b"]).empty


def test_most_confused_pairs_rejects_wrong_shape():
    with pytest.raises(ValueError, match="3 class names"):
        most_confused_pairs(np.zeros((2, 2), dtype=int), ["a", "b", "c"])


def test_misclassified_most_confident_first():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7], [0.05, 0.95]])
    y_true = np.array([0, 0, 1, 1, 0])
    wrong = misclassified(y_true, probs)
    assert list(wrong.columns) == ["index", "true", "predicted", "prob", "prob_true"]
    np.testing.assert_array_equal(wrong["index"], [4, 1, 2])
    np.testing.assert_array_equal(wrong["true"], [0, 0, 1])
    np.testing.assert_array_equal(wrong["predicted"], [1, 1, 0])
    np.testing.assert_allclose(wrong["prob"], [0.95, 0.8, 0.6])
    np.testing.assert_allclose(wrong["prob_true"], [0.05, 0.2, 0.4])
    assert misclassified(np.array([0, 1]), np.eye(2)).empty


def test_top_k_orders_classes_by_probability():
    probs = np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3], [0.4, 0.4, 0.2]], dtype=np.float32)
    classes, top = top_k(probs, k=2)
    np.testing.assert_array_equal(classes, [[1, 2], [0, 2], [0, 1]])  # tie -> lower index
    np.testing.assert_array_equal(top, np.float32([[0.6, 0.3], [0.5, 0.3], [0.4, 0.4]]))
    assert classes.dtype == np.int64 and top.dtype == np.float32
    with pytest.raises(ValueError, match="k=4"):
        top_k(probs, k=4)


def test_r_squared_against_its_definition():
    y = np.array([1.0, 2.0, 4.0, 9.0])
    pred = np.array([1.5, 2.0, 3.0, 8.0])
    sse, sst = np.sum((y - pred) ** 2), np.sum((y - y.mean()) ** 2)
    assert r_squared(np.mean((y - pred) ** 2), y) == pytest.approx(1 - sse / sst)
    assert r_squared(np.var(y), y) == pytest.approx(0.0)  # predicting the mean explains nothing
    assert r_squared(0.0, y) == 1.0
    assert np.isnan(r_squared(0.5, np.ones(4)))  # targets that do not vary


@pytest.mark.parametrize("arch", ["minivgg_bn_dropout", "resnet"])
def test_predict_scores_folds_every_batch_norm_and_keeps_the_forward_scores(arch):
    """predict_scores runs the network with each batch norm folded into the conv or fc before
    it: the scores of the layer-by-layer forward, to float64 rounding."""
    _, blueprint = load_blueprint(arch)
    rng = np.random.default_rng(0)
    params = initialize_parameters(blueprint, (1, 28, 28), rng)
    for key in params:  # statistics and affine parameters away from 0 and 1: the fold matters
        if key.endswith(("running_var", "gamma")):
            params[key] = rng.uniform(0.5, 2.0, params[key].shape)
        elif key.endswith(("running_mean", "beta")):
            params[key] = rng.normal(0.0, 0.5, params[key].shape)
    params = {key: value.astype(np.float64) for key, value in params.items()}
    x = rng.standard_normal((7, 1, 28, 28))
    got = predict_scores(params, blueprint, x, batch_size=3)
    np.testing.assert_allclose(got, forward(params, x, blueprint)[0], rtol=1e-10, atol=1e-12)
    batch_norms = [row.spec["name"] for row in trace_shapes(blueprint, (1, 28, 28))
                   if row.spec["type"] == "batchnorm"]  # fmt: skip
    folded_params, folded_blueprint, folded = fold_batchnorm(params, validate_blueprint(blueprint))
    assert folded == batch_norms
    ran = forward(folded_params, x, folded_blueprint)[0]  # what it runs, on one batch
    assert np.array_equal(predict_scores(params, blueprint, x, batch_size=len(x)), ran)
