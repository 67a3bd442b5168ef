"""Transfer learning: train --init-from copies matching layers; --freeze keeps layers fixed.

Runs on scikit-learn's 8x8 digits (offline), 300 images, one or two epochs: fast.
"""

import dataclasses
import json

import numpy as np
import pytest

import core.learn.train
import main
from core.commands.options import SHIPPED_PARAMS
from core.learn.config import RECIPES
from core.learn.optim import freezing, make_optimizer
from core.learn.train import train
from core.progress import Progress
from data.errors import UserError
from model.blueprints import load_blueprint
from model.params_io import load_checkpoint, load_model

# Momentum and weight decay: a frozen weight must escape both.
TINY = dataclasses.replace(
    RECIPES["default"],
    dataset="digits",
    arch="minivgg_bn_dropout",
    limit=300,
    val_size=60,
    epochs=1,
    batch_size=32,
    optimizer="momentum",
    lr=0.05,
    weight_decay=1e-2,
)


def quiet_train(config, out_dir, **kwargs):
    lines = []
    model, _ = train(config, out_dir, report=Progress(progress=False, echo=lines.append), **kwargs)
    return model, lines


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A trained digits model file to start from."""
    out = tmp_path_factory.mktemp("source")
    quiet_train(TINY, out)
    return out / "best_params.npz"


def cli(capsys, *argv):
    """``python main.py *argv`` in-process: (exit status, stdout, stderr)."""
    try:
        status = main.main([str(arg) for arg in argv])
    except SystemExit as stop:
        status = stop.code
    out, err = capsys.readouterr()
    return status, out, err


def other_blueprint(tmp_path):
    """minivgg_bn_dropout with conv1 renamed and fc5 narrower: a .json blueprint file."""
    _, blueprint = load_blueprint("minivgg_bn_dropout", 10)
    for spec in blueprint:
        if spec.get("name") == "conv1":
            spec["name"] = "first"
        if spec.get("name") == "fc5":
            spec["units"] = 64
    path = tmp_path / "other.json"
    path.write_text(json.dumps(blueprint))
    return path


def test_init_from_copies_every_matching_layer_and_says_which_were_not(
    source, tmp_path, monkeypatch
):
    config = dataclasses.replace(TINY, arch=str(other_blueprint(tmp_path)), init_from=str(source))
    start, real = {}, core.learn.train.start

    def spy(*args, **kwargs):  # keeps the parameters the run starts from
        run, params, opt_state, state = real(*args, **kwargs)
        start.update(params)
        return run, params, opt_state, state

    monkeypatch.setattr(core.learn.train, "start", spy)
    _, lines = quiet_train(config, tmp_path / "run")
    theirs = load_model(source).params
    copied = ["bn1", "conv2", "bn2", "conv3", "bn3", "conv4", "bn4"]
    assert f"copied from {source}: {', '.join(copied)}" in lines
    for key in theirs:
        if key.split(".")[0] in copied:
            assert np.array_equal(start[key], theirs[key]), key
    assert not_copied_line(lines) == (
        "not copied (initialized afresh): first (missing); fc5 (W (128, 128) vs (128, 64), "
        "b (128,) vs (64,)); bn5 (gamma (128,) vs (64,), beta (128,) vs (64,), running_mean "
        "(128,) vs (64,), running_var (128,) vs (64,)); fc6 (W (128, 10) vs (64, 10))"
    )


def not_copied_line(lines):
    return next(line for line in lines if line.startswith("not copied"))


FROZEN = ["conv1", "bn1", "conv3", "fc6"]


@pytest.fixture(scope="module")
def frozen_run(source, tmp_path_factory):
    """A two-epoch run from ``source`` with FROZEN frozen (momentum, weight decay): its folder."""
    out = tmp_path_factory.mktemp("frozen")
    config = dataclasses.replace(TINY, init_from=str(source), freeze=",".join(FROZEN), epochs=2)
    _, lines = quiet_train(config, out)
    assert f"frozen: {', '.join(FROZEN)}" in lines
    return out


def test_frozen_layers_are_bit_identical_after_training_and_have_no_optimizer_state(
    source, frozen_run
):
    theirs = load_model(source).params
    ckpt = load_checkpoint(frozen_run / "checkpoint.npz")
    for key, value in theirs.items():
        if key.split(".")[0] in FROZEN:  # weights, biases, gamma, beta, running statistics
            assert ckpt.params[key].tobytes() == value.tobytes(), key
        else:  # everything else trained, the other batch norms' running statistics included
            assert not np.array_equal(ckpt.params[key], value), f"{key} did not train"
    slots = {key.split(".", 1)[1] for key in ckpt.opt_state}
    assert slots and not {key for key in slots if key.split(".")[0] in FROZEN}
    assert "conv2.W" in slots


def test_freezing_gives_frozen_keys_no_state_and_no_update_even_with_weight_decay():
    rng = np.random.default_rng(0)
    params = {k: rng.standard_normal((3, 2)).astype(np.float32) for k in ("a.W", "b.W")}
    grads = {k: np.ones_like(p) for k, p in params.items()}
    for name in ("sgd", "momentum", "adam", "adamw"):
        opt = freezing(make_optimizer(name, weight_decay=0.1), {"a.W"})
        state = opt.init(params)
        assert not [key for key in state if key.endswith("a.W")]
        new, _ = opt.update(params, grads, state, 1, 0.1)
        assert new["a.W"] is params["a.W"]
        assert not np.array_equal(new["b.W"], params["b.W"])


def test_a_resumed_run_with_init_from_and_freeze_is_exact(
    source, frozen_run, tmp_path, monkeypatch
):
    config = dataclasses.replace(TINY, init_from=str(source), freeze=",".join(FROZEN), epochs=2)
    real, calls = core.learn.train.train_step, []

    def interrupting(*args, **kwargs):
        calls.append(None)
        if len(calls) == 10:  # mid-epoch 2 (8 batches per epoch)
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(core.learn.train, "train_step", interrupting)
    with pytest.raises(KeyboardInterrupt):
        quiet_train(config, tmp_path)
    monkeypatch.undo()
    quiet_train(None, tmp_path, resume=True)
    ckpt, ref = (load_checkpoint(d / "checkpoint.npz") for d in (tmp_path, frozen_run))
    assert ckpt.meta["config"] == ref.meta["config"] == dataclasses.asdict(config)
    for got, want in ((ckpt.params, ref.params), (ckpt.opt_state, ref.opt_state)):
        assert sorted(got) == sorted(want)
        for key in want:
            assert got[key].tobytes() == want[key].tobytes(), key


def test_resume_refuses_another_freeze(frozen_run, capsys):
    status, _, err = cli(capsys, "train", "--out", frozen_run, "--resume", "--freeze", "conv1")
    assert status == 2 and "--freeze" in err and err.count("\n") == 1


def error_of(capsys, tmp_path, *options):
    """(stderr) of a digits run refused for its options; checks it is one line and no folder."""
    out = tmp_path / "refused"
    status, stdout, err = cli(capsys, "train", "--dataset", "digits", "--arch",
                              "minivgg_bn_dropout", "--limit", "300", "--epochs", "1",
                              "--out", out, *options)  # fmt: skip
    assert status == 2 and stdout == "" and err.count("\n") == 1, err
    assert not out.exists()
    return err


def test_freeze_naming_an_unknown_layer_is_one_line(source, tmp_path, capsys):
    err = error_of(capsys, tmp_path, "--init-from", source, "--freeze", "conv1,conv9,relu1")
    assert err.startswith("error: --freeze conv1,conv9,relu1: no layer with parameters is named "
                          "conv9, relu1; the layers with parameters are conv1, bn1, ")  # fmt: skip


def test_freeze_without_init_from_is_refused(tmp_path, capsys):
    assert "--freeze conv1 needs --init-from" in error_of(capsys, tmp_path, "--freeze", "conv1")


def test_init_from_a_model_of_other_inputs_says_which_layers_could_not_be_copied(tmp_path, capsys):
    shipped = SHIPPED_PARAMS
    err = error_of(capsys, tmp_path, "--init-from", shipped)
    assert err == (
        f"error: --init-from {shipped}: that model takes 1x28x28 inputs, this run's are 1x8x8; "
        "layers that could not be copied: fc5 (W (1568, 128) vs (128, 128))\n"
    )


def test_freezing_a_layer_that_was_not_copied_is_refused(source, tmp_path, capsys):
    arch = other_blueprint(tmp_path)
    err = error_of(capsys, tmp_path, "--arch", arch, "--init-from", source, "--freeze", "first")
    assert "--freeze: first not copied from" in err and "(missing)" in err


def test_init_from_a_file_with_no_matching_layer_is_refused(source, tmp_path, capsys):
    err = error_of(capsys, tmp_path, "--arch", "resnet", "--init-from", source)
    assert "no layer of it matches this run's by name and shape" in err


def test_init_from_a_missing_file_is_one_line(tmp_path, capsys):
    err = error_of(capsys, tmp_path, "--init-from", tmp_path / "nothing.npz")
    assert "nothing.npz" in err


def test_library_callers_get_a_user_error(source, tmp_path):
    config = dataclasses.replace(TINY, init_from=str(source), freeze="nothing*")
    with pytest.raises(UserError, match="nothing"):
        quiet_train(config, tmp_path)
