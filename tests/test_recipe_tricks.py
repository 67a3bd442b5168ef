"""The recipe tricks of issue 32: --label-smoothing and --ema in a training run, each recorded
and resumed exactly, and evaluate's and predict's test-time augmentation (--tta). Each run is
a tiny one (200 spiral points and an MLP, or 300 8x8 digits and one conv, a second or less)."""

import dataclasses
import json
import re

import numpy as np
import pytest
from test_train import assert_same_final_state, cli, interrupt_at

import core.learn.train
import main
from core.commands.train import train_config
from core.learn import ema
from core.learn.config import RECIPES
from core.learn.eval import accuracy, loss_and_score, predict_proba
from core.learn.prepare import prepare_data
from core.learn.train import train
from core.report import load_test_set, model_inputs, model_proba
from data import tta_views
from data.errors import UserError
from model.params_io import load_checkpoint, load_model, save_checkpoint

# 200 points: 180 to train (12 batches of 16 per epoch), 20 to validate.
TINY = dataclasses.replace(RECIPES["default"], dataset="spiral", arch="mlp", limit=200, epochs=2)
BATCHES_PER_EPOCH = 12


def interrupted_and_resumed(monkeypatch, config, out, call):
    """Train ``config`` in ``out``, Ctrl-C before the ``call``-th batch, then resume it."""
    interrupt_at(monkeypatch, "train_step", call)
    with pytest.raises(KeyboardInterrupt):
        train(config, out)
    monkeypatch.undo()
    return train(None, out, resume=True)


# ------------------------------------------------------------------ --label-smoothing


@pytest.mark.parametrize(
    ("option", "field", "given", "value", "default"),
    [
        ("--label-smoothing", "label_smoothing", "0.1", 0.1, 0.0),
        ("--ema", "ema", "0.999", 0.999, None),
    ],
)
def test_the_options_are_parsed_with_their_defaults(option, field, given, value, default):
    parse = main.build_parser().parse_args
    assert getattr(train_config(parse(["train", option, given])), field) == value
    assert getattr(train_config(parse(["train"])), field) == default


@pytest.mark.parametrize(
    ("option", "value", "wanted"),
    [("--label-smoothing", "1", "[0, 1)"), ("--label-smoothing", "-0.1", "[0, 1)"),
     ("--label-smoothing", "nan", None), ("--ema", "0", "(0, 1)"), ("--ema", "1", "(0, 1)"),
     ("--ema", "inf", None)],
)  # fmt: skip
def test_a_value_out_of_range_is_refused_by_the_parser_in_one_line(option, value, wanted, capsys):
    with pytest.raises(SystemExit) as stop:
        main.build_parser().parse_args(["train", option, value])
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(err) == 1 and f"argument {option}:" in err[0]
    assert wanted is None or f"must be a number in {wanted}, got {value}" in err[0]


def test_label_smoothing_of_a_regression_is_one_clear_error(tmp_path, capsys):
    status, _, err = cli(capsys, "train", "--dataset", "polynomial", "--arch", "mlp_regression",
                         "--loss", "mse", "--label-smoothing", "0.1", "--out", tmp_path / "r")  # fmt: skip
    assert status == 2
    assert err == ("error: --label-smoothing 0.1 smooths the class labels of --loss "
                   "cross_entropy; --loss mse has no classes to smooth\n")  # fmt: skip
    assert not (tmp_path / "r").exists()


def test_a_smoothed_run_records_the_option_and_resumes_exactly(tmp_path, monkeypatch):
    smoothed = dataclasses.replace(TINY, label_smoothing=0.2)
    _, log = train(smoothed, tmp_path / "whole")
    _, plain_log = train(TINY, tmp_path / "plain")
    assert log["train_loss"][0] != plain_log["train_loss"][0]  # the option is used
    for name in ("best_params.npz", "checkpoint.npz"):
        assert load_model(tmp_path / "whole" / name).meta["config"]["label_smoothing"] == 0.2
    interrupted_and_resumed(monkeypatch, smoothed, tmp_path / "cut", BATCHES_PER_EPOCH + 5)
    assert load_checkpoint(tmp_path / "cut" / "checkpoint.npz").meta["config"] == (
        dataclasses.asdict(smoothed)
    )
    assert_same_final_state(tmp_path / "cut", tmp_path / "whole")


