"""--device and --precision where no GPU can be used: one line, exit status 2, nothing done.

On a machine where CuPy finds a CUDA device, the refusals of --device gpu are not what
happens (tests/test_gpu.py checks the GPU itself), and those tests are skipped.
"""

import dataclasses

import pytest

import main
from core.learn.config import RECIPES
from core.learn.train import train
from data.errors import UserError
from layers.arraylib import gpu_missing
from model.forward import get_executor
from model.shards import THREADS

MISSING = gpu_missing()
no_gpu = pytest.mark.skipif(not MISSING, reason="a CUDA device is at hand: --device gpu works")
DEVICE_COMMANDS = ["train", "evaluate", "predict", "attack", "explain", "visualize", "serve"]


@no_gpu
@pytest.mark.parametrize("command", DEVICE_COMMANDS)
def test_device_gpu_without_a_gpu_is_one_line_naming_what_is_missing(command, tmp_path, capsys):
    out_option = [] if command in ("predict", "serve") else ["--out", str(tmp_path / "out")]
    assert main.main([command, "--device", "gpu", *out_option]) == 2
    out, err = capsys.readouterr()
    assert err == f"error: --device gpu: {MISSING}\n" and out == ""
    assert "CuPy" in err and ('pip install -e ".[gpu]"' in err or "CUDA device" in err)
    assert not (tmp_path / "out").exists()  # refused before anything was made
    assert get_executor() is THREADS


@no_gpu
def test_train_on_the_gpu_without_one_is_refused_from_python_too(tmp_path):
    with pytest.raises(UserError, match="--device gpu: CuPy"):
        train(dataclasses.replace(RECIPES["default"], limit=100), tmp_path / "run", device="gpu")
    assert not any((tmp_path / "run").glob("*.npz"))


def test_mixed_precision_on_the_cpu_is_refused_in_one_line(tmp_path, capsys):
    argv = ["train", "--precision", "mixed", "--limit", "100", "--out", str(tmp_path / "run")]
    assert main.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--precision mixed" in err and "add --device gpu" in err
    assert not any((tmp_path / "run").glob("*"))


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--device", "tpu"],
        ["train", "--precision", "half"],
        ["summary", "--device", "gpu"],
    ],
)
def test_an_unknown_device_or_precision_or_a_command_without_device_is_a_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        main.main(argv)
    assert stop.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize("command", DEVICE_COMMANDS)
def test_every_command_that_computes_takes_device_and_the_cpu_is_its_default(command):
    assert main.parse([command]).device == "cpu"
    assert main.parse([command, "--device", "gpu"]).device == "gpu"
