"""The regression path end to end: polynomial, --loss mse, evaluate's MSE and R², the error lines.

One tiny run (500 points, a few seconds) is trained once for the module through main.py.
"""

import contextlib
import dataclasses
import io
import json
import re

import numpy as np
import pandas as pd
import pytest

import main
from core.learn.config import RECIPES, TrainConfig
from core.learn.eval import r_squared
from core.learn.prepare import prepare_data
from data import load_dataset
from data.errors import UserError
from model.params_io import load_model

RUN = ["train", "--dataset", "polynomial", "--arch", "mlp_regression", "--loss", "mse"]
NUMBER = r"(-?[0-9.]+)"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(run folder, what train printed) of a 12-epoch regression run."""
    out = tmp_path_factory.mktemp("polynomial")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main.main([*RUN, "--epochs", "12", "--lr", "0.01", "--out", str(out)]) == 0
    return out, printed.getvalue()


def test_training_logs_mse_and_r2_and_keeps_the_lowest_validation_mse(run):
    out, printed = run
    log = pd.read_csv(out / "log.csv")
    assert list(log.columns) == [
        "epoch", "lr", "train_loss", "train_r2", "val_loss", "val_r2", "seconds", "images_per_s"
    ]  # fmt: skip
    assert re.search(rf"train mse {NUMBER} r2 {NUMBER}  val mse {NUMBER} r2 {NUMBER}", printed)
    # R² is 1 - MSE / variance of the targets, on each split.
    best = load_model(out / "best_params.npz").meta
    data = prepare_data(TrainConfig(**best["config"]))  # the run's own split
    np.testing.assert_allclose(log["val_r2"], [r_squared(m, data.y_val) for m in log["val_loss"]])
    np.testing.assert_allclose(
        log["train_r2"], [r_squared(m, data.y_train) for m in log["train_loss"]]
    )
    assert best["epoch"] == log["epoch"][log["val_loss"].idxmin()]
    assert best["val_r2"] == log["val_r2"].max() and "val_acc" not in best
    assert log["val_r2"].max() > 0.9  # x^3 - x is learnt: the noise alone leaves R² about 0.98
    figures = sorted(p.name for p in (out / "figures").iterdir())
    assert figures == ["fitted_curve.png", "history.png"]
    assert re.search(rf"test MSE {NUMBER}, R\^2 {NUMBER} \(200 points\)", printed)
    assert "accuracy" not in printed


def test_evaluate_reports_mse_and_r2_and_draws_the_fitted_curve(run, tmp_path, capsys):
    out, _ = run
    assert main.main(["evaluate", "--params", str(out / "best_params.npz"), "--out",
                      str(tmp_path)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    found = re.search(rf"test MSE {NUMBER}, R\^2 {NUMBER} \(200 points\)", printed)
    mse, r2 = float(found[1]), float(found[2])
    y_test = load_dataset("polynomial").y_test
    assert r2 == pytest.approx(1 - mse / np.var(y_test.astype(np.float64)), abs=2e-4)
    assert r2 > 0.9
    assert "confus" not in printed
    assert [p.name for p in tmp_path.iterdir()] == ["fitted_curve_test.png"]


def test_predict_refuses_a_regression_model_in_one_line(run, capsys):
    out, _ = run
    assert main.main(["predict", "x.png", "--params", str(out / "best_params.npz")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "regression model" in err


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--dataset", "spiral", "--arch", "mlp", "--loss", "mse"], ["--loss mse", "spiral"]),
        (["--dataset", "polynomial", "--arch", "mlp_regression"],
         ["--loss cross_entropy", "polynomial", "--loss mse"]),
    ],
)  # fmt: skip
def test_a_loss_that_does_not_fit_the_dataset_is_one_line(argv, words, tmp_path, capsys):
    assert main.main(["train", *argv, "--epochs", "1", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert all(word in err for word in words), err
    assert not (tmp_path / "run").exists()  # refused before anything is written


def test_an_unknown_loss_is_one_line(capsys):
    with pytest.raises(SystemExit) as caught:  # argparse's choices
        main.main(["train", "--dataset", "polynomial", "--loss", "l1"])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--loss" in err and "'l1'" in err
    config = dataclasses.replace(RECIPES["default"], dataset="polynomial", loss="l1")
    with pytest.raises(UserError, match="--loss must be one of cross_entropy, mse"):
        prepare_data(config)  # what a config made in Python meets


def test_a_network_with_the_wrong_number_of_outputs_is_one_line(tmp_path, capsys):
    blueprint = tmp_path / "two.json"
    blueprint.write_text(json.dumps([{"type": "fc", "name": "fc", "units": 2}]))
    argv = ["--dataset", "polynomial", "--loss", "mse", "--arch", str(blueprint)]
    assert main.main(["train", *argv, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "(2,)" in err and "one per target: (1,)" in err


def test_a_regression_set_is_split_at_random_not_by_its_target_values():
    changes = {"dataset": "polynomial", "loss": "mse", "val_size": 50, "limit": 200}
    config = dataclasses.replace(RECIPES["default"], **changes)
    data = prepare_data(config)
    assert len(data.y_val) == 50 and len(data.y_train) == 150
    # A split stratified by the float targets would take the 50 smallest values.
    assert data.y_val.max() > np.median(data.y_train)
