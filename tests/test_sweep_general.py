"""General sweeps (core/experiments/sweep.py): --set over any training option and activation swaps,
typed values, one-line errors, unique folder names, and resuming from the run folders.

The runs are tiny: an MLP (plot/sweep_digits/mlp_digits.json) on 200 of the 8x8 digits for
one epoch, two at most per test.
"""

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest

import core.experiments.sweep
import main
from core.experiments.sweep import PlannedRun, parse_settings, plan_runs, sweep_axes
from core.learn.config import RECIPES, TrainConfig
from data.errors import UserError
from model.blueprints import ACTIVATIONS, load_blueprint, swap_activations, validate_blueprint

ROOT = Path(main.__file__).resolve().parent
MLP = str(ROOT / "plot" / "sweep_digits" / "mlp_digits.json")
TINY = ["--dataset", "digits", "--arch", MLP, "--limit", "200", "--epochs", "1", "--jobs", "1"]


def parsed(*argv):
    return main.build_parser().parse_args(["sweep", *argv])


# ---- the grid ------------------------------------------------------------------------------


def test_set_values_take_the_type_of_their_field():
    axes = parse_settings(
        ["lr=0.01,2e-3", "batch_size=8", "augment=true,no", "limit=none,300", "arch=wide"]
    )
    assert axes == [
        [{"lr": 0.01}, {"lr": 0.002}],
        [{"batch_size": 8}],
        [{"augment": True}, {"augment": False}],
        [{"limit": None}, {"limit": 300}],
        [{"arch": "wide"}],
    ]
    assert isinstance(axes[1][0]["batch_size"], int)


