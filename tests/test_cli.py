"""End-to-end tests of the command line (main.py): help, summary, gradcheck, evaluate, predict,
sweep.

The commands run in-process through ``main.main(argv)``; one test runs ``python main.py`` itself
to check the script's real exit status and streams. The model they use is trained once for the
module, on 3000 MNIST images for one epoch.
"""

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import main
from core.commands import options
from core.commands.sweep import positive_float_list
from core.learn.config import NON_NEGATIVE_FLOAT, RECIPES, TrainConfig
from core.learn.eval import predict_proba
from core.learn.train import train
from core.report import evaluation_dir, model_inputs
from data import load_mnist
from model.params_io import load_model

ROOT = Path(main.__file__).resolve().parent

TRAIN_OPTIONS = [
    "--" + field.name.replace("_", "-") for field in dataclasses.fields(TrainConfig)
] + ["--no-augment", "--preset", "--out", "--resume", "--overwrite"]
OPTIONS = {
    None: [
        "--debug",
        "--threads",
        "train",
        "evaluate",
        "predict",
        "quantize",
        "summary",
        "prune",
        "gradcheck",
        "sweep",
        "explain",
        "attack",
        "visualize",
    ],
    "train": TRAIN_OPTIONS,
    "explain": [
        "images",
        "--params",
        "--method",
        "--layer",
        "--seed",
        "--limit",
        "--data-dir",
        "--out",
    ],
    "attack": [
        "--params",
        "--method",
        "--eps",
        "--steps",
        "--step-size",
        "--seed",
        "--limit",
        "--data-dir",
        "--out",
    ],
    "visualize": ["--params", "--class", "--layer", "--seed", "--limit", "--data-dir", "--out"],
    "evaluate": ["--params", "--data-dir", "--split", "--out"],
    "predict": ["PICTURE", "--params", "--show"],
    "quantize": ["--params", "--calibration", "--out", "--overwrite", "--data-dir"],
    "summary": ["--arch", "--params", "--input-shape", "--classes"],
    "prune": [
        "--params",
        "--sparsity",
        "--finetune-epochs",
        "--lr",
        "--data-dir",
        "--out",
        "--overwrite",
    ],
    "gradcheck": ["--help"],
    "sweep": [
        "--optimizers",
        "--lrs",
        "--seeds",
        "--arch",
        "--epochs",
        "--limit",
        "--jobs",
        "--out",
    ],
}


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """best_params.npz of a quick run: 3000 MNIST images, one epoch of the default recipe."""
    out = tmp_path_factory.mktemp("model")
    config = dataclasses.replace(RECIPES["default"], limit=3000, epochs=1)
    train(config, out)
    return out / "best_params.npz"


@pytest.fixture(scope="module")
def mnist():
    return load_mnist()


def scanned(image28):
    """An MNIST digit made to look like a scan: dark ink on white paper, 8x larger, margins."""
    ink_on_paper = Image.fromarray(255 - image28).resize((224, 224), Image.Resampling.BILINEAR)
    page = Image.new("L", (320, 300), color=255)
    page.paste(ink_on_paper, (60, 30))
    return page


@pytest.mark.parametrize("command", list(OPTIONS))
def test_help_exits_0_and_mentions_every_option(command, capsys):
    argv = ["--help"] if command is None else [command, "--help"]
    with pytest.raises(SystemExit) as exited:
        main.main(argv)
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for option in OPTIONS[command]:
        assert option in out, option


def test_summary_of_minivgg_totals_218490_parameters(capsys):
    assert main.main(["summary", "--arch", "minivgg"]) == 0
    out = capsys.readouterr().out
    for layer in ["conv1", "conv2", "conv3", "conv4", "fc5", "fc6"]:
        assert layer in out
    # conv 1*9*16+16 + 16*9*16+16 + 16*9*32+32 + 32*9*32+32, fc 32*7*7*128+128 + 128*10+10
    assert "total parameters: 218,490" in out


def test_summary_of_a_multilayer_perceptron_on_2d_points(capsys):
    assert main.main(["summary", "--arch", "mlp", "--input-shape", "2"]) == 0
    # 2*64+64 + 64*64+64 + 64*10+10 (10 classes by default)
    assert "total parameters: 5,002" in capsys.readouterr().out


