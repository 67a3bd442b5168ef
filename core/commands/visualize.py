"""``python main.py visualize``: what the network looks for: class models, the first layer's
filters, and the test images that most activate a layer's channels."""

from core.commands.command import Command
from core.commands.options import add_limit, add_model_options, add_seed, non_negative_int


def add_arguments(parser):
    parser.add_argument("--class", dest="classes", type=non_negative_int, action="append",
                        metavar="K", help="a class to visualize (may be repeated)")  # fmt: skip
    parser.add_argument("--layer", help="the layer whose channels' top test images are shown, "
                        "named as in summary")  # fmt: skip
    add_seed(parser, "the class models' start and jitter")
    add_limit(parser, "search the first N test images only (default: all)")
    add_model_options(parser, "visualize")


def run(args):
    from core.inside.runs import run_visualize

    run_visualize(args.params, args.classes, args.layer, args.seed, args.limit, args.data_dir,
                  args.out)  # fmt: skip


COMMAND = Command(
    "visualize",
    "what the network looks for: class models, first-layer filters, top activations",
    add_arguments,
    run,
    description="Class model visualization (gradient ascent on the input for a class "
    "score, with L2, jitter and blur), the first layer's filters, and, for a layer, the "
    "test images that most activate each of its channels. Without --class or --layer: "
    "all of them (every class; Grad-CAM's default layer). Writes figures and CSVs into a "
    "new folder.",
)