@pytest.mark.parametrize(
    ("item", "fragments"),
    [
        ("colour=red", ["unknown key 'colour'", "valid keys:", "optimizer", "activation"]),
        ("lr=fast", ["lr=fast", "a positive number"]),
        ("lr=nan", ["lr=nan", "a positive number"]),
        ("lr=-1", ["lr=-1", "must be a positive number, got -1"]),
        ("warmup_epochs=inf", ["warmup_epochs=inf", "a finite number >= 0"]),
        ("epochs=1.5", ["epochs=1.5", "a whole number"]),
        ("epochs=0", ["epochs=0", "a whole number >= 1"]),
        ("loss=hinge", ["loss=hinge", "cross_entropy", "mse"]),
        ("augment=maybe", ["augment=maybe", "true or false"]),
        ("activation=softplus", ["activation=softplus", "relu", "sigmoid"]),
        ("seed=1,2", ["--seeds"]),
        ("lr", ["KEY=VALUE"]),
        ("lr=0.1,", ["KEY=VALUE"]),
        ("lr=0.1,0.1", ["given twice"]),
    ],
)
def test_a_bad_set_is_one_user_error_naming_it(item, fragments):
    with pytest.raises(UserError) as info:
        parse_settings([item])
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_a_bad_set_on_the_command_line_is_one_line_exit_2(tmp_path, capsys):
    assert main.main(["sweep", "--set", "colour=red", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown key 'colour'" in err and "Traceback" not in err


def test_the_grid_is_the_product_and_optimizers_get_their_usual_rate():
    axes = sweep_axes(parsed("--set", "optimizer=sgd,adam", "--set", "activation=relu,tanh"))
    runs = plan_runs(axes, 2, RECIPES["default"])
    assert len(runs) == 2 * 2 * 2
    assert [r.varied for r in runs[::2]] == [
        {"optimizer": "sgd", "lr": 0.05, "activation": "relu"},
        {"optimizer": "sgd", "lr": 0.05, "activation": "tanh"},
        {"optimizer": "adam", "lr": 0.002, "activation": "relu"},
        {"optimizer": "adam", "lr": 0.002, "activation": "tanh"},
    ]
    assert [r.config.seed for r in runs[:2]] == [0, 1]
    assert runs[2].config.optimizer == "sgd" and runs[2].activation == "tanh"
    with_lr = plan_runs(sweep_axes(parsed("--set", "optimizer=sgd", "--set", "lr=0.3")), 1,
                        TrainConfig())  # fmt: skip
    assert with_lr[0].config.lr == 0.3


def test_the_old_options_still_make_their_grid():
    sweep = core.experiments.sweep
    assert [r.varied for r in plan_runs(sweep_axes(parsed()), 1, TrainConfig())] == [
        {"optimizer": o, "lr": sweep.USUAL_LR[o]} for o in sweep.DEFAULT_OPTIMIZERS
    ]
    paired = sweep_axes(parsed("--optimizers", "sgd,adam", "--lrs", "0.1,0.01"))
    assert paired == [[{"optimizer": "sgd", "lr": 0.1}, {"optimizer": "adam", "lr": 0.01}]]
    with pytest.raises(UserError, match="not both"):
        sweep_axes(parsed("--optimizers", "sgd", "--set", "lr=0.1"))
    with pytest.raises(UserError, match="--set optimizer=sgdd: optimizer must be one of"):
        plan_runs(sweep_axes(parsed("--set", "optimizer=sgdd")), 1, TrainConfig())


def test_a_preset_sweep_trains_the_recipe_as_it_is_once_per_seed():
    from core.experiments.sweep import sweep_base

    args = parsed("--preset", "best", "--seeds", "3")
    runs = plan_runs(sweep_axes(args), args.seeds, sweep_base(args))
    assert [r.config for r in runs] == [
        dataclasses.replace(RECIPES["best"], seed=seed) for seed in range(3)
    ]
    assert {r.varied["preset"] for r in runs} == {"best"}
    shortened = parsed("--preset", "best", "--epochs", "2", "--set", "lr=0.01,0.02")
    base = sweep_base(shortened)
    assert (base.arch, base.epochs, base.limit) == (RECIPES["best"].arch, 2, RECIPES["best"].limit)
    assert [r.config.lr for r in plan_runs(sweep_axes(shortened), 1, base)] == [0.01, 0.02]
    quick = sweep_base(parsed())
    assert (quick.arch, quick.epochs, quick.limit) == ("minivgg", 1, 5000)


def test_every_optimizer_has_a_usual_rate():
    from core.learn.optim import OPTIMIZERS

    assert set(core.experiments.sweep.USUAL_LR) == set(OPTIMIZERS)


def test_folder_names_are_safe_and_unique_per_configuration_and_seed():
    config = TrainConfig()
    settings = [{"arch": "a/b.json"}, {"arch": "a_b.json"}, {"arch": "a b.json"}, {"lr": 0.1}]
    names = [PlannedRun(config, None, s).folder for s in settings]
    names.append(PlannedRun(TrainConfig(seed=1), None, {"lr": 0.1}).folder)
    assert len(set(names)) == len(names)
    for name in names:
        assert all(c.isalnum() or c in "._=-" for c in name), name
    assert PlannedRun(config, None, {"lr": 0.1}).folder == names[3]  # the same run, same name


# ---- activation swaps ----------------------------------------------------------------------


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_swapping_activations_replaces_every_one_inside_residual_blocks_too(activation):
    _, blueprint = load_blueprint("resnet")
    swapped = validate_blueprint(swap_activations(blueprint, activation))

    def types(specs):
        for spec in specs:
            yield spec["type"]
            for key in ("body", "shortcut"):
                yield from types(spec.get(key) or [])

    before, after = list(types(blueprint)), list(types(swapped))
    assert len(before) == len(after)
    for old, new in zip(before, after, strict=True):
        assert new == (activation if old in ACTIVATIONS else old)
    assert before.count("relu") > 0


def test_a_blueprint_without_activations_cannot_be_swapped():
    with pytest.raises(UserError, match="no activation"):
        swap_activations([{"type": "flatten"}, {"type": "fc", "name": "fc", "units": 2}], "relu")


# ---- runs, tables, resuming ----------------------------------------------------------------


@pytest.mark.slow
def test_activation_sweep_trains_the_variant_and_resumes_from_disk(tmp_path, monkeypatch, capsys):
    argv = ["sweep", *TINY, "--seeds", "1", "--set", "activation=relu,tanh", "--out", str(tmp_path)]
    assert main.main(argv) == 0
    out = capsys.readouterr().out
    assert "test accuracy %" in out and "validation accuracy %" in out
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert list(runs.columns) == ["config", "activation", "seed", "val_acc", "test_acc"]
    assert list(runs["activation"]) == ["relu", "tanh"]
    for row in runs.itertuples():
        folder = next(tmp_path.glob(f"activation-{row.activation}_*_seed0"))
        kinds = {s["type"] for s in json.loads((folder / "blueprint.json").read_text())}
        assert row.activation in kinds and not (set(ACTIVATIONS) - {row.activation}) & kinds
        result = json.loads((folder / "result.json").read_text())
        assert result["row"]["test_acc"] == row.test_acc
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert list(summary["n"]) == [1, 1] and list(summary["test_std"]) == [0.0, 0.0]

    # a rerun runs nothing and rebuilds the same table
    monkeypatch.setattr(core.experiments.sweep, "one_run", pytest.fail)
    assert main.main(argv) == 0
    assert "2 finished already" in capsys.readouterr().out
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "runs.csv"), runs)

    # a run without its result (killed half-way) is run again, from scratch, to the same numbers
    tanh = next(tmp_path.glob("activation-tanh_*_seed0"))
    (tanh / "result.json").unlink()
    (tanh / "checkpoint.npz").write_bytes(b"half a file")
    monkeypatch.undo()
    assert main.main(argv) == 0
    assert "1 finished already" in capsys.readouterr().out
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "runs.csv"), runs)


@pytest.mark.slow
def test_a_result_of_other_settings_is_not_reused(tmp_path, capsys):
    argv = ["sweep", *TINY, "--seeds", "1", "--set", "optimizer=adam", "--out", str(tmp_path)]
    assert main.main(argv) == 0
    assert main.main([*argv, "--set", "batch_size=32"]) == 0  # other folders: nothing shared
    argv[argv.index("--limit") + 1] = "300"  # same folder, other settings: run again
    assert main.main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("0 finished already") == 3
    folder = next(tmp_path.glob("optimizer-adam_*_seed0"))
    assert json.loads((folder / "result.json").read_text())["config"]["limit"] == 300
