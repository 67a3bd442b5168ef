"""``python main.py export``: a saved model as an ONNX file, checked by ONNX Runtime."""

import os
import time

from core.commands.command import Command
from core.commands.options import add_data_dir, add_out, add_overwrite, add_params, positive_int

DEFAULT_OPSET = 21  # core/export/graph.py's; here too, so that --help needs no onnx package


def add_arguments(parser):
    add_params(parser, "the model file (default: best_params.npz; a float or int8 model)")
    add_out(parser, "the ONNX file (default: FILE.onnx beside the model file)")
    parser.add_argument("--opset", type=positive_int, default=DEFAULT_OPSET, metavar="N",
                        help="the ONNX operator set (default: %(default)s)")  # fmt: skip
    parser.add_argument(
        "--logits", action="store_true", help="output the class scores, not the probabilities"
    )
    add_overwrite(parser)
    add_data_dir(parser)
    parser.add_argument("--check", type=positive_int, default=1000, metavar="N",
                        help="test images the check by ONNX Runtime runs (default: %(default)s)")  # fmt: skip


def run(args):
    from data.errors import UserError

    try:
        from core.export.onnx_file import export_file
    except ModuleNotFoundError as err:
        if err.name not in ("onnx", "onnxruntime"):
            raise
        raise UserError(
            f"export needs the packages onnx and onnxruntime ({err.name} is not installed): "
            'pip install -e ".[export]"'
        ) from None

    started = time.perf_counter()
    done = export_file(args.params, args.out, args.opset, args.logits, args.overwrite,
                       args.data_dir, args.check)  # fmt: skip
    before, after = os.path.getsize(args.params), os.path.getsize(done.path)
    print(
        f"{args.params} -> {done.path}: {done.nodes} nodes, opset {done.opset}, "
        f"{after:,} bytes (the model file: {before:,})"
    )
    print(f"ONNX checker (full check): valid; {done.agreement}")
    print(f"{time.perf_counter() - started:.1f} s")


COMMAND = Command(
    "export",
    "a saved model as an ONNX file, checked by ONNX Runtime",
    add_arguments,
    run,
    description="Write the model as ONNX: raw pixels on the [0, 1] scale in, with a dynamic "
    "batch axis; the model's normalization as the graph's first step; probabilities out. "
    "Every export passes the ONNX checker, then ONNX Runtime runs it on the model's test "
    "images and its outputs are compared with numpy-cnn's.",
)
