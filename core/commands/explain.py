"""``python main.py explain``: which pixels a prediction rests on, by saliency, SmoothGrad,
Grad-CAM and occlusion."""

import argparse
from pathlib import Path

from core.commands.command import Command
from core.commands.options import add_limit, add_model_options, add_seed

DEFAULT_METHODS = ["saliency", "gradcam", "occlusion"]  # SmoothGrad is 25 times saliency's work


def method_list(text):
    """Comma-separated explanation methods, each one of core.inside.explain.EXPLAIN_METHODS."""
    from core.inside.explain import EXPLAIN_METHODS

    methods = [m.strip() for m in text.split(",")]
    if not all(m in EXPLAIN_METHODS for m in methods):
        raise argparse.ArgumentTypeError(
            f"must be comma-separated methods of {', '.join(EXPLAIN_METHODS)}, got {text!r}"
        )
    return list(dict.fromkeys(methods))


def add_arguments(parser):
    from core.inside.explain import EXPLAIN_METHODS

    parser.add_argument(
        "images", nargs="*", type=Path,
        help="PNG or JPEG pictures of one digit each (default: test images)",
    )  # fmt: skip
    parser.add_argument(
        "--method",
        type=method_list,
        default=DEFAULT_METHODS,
        help=f"comma-separated, of {', '.join(EXPLAIN_METHODS)} (default: {','.join(DEFAULT_METHODS)})",
    )
    parser.add_argument("--layer", help="Grad-CAM's layer, named as in summary (default: the "
                        "last map before pooling or flattening)")  # fmt: skip
    add_seed(parser, "SmoothGrad's noise")
    add_limit(parser, "without pictures: choose among the first N test images")
    add_model_options(parser, "explain")


def run(args):
    from core.inside.runs import run_explain

    run_explain(args.params, args.images, args.method, args.layer, args.seed, args.limit,
                args.data_dir, args.out)  # fmt: skip


COMMAND = Command(
    "explain",
    "which pixels a prediction rests on: saliency, SmoothGrad, Grad-CAM, occlusion",
    add_arguments,
    run,
    description="For each picture: the prepared input and its top 3, and a map of what "
    "the predicted class rests on, by each method. Without pictures: the first test "
    "images the model gets right and the first it gets wrong. Writes explain.csv and "
    "figures into a new folder.",
)