def test_resume_refuses_another_label_smoothing(tmp_path, capsys):
    cli(capsys, "train", "--dataset", "spiral", "--arch", "mlp", "--limit", "200", "--epochs",
        "1", "--label-smoothing", "0.1", "--out", tmp_path)  # fmt: skip
    status, _, err = cli(capsys, "train", "--resume", "--label-smoothing", "0.2", "--out", tmp_path)
    assert status == 2 and "(--label-smoothing 0.1), not --label-smoothing 0.2" in err


# ------------------------------------------------------------------------------ --ema

# fc, batch norm (its running statistics are averaged too), relu, fc: 3 spiral classes
BN_MLP = [{"type": "fc", "name": "fc1", "units": 16}, {"type": "batchnorm", "name": "bn1"},
          {"type": "relu"}, {"type": "fc", "name": "fc2", "units": 3}]  # fmt: skip
DECAY = 0.9  # 12 steps an epoch: an average well away from the last weights


@pytest.fixture
def averaged(tmp_path):
    """TINY with a batch-norm MLP and --ema DECAY."""
    path = tmp_path / "bn_mlp.json"
    path.write_text(json.dumps(BN_MLP))
    return dataclasses.replace(TINY, arch=str(path), ema=DECAY)


def test_the_average_after_k_steps_is_that_of_a_plain_loop_over_the_steps(
    averaged, tmp_path, monkeypatch
):
    """Every step's weights, recorded as the run makes them, averaged by hand."""
    real, steps = core.learn.train.train_step, []

    def recording(params, *args):
        if not steps:
            steps.append({k: p.copy() for k, p in params.items()})  # the initial weights
        result = real(params, *args)
        steps.append(result[0])
        return result

    monkeypatch.setattr(core.learn.train, "train_step", recording)
    train(averaged, tmp_path / "run")
    assert len(steps) == 1 + 2 * BATCHES_PER_EPOCH
    expected = dict(steps[0])
    for weights in steps[1:]:
        expected = {k: DECAY * expected[k] + (1 - DECAY) * weights[k] for k in expected}
    state = load_checkpoint(tmp_path / "run" / "checkpoint.npz").opt_state
    assert sorted(k for k in state if k.startswith("ema.")) == sorted(f"ema.{k}" for k in expected)
    assert "ema.bn1.running_mean" in state and "ema.bn1.running_var" in state
    for key, value in expected.items():
        np.testing.assert_array_equal(state[f"ema.{key}"], value, err_msg=key)


def test_the_average_of_float64_steps_matches_the_closed_form():
    rng = np.random.default_rng(7)
    steps = [{"w": rng.standard_normal(5)} for _ in range(6)]
    state = ema.initial_average(steps[0])
    for weights in steps[1:]:
        state = ema.updated_average(state, weights, 0.8)
    k = len(steps) - 1
    later = sum(0.2 * 0.8 ** (k - t) * steps[t]["w"] for t in range(1, k + 1))
    np.testing.assert_allclose(state["ema.w"], 0.8**k * steps[0]["w"] + later, rtol=1e-12)
    model = ema.averaged_params({"w": steps[-1]["w"], "b": np.ones(2)}, state)
    assert model["w"] is state["ema.w"] and np.array_equal(model["b"], np.ones(2))  # no average


def test_validation_selection_and_the_saved_model_use_the_averaged_weights(averaged, tmp_path):
    config = dataclasses.replace(averaged, epochs=1)
    model, log = train(config, tmp_path)
    ckpt = load_checkpoint(tmp_path / "checkpoint.npz")
    average = ema.averaged_params(ckpt.params, ckpt.opt_state)
    assert sorted(model.params) == sorted(ckpt.params)
    for key in ckpt.params:
        np.testing.assert_array_equal(model.params[key], average[key], err_msg=key)
        assert not np.array_equal(average[key], ckpt.params[key]), key  # really averaged
    data = prepare_data(config)
    val_loss, val_acc = loss_and_score(average, model.blueprint, data.x_val, data.y_val)
    raw_loss, _ = loss_and_score(ckpt.params, model.blueprint, data.x_val, data.y_val)
    assert (log["val_loss"][0], log["val_acc"][0]) == (val_loss, val_acc) and raw_loss != val_loss
    assert model.meta["config"]["ema"] == DECAY == ckpt.meta["config"]["ema"]


