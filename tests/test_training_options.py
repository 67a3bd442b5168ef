"""Augmentation options of a training run, residual models end to end, layer labels and the
size budgets of shape inference."""

import dataclasses

import numpy as np
import pytest

import main
from core.commands.train import train_config
from core.learn.config import RECIPES
from core.learn.prepare import TrainData
from core.learn.train import augmented, train
from core.report import evaluate, load_test_set
from data.errors import UserError
from model.blueprints import minivgg, resnet
from model.forward import forward_activations
from model.initialize_parameters import initialize_parameters
from model.params_io import load_model
from model.shapes import MAX_ACTIVATION_VALUES, MAX_INPUT_VALUES, MAX_PARAMETERS, trace_shapes

NO_AUGMENTATION = RECIPES["default"]


def batch_and_data(rng, n=6):
    x = rng.standard_normal((n, 1, 8, 8)).astype(np.float32)
    fill = np.array([-0.5], dtype=np.float32)
    data = TrainData(x, np.zeros(n, np.int64), x, np.zeros(n, np.int64), None, fill, None)
    return x, data


def test_no_augmentation_leaves_the_batch_untouched_and_draws_nothing():
    rng = np.random.default_rng(0)
    x, data = batch_and_data(rng)
    draw = np.random.default_rng(5)
    assert augmented(NO_AUGMENTATION, data.fill, x, draw) is x
    assert draw.random() == np.random.default_rng(5).random()


@pytest.mark.parametrize("option", [{"crop": 2}, {"flip": True}, {"erase": 1.0}])
def test_each_augmentation_changes_the_batch_repeatably(option):
    config = dataclasses.replace(NO_AUGMENTATION, dataset="fashion-mnist", **option)
    x, data = batch_and_data(np.random.default_rng(0), n=16)
    once = augmented(config, data.fill, x, np.random.default_rng(3))
    again = augmented(config, data.fill, x, np.random.default_rng(3))
    np.testing.assert_array_equal(once, again)
    assert once.shape == x.shape and once.dtype == x.dtype
    assert not np.array_equal(once, x)


@pytest.mark.parametrize("value", ["0", "0.25", "1"])
def test_erase_takes_a_probability_on_the_command_line(value):
    args = main.build_parser().parse_args(["train", "--erase", value])
    assert train_config(args).erase == float(value)


@pytest.mark.parametrize("value", ["1.5", "-0.1", "nan", "x"])
def test_erase_outside_0_1_is_refused_by_the_parser_in_one_line(value, capsys):
    with pytest.raises(SystemExit) as stop:
        main.build_parser().parse_args(["train", "--erase", value])
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(err) == 1 and "--erase" in err[0]
    if value in ("1.5", "-0.1"):
        assert f"must be a number in [0, 1], got {value}" in err[0]


@pytest.mark.parametrize(
    "argv,fragment",
    [
        (["--flip"], "--flip"),
        (["--crop", "-1"], "--crop"),
        (["--erase", "1.5"], "--erase"),
    ],
)
def test_bad_augmentation_options_are_one_line_errors_and_leave_no_folder(
    tmp_path, capsys, argv, fragment
):
    out = tmp_path / "run"
    try:
        code = main.main(["train", "--limit", "100", "--out", str(out), *argv])
    except SystemExit as stop:  # refused by the option parser
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


@pytest.mark.slow
def test_a_small_resnet_trains_saves_loads_and_evaluates(tmp_path):
    config = dataclasses.replace(
        RECIPES["default"],
        dataset="digits",
        arch="resnet",
        epochs=3,
        batch_size=32,
        limit=600,
        val_size=50,
        crop=1,
        erase=0.5,
    )
    trained, _ = train(config, tmp_path / "run")
    model = load_model(tmp_path / "run" / "best_params.npz")
    assert model.blueprint == trained.blueprint
    assert [spec["type"] for spec in model.blueprint].count("residual") == 6
    for key, value in trained.params.items():
        np.testing.assert_array_equal(model.params[key], value)
    x, y, _ = load_test_set(model.meta)
    assert evaluate(model, x, y).accuracy > 0.5  # 10 classes: far above chance


def test_unnamed_layers_are_numbered_among_their_own_type():
    blueprint = minivgg()
    params = initialize_parameters(blueprint, (1, 28, 28), np.random.default_rng(0))
    labels = [
        label for label, _ in forward_activations(params, np.zeros((1, 1, 28, 28)), blueprint)
    ]
    assert labels == [
        "conv1", "relu1", "conv2", "relu2", "maxpool1", "conv3", "relu3", "conv4", "relu4",
        "maxpool2", "flatten1", "fc5", "relu5", "fc6",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "blueprint,shape,fragments",
    [
        (minivgg(), (1, 100000, 100000), ["10,000,000,000", f"{MAX_INPUT_VALUES:,}"]),
        (minivgg(10_000_000), (1, 28, 28), ["fc6", f"{MAX_PARAMETERS:,}"]),
        (
            [{"type": "conv", "name": "wide", "filters": 10**9, "kernel": 3}],
            (1, 28, 28),
            ["wide", f"{MAX_ACTIVATION_VALUES:,}"],
        ),
        (resnet(widths=(16, 32, 10**6)), (1, 28, 28), ["res3a", "49,000,000"]),
    ],
)
def test_absurd_sizes_are_refused_from_the_shapes_alone(blueprint, shape, fragments):
    with pytest.raises(UserError) as info:
        trace_shapes(blueprint, shape)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


def test_summary_of_absurd_sizes_is_one_line_and_exit_2(capsys):
    assert main.main(["summary", "--input-shape", "1x100000x100000"]) == 2
    assert main.main(["summary", "--classes", "1000000000"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("limit" in line for line in err), err


def test_summary_of_mlp_says_to_give_the_vectors_input_shape(capsys):
    assert main.main(["summary", "--arch", "mlp"]) == 2
    err = capsys.readouterr().err
    assert "--input-shape 2" in err
    assert main.main(["summary", "--arch", "mlp", "--input-shape", "2"]) == 0
