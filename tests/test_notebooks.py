"""The notebooks run top to bottom in a fresh kernel and show what they claim.

Each notebook is executed in memory with nbclient (``notebooks/execute.py``: kernel "python3"
from ipykernel, working directory the notebooks folder), so the committed files never change
here; a failing cell fails the test with its traceback. The notebooks are committed with their
outputs (``python notebooks/execute.py`` refreshes them), so the saved files are checked too.
These tests are slow by nature (a kernel per notebook, a small training sweep): about two
minutes on two cores.
"""

import re

import nbformat
import numpy as np

from model.initialize_parameters import initialize_parameters
from model.layer_kinds import LAYER_KINDS
from model.params_io import save_model
from model.shapes import trace_shapes
from notebooks.execute import NOTEBOOKS, NOTEBOOKS_DIR, execute_notebook

CELL_TIMEOUT_S = 300
MAX_NOTEBOOK_BYTES = 1_500_000  # committed with images: kept small enough to review
FORWARD = NOTEBOOKS_DIR / "forward.ipynb"
EXPERIMENT = NOTEBOOKS_DIR / "experiment.ipynb"
PLAYGROUND = NOTEBOOKS_DIR / "playground.ipynb"
IDENTICAL = "identical: True"
EVERY_LAYER_IDENTICAL = "every layer's output identical (forward_activations): True"


def outputs(nb):
    """Every output of every code cell, in order."""
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]


def printed(nb, stream="stdout"):
    """All the text the notebook printed to ``stream``."""
    return "".join(
        out.text for out in outputs(nb) if out.output_type == "stream" and out.name == stream
    )


def shown_text(nb):
    """The plain-text form of every displayed value (DataFrames, ...)."""
    return "".join(out.get("data", {}).get("text/plain", "") for out in outputs(nb))


def n_images(nb):
    return sum("image/png" in out.get("data", {}) for out in outputs(nb))


def every_kind_blueprint():
    """A small net that uses every layer type of model/layer_kinds.py once or more."""
    return [
        {"type": "conv", "name": "c1", "filters": 4, "kernel": [3, 2], "pad": 1},
        {"type": "batchnorm", "name": "n1"},
        {"type": "leaky_relu", "alpha": 0.1},
        {"type": "maxpool", "size": 2, "stride": 2},
        {"type": "conv", "name": "c2", "filters": 6, "kernel": 3, "stride": 2, "groups": 2},
        {"type": "sigmoid"},
        {"type": "avgpool", "size": 2, "stride": 1},
        {"type": "tanh"},
        {"type": "global_avgpool"},
        {"type": "flatten"},
        {"type": "dropout", "p": 0.5},
        {"type": "fc", "name": "f1", "units": 12},
        {"type": "batchnorm", "name": "n2"},
        {"type": "relu"},
        {"type": "fc", "name": "f2", "units": 10},
    ]


def test_forward_notebook_shows_by_hand_and_forward_identical():
    nb = execute_notebook(FORWARD, CELL_TIMEOUT_S)
    text = printed(nb)
    assert IDENTICAL in text
    assert EVERY_LAYER_IDENTICAL in text
    assert "input:       (1, 1, 28, 28)" in text
    assert n_images(nb) == 3  # the digit, the feature maps, the probabilities
    assert printed(nb, "stderr") == ""  # no warnings


def test_forward_notebook_walks_any_blueprint(tmp_path, monkeypatch):
    blueprint = every_kind_blueprint()
    # A new layer type needs its own branch in the notebook's by-hand loop, and a place here.
    assert {spec["type"] for spec in blueprint} == set(LAYER_KINDS)
    rng = np.random.default_rng(0)
    params = initialize_parameters(blueprint, (1, 28, 28), rng)
    for name in ("n1", "n2"):  # statistics away from 0 and 1, so using them shows in the output
        c = params[f"{name}.running_mean"].shape
        params[f"{name}.running_mean"] = rng.normal(size=c).astype(np.float32)
        params[f"{name}.running_var"] = rng.uniform(0.5, 2.0, size=c).astype(np.float32)
    meta = {
        "input_shape": [1, 28, 28],
        "dataset": "mnist",
        "class_names": [str(d) for d in range(10)],
        "normalization": {"mean": [0.13], "std": [0.31]},
        "config": {"arch": "every kind"},
        "seed": 0,
    }
    path = save_model(tmp_path / "every_kind.npz", params, blueprint, meta)
    monkeypatch.setenv("NUMPY_CNN_PARAMS", str(path))

    # From the repository root, as some editors start kernels: the notebook finds it either way.
    nb = execute_notebook(FORWARD, CELL_TIMEOUT_S, cwd=NOTEBOOKS_DIR.parent)

    text = printed(nb)
    assert "every_kind.npz" in text
    assert IDENTICAL in text
    assert EVERY_LAYER_IDENTICAL.replace("True", "True (15 of 15 layers)") in text
    lines = text.splitlines()
    for row in trace_shapes(blueprint, (1, 28, 28)):
        shape_line = f"{row.label + ':':<13}{str((1, *row.out_shape)):<18}{row.spec['type']}"
        assert shape_line in lines


def test_experiment_notebook_runs():
    nb = execute_notebook(EXPERIMENT, CELL_TIMEOUT_S)
    text = printed(nb)
    assert "test accuracy" in text
    assert "errors in 10000 test images" in text
    assert n_images(nb) == 4  # curves, confusion matrix, mistakes, sweep
    runs_table = shown_text(nb)
    for optimizer in ("sgd", "momentum", "rmsprop", "adam"):
        assert f"{optimizer} lr=" in runs_table
    assert printed(nb, "stderr") == ""


def test_playground_notebook_learns_every_toy_set_and_fits_the_curve():
    nb = execute_notebook(PLAYGROUND, CELL_TIMEOUT_S)
    text = printed(nb)
    found = re.findall(r"^(\w+): training accuracy ([0-9.]+), test accuracy ([0-9.]+)", text, re.M)
    accuracy = {name: (float(train), float(test)) for name, train, test in found}
    # The MLP after 40 epochs: the seeded runs reach 0.95 to 0.99; the floors leave room.
    floors = {"spiral": 0.97, "circles": 0.97, "line": 0.93, "zone": 0.95, "zone3d": 0.85}
    assert accuracy.keys() == floors.keys()
    for name, floor in floors.items():
        assert accuracy[name][0] > floor, (name, accuracy[name])
        assert accuracy[name][1] > floor - 0.05, (name, accuracy[name])
    r2 = dict(
        re.findall(r"^polynomial, epoch (\d+): test MSE [0-9.]+, test R\^2 (-?[0-9.]+)", text, re.M)
    )
    assert float(r2["60"]) > 0.9 > float(r2["2"])  # the curve is fitted, and not at once
    assert n_images(nb) == 3  # the toy sets, the decision boundaries, the fitted curves
    assert printed(nb, "stderr") == ""


def test_committed_notebooks_are_executed_clean_and_small():
    for name in NOTEBOOKS:
        path = NOTEBOOKS_DIR / name
        assert path.stat().st_size < MAX_NOTEBOOK_BYTES, f"{name}: shrink its figures"
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        counts = [cell.execution_count for cell in nb.cells if cell.cell_type == "code"]
        # Kept with outputs, run top to bottom once: refresh with python notebooks/execute.py.
        assert counts == list(range(1, len(counts) + 1)), f"{name}: execution counts {counts}"
        assert not [out for out in outputs(nb) if out.output_type == "error"], name
        assert printed(nb, "stderr") == "", name
    assert IDENTICAL in printed(nbformat.read(FORWARD, as_version=4))
