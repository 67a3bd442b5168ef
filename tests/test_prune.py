"""Pruning: exact global magnitude masks, pruned weights that stay zero, the prune command.

The end-to-end runs use scikit-learn's 8x8 digits (offline) and a model trained for one
epoch on 300 of them, so the file stays fast.
"""

import dataclasses

import numpy as np
import pandas as pd
import pytest

import main
from core.compress.prune import magnitude_masks, prunable_keys, prune
from core.learn.config import RECIPES
from core.learn.optim import make_optimizer, masking
from core.learn.train import train
from data.errors import UserError
from model.blueprints import minivgg_bn_dropout
from model.params_io import load_model


def two_layers(seed=0):
    """Weights of two layers of very different scales (a global threshold prunes the small one
    first), and a bias that pruning must leave alone."""
    rng = np.random.default_rng(seed)
    return {
        "a.W": (rng.choice([-1, 1], (4, 3, 3, 3)) * rng.uniform(1, 2, (4, 3, 3, 3))).astype(
            np.float32
        ),
        "b.W": rng.uniform(-0.5, 0.5, (10, 6)).astype(np.float32),
        "b.b": rng.standard_normal(10).astype(np.float32),
    }


@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.5, 0.8, 0.95, 1 / 3])
def test_masks_prune_exactly_the_asked_count_under_one_global_threshold(sparsity):
    params = two_layers()
    keys = ["a.W", "b.W"]
    masks = magnitude_masks(params, keys, sparsity)
    n = sum(params[k].size for k in keys)
    assert sum(int((~masks[k]).sum()) for k in keys) == round(sparsity * n)
    pruned = np.concatenate([np.abs(params[k][~masks[k]]) for k in keys])
    kept = np.concatenate([np.abs(params[k][masks[k]]) for k in keys])
    if pruned.size:  # one threshold over both layers: every pruned weight is below every kept one
        assert pruned.max() <= kept.min()


def test_a_global_threshold_prunes_the_layer_of_small_weights_first():
    params = two_layers()
    masks = magnitude_masks(params, ["a.W", "b.W"], 60 / 168)  # as many as b.W holds
    assert not masks["b.W"].any() and masks["a.W"].all()


def test_only_conv_and_fc_weights_are_prunable():
    keys = prunable_keys(minivgg_bn_dropout())
    assert keys == [f"{name}.W" for name in ("conv1", "conv2", "conv3", "conv4", "fc5", "fc6")]


@pytest.mark.parametrize(
    ("name", "hyper"),
    [
        ("adam", {"weight_decay": 1e-2}),
        ("adamw", {"weight_decay": 1e-2}),
        ("momentum", {"weight_decay": 1e-2}),
        ("nesterov", {"weight_decay": 1e-2}),
        ("rmsprop", {}),
        ("sgd", {"weight_decay": 1e-2}),
    ],
)
def test_pruned_weights_stay_exactly_zero_through_updates_and_state(name, hyper):
    params = two_layers()
    keys = ["a.W", "b.W"]
    masks = magnitude_masks(params, keys, 0.5)
    params = {k: np.where(masks[k], p, 0).astype(p.dtype) if k in masks else p
              for k, p in params.items()}  # fmt: skip
    optimizer = make_optimizer(name, **hyper)
    state = optimizer.init(params)
    # State left over from before pruning (non-zero slots) must not bring a weight back either.
    state = {k: np.full_like(s, 0.5) for k, s in state.items()}
    opt = masking(optimizer, masks)
    rng = np.random.default_rng(1)
    start = {k: p.copy() for k, p in params.items()}
    for step in range(1, 6):
        grads = {k: rng.standard_normal(p.shape).astype(p.dtype) for k, p in params.items()}
        params, state = opt.update(params, grads, state, step, 0.1)
    for k in keys:
        assert np.count_nonzero(params[k][~masks[k]]) == 0, k
        assert np.all(params[k][masks[k]] != start[k][masks[k]]), k  # the kept ones learn
    assert not np.array_equal(params["b.b"], start["b.b"])  # a bias is never masked


def test_the_state_of_a_pruned_weight_stays_zero_from_a_fresh_start():
    params = two_layers()
    masks = magnitude_masks(params, ["a.W", "b.W"], 0.8)
    optimizer = make_optimizer("adam", weight_decay=1e-2)
    opt, state = masking(optimizer, masks), optimizer.init(params)
    rng = np.random.default_rng(2)
    for step in range(1, 4):
        grads = {k: rng.standard_normal(p.shape).astype(p.dtype) for k, p in params.items()}
        params, state = opt.update(params, grads, state, step, 0.01)
    for slot in ("m", "v"):
        assert np.count_nonzero(state[f"{slot}.a.W"][~masks["a.W"]]) == 0


