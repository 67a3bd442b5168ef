"""The ``quantize`` command: a saved float model -> an int8 model file beside it."""

import os
from pathlib import Path
from typing import NamedTuple

from core.learn.model_file import load_model
from core.report import model_inputs
from data import load_dataset
from data.errors import UserError
from data.files import refuse_to_write_over
from model.params_io import save_model
from model.quantize import quantize_model
from model.walk import KINDS, iter_layers, quantized_layers


class Quantized(NamedTuple):
    path: Path  # the int8 model file written
    layers: list  # names of the layers made int8
    folded: list  # names of the batch norms folded into them
    calibration: int  # calibration images used


def default_out(params_path):
    """Where the int8 model of ``params_path`` goes by default: ``x.npz`` -> ``x.int8.npz``."""
    return Path(params_path).with_suffix(".int8.npz")


CALIBRATION = 1000  # calibration images by default


def quantize_file(params_path, out=None, calibration=None, data_dir=None, overwrite=False):
    """Quantize the float model file ``params_path`` to int8 and save it to ``out``.

    out: the new model file (default: ``default_out``); an existing file is replaced only
    with ``overwrite``, and the model file itself never. calibration: how many of the
    dataset's training images (the first ones, validation split included) set the inputs'
    scales (None: CALIBRATION, or all of a smaller training set). data_dir: where the
    dataset's files are, if not the default.
    Returns Quantized. Raises UserError, writing nothing, for a file that is already
    quantized or has no conv or fc layer, or more calibration images than the training set has.
    """
    out = Path(out) if out is not None else default_out(params_path)
    refuse_to_write_over(out, [params_path])  # through a symlink or a hard link too
    if out.exists() and not overwrite:
        raise UserError(
            f"{out} exists already; replace it with --overwrite, or choose another --out"
        )
    model = load_model(params_path)
    if names := quantized_layers(model.blueprint):
        raise UserError(
            f"{params_path}: already quantized (int8 layers {', '.join(names)}); quantize "
            "the float model it was made from"
        )
    layers = [s["name"] for s in iter_layers(model.blueprint) if KINDS[s["type"]].quantized_as]
    if not layers:
        raise UserError(f"{params_path}: no conv or fc layer to quantize")
    meta = model.meta
    images = load_dataset(meta["dataset"], data_dir).x_train
    if calibration is None:
        calibration = min(CALIBRATION, len(images))
    elif calibration > len(images):
        raise UserError(
            f"--calibration {calibration}: the {meta['dataset']} training set has only "
            f"{len(images)} images"
        )
    x = model_inputs(images[:calibration], meta, params_path)
    params, blueprint, folded = quantize_model(model.params, model.blueprint, x)
    meta = {k: v for k, v in meta.items() if k not in ("created", "format_version")}
    meta["quantization"] = {
        "from": os.fspath(params_path),
        "weights": "int8, symmetric, one scale per output channel (max |W| / 127)",
        "activations": "int8, symmetric, one scale per layer input (max |x| / 127)",
        "calibration_images": calibration,
        "folded_batchnorm": folded,
    }
    return Quantized(save_model(out, params, blueprint, meta), layers, folded, calibration)
