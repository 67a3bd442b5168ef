"""``python main.py quantize``: an int8 copy of a saved model."""

import os
import time

from core.commands.command import Command
from core.commands.options import add_data_dir, add_out, add_overwrite, add_params, positive_int


def add_arguments(parser):
    from core.compress.quantize import CALIBRATION

    add_params(parser, "the float model file (default: best_params.npz)")
    parser.add_argument(
        "--calibration",
        type=positive_int,
        default=None,
        metavar="N",
        help=f"training images that set the inputs' scales (default: {CALIBRATION}, or all "
        "of a smaller training set)",
    )
    add_out(parser, "the int8 model file (default: FILE.int8.npz)")
    add_overwrite(parser)
    add_data_dir(parser)


def run(args):
    from core.compress.quantize import CALIBRATION, quantize_file

    started = time.perf_counter()
    done = quantize_file(args.params, args.out, args.calibration, args.data_dir, args.overwrite)
    before, after = os.path.getsize(args.params), os.path.getsize(done.path)
    print(
        f"{args.params} -> {done.path}: {len(done.layers)} layers in int8 "
        f"({', '.join(done.layers)}), {len(done.folded)} batch norms folded into them, "
        f"input scales from {done.calibration} training images"
        + (" (all the training set has)" if args.calibration is None
           and done.calibration < CALIBRATION else "")  # fmt: skip
    )
    print(
        f"file size {before:,} -> {after:,} bytes ({100 * after / before:.1f}%), "
        f"{time.perf_counter() - started:.1f} s; "
        f"evaluate it with: python main.py evaluate --params {done.path}"
    )


COMMAND = Command(
    "quantize",
    "an int8 copy of a saved model (batch norm folded, weights per channel)",
    add_arguments,
    run,
    description="Post-training int8 quantization: batch norm folded into the conv or fc "
    "before it, weights symmetric int8 with one scale per output channel, each conv and "
    "fc input with one scale calibrated on training images. evaluate and predict run the "
    "int8 arithmetic of the file written.",
)
