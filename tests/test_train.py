"""End-to-end tests of core.train: accuracy, repeatability, exact resume, divergence, early stop.

The runs are small (a few hundred MNIST images, one or two epochs) and share a reference run
(module-scoped fixture), so the file stays fast on a busy 2-core machine.
"""

import dataclasses

import numpy as np
import pandas as pd
import pytest

import core.train
import main
from core.report import evaluate, load_test_set
from core.train import RECIPES, Diverged, train
from data.errors import UserError
from model.params_io import load_checkpoint, load_model
from model.shards import get_threads, set_threads

TIMING = ["seconds", "images_per_s"]  # the only log columns that may differ between runs
# 500 images: 400 to train (25 batches of 16 per epoch) and 100 to validate.
SMALL = dataclasses.replace(RECIPES["default"], limit=500, val_size=100, epochs=2)
BATCHES_PER_EPOCH = 25


def quiet_train(config, out_dir, **kwargs):
    """core.train.train without the progress bar and the per-epoch lines."""
    return train(config, out_dir, progress=False, echo=lambda *_: None, **kwargs)


def with_threads(n, run):
    """``run()`` with ``n`` worker threads (shards); the thread count is restored after."""
    before = get_threads()
    set_threads(n)
    try:
        return run()
    finally:
        set_threads(before)


def assert_bit_identical(a, b):
    """Two dicts of arrays with the same keys, dtypes, shapes and bytes."""
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        assert a[key].shape == b[key].shape, key
        assert a[key].tobytes() == b[key].tobytes(), f"{key} differs"


def assert_same_final_state(run_dir, reference_dir):
    """Final checkpoint (parameters, optimizer state, position, generator), best model and log
    of two run folders are the same, timing columns aside."""
    ckpt, ref = (load_checkpoint(d / "checkpoint.npz") for d in (run_dir, reference_dir))
    assert_bit_identical(ckpt.params, ref.params)
    assert_bit_identical(ckpt.opt_state, ref.opt_state)
    assert run_position(ckpt) == run_position(ref)
    assert_bit_identical(
        load_model(run_dir / "best_params.npz").params,
        load_model(reference_dir / "best_params.npz").params,
    )
    pd.testing.assert_frame_equal(log_without_timing(run_dir), log_without_timing(reference_dir))


def run_position(ckpt):
    """A checkpoint's run state without the log rows (their timing differs between runs)."""
    return {key: value for key, value in ckpt.meta["run_state"].items() if key != "log_rows"}


