"""The ``export`` command's job: a model file -> a checked ONNX file beside it."""

import os
from pathlib import Path
from typing import NamedTuple

from core.export.check import check_onnx
from core.export.graph import DEFAULT_OPSET, build_onnx, onnx_opset_range
from data import load_dataset
from data.errors import UserError
from data.files import atomic_write
from model.params_io import load_model

CHECK_IMAGES = 1000  # test images the check runs by default


class Exported(NamedTuple):
    path: Path  # the .onnx file written
    nodes: int  # the graph's nodes
    opset: int
    agreement: object  # core.export.check.Agreement


def default_out(params_path):
    """Where the export of ``params_path`` goes by default: ``x.npz`` -> ``x.onnx``."""
    return Path(params_path).with_suffix(".onnx")


def check_out(params_path, out, overwrite):
    """Refuse an --out that is the model file, a folder, in a folder that does not exist, or
    (without ``overwrite``) a file that exists; returns it as a Path."""
    out = Path(out)
    if os.path.abspath(out) == os.path.abspath(params_path):
        raise UserError(f"--out {out}: that is the model file itself; choose another --out")
    if out.is_dir():
        raise UserError(f"--out {out}: a folder; give the .onnx file to write, e.g. {out}/model.onnx")
    if not out.parent.is_dir():
        raise UserError(f"--out {out}: the folder {out.parent} does not exist; create it first")
    if out.exists() and not overwrite:
        raise UserError(f"{out} exists already; replace it with --overwrite, or choose another --out")
    return out


def export_file(params_path, out=None, opset=DEFAULT_OPSET, logits=False, overwrite=False,
                data_dir=None, check_images=CHECK_IMAGES):  # fmt: skip
    """Export the model file ``params_path`` to ONNX, check it, and write it to ``out``.

    out: the .onnx file (default: ``default_out``); an existing file is replaced only with
    ``overwrite``. opset: the ONNX operator set. logits: output the scores, not the
    probabilities. data_dir: where the dataset's files are, if not the default.
    check_images: how many of the dataset's test images (the first ones) the check runs.
    Returns Exported. Raises UserError, writing nothing, for a checkpoint, an --out that
    cannot be written, an opset out of range, or an export that fails its check.
    """
    out = check_out(params_path, out if out is not None else default_out(params_path), overwrite)
    low, high = onnx_opset_range()
    if not low <= opset <= high:
        raise UserError(f"--opset {opset}: the export needs an opset from {low} to {high}")
    model = load_model(params_path, checkpoints=False)
    raw = load_dataset(model.meta["dataset"], data_dir).x_test[:check_images]
    proto = build_onnx(model, params_path, opset, logits)
    agreement = check_onnx(proto, model, raw, logits)
    path = atomic_write(out, lambda tmp: tmp.write_bytes(proto.SerializeToString()))
    return Exported(path, len(proto.graph.node), opset, agreement)
