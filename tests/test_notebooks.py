"""The notebooks run top to bottom in a fresh kernel and show what they claim.

Each notebook is executed in memory with nbclient (``notebooks/execute.py``: kernel "python3"
from ipykernel, working directory the notebooks folder), so the committed files never change
here; a failing cell fails the test with its traceback. The notebooks are committed with their
outputs (``python notebooks/execute.py`` refreshes them), so the saved files are checked too.
The executions are slow by nature (a kernel per notebook, small training runs): a few minutes
on two cores, so they are marked ``slow`` (``python -m pytest -m "not slow"`` skips them).
"""

import re

import nbformat
import numpy as np
import pytest

from model.blueprints import load_blueprint
from model.initialize_parameters import initialize_parameters, trainable_keys
from model.layer_kinds import LAYER_KINDS
from model.params_io import load_model, save_model
from model.shapes import trace_shapes
from model.summary import summary_table
from notebooks.execute import NOTEBOOKS, NOTEBOOKS_DIR, execute_notebook

CELL_TIMEOUT_S = 300
MAX_NOTEBOOK_BYTES = 1_500_000  # committed with images: kept small enough to review
ONE_NEURON = NOTEBOOKS_DIR / "01_one_neuron.ipynb"
CONVOLUTION = NOTEBOOKS_DIR / "02_convolution_by_hand.ipynb"
UPDATE = NOTEBOOKS_DIR / "05_update.ipynb"
FORWARD = NOTEBOOKS_DIR / "03_forward.ipynb"
EXPERIMENT = NOTEBOOKS_DIR / "06_experiment.ipynb"
PLAYGROUND = NOTEBOOKS_DIR / "07_playground.ipynb"
BACKWARD = NOTEBOOKS_DIR / "04_backward.ipynb"
ARCHITECTURES = NOTEBOOKS_DIR / "08_architectures.ipynb"
INSIDE = NOTEBOOKS_DIR / "09_inside.ipynb"
ARCHS = ("lenet5", "minivgg", "minivgg_bn_dropout", "resnet", "mobilenet")
CHANCE = 0.1  # ten classes
# Enough for the slowest net (resnet) to pass chance on a busy 2-core machine: about 20 updates.
# At 2 s it makes 4, and its batch-norm running statistics are still mostly their initial values.
RACE_BUDGET_S = 8
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


@pytest.mark.slow
def test_forward_notebook_shows_by_hand_and_forward_identical():
    nb = execute_notebook(FORWARD, CELL_TIMEOUT_S)
    text = printed(nb)
    assert IDENTICAL in text
    assert EVERY_LAYER_IDENTICAL in text
    assert "input:       (1, 1, 28, 28)" in text
    assert n_images(nb) == 3  # the digit, the feature maps, the probabilities
    assert printed(nb, "stderr") == ""  # no warnings


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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
    assert NOTEBOOKS[:2] == (ONE_NEURON.name, CONVOLUTION.name)  # the learning path starts here
    check_one_neuron_output(printed(nbformat.read(ONE_NEURON, as_version=4)))
    check_convolution_output(printed(nbformat.read(CONVOLUTION, as_version=4)))
    check_update_output(printed(nbformat.read(UPDATE, as_version=4)))
    assert IDENTICAL in printed(nbformat.read(FORWARD, as_version=4))
    check_backward_output(printed(nbformat.read(BACKWARD, as_version=4)))
    check_race_output(printed(nbformat.read(ARCHITECTURES, as_version=4)))
    check_inside_output(nbformat.read(INSIDE, as_version=4))


@pytest.mark.slow
@pytest.mark.parametrize(
    "path, check",
    [(ONE_NEURON, "check_one_neuron_output"), (CONVOLUTION, "check_convolution_output"),
     (UPDATE, "check_update_output")],
)  # fmt: skip
def test_the_small_notebooks_run_and_their_numbers_check_out(path, check):
    nb = execute_notebook(path, CELL_TIMEOUT_S)
    globals()[check](printed(nb))
    assert n_images(nb) == {ONE_NEURON: 1, CONVOLUTION: 1, UPDATE: 2}[path]
    assert printed(nb, "stderr") == ""


