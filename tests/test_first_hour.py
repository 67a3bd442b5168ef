"""The traps of a newcomer's first hour: each one as the command a new user typed.

A short warm-up recipe with fewer epochs, run folders that never collide, the options checked
before the folder, advice that fits the command, options in any order, defaults that fit a
small dataset, figures that say what they show, and help for every command. The commands run
in-process through ``main.main(argv)``, in a temporary working folder, on the small digits set.
"""

import dataclasses
import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from PIL import Image

import main
from core.commands import COMMANDS
from core.experiments.ensemble import member_names
from core.experiments.sweep import format_summary, parse_settings, plan_runs
from core.learn.config import RECIPES, check_warmup, with_settings
from core.learn.train import Interrupted, Report, train
from core.plots import plot_feature_maps, plot_history
from core.serve.pictures import mosaic
from data import load_dataset
from data.errors import UserError

ROOT = Path(main.__file__).resolve().parent
QUICK = ["--dataset", "digits", "--epochs", "1", "--limit", "300"]  # a run of a second or two


def run_cli(argv, capsys):
    """(exit status, stdout, stderr) of ``python main.py *argv``, in-process."""
    try:
        code = main.main(list(map(str, argv)))
    except SystemExit as stop:  # argparse's refusals and --help
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(folder):
    """{path: bytes} of every file under ``folder``."""
    return {p: p.read_bytes() for p in Path(folder).rglob("*") if p.is_file()}


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """A fresh working folder, as a new clone's runs/ would be."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


# -- 1. a recipe's warm-up and a shorter run ----------------------------------------------------


@pytest.mark.parametrize("preset", ["best", "fashion"])
def test_a_preset_run_shorter_than_its_warm_up_halves_the_warm_up(preset):
    recipe = RECIPES[preset]
    assert recipe.warmup_epochs >= 1
    short = with_settings(recipe, {"epochs": 1})
    assert short.warmup_epochs == 0.5
    check_warmup(short)  # now it fits
    assert with_settings(recipe, {}) == recipe  # the full recipe is untouched
    assert with_settings(recipe, {"epochs": 2}).warmup_epochs == recipe.warmup_epochs


def test_a_warm_up_given_longer_than_the_run_is_refused_in_option_terms():
    given = with_settings(RECIPES["default"], {"epochs": 2, "warmup_epochs": 3})
    assert given.warmup_epochs == 3  # a value the user gave is never changed
    with pytest.raises(UserError, match=r"--warmup-epochs 3 must be shorter than --epochs 2"):
        check_warmup(given)


def test_train_preset_best_with_one_epoch_runs_and_says_the_warm_up_was_cut(in_tmp, capsys):
    code, out, err = run_cli(["train", "--preset", "best", *QUICK], capsys)
    assert code == 0, err
    assert "warm-up of 1 epoch is cut to 0.5" in out
    assert (in_tmp / "runs" / "best-digits" / "best_params.npz").exists()


def test_train_refuses_a_warm_up_as_long_as_the_run_before_writing_anything(in_tmp, capsys):
    code, _, err = run_cli(["train", *QUICK, "--epochs", "2", "--warmup-epochs", "3"], capsys)
    assert code == 2
    assert err.count("\n") == 1 and "--warmup-epochs 3 must be shorter than --epochs 2" in err
    assert not (in_tmp / "runs").exists()


def test_a_sweep_of_preset_best_with_one_epoch_plans_runs_that_fit():
    planned = plan_runs(parse_settings(["epochs=1,2"]), 1, RECIPES["best"])
    assert [(r.config.epochs, r.config.warmup_epochs) for r in planned] == [(1, 0.5), (2, 1)]
    with pytest.raises(UserError, match="--warmup-epochs 3 must be shorter than --epochs 2"):
        plan_runs(parse_settings(["epochs=2", "warmup_epochs=3"]), 1, RECIPES["default"])


# -- 2. run folders named after what they are, never colliding -----------------------------------


def test_the_default_run_folder_names_the_preset_dataset_and_architecture(in_tmp, capsys):
    for argv in (["train", *QUICK], ["train", *QUICK, "--arch", "minivgg_bn"]):
        assert run_cli(argv, capsys)[0] == 0
    assert sorted(p.name for p in (in_tmp / "runs").iterdir()) == [
        "default-digits",
        "default-digits-minivgg_bn",
    ]


def test_a_second_run_of_the_same_command_takes_the_next_free_folder(in_tmp, capsys):
    assert run_cli(["train", *QUICK], capsys)[0] == 0
    first = snapshot(in_tmp / "runs" / "default-digits")
    code, out, err = run_cli(["train", *QUICK], capsys)
    assert code == 0, err
    assert "runs/default-digits holds a run already: this one goes to runs/default-digits-2" in out
    assert (in_tmp / "runs" / "default-digits-2" / "best_params.npz").exists()
    assert snapshot(in_tmp / "runs" / "default-digits") == first  # nothing of it replaced


def test_resume_without_out_continues_the_latest_run_of_that_name(in_tmp, capsys):
    for _ in range(2):
        assert run_cli(["train", *QUICK], capsys)[0] == 0
    first = snapshot(in_tmp / "runs" / "default-digits")
    code, out, err = run_cli(["train", "--resume", *QUICK, "--epochs", "2"], capsys)
    assert code == 0, err
    assert "continuing the run in runs/default-digits-2" in out
    log = pd.read_csv(in_tmp / "runs" / "default-digits-2" / "log.csv")
    assert list(log["epoch"]) == [1, 2]
    assert snapshot(in_tmp / "runs" / "default-digits") == first


def test_resume_of_a_folder_without_a_run_says_so_in_one_line(in_tmp, capsys):
    code, _, err = run_cli(["train", "--resume", "--out", "nothing-here"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "nothing-here holds no run to resume (no checkpoint.npz)" in err


def test_an_out_that_holds_a_run_is_refused_with_the_command_that_continues_it(in_tmp, capsys):
    assert run_cli(["train", *QUICK, "--out", "mine"], capsys)[0] == 0
    before = snapshot(in_tmp / "mine")
    code, _, err = run_cli(["train", *QUICK, "--out", "mine"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "continue it with: python main.py train --resume --out mine" in err
    assert snapshot(in_tmp / "mine") == before


# -- 3. the options are checked before the folder ------------------------------------------------


@pytest.mark.parametrize(
    "bad, said",
    [
        (["--arch", "minivg"], "unknown architecture 'minivg'"),
        (["--dataset", "mnsit"], "invalid choice: 'mnsit'"),
        (["--optimizer", "adm"], "invalid choice: 'adm'"),
        (["--schedule", "cosin"], "invalid choice: 'cosin'"),
        (["--epochs", "2", "--warmup-epochs", "2"], "--warmup-epochs 2 must be shorter"),
    ],
)
def test_a_bad_option_is_the_error_even_when_the_folder_holds_a_run(in_tmp, capsys, bad, said):
    assert run_cli(["train", *QUICK, "--out", "mine"], capsys)[0] == 0
    before = snapshot(in_tmp / "mine")
    code, _, err = run_cli(["train", *QUICK, "--out", "mine", *bad], capsys)
    assert code == 2 and said in err and "holds a run" not in err
    assert snapshot(in_tmp / "mine") == before


# -- 4. advice that fits the command ---------------------------------------------------------------


def test_python_main_py_takes_the_training_options_without_the_word_train():
    args = main.parse(["--resume", "--out", "runs/x"])
    assert (args.command, args.resume, args.out) == ("train", True, Path("runs/x"))
    assert main.parse(["--threads", "2", "--epochs", "3"]).epochs == 3
    assert main.parse([]).command == "train"


def test_the_ctrl_c_message_gives_the_whole_command_that_continues_the_run(tmp_path):
    class CtrlC(Report):
        def batches(self, run, state, batches):
            for i, triple in enumerate(batches):
                if i == 2:
                    raise KeyboardInterrupt
                yield triple

    config = dataclasses.replace(RECIPES["default"], dataset="digits", limit=300, epochs=1)
    with pytest.raises(Interrupted) as stopped:
        train(config, tmp_path / "run", report=CtrlC())
    assert f"continue with: python main.py train --resume --out {tmp_path / 'run'}" in str(
        stopped.value
    )
    assert (tmp_path / "run" / "checkpoint.npz").exists()


# -- 5. option order ---------------------------------------------------------------------------


def test_the_global_options_are_taken_after_the_command_too():
    assert main.parse(["train", "--threads", "1"]).threads == 1
    assert main.parse(["evaluate", "--debug"]).debug is True
    assert main.parse(["--threads", "3", "evaluate"]).threads == 3  # before it, as before
    assert main.parse(["evaluate"]).debug is False and main.parse(["evaluate"]).threads is None


def test_a_mistyped_option_points_to_the_commands_help_and_the_nearest_option(capsys):
    code, _, err = run_cli(["train", "--epohcs", "3"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "python main.py train --help" in err and "did you mean --epochs?" in err


def test_predict_takes_the_picture_after_params(capsys):
    picture = ROOT / "docs" / "digit.png"
    code, out, err = run_cli(["predict", "--params", ROOT / "best_params.npz", picture], capsys)
    assert code == 0, err
    assert out.startswith(f"{picture}: 7")


def test_predict_of_a_folder_reads_every_picture_in_it(tmp_path, capsys):
    digit = Image.open(ROOT / "docs" / "digit.png")
    for name in ("a.png", "b.jpg"):
        digit.convert("L").save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not a picture")
    code, out, err = run_cli(["predict", tmp_path], capsys)
    assert code == 0, err
    assert [line.split(":")[0] for line in out.splitlines()] == [
        str(tmp_path / "a.png"),
        str(tmp_path / "b.jpg"),
    ]
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(["predict", tmp_path / "empty"], capsys)
    assert code == 2 and "a folder with no pictures" in err


def test_predict_without_a_picture_says_how_to_give_one(capsys):
    code, _, err = run_cli(["predict"], capsys)
    assert code == 2 and "give one or more pictures" in err


# -- 6. a default that fits a small training set -----------------------------------------------


def test_quantize_of_a_model_of_a_small_set_calibrates_on_all_it_has(in_tmp, capsys):
    n = len(load_dataset("spiral").x_train)
    assert n < 1000
    argv = ["train", "--dataset", "spiral", "--arch", "mlp", "--epochs", "1", "--out", "m"]
    assert run_cli(argv, capsys)[0] == 0
    code, out, err = run_cli(["quantize", "--params", "m/best_params.npz"], capsys)
    assert code == 0, err
    assert f"input scales from {n} training images (all the training set has)" in out
    code, _, err = run_cli(
        ["quantize", "--params", "m/best_params.npz", "--calibration", n + 1, "--overwrite"],
        capsys,
    )
    assert code == 2 and f"has only {n} images" in err  # a number given is not changed


# -- 7. figures that say what they show ------------------------------------------------------------


def test_train_counts_every_figure_it_wrote(in_tmp, capsys):
    code, out, _ = run_cli(["train", *QUICK, "--augment", "--out", "r"], capsys)
    assert code == 0
    written = sorted((in_tmp / "r" / "figures").glob("*.png"))
    assert "augmentation.png" in {p.name for p in written}
    assert f"figures/ ({len(written)} figures)" in out


def test_the_accuracy_axis_shows_no_tick_beyond_its_100_percent_line():
    log = pd.DataFrame({
        "epoch": [1, 2, 3], "train_loss": [0.3, 0.1, 0.05], "val_loss": [0.2, 0.1, 0.08],
        "train_acc": [0.98, 0.995, 1.0], "val_acc": [0.985, 0.994, 0.995],
    })  # fmt: skip
    fig = plot_history(log)
    ax = fig.axes[1]
    line = next(ln for ln in ax.get_lines() if ln.get_linestyle() == ":")
    floor = line.get_ydata()[0]  # the error drawn for 100 %
    low, high = sorted(ax.get_ylim())
    shown = [t for t in ax.get_yticks() if low <= t <= high]
    assert shown and min(shown) > floor  # every labelled accuracy is below 100 %
    plt.close(fig)


def test_the_last_layers_scores_are_named_by_their_classes():
    names = [f"c{i}" for i in range(10)]
    fig = plot_feature_maps([("fc1", np.arange(32.0)), ("fc2", np.arange(10.0))], class_names=names)
    last = fig.axes[-1]
    assert [t.get_text() for t in last.get_xticklabels()] == names
    assert last.get_xlabel() == "class (its score)"
    assert fig.axes[0].get_xlabel() == "unit"  # a hidden layer's units stay units
    plt.close(fig)


def test_a_vector_on_the_live_page_is_a_near_square_block():
    grid, tiles, _ = mosaic(np.arange(128.0))
    assert tiles == (11, 12) and grid.shape == (11, 12)


def test_visualize_says_how_many_channels_its_figure_shows(tmp_path):
    from core.inside.runs import write_top_activations
    from model.params_io import load_model

    model = load_model(ROOT / "best_params.npz")
    ds = load_dataset("mnist")
    pixels = ds.x_test[:40].astype(np.float32) / 255
    said = []
    write_top_activations(model, pixels, ds.y_test[:40], "relu4", tmp_path, said.append)
    channels = int(re.search(r"each of its (\d+) channels", said[0]).group(1))
    assert channels > 16 and "the figure shows the first 16" in said[0]


def test_a_sweep_of_one_seed_shows_no_spread():
    summary = pd.DataFrame({
        "config": ["a", "b"], "n": [1, 3], "test_mean": [0.99, 0.98], "test_std": [0.0, 0.01],
        "val_mean": [0.985, 0.975], "val_std": [0.0, 0.02],
    })  # fmt: skip
    text = format_summary(summary)
    assert "99.00 " in text and "99.00 ±" not in text and "98.00 ± 1.00" in text


def test_ensemble_members_are_told_apart_by_their_folders():
    paths = [Path(f"plot/ensemble/seed{i}/best_params.npz") for i in range(3)]
    assert member_names(paths) == [f"seed{i}/best_params.npz" for i in range(3)]
    assert member_names([Path("a.npz"), Path("b.npz")]) == ["a.npz", "b.npz"]


# -- 8. help ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [c.name for c in COMMANDS])
def test_every_command_has_a_description_and_shows_no_path_of_this_machine(command, capsys):
    code, out, _ = run_cli([command, "--help"], capsys)
    assert code == 0
    described = next(c.description for c in COMMANDS if c.name == command)
    assert described and described.split()[0] in out
    assert str(ROOT) not in "".join(out.split())  # argparse wraps a long default anywhere