# ---- the prune command, end to end ------------------------------------------------------------

TINY = dataclasses.replace(
    RECIPES["best"],
    dataset="digits",
    limit=300,
    val_size=60,
    epochs=1,
    batch_size=32,
    warmup_epochs=0,
)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("digits")
    train(TINY, out)
    return out / "best_params.npz"


def cli(capsys, *argv):
    """``python main.py *argv`` in-process: (exit status, stdout, stderr)."""
    try:
        status = main.main([str(arg) for arg in argv])
    except SystemExit as stop:  # refused by the option parser
        status = stop.code
    out, err = capsys.readouterr()
    return status, out, err


def test_prune_writes_the_table_figure_and_exactly_pruned_model_files(model_file, tmp_path, capsys):
    out = tmp_path / "p"
    status, text, err = cli(capsys, "prune", "--params", model_file, "--sparsity", "0.5,0.9",
                            "--finetune-epochs", "1", "--out", out)  # fmt: skip
    assert status == 0, err
    table = pd.read_csv(out / "prune.csv")
    assert list(table.columns) == ["sparsity", "accuracy_before", "accuracy_after"]
    assert table["sparsity"].tolist() == [0.5, 0.9]
    assert table[["accuracy_before", "accuracy_after"]].stack().between(0, 1).all()
    assert (out / "prune.png").stat().st_size > 0
    assert "accuracy_before" in text and "accuracy_after" in text
    source = load_model(model_file)
    keys = prunable_keys(source.blueprint)
    n = sum(source.params[k].size for k in keys)
    for sparsity in (0.5, 0.9):
        pruned = load_model(out / f"sparsity_{sparsity:g}.npz")
        zeros = sum(np.count_nonzero(pruned.params[k] == 0) for k in keys)
        assert zeros == round(sparsity * n)  # exact, after fine-tuning too
        assert pruned.meta["pruned"]["sparsity"] == sparsity
        assert pruned.meta["pruned"]["zero_weights"] == zeros
        # fine-tuning changed the kept weights, and biases were not pruned
        assert not np.array_equal(pruned.params["conv2.W"], source.params["conv2.W"])
        assert np.count_nonzero(pruned.params["conv2.b"] == 0) < pruned.params["conv2.b"].size
    status, _, err = cli(capsys, "evaluate", "--params", out / "sparsity_0.9.npz",
                         "--out", tmp_path / "ev")  # fmt: skip
    assert status == 0, err
    status, text, _ = cli(capsys, "summary", "--params", out / "sparsity_0.9.npz")
    assert status == 0 and "zero weights" in text and "pruned to sparsity 0.9" in text
    lines = {line.split()[0]: line for line in text.splitlines() if line.startswith("conv")}
    shares = [float(line.split()[-1].rstrip("%")) for line in lines.values()]
    assert all(0 <= s <= 100 for s in shares) and any(s > 0 for s in shares)

    # the same folder again: refused without --overwrite, replaced with it
    before = (out / "prune.csv").read_bytes()
    status, _, err = cli(capsys, "prune", "--params", model_file, "--sparsity", "0.5",
                         "--finetune-epochs", "0", "--out", out)  # fmt: skip
    assert status == 2 and "--overwrite" in err and err.count("\n") == 1
    assert (out / "prune.csv").read_bytes() == before
    status, text, err = cli(capsys, "prune", "--params", model_file, "--sparsity", "0.5",
                            "--finetune-epochs", "0", "--out", out, "--overwrite")  # fmt: skip
    assert status == 0, err
    assert pd.read_csv(out / "prune.csv")["accuracy_after"].isna().all()  # no fine-tuning
    # said in words: no "nan%" as an accuracy, no NaN in the table shown
    assert "sparsity 0.5: not fine-tuned" in text and "nan" not in text.lower()


@pytest.mark.parametrize("bad", ["1", "1.0", "-0.1", "0.5,2", "nan", "abc", "0.5,"])
def test_a_sparsity_outside_0_1_is_one_clear_line(bad, tmp_path, capsys):
    status, out, err = cli(capsys, "prune", "--sparsity", bad, "--out", tmp_path / "p")
    assert status == 2 and out == ""
    assert "--sparsity" in err and "[0, 1)" in err and err.count("\n") == 1
    assert not (tmp_path / "p").exists()


def test_prune_refuses_a_sparsity_outside_0_1_in_the_library_too(tmp_path):
    with pytest.raises(UserError, match=r"\[0, 1\)"):
        prune(tmp_path / "no such file.npz", [0.5, 1.0], 0, tmp_path)