def log_without_timing(run_dir):
    return pd.read_csv(run_dir / "log.csv").drop(columns=TIMING)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The folder of an uninterrupted SMALL run on 2 threads."""
    out = tmp_path_factory.mktemp("reference")
    with_threads(2, lambda: quiet_train(SMALL, out))
    return out


def test_2000_images_and_one_epoch_beat_90_percent_on_the_mnist_test_set(tmp_path):
    args = main.build_parser().parse_args(["train", "--limit", "2000", "--epochs", "1"])
    config = main.train_config(args)  # what `python main.py train --limit 2000 --epochs 1` runs
    assert config == dataclasses.replace(RECIPES["default"], limit=2000, epochs=1)
    result = quiet_train(config, tmp_path)
    x_test, y_test, _ = load_test_set(result.meta)
    assert len(y_test) == 10_000
    assert evaluate(result, x_test, y_test).accuracy > 0.90


def test_the_same_seed_gives_a_bit_identical_run(reference, tmp_path):
    with_threads(2, lambda: quiet_train(SMALL, tmp_path))
    assert_same_final_state(tmp_path, reference)
    assert list(pd.read_csv(tmp_path / "log.csv").columns[-2:]) == TIMING


def test_another_seed_gives_other_parameters(reference, tmp_path):
    with_threads(2, lambda: quiet_train(dataclasses.replace(SMALL, seed=1), tmp_path))
    other = load_model(tmp_path / "best_params.npz").params
    ref = load_model(reference / "best_params.npz").params
    weights = [key for key in ref if key.endswith(".W")]
    assert len(weights) == 6  # minivgg: 4 conv and 2 fc layers
    for key in weights:
        assert not np.array_equal(other[key], ref[key]), key


def test_one_thread_gives_the_same_run_up_to_float_rounding(reference, tmp_path):
    """One shard instead of two sums the gradients in another order: rounding, nothing else
    (batches, masks and augmentation do not depend on the thread count)."""
    with_threads(1, lambda: quiet_train(SMALL, tmp_path))
    one = load_checkpoint(tmp_path / "checkpoint.npz").params
    two = load_checkpoint(reference / "checkpoint.npz").params
    assert sorted(one) == sorted(two)
    assert any(not np.array_equal(one[key], two[key]) for key in one)  # really another order
    for key in one:
        np.testing.assert_allclose(one[key], two[key], rtol=0, atol=1e-3, err_msg=key)
    log_one, log_two = log_without_timing(tmp_path), log_without_timing(reference)
    np.testing.assert_allclose(log_one["train_loss"], log_two["train_loss"], rtol=1e-3)


def interrupt_at(monkeypatch, name, call):
    """Make ``core.train.<name>`` raise KeyboardInterrupt (a Ctrl-C) at its ``call``-th call."""
    real, calls = getattr(core.train, name), []

    def interrupting(*args, **kwargs):
        calls.append(None)
        if len(calls) == call:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(core.train, name, interrupting)


@pytest.mark.parametrize(
    ("name", "call"),
    [
        # mid-epoch 2, before its 11th batch
        ("train_step", BATCHES_PER_EPOCH + 11),
        # while the files of epoch 2 are written (the log first, then the models)
        ("write_log", 2),
    ],
)
def test_an_interrupted_run_resumes_to_the_uninterrupted_result(
    reference, tmp_path, monkeypatch, name, call
):
    interrupt_at(monkeypatch, name, call)
    with pytest.raises(KeyboardInterrupt):
        with_threads(2, lambda: quiet_train(SMALL, tmp_path))
    state = load_checkpoint(tmp_path / "checkpoint.npz").meta["run_state"]
    if name == "train_step":
        assert (state["epoch"], state["batch"]) == (1, 10)  # 0-based: epoch 2, batch 11 next
    assert len(pd.read_csv(tmp_path / "log.csv")) == 1  # epoch 1 only

    monkeypatch.undo()
    # The checkpoint's config is used: a different one passed here must not matter.
    result = with_threads(2, lambda: quiet_train(RECIPES["best"], tmp_path, resume=True))
    assert result.meta["config"] == dataclasses.asdict(SMALL)
    assert_same_final_state(tmp_path, reference)


def test_a_huge_learning_rate_stops_with_one_clear_error(tmp_path, capsys):
    config = dataclasses.replace(SMALL, optimizer="sgd", lr=10.0, epochs=1)
    with pytest.raises(Diverged) as caught:
        quiet_train(config, tmp_path / "in_process")
    assert isinstance(caught.value, UserError)
    message = str(caught.value)
    assert "loss became nan" in message or "loss became inf" in message
    assert "smaller --lr" in message
    assert "no epoch finished" in message
    assert not (tmp_path / "in_process" / "best_params.npz").exists()

    argv = ["train", "--optimizer", "sgd", "--lr", "10", "--limit", "500", "--val-size", "100"]
    assert main.main([*argv, "--epochs", "1", "--out", str(tmp_path / "cli")]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {message}\n"  # one line, the same run, no traceback


def test_a_run_that_diverges_later_keeps_the_files_of_its_last_good_epoch(tmp_path, monkeypatch):
    real = core.train.train_step

    def explode_in_epoch_2(params, opt_state, xb, yb, blueprint, optimizer, step, lr, *rest):
        if step >= BATCHES_PER_EPOCH:
            lr = 1e6
        return real(params, opt_state, xb, yb, blueprint, optimizer, step, lr, *rest)

    monkeypatch.setattr(core.train, "train_step", explode_in_epoch_2)
    with pytest.raises(Diverged, match="smaller --lr") as caught:
        quiet_train(SMALL, tmp_path)
    assert str(tmp_path / "best_params.npz") in str(caught.value)
    best = load_model(tmp_path / "best_params.npz")  # whole, finite (load_model checks)
    assert best.meta["epoch"] == 1
    ckpt = load_checkpoint(tmp_path / "checkpoint.npz")
    assert ckpt.meta["run_state"]["epoch"] == 1
    assert_bit_identical(ckpt.params, best.params)
    assert list(pd.read_csv(tmp_path / "log.csv")["epoch"]) == [1]


def test_patience_stops_the_run_when_validation_accuracy_stops_improving(tmp_path, monkeypatch):
    # The same validation result every epoch: only epoch 1 counts as an improvement.
    monkeypatch.setattr(core.train, "loss_and_accuracy", lambda *args, **kwargs: (1.0, 0.5))
    config = dataclasses.replace(SMALL, limit=300, epochs=5, patience=2)
    lines = []
    result = train(config, tmp_path, progress=False, echo=lines.append)
    assert list(result.log["epoch"]) == [1, 2, 3]  # epochs 2 and 3 did not improve on epoch 1
    assert list(pd.read_csv(tmp_path / "log.csv")["epoch"]) == [1, 2, 3]
    assert "early stop" in lines[-1]
    assert result.meta["epoch"] == 1
    assert load_checkpoint(tmp_path / "checkpoint.npz").meta["run_state"]["epoch"] == 3


def test_the_log_has_the_documented_columns_and_one_row_per_epoch(reference):
    text = (reference / "log.csv").read_text()
    header = "epoch,lr,train_loss,train_acc,val_loss,val_acc,seconds,images_per_s"
    assert text.splitlines()[0] == header
    log = pd.read_csv(reference / "log.csv")
    assert list(log["epoch"]) == [1, 2]
    assert log.notna().all().all()
    for column in ["train_acc", "val_acc"]:
        assert log[column].between(0, 1).all()
    assert (log[["lr", "train_loss", "val_loss", "seconds", "images_per_s"]] > 0).all().all()
    assert log["lr"].iloc[1] < log["lr"].iloc[0]  # the default cosine schedule decays
    best = load_model(reference / "best_params.npz").meta
    assert best["val_acc"] == log["val_acc"].max()
    assert best["epoch"] == log["epoch"][log["val_acc"].idxmax()]


def test_mlp_on_the_spiral_trains_end_to_end_with_its_figures(tmp_path, capsys):
    """2-D points, no convolution: the run still evaluates and draws what applies to it."""
    assert main.main(["train", "--dataset", "spiral", "--arch", "mlp", "--epochs", "3",
                      "--out", str(tmp_path)]) == 0  # fmt: skip
    assert "test accuracy" in capsys.readouterr().out
    figures = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert figures == ["confusion_matrix.png", "history.png"]
