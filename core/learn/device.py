"""Where a command computes: ``--device cpu`` (NumPy, threads over shards of each batch) or
``--device gpu`` (CuPy on a CUDA GPU, the same layers on the other array library).

``use_device`` is the one place the choice is checked and made: "gpu" without CuPy, or without
a CUDA device CuPy can see, is one UserError naming what is missing. For "gpu" it makes the GPU
executor (model/gpu.py) the one of the forward passes that are given none, so a command's NumPy
batches are computed on the GPU and come back as NumPy; the training loop also places its
parameters, optimizer state and data there (``placed``), once.
"""

import numpy as np

from core.learn.config import DEVICES
from data.errors import UserError
from layers.arraylib import cupy, gpu_missing
from model.forward import set_executor
from model.gpu import GPU


def array_library(device):
    """The array library of ``device``: numpy for "cpu", cupy for "gpu" (or a UserError
    naming what is missing)."""
    if device not in DEVICES:
        raise UserError(f"--device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device == "cpu":
        return np
    if missing := gpu_missing():
        raise UserError(f"--device gpu: {missing}")
    return cupy


def use_device(device):
    """Compute on ``device`` from now on; returns its array library. For "cpu" nothing
    changes: the forward passes keep their executor (threads over shards by default)."""
    xp = array_library(device)
    if xp is not np:
        set_executor(GPU)
    return xp


def placed(arrays, xp):
    """{key: array} with each array in the library ``xp`` (copied to the GPU for cupy; for
    numpy the very same arrays)."""
    return {key: xp.asarray(a) for key, a in arrays.items()}


def check_on_device(config, xp):
    """UserError for a training option the device of ``xp`` does not run."""
    if config.precision == "mixed" and xp is np:
        raise UserError(
            "--precision mixed computes in float16 on a GPU's tensor cores, where it pays "
            "(on the CPU float16 is slower than float32); add --device gpu"
        )
    if config.adversarial and xp is not np:
        raise UserError(
            f"--adversarial {config.adversarial} runs on the CPU only for now; drop --device gpu"
        )
