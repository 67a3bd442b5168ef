"""``python main.py sweep``: the same training over a grid of settings and several seeds, in
parallel processes or on a Dask cluster (core/experiments/sweep.py)."""

import argparse
from pathlib import Path

from core.commands.command import Command
from core.commands.options import add_out, number_parser, positive_float, positive_int
from core.learn.config import FIELDS, RECIPES


def field_parser(name):
    """The argparse ``type=`` of the TrainConfig field ``name``, as train's option has it."""
    return number_parser(FIELDS[name].metadata["number"])


def limit_or_all(text):
    """A number of training images, as train's --limit takes it, or "all" (None: every one)."""
    return None if text == "all" else field_parser("limit")(text)


def positive_float_list(text):
    """Comma-separated finite numbers > 0; returns ``text`` unchanged (the sweep splits it)."""
    for item in text.split(","):
        try:
            positive_float(item)
        except (ValueError, argparse.ArgumentTypeError):
            raise argparse.ArgumentTypeError(
                f"must be comma-separated finite numbers > 0, got {text!r}"
            ) from None
    return text


def add_grid_arguments(parser):
    """The options that make the grid: --set, or --optimizers and --lrs; and --seeds."""
    from core.experiments.sweep import DEFAULT_OPTIMIZERS
    from model.blueprints import ACTIVATIONS

    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=V1,V2",
        help="a setting to vary: any training option (optimizer, lr, arch, epochs, batch_size, "
        f"...; - or _) or activation ({', '.join(ACTIVATIONS)}: swapped for every activation "
        "layer of the architecture); repeat for a grid, e.g. --set optimizer=sgd,adam "
        "--set lr=0.01,0.002; an optimizer varied without lr runs at its usual rate",
    )
    parser.add_argument(
        "--optimizers",
        default=None,
        help="comma-separated, each at its usual rate or at --lrs (default without --set: "
        f"{','.join(DEFAULT_OPTIMIZERS)})",
    )
    parser.add_argument(
        "--lrs",
        type=positive_float_list,
        default=None,
        help="comma-separated learning rates, one per optimizer (default: each one's usual rate)",
    )
    parser.add_argument(
        "--seeds",
        type=positive_int,
        default=3,
        help="runs per configuration, seeds 0 to N-1 (default: %(default)s)",
    )


def add_arguments(parser):
    from core.experiments.sweep import QUICK

    add_grid_arguments(parser)
    parser.add_argument(
        "--preset",
        choices=sorted(RECIPES),
        help="the named training recipe every run starts from, with its architecture, epochs "
        "and all its images (default: the default recipe, cut short as below)",
    )
    parser.add_argument(
        "--dataset", help=f"dataset of every run (default: {RECIPES['default'].dataset})"
    )
    parser.add_argument("--data-dir", help="folder holding the dataset's files, on every worker")
    # not given: the preset's value, or the quick sweep's (core.experiments.sweep.QUICK)
    parser.add_argument("--arch", default=argparse.SUPPRESS,
                        help=f"architecture (default: {QUICK['arch']})")  # fmt: skip
    parser.add_argument("--epochs", type=field_parser("epochs"), default=argparse.SUPPRESS,
                        help=f"epochs per run (default: {QUICK['epochs']})")  # fmt: skip
    parser.add_argument(
        "--limit", type=limit_or_all, default=argparse.SUPPRESS,
        help=f"training images per run, or all (default: {QUICK['limit']})",
    )  # fmt: skip
    parser.add_argument(
        "--jobs", type=positive_int, default=None, help="parallel processes (default: all cores)"
    )
    parser.add_argument(
        "--scheduler",
        metavar="tcp://HOST:8786",
        help="run on the workers of this Dask scheduler instead of local processes (--out must "
        "then be a folder every worker reaches by the same path)",
    )
    add_out(parser, "folder for the tables, the figure and the runs' folders (default: "
            "%(default)s)", default=Path("runs/sweep"))  # fmt: skip


def run(args):
    from core.experiments.sweep import run_sweep

    run_sweep(args)


COMMAND = Command(
    "sweep",
    "the same training over a grid of settings and several seeds, in parallel",
    add_arguments,
    run,
    description="Train every combination of the --set values, once per seed, in parallel "
    "processes or on a Dask cluster; writes runs.csv (every run), summary.csv (mean and "
    "standard deviation of the test and validation accuracy per configuration), sweep.png "
    "and one folder per run. Started again with the same options, it skips the runs that "
    "finished.",
)