def check_one_neuron_output(text):
    """01_one_neuron's claims: the chain rule's numbers, equal to finite differences and to the
    project's layers, a dead ReLU's zero gradient, and one step that lowers the loss."""
    assert "dL/dw = 1.60, dL/db = 0.80, dL/dx = 0.64" in text
    differences = re.findall(r"^dL/d[wbx]: chain rule .* difference (\S+)$", text, re.M)
    assert len(differences) == 3 and all(float(d) < 1e-8 for d in differences), differences
    assert "dL/dx = 0.64, dL/dw = 1.60, dL/db = 0.80" in text  # the same from layers/
    assert "dL/dw by finite differences = 0.0" in text
    before, after = re.search(r"loss ([\d.]+) -> ([\d.]+)$", text, re.M).groups()
    assert float(after) < float(before)


def check_convolution_output(text):
    """02_convolution_by_hand's claims: the loops, conv_naive and conv agree; the output-size rule
    is conv_output_size's; im2col's product, scatter and gather give the same numbers; and the
    learned kernel is the edge detector [1, -1]."""
    assert "layers/conv_naive.py equal: True ; layers/conv.py equal: True" in text
    sizes = re.findall(r"^\s*\d+\s+\d+\s+\d+\s+\d+\s+\S+ \+ 1 -> (\d+)\s+(\d+)$", text, re.M)
    assert len(sizes) == 6 and all(rule == layer for rule, layer in sizes), sizes
    assert "equal to conv_forward: True" in text
    assert "equal: True True True" in text and "equal to conv_backward's: True" in text
    loss, kernel = re.search(
        r"^step 20: loss (\S+), kernel after the step \[(.*)\]$", text, re.M
    ).groups()
    assert float(loss) < 1e-4
    assert np.allclose(np.array(kernel.split(), dtype=float), [1, -1], atol=1e-2), kernel


def check_update_output(text):
    """05_update's claims: a small SGD step lowers the loss (near the first-order prediction), a
    huge one raises it; the by-hand SGD, momentum and Adam are core/learn/optim.py's; Adam's
    first step is the learning rate whatever the gradient's scale."""
    before = float(re.search(r"^before: loss ([\d.]+)", text, re.M).group(1))
    after = {
        float(lr): (float(a), float(p))
        for lr, a, p in re.findall(
            r"^lr\s+([\d.]+): loss after one step ([\d.]+)  \(first-order prediction (-?[\d.]+)\)",
            text,
            re.M,
        )
    }
    assert after[0.01][0] < before and abs(after[0.01][0] - after[0.01][1]) < 1e-3
    assert after[50.0][0] > before
    differences = re.findall(r"largest difference from core/learn/optim.py: (\S+)$", text, re.M)
    assert len(differences) == 3 and all(float(d) < 1e-12 for d in differences), differences
    assert "adam  first step for the loss x1: 0.1000, x100: 0.1000" in text


@pytest.mark.slow
def test_inside_notebook_runs_and_its_gradients_check_out():
    check_inside_output(execute_notebook(INSIDE, CELL_TIMEOUT_S))


def check_inside_output(nb):
    """09_inside.ipynb's claims: the input gradient by hand equals the library's and finite
    differences, occlusion of nothing is nothing, FGSM stays in its budget, and the class
    visualizations are called what they were made to be."""
    text = printed(nb)
    assert "by hand and core/inside/gradients.py agree: True" in text
    rows = re.findall(r"^\((\d+), (\d+)\)\s+(\S+)\s+(\S+)\s+(\S+)$", text, re.MULTILINE)
    assert len(rows) == 5
    for *_, analytic, numerical, error in rows:
        assert float(analytic) != 0 and float(error) < 1e-7, (analytic, numerical, error)
    assert "occlusion of a black picture is zero everywhere: True" in text
    change = re.search(r"largest change of a pixel: ([\d.]+) \(the budget: ([\d.]+)\)", text)
    assert change and 0 < float(change.group(1)) <= float(change.group(2))
    found = re.search(r"predicted classes of the ten pictures: \[([\d, ]+)\]", text)
    assert sum(int(k) == i for i, k in enumerate(found.group(1).split(", "))) >= 8
    assert n_images(nb) == 3  # maps, the adversarial example, the class models
    assert printed(nb, "stderr") == ""


