"""The training loop's random streams, with dropout and augmentation on: each batch draws its
own augmentation and dropout masks from ``(seed, 3, epoch, batch)`` (core/learn/train.py).

What each batch drew is recorded as the run goes: its augmentation applied to one fixed probe
batch (with a copy of the batch's generator, so the run itself draws as always) and every
dropout mask (layers/dropout.py ``_mask``). Then: every batch of every epoch draws other
numbers; the same seed, epoch and batch draw the same, whatever the thread count and whether
the run was interrupted and resumed; and the resumed run ends bit for bit where the
uninterrupted one does. The runs are tiny (64 training images, 4 batches an epoch), so this
file is part of the fast tests: one stream per epoch instead of per batch, or a stream that
resuming restarts, fails here.
"""

import copy
import dataclasses

import numpy as np
import pandas as pd
import pytest

import core.learn.train
import layers.dropout
from core.learn.config import RECIPES
from core.learn.train import train
from model.params_io import load_checkpoint
from model.shards import get_threads, set_threads

# minivgg_bn_dropout: dropout before both FC layers; --augment (shifts, rotations, scaling)
# and erasing. 80 images: 64 to train, 4 batches of 16 an epoch; 16 to validate.
RANDOM = dataclasses.replace(
    RECIPES["default"],
    arch="minivgg_bn_dropout",
    augment=True,
    erase=0.5,
    limit=80,
    val_size=16,
    epochs=2,
)
BATCHES = 4
PROBE = np.random.default_rng(99).standard_normal((16, 1, 28, 28)).astype(np.float32)


class Draws:
    """What each batch drew, in order: ``augmentations`` (the probe batch as each batch's
    generator would augment it) and ``masks`` (each dropout mask, two per batch)."""

    def __init__(self, monkeypatch):
        self.augmentations, self.masks = [], []
        real_augmented, real_mask = core.learn.train.augmented, layers.dropout._mask

        def augmented(config, fill, xb, rng):
            probe = PROBE[: len(xb)]
            self.augmentations.append(real_augmented(config, fill, probe, copy.deepcopy(rng)))
            return real_augmented(config, fill, xb, rng)

        def mask(*args):
            drawn = real_mask(*args)
            self.masks.append(drawn)
            return drawn

        monkeypatch.setattr(core.learn.train, "augmented", augmented)
        monkeypatch.setattr(layers.dropout, "_mask", mask)


def recorded_run(monkeypatch, out, config=RANDOM, threads=2):
    """Train ``config`` into ``out`` on ``threads`` threads; return its Draws."""
    before = get_threads()
    set_threads(threads)
    try:
        with monkeypatch.context() as patch:
            draws = Draws(patch)
            train(config, out)
    finally:
        set_threads(before)
    return draws


def assert_all_different(arrays, what):
    for i, a in enumerate(arrays):
        for j in range(i):
            assert not np.array_equal(a, arrays[j]), f"{what} {j} and {i} are the same"


def assert_same_arrays(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.dtype == y.dtype and x.tobytes() == y.tobytes()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """(folder, Draws) of an uninterrupted RANDOM run on 2 threads."""
    out = tmp_path_factory.mktemp("reference")
    with pytest.MonkeyPatch.context() as patch:
        draws = recorded_run(patch, out)
    return out, draws


def test_every_batch_of_every_epoch_draws_its_own_augmentation_and_masks(reference):
    _, draws = reference
    assert len(draws.augmentations) == 2 * BATCHES and len(draws.masks) == 2 * 2 * BATCHES
    assert_all_different(draws.augmentations, "the augmentations of batches")
    first, second = draws.masks[0::2], draws.masks[1::2]  # the two dropout layers
    assert {m.shape for m in first} != {m.shape for m in second}  # really the two layers
    assert_all_different(first, "the first dropout's masks of batches")
    assert_all_different(second, "the second dropout's masks of batches")
    for m in draws.masks:  # p = 0.3 of minivgg_bn_dropout: kept units scaled by 1 / 0.7
        assert set(np.unique(m)) == {0, np.float32(1 / 0.7)}
        assert 0.15 < np.mean(m == 0) < 0.45


def test_the_same_seed_epoch_and_batch_draw_the_same_on_any_thread_count(
    reference, tmp_path, monkeypatch
):
    ref_dir, ref = reference
    for threads in (2, 1):
        draws = recorded_run(monkeypatch, tmp_path / f"threads{threads}", threads=threads)
        assert_same_arrays(draws.augmentations, ref.augmentations)
        assert_same_arrays(draws.masks, ref.masks)
    again = load_checkpoint(tmp_path / "threads2" / "checkpoint.npz").params
    params = load_checkpoint(ref_dir / "checkpoint.npz").params
    assert all(again[k].tobytes() == params[k].tobytes() for k in params)


def test_another_seed_draws_other_augmentations_and_masks(reference, tmp_path, monkeypatch):
    _, ref = reference
    draws = recorded_run(monkeypatch, tmp_path, dataclasses.replace(RANDOM, seed=1))
    for a, b in zip(draws.augmentations + draws.masks, ref.augmentations + ref.masks, strict=True):
        assert not np.array_equal(a, b)


def interrupted_at_step(monkeypatch, call):
    """Make train_step raise KeyboardInterrupt (a Ctrl-C) at its ``call``-th call."""
    real, calls = core.learn.train.train_step, []

    def interrupting(*args):
        calls.append(None)
        if len(calls) == call:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(core.learn.train, "train_step", interrupting)


@pytest.mark.parametrize("step", [2, BATCHES + 2])  # mid-epoch 1, mid-epoch 2
def test_an_interrupted_run_resumes_with_the_draws_and_result_of_the_uninterrupted_one(
    reference, tmp_path, monkeypatch, step
):
    ref_dir, ref = reference
    with monkeypatch.context() as patch:
        interrupted_at_step(patch, step)
        with pytest.raises(KeyboardInterrupt):
            recorded_run(patch, tmp_path)
    state = load_checkpoint(tmp_path / "checkpoint.npz").meta["run_state"]
    assert (state["epoch"], state["batch"]) == divmod(step - 1, BATCHES)

    before = get_threads()
    set_threads(2)
    try:
        with monkeypatch.context() as patch:
            draws = Draws(patch)
            train(RANDOM, tmp_path, resume=True)
    finally:
        set_threads(before)
    done = step - 1  # batches finished before the Ctrl-C
    assert_same_arrays(draws.augmentations, ref.augmentations[done:])
    assert_same_arrays(draws.masks, ref.masks[2 * done :])

    resumed, uninterrupted = (load_checkpoint(d / "checkpoint.npz") for d in (tmp_path, ref_dir))
    for a, b in [
        (resumed.params, uninterrupted.params),
        (resumed.opt_state, uninterrupted.opt_state),
    ]:
        assert sorted(a) == sorted(b)
        assert all(a[k].tobytes() == b[k].tobytes() for k in a), "the parameters differ"
    timing = ["seconds", "images_per_s"]
    logs = [pd.read_csv(d / "log.csv").drop(columns=timing) for d in (tmp_path, ref_dir)]
    pd.testing.assert_frame_equal(*logs)