def test_an_averaged_run_interrupted_mid_epoch_resumes_bit_for_bit(averaged, tmp_path, monkeypatch):
    train(averaged, tmp_path / "whole")
    interrupted_and_resumed(monkeypatch, averaged, tmp_path / "cut", BATCHES_PER_EPOCH + 5)
    assert_same_final_state(tmp_path / "cut", tmp_path / "whole")  # raw, averaged, best model


def test_a_run_without_ema_keeps_no_average_and_saves_its_own_weights(averaged, tmp_path):
    config = dataclasses.replace(averaged, ema=None, epochs=1)
    model, _ = train(config, tmp_path)
    ckpt = load_checkpoint(tmp_path / "checkpoint.npz")
    assert not [key for key in ckpt.opt_state if key.startswith("ema.")]
    for key in ckpt.params:
        np.testing.assert_array_equal(model.params[key], ckpt.params[key], err_msg=key)


def test_resuming_an_averaged_run_whose_checkpoint_lost_its_average_is_one_error(
    averaged, tmp_path
):
    train(dataclasses.replace(averaged, epochs=1), tmp_path)
    path = tmp_path / "checkpoint.npz"
    ckpt = load_checkpoint(path)
    kept = {k: v for k, v in ckpt.opt_state.items() if k != "ema.fc1.W"}
    save_checkpoint(path, ckpt.params, kept, ckpt.blueprint, ckpt.meta)
    with pytest.raises(UserError, match=r"trains with --ema, but its checkpoint holds no average "
                       "of fc1.W; it is damaged"):  # fmt: skip
        train(None, tmp_path, resume=True, changes={"epochs": 2})


# ------------------------------------------------------------------------------ --tta


def moved(images, dy, dx, fill):
    """The oracle of a shift, pixel by pixel: out[..., i, j] = images[..., i - dy, j - dx],
    ``fill[c]`` where that falls outside."""
    n, c, h, w = images.shape
    out = np.empty_like(images)
    for i in range(h):
        for j in range(w):
            inside = 0 <= i - dy < h and 0 <= j - dx < w
            out[:, :, i, j] = images[:, :, i - dy, j - dx] if inside else fill
    return out


def explicit_copies(images, mode, fill):
    """The views of ``--tta mode``, each made by hand: mirrored with [..., ::-1], moved by
    ``moved`` one pixel down, up, right, left."""
    shifts = [(1, 0), (-1, 0), (0, 1), (0, -1)]
    bases = [images, images[..., ::-1]] if "flip" in mode else [images]
    if "shift" not in mode:
        return bases
    return [view for base in bases for view in (base, *(moved(base, *s, fill) for s in shifts))]


@pytest.mark.parametrize("mode", ["flip", "shift", "flip+shift"])
def test_the_views_of_each_mode_are_the_explicit_copies(mode):
    images = np.random.default_rng(8).standard_normal((3, 2, 5, 4)).astype(np.float32)
    fill = np.array([-7.0, 9.0], np.float32)
    views = tta_views(images, mode, fill)
    expected = explicit_copies(images, mode, fill)
    assert len(views) == len(expected) == {"flip": 2, "shift": 5, "flip+shift": 10}[mode]
    for view, copy in zip(views, expected, strict=True):
        assert view.dtype == np.float32 and view.shape == images.shape
        np.testing.assert_array_equal(view, copy)


DIGITS_NET = [{"type": "conv", "name": "conv1", "filters": 4, "kernel": 3, "pad": 1},
              {"type": "relu"}, {"type": "flatten"}, {"type": "fc", "name": "fc1", "units": 10}]  # fmt: skip


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    """best_params.npz of one epoch on 300 of the 8x8 digits (a conv and an fc)."""
    out = tmp_path_factory.mktemp("digits")
    (out / "net.json").write_text(json.dumps(DIGITS_NET))
    config = dataclasses.replace(RECIPES["default"], dataset="digits", arch=str(out / "net.json"),
                                 limit=300, val_size=50, epochs=1)  # fmt: skip
    train(config, out / "run")
    return out / "run" / "best_params.npz"


