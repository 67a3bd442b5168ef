"""The commands as records (core/commands/): a command is one module with one COMMAND record and
one line in the registry; the training options are generated from the TrainConfig fields, and
``sweep --set`` refuses a value by the same check, in the same words, as train's option."""

import dataclasses
import types

import pytest

import core.commands
import main
from core.commands.command import Command
from core.commands.options import positive_int
from core.commands.train import given_options, train_config
from core.learn.config import TrainConfig
from data.errors import UserError


def greet_arguments(parser):
    parser.add_argument("name")
    parser.add_argument("--times", type=positive_int, default=1)


def greet(args):
    if args.name == "nobody":
        raise UserError("greet: nobody is there to greet")
    for _ in range(args.times):
        print(f"hello, {args.name}")
    return 3 if args.name == "three" else None


# A command made up here, as its own module would define it: one record.
GREET = types.SimpleNamespace(
    COMMAND=Command("greet", "say hello to NAME", greet_arguments, greet, description="Greets.")
)


@pytest.fixture
def with_greet(monkeypatch):
    """The registry with the made-up command added: one line."""
    monkeypatch.setattr(core.commands, "COMMANDS", [*core.commands.COMMANDS, GREET.COMMAND])


def run(argv, capsys):
    """(exit status, stdout, stderr) of ``python main.py ARGV``, in-process."""
    try:
        code = main.main(argv)
    except SystemExit as stop:  # refused or answered (--help) by the option parser
        code = stop.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ---- a new command needs its record and one registry line -------------------------------


def test_a_made_up_command_is_parsed_and_run_through_main(with_greet, capsys):
    assert run(["greet", "world", "--times", "2"], capsys) == (
        0,
        "hello, world\nhello, world\n",
        "",
    )
    assert run(["greet", "three"], capsys)[0] == 3  # its exit status passes through
    code, out, err = run(["--help"], capsys)
    assert code == 0 and "greet" in out and "say hello to NAME" in out
    code, out, _ = run(["greet", "--help"], capsys)
    assert code == 0 and "Greets." in out and "--times" in out


def test_a_made_up_command_refuses_bad_input_in_one_line_exit_2(with_greet, capsys):
    code, out, err = run(["greet", "world", "--times", "0"], capsys)
    assert (code, out) == (2, "") and err.count("\n") == 1
    assert "argument --times: must be a whole number >= 1, got 0" in err
    code, out, err = run(["greet", "nobody"], capsys)
    assert (code, out, err) == (2, "", "error: greet: nobody is there to greet\n")
    with pytest.raises(UserError):
        main.main(["--debug", "greet", "nobody"])


def test_without_its_registry_line_the_command_does_not_exist(capsys):
    code, _, err = run(["greet", "world"], capsys)
    assert code == 2 and "invalid choice: 'greet'" in err


# ---- every registered command is on the command line ------------------------------------


def test_every_registered_command_is_listed_and_has_its_own_help(capsys):
    code, listing, _ = run(["--help"], capsys)
    assert code == 0
    for command in core.commands.COMMANDS:
        assert command.name in listing and command.help.split()[0] in listing
        code, out, _ = run([command.name, "--help"], capsys)
        assert code == 0 and out.startswith(f"usage: python main.py {command.name}")
        if command.description:
            assert command.description.split(".")[0][:40] in " ".join(out.split())


def test_command_names_are_unique():
    names = [command.name for command in core.commands.COMMANDS]
    assert len(names) == len(set(names)) == 13


# ---- the training options come from the TrainConfig fields ------------------------------


def test_train_help_names_every_field_with_its_help_and_default(capsys):
    code, out, _ = run(["train", "--help"], capsys)
    assert code == 0
    text = " ".join(out.split())  # argparse wraps the help
    for field in dataclasses.fields(TrainConfig):
        option = "--" + field.name.replace("_", "-")
        assert f"{option} " in out or f"{option}," in out, option
        assert " ".join(field.metadata["help"].split())[:30] in text, field.name
    assert "--no-augment" in out and "(default: 16)" in text and "(default: 0.002)" in text


