"""Softmax cross-entropy (plain and label-smoothed) and mean squared error: values,
gradients, stability, errors."""

import math
import warnings

import numpy as np
import pytest

from core.learn.gradcheck import numerical_gradient, rel_error
from core.learn.loss import mse, smoothed_cross_entropy, softmax_cross_entropy, training_loss


def numerical_loss_gradient(loss_fn, x, *args):
    """Finite-difference gradient of a (loss, grad) function's scalar loss w.r.t. x."""
    return numerical_gradient(lambda x: np.array(loss_fn(x, *args)[0]), x, np.array(1.0))


# ---------------------------------------------------------- softmax cross-entropy


@pytest.mark.parametrize("n,k,scale", [(1, 3, 1.0), (5, 10, 1.0), (4, 7, 30.0)])
def test_cross_entropy_gradient_matches_finite_differences(n, k, scale):
    rng = np.random.default_rng(0)
    scores, y = scale * rng.standard_normal((n, k)), rng.integers(0, k, n)
    _, dscores = softmax_cross_entropy(scores, y)
    numeric = numerical_loss_gradient(softmax_cross_entropy, scores, y)
    assert rel_error(dscores, numeric) < 1e-7


def test_cross_entropy_matches_the_textbook_formula():
    rng = np.random.default_rng(1)
    scores, y = rng.standard_normal((6, 4)), rng.integers(0, 4, 6)
    probs = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    loss, dscores = softmax_cross_entropy(scores, y)
    assert isinstance(loss, float)
    assert loss == pytest.approx(-np.mean(np.log(probs[np.arange(6), y])), rel=1e-12)
    np.testing.assert_allclose(dscores, (probs - np.eye(4)[y]) / 6, rtol=1e-12)


@pytest.mark.parametrize("k", [2, 10, 1000])
def test_uniform_scores_give_log_k(k):
    for value in (0.0, 123.0):
        loss, _ = softmax_cross_entropy(np.full((3, k), value), np.array([0, k - 1, k // 2]))
        assert loss == pytest.approx(np.log(k), rel=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_is_finite_and_silent_at_huge_logits(dtype):
    scores = np.array([[1e4, -1e4, 0.0], [1e4, -1e4, 0.0]], dtype=dtype)
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        loss, dscores = softmax_cross_entropy(scores, np.array([0, 1]))
    assert loss == pytest.approx((0.0 + 2e4) / 2, rel=1e-6)  # -log p: 0 for row 0, 2e4 row 1
    assert np.all(np.isfinite(dscores))
    np.testing.assert_allclose(dscores, [[0, 0, 0], [0.5, -0.5, 0]], atol=1e-7)


def test_cross_entropy_float32_stays_float32():
    scores = np.random.default_rng(2).standard_normal((4, 5)).astype(np.float32)
    loss, dscores = softmax_cross_entropy(scores, np.array([0, 1, 2, 4]))
    assert isinstance(loss, float) and dscores.dtype == np.float32


@pytest.mark.parametrize(
    "scores_shape,y,match",
    [
        ((3, 4), [0, 4, 1], r"\[0, 4\)"),
        ((3, 4), [0, -1, 1], r"\[0, 4\)"),
        ((3, 4), [0, 1], r"\(3, 4\).*\(2,\)"),
        ((3,), [0, 1, 2], r"\(3,\)"),
        ((2, 4), [0.0, 1.0], "integers"),
    ],
)
def test_cross_entropy_bad_labels_raise_value_error(scores_shape, y, match):
    with pytest.raises(ValueError, match=match):
        softmax_cross_entropy(np.zeros(scores_shape), np.array(y))


# ------------------------------------------------------- label-smoothed cross-entropy


def smoothed_by_the_formula(scores, y, eps):
    """PyTorch's definition, one class at a time in plain Python floats: the mean over the
    batch of (1 - eps) * -log p[y] + eps * mean over k of -log p[k]."""
    total = 0.0
    for row, label in zip(scores.tolist(), y.tolist(), strict=True):
        top = max(row)
        log_z = top + math.log(sum(math.exp(s - top) for s in row))
        nll = [log_z - s for s in row]  # -log p[k], class by class
        total += (1 - eps) * nll[label] + eps * sum(nll) / len(row)
    return total / len(scores)


@pytest.mark.parametrize("eps", [0.05, 0.1, 0.5, 0.9])
def test_smoothed_cross_entropy_matches_the_formula(eps):
    rng = np.random.default_rng(4)
    scores, y = 3 * rng.standard_normal((6, 5)), rng.integers(0, 5, 6)
    loss, _ = smoothed_cross_entropy(scores, y, eps)
    assert isinstance(loss, float)
    assert loss == pytest.approx(smoothed_by_the_formula(scores, y, eps), rel=1e-12)


@pytest.mark.parametrize("n,k,eps,scale", [(1, 3, 0.1, 1.0), (5, 10, 0.2, 1.0), (4, 7, 0.6, 30.0)])
def test_smoothed_cross_entropy_gradient_matches_finite_differences(n, k, eps, scale):
    rng = np.random.default_rng(5)
    scores, y = scale * rng.standard_normal((n, k)), rng.integers(0, k, n)
    _, dscores = smoothed_cross_entropy(scores, y, eps)
    numeric = numerical_loss_gradient(smoothed_cross_entropy, scores, y, eps)
    assert rel_error(dscores, numeric) < 1e-7
    np.testing.assert_allclose(dscores.sum(axis=1), 0, atol=1e-15)  # the target sums to 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_no_smoothing_is_the_plain_cross_entropy_bit_for_bit(dtype):
    scores = (4 * np.random.default_rng(6).standard_normal((8, 10))).astype(dtype)
    y = np.arange(8) % 10
    plain, smoothed = softmax_cross_entropy(scores, y), smoothed_cross_entropy(scores, y, 0.0)
    assert plain[0] == smoothed[0] and plain[1].tobytes() == smoothed[1].tobytes()
    assert training_loss("cross_entropy", 0.0) is softmax_cross_entropy  # a run without it


def test_smoothed_cross_entropy_is_finite_at_huge_logits_and_keeps_float32():
    scores = np.array([[1e4, -1e4, 0.0]], dtype=np.float32)
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        loss, dscores = smoothed_cross_entropy(scores, np.array([0]), 0.3)
    assert loss == pytest.approx(0.3 * (0 + 2e4 + 1e4) / 3, rel=1e-6)
    assert dscores.dtype == np.float32 and np.all(np.isfinite(dscores))
    assert training_loss("cross_entropy", 0.3)(scores, np.array([0]))[0] == loss


# ----------------------------------------------------------------------------- mse


@pytest.mark.parametrize("shape", [(1, 1), (4, 3), (2, 3, 2)])
def test_mse_value_and_gradient(shape):
    rng = np.random.default_rng(3)
    pred, target = rng.standard_normal(shape), rng.standard_normal(shape)
    loss, dpred = mse(pred, target)
    assert isinstance(loss, float)
    assert loss == pytest.approx(np.sum((pred - target) ** 2) / pred.size, rel=1e-12)
    assert rel_error(dpred, numerical_loss_gradient(mse, pred, target)) < 1e-7


def test_mse_float32_stays_float32():
    pred = np.ones((2, 3), dtype=np.float32)
    loss, dpred = mse(pred, np.zeros((2, 3)))  # float64 target does not upcast
    assert loss == 1.0 and dpred.dtype == np.float32
    np.testing.assert_allclose(dpred, 2 / 6)


def test_mse_shape_mismatch_raises_value_error():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3, 2\)"):
        mse(np.zeros((2, 3)), np.zeros((3, 2)))
