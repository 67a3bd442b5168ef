"""The shipped best_params.npz: loads cleanly and keeps its promise on the MNIST test set."""

from pathlib import Path

import pytest

import main
from core.report import evaluate, load_test_set
from model.params_io import load_model

SHIPPED = Path(__file__).resolve().parent.parent / "best_params.npz"


@pytest.fixture(scope="module")
def shipped():
    return load_model(SHIPPED)


@pytest.mark.slow
def test_shipped_model_reaches_99_6_percent_on_the_full_test_set(shipped):
    x_test, y_test, _ = load_test_set(shipped.meta)
    assert len(y_test) == 10_000
    result = evaluate(shipped, x_test, y_test)
    assert result.accuracy >= 0.9960, f"test accuracy {result.accuracy:.4f} < 0.9960"


def test_shipped_model_describes_how_it_was_made(shipped):
    meta = shipped.meta
    assert meta["dataset"] == "mnist" and meta["input_shape"] == [1, 28, 28]
    assert meta["config"]["arch"].startswith("minivgg")
    assert isinstance(meta["seed"], int) and meta["val_acc"] > 0.99


@pytest.mark.slow
def test_evaluate_command_prints_the_shipped_accuracy(capsys, tmp_path):
    assert main.main(["evaluate", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "test accuracy 99." in printed and "precision" in printed
    assert (tmp_path / "confusion_matrix_test.png").stat().st_size > 0


FASHION = SHIPPED.parent / "plot" / "fashion" / "fashion_params.npz"


def test_the_fashion_model_file_holds_the_fashion_recipe_and_a_resnet():
    from core.learn.config import RECIPES, TrainConfig

    model = load_model(FASHION)
    assert model.meta["dataset"] == "fashion-mnist" and model.meta["input_shape"] == [1, 28, 28]
    assert TrainConfig(**model.meta["config"]) == RECIPES["fashion"]  # the preset reproduces it
    assert [spec["type"] for spec in model.blueprint].count("residual") == 6
    assert model.meta["val_acc"] > 0.94