def check_backward_output(text):
    """04_backward.ipynb's claims: every gradient identical to model/backward.py's, the shapes
    layer by layer, and finite differences that agree with the backward pass."""
    model = load_model(NOTEBOOKS_DIR.parent / "best_params.npz")
    keys = trainable_keys(model.blueprint, model.meta["input_shape"])
    lines = text.splitlines()
    assert "scores identical: True" in text
    for key in keys:
        shape = str(model.params[key].shape)
        assert f"{key:<12}{shape:<18}identical: True" in lines, key
    assert "identical: False" not in text
    assert f"the same keys: True ({len(keys)} gradients)" in text
    # the backward table: one row per layer, the gradient's shape in and out (batch of 32)
    rows = [r for r in trace_shapes(model.blueprint, model.meta["input_shape"]) if r.depth == 0]
    for row in rows:
        dout, dx = str((32, *row.out_shape)), str((32, *row.in_shape))
        assert any(line.startswith(f"{row.label:<10}{dout:<18}{dx:<18}") for line in lines), row
    # at initialization and trained, side by side: the measured factors, and bn1 passing on more
    factors = re.findall(
        r"^(initialized|trained): \|dx\| from .* a factor of ([\d.]+); "
        r"batch norms passing on more than they receive: (.*)$",
        text,
        re.M,
    )
    assert [f[0] for f in factors] == ["initialized", "trained"], factors
    assert all("bn1" in f[2].split(", ") for f in factors), factors
    checks = re.findall(r"^(\S+\[[\d, ]+\])\s+(\S+)\s+(\S+)\s+(\S+)$", text, re.MULTILINE)
    assert len(checks) >= 5
    for weight, analytic, numerical, error in checks:
        assert float(analytic) != 0 and float(numerical) != 0, weight
        assert float(error) < 1e-7, (weight, error)


def check_race_output(text):
    """08_architectures.ipynb's claims: each net's size and speed, and an accuracy above chance on
    both datasets after the budget. Returns the budget it printed."""
    assert re.search(r"^processor: \S.*, \d+ cores; numpy-cnn: \d+ worker threads$", text, re.M)
    budget = float(re.search(r"^budget: ([\d.]+) s of training", text, re.M).group(1))
    for arch in ARCHS:
        _, blueprint = load_blueprint(arch)
        n_params = int(summary_table(blueprint, (1, 28, 28))["params"].sum())
        speed = re.search(
            rf"^{arch}\s+{n_params:,} parameters  training\s+(\d+) images/s  "
            r"inference\s+(\d+) images/s$",
            text,
            re.M,
        )
        assert speed and int(speed.group(1)) > 0 and int(speed.group(2)) > 0, arch
        for dataset in ("mnist", "fashion-mnist"):
            row = re.search(
                rf"^{dataset}\s+{arch}\s+(\d+) updates .* test accuracy ([\d.]+)$", text, re.M
            )
            assert row, (dataset, arch)
            assert int(row.group(1)) >= 1 and float(row.group(2)) > CHANCE, (dataset, arch)
    return budget


@pytest.mark.slow
def test_backward_notebook_matches_model_backward_and_finite_differences():
    nb = execute_notebook(BACKWARD, CELL_TIMEOUT_S)
    check_backward_output(printed(nb))
    assert n_images(nb) == 1  # the gradient's size layer by layer
    assert printed(nb, "stderr") == ""


@pytest.mark.slow
def test_architectures_notebook_races_every_architecture(monkeypatch):
    monkeypatch.setenv("NUMPY_CNN_BUDGET_S", str(RACE_BUDGET_S))
    monkeypatch.setenv("NUMPY_CNN_TEST_IMAGES", "1000")
    nb = execute_notebook(ARCHITECTURES, CELL_TIMEOUT_S)
    text = printed(nb)
    assert check_race_output(text) == RACE_BUDGET_S
    assert "; 1000 test images" in text
    assert n_images(nb) == 1  # accuracy and speed side by side
    assert printed(nb, "stderr") == ""