def test_gradcheck_prints_its_table_and_passes(capsys):
    assert main.main(["gradcheck"]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0].split()
    assert header[0] == "layer" and header[-1] == "ok"
    passed = re.search(r"^(\d+) of (\d+) checks passed", out, re.MULTILINE)
    assert passed and passed[1] == passed[2] and int(passed[1]) >= 10


@pytest.mark.slow
def test_evaluate_prints_accuracy_and_per_class_table_and_writes_the_confusion_matrix(
    model_file, mnist, tmp_path, capsys
):
    assert main.main(["evaluate", "--params", str(model_file), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    found = re.search(r"^test accuracy ([\d.]+)% \((\d+) errors in 10000 images\)", out, re.M)
    assert found, out
    accuracy, errors = float(found[1]), int(found[2])
    assert accuracy > 90
    assert errors == round((100 - accuracy) * 100)
    rows = re.findall(r"^\s*(\d)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(\d+)$", out, re.M)
    assert [row[0] for row in rows] == [str(k) for k in range(10)]
    support = np.array([int(row[4]) for row in rows])
    np.testing.assert_array_equal(support, np.bincount(mnist.y_test, minlength=10))
    correct = sum(round(float(row[2]) * s) for row, s in zip(rows, support, strict=True))
    assert correct == 10_000 - errors  # recall * support, summed over the classes
    figure = Path(re.search(r"^confusion matrix: (.+)$", out, re.M)[1])
    assert figure.parent == tmp_path
    with Image.open(figure) as png:
        assert png.format == "PNG" and min(png.size) > 200


@pytest.mark.slow
def test_predict_reads_scanned_digits_and_prints_label_and_top_3(
    model_file, mnist, tmp_path, capsys
):
    model = load_model(model_file)
    x, y = mnist.x_test[:200], mnist.y_test[:200]
    probs = predict_proba(model.params, model.blueprint, model_inputs(x, model.meta))
    sure = np.flatnonzero((probs.argmax(axis=1) == y) & (probs.max(axis=1) > 0.99))
    # two clearly classified digits of different classes
    first = sure[0]
    second = next(i for i in sure if y[i] != y[first])
    paths = []
    for i in (first, second):
        paths.append(tmp_path / f"test{i}.png")
        scanned(x[i, 0]).save(paths[-1])

    argv = ["predict", *map(str, paths), "--params", str(model_file), "--show"]
    assert main.main(argv) == 0
    out = capsys.readouterr().out
    for i, path in zip((first, second), paths, strict=True):
        found = re.search(
            rf"^{re.escape(str(path))}: (\d)   top 3: "
            r"(\d) \(([\d.]+)%\), (\d) \(([\d.]+)%\), (\d) \(([\d.]+)%\)$",
            out,
            re.M,
        )
        assert found, out
        label, *ranked = found.groups()
        top3, percents = ranked[0::2], [float(p) for p in ranked[1::2]]
        assert label == top3[0] == str(y[i])
        assert len(set(top3)) == 3
        assert percents == sorted(percents, reverse=True) and sum(percents) <= 100.05
        prepared = path.with_name(f"test{i}.prepared.png")
        assert f"prepared image: {prepared}" in out
        with Image.open(prepared) as png:
            assert png.size == (28, 28) and png.mode == "L"


@pytest.mark.slow
def test_sweep_writes_runs_summary_and_figure(tmp_path, capsys):
    argv = ["sweep", "--optimizers", "sgd,adam", "--seeds", "2", "--limit", "300", "--epochs", "1"]
    # lenet5: each run tests on all 10000 test images, on one core; minivgg takes 5 times longer
    argv += ["--arch", "lenet5", "--jobs", "2", "--out", str(tmp_path)]
    assert main.main(argv) == 0
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert len(runs) == 4
    assert sorted(zip(runs["optimizer"], runs["seed"], strict=True)) == [
        ("adam", 0),
        ("adam", 1),
        ("sgd", 0),
        ("sgd", 1),
    ]
    assert runs["test_acc"].between(0, 1).all() and runs["val_acc"].between(0, 1).all()
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert list(summary.columns) == [
        "config", "optimizer", "lr", "n", "test_mean", "test_std", "val_mean", "val_std"
    ]  # fmt: skip
    assert len(summary) == 2 and list(summary["n"]) == [2, 2]
    for row in summary.itertuples():
        for split in ("test", "val"):
            a, b = runs.loc[runs["config"] == row.config, f"{split}_acc"]
            assert getattr(row, f"{split}_mean") == pytest.approx((a + b) / 2)
            # the sample std of two values
            assert getattr(row, f"{split}_std") == pytest.approx(abs(a - b) / np.sqrt(2))
    with Image.open(tmp_path / "sweep.png") as png:
        assert png.format == "PNG"
    assert "runs.csv, summary.csv, sweep.png" in capsys.readouterr().out


def test_the_script_itself_exits_0_and_prints_to_stdout_only():
    done = subprocess.run(
        [sys.executable, "main.py", "summary", "--arch", "minivgg"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert "total parameters: 218,490" in done.stdout


# ---- evaluate never writes over another model's figures ---------------------------------


def test_each_model_file_gets_its_own_evaluate_folder(tmp_path):
    a, b = tmp_path / "a" / "best_params.npz", tmp_path / "b" / "best_params.npz"
    assert evaluation_dir(a) != evaluation_dir(b)
    assert evaluation_dir(a) == evaluation_dir(tmp_path / "a" / ".." / "a" / "best_params.npz")
    assert evaluation_dir(a).parent == Path("runs/evaluate")
    assert evaluation_dir(a).name.startswith("best_params-")


@pytest.mark.slow
def test_evaluate_of_another_model_keeps_the_first_models_figure(
    model_file, mnist, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    first, second = tmp_path / "a" / "best_params.npz", tmp_path / "b" / "best_params.npz"
    for path in (first, second):
        path.parent.mkdir()
        path.write_bytes(model_file.read_bytes())
    figures = []
    for path in (first, second):
        assert main.main(["evaluate", "--params", str(path)]) == 0
        out = capsys.readouterr().out
        figures.append(Path(re.search(r"^confusion matrix: (.+)$", out, re.M)[1]))
        if len(figures) == 1:
            kept = figures[0].read_bytes()
    assert figures[0].parent != figures[1].parent
    assert figures[0].parent.parent == figures[1].parent.parent == Path("runs/evaluate")
    assert figures[0].read_bytes() == kept


# ---- numeric options: NaN, infinity and wrong signs are one line, exit 2 ----------------


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["train", "--warmup-epochs", "nan"], "--warmup-epochs"),
        (["train", "--warmup-epochs", "-1"], "--warmup-epochs"),
        (["train", "--weight-decay", "inf"], "--weight-decay"),
        (["train", "--weight-decay", "-0.01"], "--weight-decay"),
        (["train", "--seed", "-1"], "--seed"),
        (["train", "--seed", "1.5"], "--seed"),
        (["train", "--lr", "nan"], "--lr"),
        (["train", "--lr", "inf"], "--lr"),
        (["train", "--lr", "0"], "--lr"),
        (["train", "--clip-norm", "-inf"], "--clip-norm"),
        (["train", "--epochs", "nan"], "--epochs"),
        (["train", "--batch-size", "0"], "--batch-size"),
        (["train", "--limit", "inf"], "--limit"),
        (["train", "--patience", "-2"], "--patience"),
        (["--threads", "0", "summary"], "--threads"),
        (["--threads", "1000000", "summary"], "--threads"),
        (["summary", "--classes", "-3"], "--classes"),
        (["sweep", "--lrs", "0.1,nan"], "--lrs"),
        (["sweep", "--lrs", "0.1,-1"], "--lrs"),
        (["sweep", "--seeds", "0"], "--seeds"),
        (["sweep", "--jobs", "nan"], "--jobs"),
        (["sweep", "--epochs", "-1"], "--epochs"),
        (["sweep", "--limit", "1e9"], "--limit"),
    ],
)
def test_a_bad_number_is_one_line_naming_the_option(argv, option, capsys):
    with pytest.raises(SystemExit) as info:
        main.main(argv)
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: ") and f"argument {option}:" in lines[0]
    assert "Traceback" not in captured.err


@pytest.mark.parametrize(
    ("function", "text", "value"),
    [
        (options.positive_int, "3", 3),
        (options.non_negative_int, "0", 0),
        (options.thread_count, "1024", 1024),
        (options.positive_float, "1e-3", 1e-3),
        (options.number_parser(NON_NEGATIVE_FLOAT), "0", 0.0),
        (positive_float_list, "0.1,0.01", "0.1,0.01"),
    ],
)
def test_good_numbers_pass(function, text, value):
    assert function(text) == value