@pytest.mark.parametrize("mode", ["flip", "shift", "flip+shift"])
def test_tta_scores_are_the_mean_scores_of_the_transformed_copies(digits_model, mode):
    model = load_model(digits_model)
    _, _, raw = load_test_set(model.meta)
    raw = raw[:40]
    # raw pixels moved with black (0) at the edge, then normalized: the model's own inputs
    copies = explicit_copies(raw, mode, 0)
    expected = np.mean([predict_proba(model.params, model.blueprint, model_inputs(c, model.meta))
                        for c in copies], axis=0)  # fmt: skip
    if "flip" in mode:  # digits are never mirrored: the same model, said to be of clothes
        model = model._replace(meta={**model.meta, "dataset": "fashion-mnist"})
    probs = model_proba(model, model_inputs(raw, model.meta), mode)
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-7)
    plain = model_proba(model, model_inputs(raw, model.meta))
    assert not np.allclose(probs, plain)  # the views changed something


def test_evaluate_with_tta_shift_prints_the_accuracy_of_the_averaged_copies(
    digits_model, tmp_path, capsys
):
    status, out, _ = cli(capsys, "evaluate", "--params", digits_model, "--tta", "shift",
                         "--out", tmp_path)  # fmt: skip
    assert status == 0
    model = load_model(digits_model)
    _, y, raw = load_test_set(model.meta)
    copies = explicit_copies(raw, "shift", 0)
    probs = np.mean([predict_proba(model.params, model.blueprint, model_inputs(c, model.meta))
                     for c in copies], axis=0)  # fmt: skip
    line = re.search(r"test accuracy ([0-9.]+)% \((\d+) errors in 360 images\), --tta shift: "
                     r"the mean of 5 views", out)  # fmt: skip
    assert line, out
    assert int(line[2]) == int((probs.argmax(axis=1) != y).sum())
    assert float(line[1]) == round(100 * accuracy(y, probs.argmax(axis=1)), 2)


@pytest.mark.parametrize(
    "argv",
    [
        ["evaluate", "--tta", "flip"],  # the shipped MNIST model
        ["evaluate", "--tta", "flip+shift", "--params", "best_params.npz", "best_params.npz"],
        ["predict", "--tta", "flip", "docs/digit.png"],
    ],
)
def test_a_flip_of_digits_is_refused_in_one_line_with_exit_2(argv, capsys):
    status, out, err = cli(capsys, *argv)
    mode = argv[argv.index("--tta") + 1]
    assert status == 2 and out == ""
    assert err == (f"error: --tta {mode} mirrors the pictures, but a mirrored mnist picture "
                   "means something else; flip only fashion-mnist, cifar10\n")  # fmt: skip


def test_a_flip_of_digits_in_training_says_the_same_from_the_same_check(tmp_path, capsys):
    status, _, err = cli(capsys, "train", "--dataset", "digits", "--flip", "--out", tmp_path / "r")
    assert status == 2
    assert err == ("error: --flip mirrors the pictures, but a mirrored digits picture means "
                   "something else; flip only fashion-mnist, cifar10\n")  # fmt: skip


def test_tta_is_parsed_and_an_unknown_mode_is_refused(capsys):
    parse = main.build_parser().parse_args
    assert parse(["evaluate", "--tta", "shift"]).tta == "shift"
    assert parse(["predict", "x.png", "--tta", "flip+shift"]).tta == "flip+shift"
    assert parse(["evaluate"]).tta is None
    with pytest.raises(SystemExit) as stop:
        parse(["evaluate", "--tta", "rotate"])
    assert stop.value.code == 2 and "--tta: invalid choice: 'rotate'" in capsys.readouterr().err


def test_tta_of_a_model_of_points_is_one_clear_error(tmp_path, capsys):
    train(TINY, tmp_path)
    status, _, err = cli(capsys, "evaluate", "--params", tmp_path / "best_params.npz",
                         "--tta", "shift", "--out", tmp_path / "e")  # fmt: skip
    assert status == 2
    assert err == (f"error: {tmp_path / 'best_params.npz'}: --tta shift moves the pixels of "
                   "pictures (C, H, W); this model takes [2] inputs\n")  # fmt: skip
