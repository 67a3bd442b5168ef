"""The explain, attack and visualize commands and adversarial training, end to end: on the
shipped model (a mini-VGG) and on the Fashion-MNIST residual net, with their files, their
folders (never over another run's) and their one-line refusals."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_cli import scanned

import main
from core.compress.quantize import quantize_file
from data import load_mnist
from model.params_io import load_model

SHIPPED = "best_params.npz"
RESNET = "plot/fashion/fashion_params.npz"  # the Fashion-MNIST residual net


def run(argv, capsys):
    code = main.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_attack_writes_its_table_curve_and_examples_and_never_over_another_run(tmp_path, capsys):
    out = tmp_path / "attack"
    code, printed, _ = run(["attack", "--limit", "60", "--eps", "0,0.1,0.3", "--out", str(out)],
                           capsys)  # fmt: skip
    assert code == 0
    table = pd.read_csv(out / "attack.csv")
    assert list(table.columns) == ["method", "eps", "accuracy"]
    assert table["eps"].tolist() == [0.0, 0.1, 0.3] and set(table["method"]) == {"fgsm"}
    assert table["accuracy"].is_monotonic_decreasing and table["accuracy"][0] == 1.0
    assert {p.name for p in out.iterdir()} == {"attack.csv", "attack.png",
                                               "adversarial_examples.png"}  # fmt: skip
    assert "ε = 0.1" in printed and str(out) in printed
    before = (out / "attack.csv").read_bytes()
    code, printed, _ = run(["attack", "--limit", "20", "--method", "pgd", "--steps", "2",
                            "--eps", "0.2", "--out", str(out)], capsys)  # fmt: skip
    assert code == 0 and (out / "attack.csv").read_bytes() == before
    again = pd.read_csv(tmp_path / "attack-2" / "attack.csv")
    assert again["method"].tolist() == ["pgd"] and f"{out}-2" in printed


def test_attack_and_explain_default_to_a_folder_beside_the_model(tmp_path, capsys):
    model = tmp_path / "my_model.npz"
    model.write_bytes(Path(SHIPPED).read_bytes())
    assert run(["attack", "--params", str(model), "--limit", "10", "--eps", "0"], capsys)[0] == 0
    assert (tmp_path / "my_model-attack" / "attack.csv").exists()
    assert run(["explain", "--params", str(model), "--limit", "700"], capsys)[0] == 0
    table = pd.read_csv(tmp_path / "my_model-explain" / "explain.csv")
    assert (table["true"].astype(str) != table["predicted"].astype(str)).sum() >= 1  # a mistake
    assert (table["true"].astype(str) == table["predicted"].astype(str)).sum() == 4


def test_explain_a_drawn_digit_predicts_as_predict_does(tmp_path, capsys):
    mnist = load_mnist()
    path = tmp_path / "digit.png"
    scanned(mnist.x_test[0, 0]).save(path)
    code, printed, _ = run(["predict", str(path)], capsys)
    predicted = re.search(r": (\d)   top 3", printed).group(1)
    out = tmp_path / "explained"
    code, printed, _ = run(["explain", str(path), "--method", "saliency,smoothgrad,gradcam,occlusion",
                            "--out", str(out)], capsys)  # fmt: skip
    assert code == 0
    table = pd.read_csv(out / "explain.csv", dtype=str, keep_default_na=False)
    assert table["predicted"].tolist() == [predicted] and table["picture"].tolist() == [str(path)]
    assert {"explain.png", "explain_1.png"} <= {p.name for p in out.iterdir()}
    assert "Grad-CAM of layer relu4" in printed


@pytest.mark.slow
def test_explain_attack_and_visualize_work_on_a_residual_net(tmp_path, capsys):
    code, printed, _ = run(["explain", "--params", RESNET, "--limit", "300",
                            "--out", str(tmp_path / "e")], capsys)  # fmt: skip
    assert code == 0 and "Grad-CAM of layer relu" in printed
    code, _, _ = run(["attack", "--params", RESNET, "--limit", "40", "--method", "pgd",
                      "--steps", "2", "--eps", "0,0.05", "--out", str(tmp_path / "a")], capsys)  # fmt: skip
    table = pd.read_csv(tmp_path / "a" / "attack.csv")
    assert code == 0 and table["accuracy"][1] <= table["accuracy"][0]
    code, printed, _ = run(["visualize", "--params", RESNET, "--limit", "200",
                            "--out", str(tmp_path / "v")], capsys)  # fmt: skip
    assert code == 0
    files = {p.name for p in (tmp_path / "v").iterdir()}
    assert {"class_models.png", "class_models.csv", "filters.png", "top_activations.csv"} <= files
    top = pd.read_csv(tmp_path / "v" / "top_activations.csv")
    assert top["test_index"].between(0, 199).all() and top["rank"].max() == 6


def test_visualize_one_class_or_one_layer(tmp_path, capsys):
    code, printed, _ = run(["visualize", "--class", "3", "--out", str(tmp_path / "c")], capsys)
    assert code == 0 and {p.name for p in (tmp_path / "c").iterdir()} == {
        "class_models.png", "class_models.csv"}  # fmt: skip
    table = pd.read_csv(tmp_path / "c" / "class_models.csv")
    assert table["class"].tolist() == [3] and table["probability"][0] > 0.9
    code, _, _ = run(["visualize", "--layer", "conv1", "--limit", "100",
                      "--out", str(tmp_path / "l")], capsys)  # fmt: skip
    top = pd.read_csv(tmp_path / "l" / "top_activations.csv")
    assert code == 0 and set(top["layer"]) == {"conv1"} and top["channel"].nunique() == 16


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["visualize", "--layer", "fc5"], "--layer fc5: choose a layer that makes maps"),
        (["explain", "--layer", "nope"], "--layer nope: choose a layer that makes maps"),
        (["visualize", "--class", "10"], "--class must be between 0 and 9"),
        (["explain", "missing.png"], "digit image 'missing.png': no such file"),
        (["attack", "--eps", "0.5,7"], "--eps: each budget must be in [0, 1]"),
        (["explain", "--method", "lime"], "--method: must be comma-separated methods"),
        (
            ["train", "--dataset", "spiral", "--adversarial", "fgsm"],
            "not a classification set of pictures",
        ),
    ],
)
def test_bad_requests_are_one_line_errors(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(Path(main.__file__).parent)
    argv = [*argv, "--out", str(tmp_path / "out")] if argv[0] != "train" else [
        *argv, "--out", str(tmp_path / "run")]  # fmt: skip
    code = None
    try:
        code = main.main(argv)
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err
    assert code not in (0, None) and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_quantized_model_is_refused_by_the_gradient_tools(tmp_path, capsys):
    int8 = quantize_file(SHIPPED, tmp_path / "int8.npz", calibration=100).path
    for command in ("explain", "attack", "visualize"):
        code = main.main([command, "--params", str(int8), "--out", str(tmp_path / command)])
        err = capsys.readouterr().err
        assert code != 0 and "a quantized (int8) model" in err and "float model" in err


def adversarial_run(tmp_path, name, *extra):
    argv = ["train", "--dataset", "digits", "--arch", "minivgg", "--epochs", "2",
            "--batch-size", "32", "--out", str(tmp_path / name), *extra]  # fmt: skip
    assert main.main(argv) == 0
    return load_model(tmp_path / name / "best_params.npz")


@pytest.mark.slow
def test_adversarial_training_is_repeatable_and_more_robust(tmp_path, capsys):
    first = adversarial_run(tmp_path, "a", "--adversarial", "fgsm", "--adv-eps", "0.2")
    again = adversarial_run(tmp_path, "b", "--adversarial", "fgsm", "--adv-eps", "0.2")
    plain = adversarial_run(tmp_path, "c")
    for key, value in first.params.items():
        assert np.array_equal(value, again.params[key]), key
    assert any(not np.array_equal(v, plain.params[k]) for k, v in first.params.items())
    assert first.meta["config"]["adversarial"] == "fgsm" and first.meta["config"]["adv_eps"] == 0.2
    capsys.readouterr()
    accuracy = {}
    for name in ("a", "c"):
        out = tmp_path / f"{name}-attack"
        main.main(["attack", "--params", str(tmp_path / name / "best_params.npz"), "--eps", "0.2",
                   "--out", str(out)])  # fmt: skip
        accuracy[name] = pd.read_csv(out / "attack.csv")["accuracy"][0]
    assert accuracy["a"] > accuracy["c"]
