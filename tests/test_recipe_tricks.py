"""The recipe tricks of issue 32 in a training run: --label-smoothing, recorded and resumed
exactly. Each run is a tiny one (200 spiral points, an MLP, a second or less)."""

import dataclasses

import pytest
from test_train import assert_same_final_state, cli, interrupt_at

import main
from core.commands.train import train_config
from core.learn.config import RECIPES
from core.learn.train import train
from model.params_io import load_checkpoint, load_model

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


def test_label_smoothing_is_parsed_and_out_of_range_is_refused_in_one_line(capsys):
    parse = main.build_parser().parse_args
    assert train_config(parse(["train", "--label-smoothing", "0.1"])).label_smoothing == 0.1
    assert train_config(parse(["train"])).label_smoothing == 0.0
    for value in ("1", "-0.1", "nan"):
        with pytest.raises(SystemExit) as stop:
            parse(["train", "--label-smoothing", value])
        err = capsys.readouterr().err.strip().splitlines()
        assert stop.value.code == 2 and len(err) == 1 and "--label-smoothing" in err[0]
        assert value == "nan" or f"must be a number in [0, 1), got {value}" in err[0]


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
