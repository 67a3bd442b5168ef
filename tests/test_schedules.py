"""Tests of core/learn/schedules.py: values at the start, end of warm-up, midpoint and end of
each schedule, the step milestones, and the errors for bad settings."""

import math

import numpy as np
import pytest

from core.learn.schedules import SCHEDULES, lr_at
from data.errors import UserError


def curve(total, base, schedule, warmup=0, **options):
    """lr_at for every step 0 .. total (inclusive) as a float64 array."""
    return np.array([lr_at(s, total, base, schedule, warmup, **options) for s in range(total + 1)])


def test_schedule_names():
    assert SCHEDULES == ("constant", "step", "cosine")


def test_constant_is_base_lr_everywhere():
    assert np.all(curve(50, 0.1, "constant") == 0.1)
    assert isinstance(lr_at(np.int64(3), 50, 0.1), float)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_warmup_rises_linearly_to_base_lr(schedule):
    total, warmup, base = 100, 10, 0.2
    lrs = curve(total, base, schedule, warmup)
    assert lrs[0] == pytest.approx(base / warmup)  # small but not zero
    np.testing.assert_allclose(lrs[:warmup], base * np.arange(1, warmup + 1) / warmup)
    assert lrs[warmup - 1] == pytest.approx(base)  # the warm-up's last step is at full rate
    assert lrs[warmup] == pytest.approx(base)


def test_cosine_start_midpoint_end_without_warmup():
    lrs = curve(100, 0.1, "cosine")
    assert lrs[0] == pytest.approx(0.1)
    assert lrs[50] == pytest.approx(0.05)
    assert lrs[100] == pytest.approx(0.0, abs=1e-15)
    assert 0 < lrs[99] < 1e-4  # the last update still moves
    assert np.all(np.diff(lrs) < 0)


def test_cosine_runs_over_the_steps_after_warmup_down_to_min_lr():
    total, warmup, base, low = 110, 10, 0.1, 0.02
    lrs = curve(total, base, "cosine", warmup, min_lr=low)
    assert lrs[warmup] == pytest.approx(base)
    assert lrs[warmup + (total - warmup) // 2] == pytest.approx((base + low) / 2)
    assert lrs[warmup + (total - warmup) // 4] == pytest.approx(
        low + (base - low) * 0.5 * (1 + math.cos(math.pi / 4))
    )
    assert lrs[total] == pytest.approx(low)
    assert np.all(np.diff(lrs[warmup:]) < 0)
    assert np.all(lrs[warmup:] >= low - 1e-15)


def test_step_drops_by_gamma_at_default_milestones():
    lrs = curve(100, 0.1, "step")
    assert lrs[0] == pytest.approx(0.1)
    assert lrs[49] == pytest.approx(0.1)
    assert lrs[50] == pytest.approx(0.01)
    assert lrs[74] == pytest.approx(0.01)
    assert lrs[75] == pytest.approx(0.001)
    assert lrs[100] == pytest.approx(0.001)
    assert len(np.unique(lrs)) == 3


def test_step_with_custom_milestones_gamma_and_warmup():
    lrs = curve(40, 1.0, "step", 4, milestones=[0.25, 0.5, 0.9], gamma=0.5)
    assert lrs[0] == pytest.approx(0.25)
    assert lrs[3] == pytest.approx(1.0)
    assert lrs[9] == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(0.5)
    assert lrs[20] == pytest.approx(0.25)
    assert lrs[35] == pytest.approx(0.25)
    assert lrs[36] == pytest.approx(0.125)


def test_unknown_schedule_lists_the_known_names():
    with pytest.raises(UserError) as err:
        lr_at(0, 10, 0.1, "linear")
    assert "linear" in str(err.value)
    assert all(name in str(err.value) for name in SCHEDULES)


@pytest.mark.parametrize(
    "args, kwargs, word",
    [
        ((0, 10, 0.1, "step"), {"min_lr": 0.0}, "min_lr"),
        ((0, 10, 0.1, "constant"), {"gamma": 0.5}, "gamma"),
        ((-1, 10, 0.1), {}, "step"),
        ((11, 10, 0.1), {}, "step"),
        ((1.0, 10, 0.1), {}, "step"),
        ((0, 0, 0.1), {}, "total_steps"),
        ((0, 10, 0.0), {}, "base_lr"),
        ((0, 10, float("nan")), {}, "base_lr"),
        ((0, 10, 0.1, "cosine", 10), {}, "warmup_steps"),
        ((0, 10, 0.1, "cosine", -1), {}, "warmup_steps"),
        ((0, 10, 0.1, "cosine"), {"min_lr": 0.2}, "min_lr"),
        ((0, 10, 0.1, "step"), {"milestones": (0.5, 1.5)}, "milestones"),
        ((0, 10, 0.1, "step"), {"milestones": 0.5}, "milestones"),
        ((0, 10, 0.1, "step"), {"gamma": 0.0}, "gamma"),
    ],
)
def test_bad_settings_raise_user_error_naming_them(args, kwargs, word):
    with pytest.raises(UserError, match=word):
        lr_at(*args, **kwargs)


# The edges of each range: found by the mutation check (docs/testing.md), where a `<` become
# `<=` or an `or` become `and` passed every test above.


def test_the_edges_of_the_valid_ranges_are_accepted():
    assert lr_at(0, 1, 0.1) == lr_at(1, 1, 0.1) == 0.1  # a one-update run
    assert lr_at(0, 10, 0.1) == 0.1  # no warm-up unless asked for
    assert lr_at(10, 10, 0.1, "cosine", min_lr=0.1) == pytest.approx(0.1)  # min_lr = base_lr
    assert lr_at(10, 10, 0.1, "cosine", min_lr=0.0) == 0.0
    assert lr_at(5, 10, 0.1, "step", milestones=(0.01, 0.99)) == pytest.approx(0.01)


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        ((0, 2.5, 0.1), {}, "total_steps must be an integer >= 1, got 2.5"),
        (
            (0, 10, 0.1, "step"),
            {"milestones": (0.0, 0.5)},
            "in (0, 1), e.g. (0.5, 0.75); got (0.0,",
        ),
        ((0, 10, 0.1, "step"), {"milestones": (0.5, 1)}, "milestones must be a list of fractions"),
        (
            (0, 10, 0.1, "cosine"),
            {"min_lr": -0.01},
            "min_lr must be in [0, base_lr=0.1], got -0.01",
        ),
        ((0, 10, 0.1, "constant"), {"gamma": 0.5}, "has no option ['gamma']; it takes no options"),
        ((0, 10, 0.1, "step"), {"x": 1}, "has no option ['x']; it takes milestones, gamma"),
        (
            (0, 10, 0.1, "linear"),
            {},
            "unknown lr schedule 'linear'; choose one of constant, step, ",
        ),
    ],
)
def test_each_refusal_says_what_was_wrong_and_what_is_allowed(args, kwargs, message):
    with pytest.raises(UserError) as err:
        lr_at(*args, **kwargs)
    assert message in str(err.value)