def test_each_train_option_parses_to_its_fields_type():
    defaults = TrainConfig()
    for field in dataclasses.fields(TrainConfig):
        if field.default is None or field.type is bool:
            continue
        option = "--" + field.name.replace("_", "-")
        args = main.build_parser().parse_args(["train", option, str(field.default)])
        assert given_options(args) == {field.name: getattr(defaults, field.name)}
        assert type(given_options(args)[field.name]) is type(field.default), field.name


def test_options_not_given_leave_the_recipe_and_resume_gets_field_values():
    assert given_options(main.build_parser().parse_args(["train"])) == {}
    args = main.build_parser().parse_args(["train", "--resume", "--epochs", "7", "--no-flip"])
    assert given_options(args) == {"epochs": 7, "flip": False}
    assert train_config(args) == dataclasses.replace(TrainConfig(), epochs=7)


# ---- one check for train's options and sweep --set ---------------------------------------


@pytest.mark.parametrize(
    ("field", "text"),
    [("lr", "-1"), ("lr", "nan"), ("epochs", "0"), ("batch_size", "0"), ("erase", "1.5"),
     ("crop", "-2"), ("weight_decay", "inf"), ("patience", "0")],
)  # fmt: skip
def test_train_and_sweep_refuse_a_value_by_the_same_check_in_the_same_words(
    field, text, tmp_path, capsys
):
    option = "--" + field.replace("_", "-")
    code, _, err = run(["train", option, text], capsys)
    assert code == 2 and err.count("\n") == 1
    refused = err.split(f"argument {option}: ")[1].split(";")[0]
    assert refused.startswith("must be ") and refused.endswith(f", got {text}")

    out = tmp_path / "sweep"
    code, _, err = run(["sweep", "--set", f"{field}={text}", "--out", str(out)], capsys)
    assert code == 2 and err == f"error: --set {field}={text}: {field} {refused}\n"
    assert not out.exists()  # refused before anything is written


def test_sweep_options_of_training_fields_check_as_train_does(capsys):
    code, _, err = run(["sweep", "--epochs", "0"], capsys)
    assert code == 2 and "argument --epochs: must be a whole number >= 1, got 0" in err
    args = main.build_parser().parse_args(["sweep", "--limit", "all", "--epochs", "2"])
    assert (args.limit, args.epochs) == (None, 2)


# ---- choices and help lists are read from the registries --------------------------------


def test_help_lists_the_registries(capsys):
    from core.inside import attack, explain
    from core.learn.loss import LOSSES
    from core.learn.optim import OPTIMIZERS
    from core.learn.schedules import SCHEDULES
    from data.registry import DATASETS
    from model.blueprints import ACTIVATIONS, PRESETS

    wanted = {
        "train": [*DATASETS, *OPTIMIZERS, *SCHEDULES, *LOSSES, *PRESETS],
        "summary": list(PRESETS),
        "explain": list(explain.EXPLAIN_METHODS),
        "attack": list(attack.ATTACK_METHODS),
        "sweep": list(ACTIVATIONS),
    }
    for command, names in wanted.items():
        out = " ".join(run([command, "--help"], capsys)[1].split())
        for name in names:
            assert name in out, (command, name)


def test_a_method_added_to_its_registry_is_taken(monkeypatch, capsys):
    from core.inside import attack, explain

    monkeypatch.setattr(attack, "ATTACK_METHODS", (*attack.ATTACK_METHODS, "newattack"))
    monkeypatch.setattr(explain, "EXPLAIN_METHODS", (*explain.EXPLAIN_METHODS, "newmap"))
    assert main.build_parser().parse_args(["attack", "--method", "newattack"]).method == "newattack"
    args = main.build_parser().parse_args(["explain", "--method", "newmap,saliency"])
    assert args.method == ["newmap", "saliency"]
    assert "newmap" in run(["explain", "--help"], capsys)[1]
