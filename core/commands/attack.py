"""``python main.py attack``: the accuracy of a model under adversarial attack (FGSM or PGD)
against the budget eps."""

import argparse

from core.commands.command import Command
from core.commands.options import (
    add_limit,
    add_model_options,
    add_seed,
    positive_float,
    positive_int,
)

DEFAULT_EPS = [0.0, 0.05, 0.1, 0.15, 0.2, 0.3]


def budget_list(text):
    """Comma-separated attack budgets in [0, 1], e.g. "0,0.1,0.3", in the order given."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be comma-separated numbers in [0, 1], got {text!r}"
        ) from None
    if not values or not all(0 <= v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"each budget must be in [0, 1], got {text!r}")
    return values


def add_arguments(parser):
    from core.inside.attack import ATTACK_METHODS

    parser.add_argument("--method", choices=ATTACK_METHODS, default="fgsm",
                        help="the attack (default: %(default)s)")  # fmt: skip
    parser.add_argument(
        "--eps",
        type=budget_list,
        default=DEFAULT_EPS,
        help="comma-separated budgets in [0, 1] "
        f"(default: {','.join(f'{eps:g}' for eps in DEFAULT_EPS)})",
    )
    parser.add_argument("--steps", type=positive_int, default=40,
                        help="PGD steps (default: %(default)s)")  # fmt: skip
    parser.add_argument("--step-size", type=positive_float, default=0.01,
                        help="PGD step, in pixels (default: %(default)s)")  # fmt: skip
    add_seed(parser, "PGD's random starts")
    add_limit(parser, "attack the first N test images only (default: all)")
    add_model_options(parser, "attack")


def run(args):
    from core.inside.attack import AttackSettings
    from core.inside.runs import run_attack

    settings = AttackSettings(args.method, args.steps, args.step_size, args.seed)
    run_attack(args.params, args.eps, settings, args.limit, args.data_dir, args.out)


COMMAND = Command(
    "attack",
    "accuracy under adversarial attack (FGSM or PGD) against the budget eps",
    add_arguments,
    run,
    description="Adversarial examples in an L-infinity ball of radius eps (pixels in "
    "[0, 1], before normalization; pictures clipped to [0, 1]), from the cross-entropy "
    "with the true label, the model in inference mode. FGSM: one signed step of eps. "
    "PGD: --steps signed steps of --step-size from a random start in the ball, projected "
    "back after each step. Writes attack.csv (method, eps, accuracy), attack.png and "
    "adversarial_examples.png into a new folder.",
)
