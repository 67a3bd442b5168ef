"""``python main.py train``: train a model and evaluate it on the test set.

Its training options are generated from the TrainConfig fields (core/learn/config.py): the
option --batch-size of the field batch_size, its value of the field's type and check, its
help with the default. Not given, an option is None: the recipe of --preset decides.
"""

import argparse
import dataclasses
import time
from pathlib import Path

from core.commands.command import Command
from core.commands.options import add_device, number_parser
from core.learn.config import RECIPES, TrainConfig, value_type, with_settings


def option_name(field):
    """The command-line option of a TrainConfig field: ``weight_decay`` -> ``--weight-decay``."""
    return "--" + field.name.replace("_", "-")


def add_config_option(parser, field):
    """The option of one TrainConfig field, with its type, check, choices and help."""
    help = field.metadata["help"]
    if value_type(field) is bool:
        shown = option_name(field) if field.default else f"--no-{option_name(field)[2:]}"
        parser.add_argument(option_name(field), action=argparse.BooleanOptionalAction,
                            default=None, help=f"{help} (default: {shown})")  # fmt: skip
        return
    number = field.metadata["number"]
    parser.add_argument(
        option_name(field),
        type=None if number is None else number_parser(number),
        choices=field.metadata["choices"],
        metavar=field.metadata["metavar"],
        help=help if field.default is None else f"{help} (default: {shown_default(field)})",
    )


def shown_default(field):
    """A field's default as its help shows it: 0.002, 0 (not 0.0), mnist."""
    return f"{field.default:g}" if isinstance(field.default, float) else field.default


def add_arguments(parser):
    parser.add_argument(
        "--preset",
        choices=sorted(RECIPES),
        default="default",
        help="a named recipe; the options below override it (default: %(default)s); with "
        "--resume it only names the default --out",
    )
    for field in dataclasses.fields(TrainConfig):
        add_config_option(parser, field)
    add_device(parser)  # where the run computes, not what it computes: not a TrainConfig field
    parser.add_argument(
        "--out",
        type=Path,
        help="run folder for the parameters, log and figures (default: runs/<preset>, with "
        "-<dataset> and -<arch> where they are not the preset's; a new run takes the next free "
        "name, -2, -3, ...; --resume the latest of them)",
    )
    again = parser.add_mutually_exclusive_group()
    again.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its checkpoint, with its settings; only --epochs "
        "may change, to extend the run (a cosine or step schedule is then planned anew over "
        "the new total)",
    )
    again.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run already in --out (refused otherwise)",
    )


def given_options(args):
    """The training settings the user gave on the command line, {TrainConfig field: value}."""
    return {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(TrainConfig)
        if getattr(args, f.name, None) is not None
    }


def train_config(args):
    """The recipe named by --preset, with every option the user gave on top."""
    return with_settings(RECIPES[args.preset], given_options(args))


def run_name(args):
    """The default run folder's name: the preset, then the dataset and the architecture where
    the options change them (``default-digits``, ``best-fashion-mnist-resnet``)."""
    recipe, given = RECIPES[args.preset], given_options(args)
    parts = [args.preset]
    if given.get("dataset", recipe.dataset) != recipe.dataset:
        parts.append(given["dataset"])
    if given.get("arch", recipe.arch) != recipe.arch:
        parts.append(Path(given["arch"]).stem)  # a blueprint file by its name
    return "-".join(parts)


def run_folder(args):
    """(folder, note): --out, or the default ``runs/<run_name>``: for a new run the first of
    it, -2, -3, ... that holds nothing (so no run is refused or replaced), for --resume the
    latest; the note says which, or is None."""
    from core.learn.runs import free_run_folder, latest_run_folder

    if args.out is not None:
        return args.out, None
    wanted = Path("runs") / run_name(args)
    if args.resume:
        out = latest_run_folder(wanted)
        return out, f"continuing the run in {out}"
    if args.overwrite:
        return wanted, None
    out = free_run_folder(wanted)
    return out, None if out == wanted else f"{wanted} holds a run already: this one goes to {out}"


def warmup_note(args, config):
    """None, or the line that says the preset's warm-up was cut to fit a shorter run."""
    preset = RECIPES[args.preset].warmup_epochs
    if config.warmup_epochs == preset or args.warmup_epochs is not None:
        return None
    epochs = "epoch" if preset == 1 else "epochs"
    return (f"--preset {args.preset}'s warm-up of {preset:g} {epochs} is cut to "
            f"{config.warmup_epochs:g}, half of --epochs {config.epochs}")  # fmt: skip


def run(args):
    from core.learn.train import train
    from core.progress import AUGMENTATION_FIGURE, AUGMENTATIONS, Progress
    from core.report import (
        FIGURE_FILES,
        evaluate,
        evaluate_regression,
        is_regression,
        load_test_set,
        model_caption,
        write_figures,
    )

    out, folder_note = run_folder(args)
    started = time.perf_counter()
    if args.resume:  # the checkpoint's settings, with the options given checked against them
        report = Progress(notes=[folder_note] if folder_note else [])
        model, log = train(None, out, resume=True, changes=given_options(args), report=report,
                           device=args.device)  # fmt: skip
    else:
        config = train_config(args)
        notes = [note for note in (folder_note, warmup_note(args, config)) if note]
        writes = [AUGMENTATION_FIGURE, *(f"figures/{name}" for name in FIGURE_FILES)]
        model, log = train(config, out, overwrite=args.overwrite, report=Progress(notes=notes),
                           writes=writes, device=args.device)  # fmt: skip
    data_dir = model.meta["config"]["data_dir"] if args.data_dir is None else args.data_dir
    x_test, y_test, raw = load_test_set(model.meta, data_dir)
    regression = is_regression(model.meta)
    evaluation = (evaluate_regression if regression else evaluate)(model, x_test, y_test)
    figures = write_figures(
        model, evaluation, raw, y_test, out / "figures", model_caption(model), log
    )
    if any(model.meta["config"][field] for field in AUGMENTATIONS):  # drawn before training
        figures.append(out / AUGMENTATION_FIGURE)
    minutes = (time.perf_counter() - started) / 60
    if regression:
        score = f"test MSE {evaluation.mse:.4f}, R^2 {evaluation.r2:.4f} ({len(y_test)} points)"
    else:
        score = (
            f"test accuracy {100 * evaluation.accuracy:.2f}% ({evaluation.n_errors} errors in "
            f"{len(y_test)} test images)"
        )
    print(f"\n{score}, best epoch {model.meta['epoch']}, {minutes:.1f} min in all")
    print(
        f"files in {out}: best_params.npz, checkpoint.npz, log.csv, figures/ ({len(figures)} figures)"
    )


COMMAND = Command(
    "train",
    "train a model",
    add_arguments,
    run,
    description="Train a model and evaluate it on the test set.",
)
