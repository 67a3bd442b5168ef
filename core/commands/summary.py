"""``python main.py summary``: the layer table of an architecture or of a model file."""

from pathlib import Path

from core.commands.command import Command
from core.commands.options import positive_int


def add_arguments(parser):
    from model.blueprints import PRESETS

    shown = parser.add_mutually_exclusive_group()
    shown.add_argument(
        "--arch",
        default="minivgg",
        help=f"a preset ({', '.join(PRESETS)}) or a blueprint .json file (default: %(default)s)",
    )
    shown.add_argument(
        "--params",
        type=Path,
        help="a model file: its layers, input shape and each layer's share of zero weights "
        "(a pruned model's sparsity)",
    )
    parser.add_argument(
        "--input-shape",
        default="1x28x28",
        help="one example's shape, e.g. 1x28x28 or 2 (default: %(default)s)",
    )
    parser.add_argument(
        "--classes", type=positive_int, default=10, help="number of classes (default: %(default)s)"
    )


def run(args):
    from core.learn.model_file import load_model
    from data.errors import UserError
    from model.blueprints import load_blueprint
    from model.summary import format_summary

    try:
        shape = tuple(int(s) for s in args.input_shape.lower().split("x"))
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        raise UserError(f"--input-shape must look like 1x28x28 or 2, got {args.input_shape!r}")
    if args.params is not None:
        model = load_model(args.params)
        shape = tuple(model.meta["input_shape"])
        print(format_summary(model.blueprint, shape, str(args.params), model.params))
        if pruned := model.meta.get("pruned"):
            print(f"pruned to sparsity {pruned['sparsity']:g}: {pruned['zero_weights']:,} of "
                  f"{pruned['prunable_weights']:,} conv and fc weights are zero")  # fmt: skip
        return
    name, blueprint = load_blueprint(args.arch, args.classes)
    print(format_summary(blueprint, shape, name))


COMMAND = Command(
    "summary",
    "the layer table of an architecture or model file",
    add_arguments,
    run,
    description="The table of an architecture's layers: each one's output shape and number "
    "of parameters, derived from the input shape; for a model file, also each layer's "
    "share of zero weights.",
)
