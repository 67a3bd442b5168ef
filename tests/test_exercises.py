"""The exercises' grader: the project's own layers pass, and wrong answers fail where they are wrong.

exercises/grade.py checks a learner's backward against finite differences and the project's
layer; these tests grade the answers of layers/ (every gradient must pass), then deliberately
wrong ones, each wrong in one gradient in the way a learner might be, which must fail in that
gradient only.
"""

import io

import numpy as np
import pytest

import layers
from exercises import backward as stubs
from exercises.grade import EXERCISES, grade, main


def verdicts(exercise, function):
    """({gradient: passed}, printed text) of one graded exercise."""
    out = io.StringIO()
    result = grade(exercise, function, file=out)
    return {check.gradient: check.passed for check in result.checks}, result, out.getvalue()


@pytest.mark.parametrize("exercise", EXERCISES)
def test_the_projects_layers_pass_every_gradient(exercise):
    passed, result, text = verdicts(exercise, getattr(layers, exercise))
    assert result.passed and passed and all(passed.values()), text
    assert text.startswith(f"{exercise}: pass\n")
    assert text.count(" pass   (relative error ") == len(passed)


def fc_db_averaged(dout, cache):
    dx, dW, _ = layers.fc_backward(dout, cache)
    return dx, dW, dout.mean(axis=0)  # the mean, where the loss sums over the batch


def relu_passing_everything(dout, cache):
    return dout * (cache >= 0)  # out >= 0 holds everywhere: nothing is stopped


def conv_dw_flipped(dout, cache):
    dx, dW, db = layers.conv_backward_naive(dout, cache)
    return dx, dW[:, :, ::-1, ::-1], db  # the flip belongs to dx's gather form, not to dW


def maxpool_assigned_not_added(dout, cache):
    x_shape, size, stride, argmax = cache
    dx = np.zeros(x_shape)
    for r in range(dout.shape[2]):
        for s in range(dout.shape[3]):
            i, j = np.divmod(argmax[:, :, r, s], size)
            n, c = np.indices(i.shape)
            dx[n, c, r * stride + i, s * stride + j] = dout[:, :, r, s]  # = where windows overlap
    return dx


def batchnorm_as_in_evaluation(dout, cache):
    _, dgamma, dbeta = layers.batchnorm_backward(dout, cache)
    xhat, gamma, inv_std, _ = cache
    return dout * gamma.reshape(inv_std.shape) * inv_std, dgamma, dbeta  # statistics held fixed


@pytest.mark.parametrize(
    "exercise, wrong, failing",
    [
        ("fc_backward", fc_db_averaged, {"db"}),
        ("relu_backward", relu_passing_everything, {"dx"}),
        ("conv_backward_naive", conv_dw_flipped, {"dW (stride 1, pad 1)", "dW (stride 2, pad 0, 3x2 kernel)"}),
        ("maxpool_backward_naive", maxpool_assigned_not_added, {"dx (3x3 windows, stride 1: they overlap)"}),
        ("batchnorm_backward", batchnorm_as_in_evaluation, {"dx ((N, D) input)", "dx ((N, C, H, W) input)"}),
    ],
)  # fmt: skip
def test_a_wrong_answer_fails_in_the_wrong_gradient_only(exercise, wrong, failing):
    passed, result, text = verdicts(exercise, wrong)
    assert not result.passed and text.startswith(f"{exercise}: FAIL\n"), text
    assert {name for name, ok in passed.items() if not ok} == failing, text
    for name in failing:
        line = next(line for line in text.splitlines() if line.strip().startswith(name + " "))
        assert "FAIL   relative error" in line and "against finite differences" in line, line


def test_a_wrong_shape_or_count_fails_with_what_was_expected():
    def transposed(dout, cache):
        dx, dW, db = layers.fc_backward(dout, cache)
        return dx, dW.T, db

    passed, result, text = verdicts("fc_backward", transposed)
    assert passed == {"dx": True, "dW": False, "db": True}
    assert "dW                                       FAIL   shape (3, 5), expected (5, 3)" in text

    passed, result, text = verdicts(
        "fc_backward", lambda dout, cache: layers.fc_backward(dout, cache)[:2]
    )
    assert not result.passed and "returned 2 arrays, expected 3: dx, dW, db" in text


def test_an_error_in_the_answer_is_a_verdict_not_a_crash():
    def broken(dout, cache):
        return dout @ cache[1]  # (N, M) @ (D, M): the shapes do not fit

    _, result, text = verdicts("fc_backward", broken)
    assert not result.passed and text.startswith("fc_backward: FAIL, it raised ValueError: ")


def test_the_stubs_are_left_to_write_and_the_command_says_so(capsys):
    assert main([]) == 1
    text = capsys.readouterr().out
    for exercise in EXERCISES:
        assert f"{exercise}: FAIL, not written yet (it raises NotImplementedError)" in text
        assert getattr(stubs, exercise).__doc__  # the contract the learner writes to
    assert text.endswith("0 of 5 exercises pass\n")
    assert main(["fc_backwards"]) == 2
    assert "no exercise 'fc_backwards'; the exercises: fc_backward, " in capsys.readouterr().out
