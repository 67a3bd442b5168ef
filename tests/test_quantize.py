"""Int8 quantization: exact integer sums against a plain integer reference, batch-norm folding,
the quantized file format and its refusals, and the quantize command end to end.

The models are tiny and random (batch-norm statistics drawn too, so that folding changes
something), on scikit-learn's 8x8 digits, which ship with scikit-learn: no download.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import main
from core.learn.eval import predict_proba, top_k
from core.report import load_test_set, model_inputs
from data import fit_normalization, load_dataset
from data.digit_image import load_digit_image
from data.errors import UserError
from layers.quantized import (
    accumulator_dtype,
    qconv_accumulate,
    qconv_forward,
    qfc_accumulate,
    qfc_forward,
    quantize,
)
from model.blueprints import validate_blueprint
from model.fold import fold_batchnorm
from model.initialize_parameters import initialize_parameters
from model.params_io import load_model, save_model
from model.quantize import quantize_model, quantize_weights
from model.walk import KINDS, quantized_layers, walk_forward

DIGITS_SHAPE = (1, 8, 8)


def tiny_blueprint():
    return validate_blueprint(
        [
            {"type": "conv", "name": "c1", "filters": 4, "kernel": 3, "pad": 1},
            {"type": "batchnorm", "name": "b1"},
            {"type": "relu"},
            {"type": "maxpool"},
            {"type": "conv", "name": "c2", "filters": 6, "kernel": 3, "pad": 1, "groups": 2},
            {"type": "batchnorm", "name": "b2"},
            {"type": "relu"},
            {"type": "flatten"},
            {"type": "dropout", "p": 0.2},
            {"type": "fc", "name": "f3", "units": 8},
            {"type": "batchnorm", "name": "b3"},
            {"type": "relu"},
            {"type": "fc", "name": "f4", "units": 10},
        ]
    )


def tiny_params(blueprint, shape=DIGITS_SHAPE, seed=0, dtype=np.float32):
    """Random weights, and random batch-norm statistics (fresh ones would fold to nothing)."""
    rng = np.random.default_rng(seed)
    params = initialize_parameters(blueprint, shape, rng, dtype=dtype)
    for key, value in params.items():
        if key.endswith(".gamma"):
            params[key] = rng.uniform(0.5, 1.5, value.shape).astype(dtype)
        elif key.endswith((".beta", ".running_mean", ".b")):
            params[key] = (0.2 * rng.standard_normal(value.shape)).astype(dtype)
        elif key.endswith(".running_var"):
            params[key] = rng.uniform(0.5, 2.0, value.shape).astype(dtype)
    return params


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def float_file(tmp_path_factory, digits):
    """A tiny float model of the digits, saved as the trainer saves one (tests only read it)."""
    blueprint = tiny_blueprint()
    norm = fit_normalization(digits.x_train)
    meta = {
        "input_shape": list(DIGITS_SHAPE),
        "dataset": "digits",
        "class_names": list(digits.class_names),
        "normalization": {"mean": norm.mean.tolist(), "std": norm.std.tolist()},
        "config": {"arch": "tiny"},
        "seed": 0,
    }
    folder = tmp_path_factory.mktemp("models")
    return save_model(folder / "model.npz", tiny_params(blueprint), blueprint, meta)


@pytest.fixture(scope="module")
def int8_file(float_file):
    """Its int8 model, made by the quantize command (tests only read it)."""
    assert main.main(["quantize", "--params", str(float_file), "--calibration", "200"]) == 0
    return float_file.with_name("model.int8.npz")


# -- the arithmetic -------------------------------------------------------------------------


def test_quantize_rounds_halves_to_even_and_clips_symmetrically():
    x = np.array([0.5, 1.5, -2.5, 2.6, 1000.0, -1000.0, 0.0])
    q = quantize(x, 1.0)
    assert q.dtype == np.int8
    np.testing.assert_array_equal(q, [0, 2, -2, 3, 127, -127, 0])
    np.testing.assert_array_equal(quantize(x * 0.25, 0.25, np.float32), q.astype(np.float32))


def test_the_accumulator_is_float32_only_while_its_sums_stay_below_2_to_the_24():
    assert 1040 * 127**2 <= 2**24 < 1041 * 127**2
    assert accumulator_dtype(1040) == np.float32
    assert accumulator_dtype(1041) == np.float64
    with pytest.raises(AssertionError, match="float64"):
        accumulator_dtype(2**53 // 127**2 + 1)


def int_conv_reference(xq, Wq, stride, pad, groups):
    """The convolution's integer sums by plain loops, in np.int64."""
    N, C, H, W = xq.shape
    F, Cg, KH, KW = Wq.shape
    xp = np.pad(xq.astype(np.int64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    Ho, Wo = (H + 2 * pad - KH) // stride + 1, (W + 2 * pad - KW) // stride + 1
    acc = np.zeros((N, F, Ho, Wo), dtype=np.int64)
    for n in range(N):
        for f in range(F):
            g = f // (F // groups)
            for i in range(Ho):
                for j in range(Wo):
                    window = xp[n, g * Cg : (g + 1) * Cg, i * stride : i * stride + KH]
                    window = window[:, :, j * stride : j * stride + KW]
                    acc[n, f, i, j] = np.sum(window * Wq[f].astype(np.int64))
    return acc


def int_fc_reference(xq, Wq):
    """The fc layer's integer sums by plain loops over Python ints."""
    N, (D, M) = len(xq), Wq.shape
    acc = np.zeros((N, M), dtype=np.int64)
    for n in range(N):
        for m in range(M):
            acc[n, m] = sum(int(xq[n, d]) * int(Wq[d, m]) for d in range(D))
    return acc


def random_int8(rng, shape, extreme=False):
    """int8 values in [-127, 127]; ``extreme``: all 127, the largest sums there are."""
    if extreme:
        return np.full(shape, 127, np.int8)
    return rng.integers(-127, 128, shape).astype(np.int8)


@pytest.mark.parametrize(
    "C, F, stride, pad, groups, extreme",
    [
        (3, 4, 1, 1, 1, False),  # K = 27: float32 sums
        (4, 6, 2, 2, 2, False),  # grouped, strided
        (120, 2, 1, 0, 1, True),  # K = 1080: float64 sums of 127 * 127s: float32 would round
    ],
)
def test_a_quantized_conv_sums_exactly_what_integer_loops_sum(C, F, stride, pad, groups, extreme):
    rng = np.random.default_rng(C)
    xq = random_int8(rng, (2, C, 5, 6), extreme)
    Wq = random_int8(rng, (F, C // groups, 3, 3), extreme)
    acc = qconv_accumulate(xq, Wq, stride, pad, groups)
    expected = int_conv_reference(xq, Wq, stride, pad, groups)
    assert acc.dtype == accumulator_dtype(C // groups * 9)
    assert np.array_equal(acc, np.round(acc))  # integers
    np.testing.assert_array_equal(acc.astype(np.int64), expected)
    if extreme:
        assert expected.max() == 1080 * 127**2 > 2**24


@pytest.mark.parametrize("D, extreme", [(20, False), (1568, False), (1568, True)])
def test_a_quantized_fc_sums_exactly_what_integer_loops_sum(D, extreme):
    rng = np.random.default_rng(D)
    xq, Wq = random_int8(rng, (3, D), extreme), random_int8(rng, (D, 5), extreme)
    acc = qfc_accumulate(xq, Wq)
    assert acc.dtype == accumulator_dtype(D)
    np.testing.assert_array_equal(acc.astype(np.int64), int_fc_reference(xq, Wq))


def test_the_quantized_layers_rescale_the_integer_sums_and_add_the_bias():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 5, 5))
    Wq = random_int8(rng, (4, 3, 3, 3))
    w_scale, x_scale, b = rng.uniform(0.01, 0.1, 4), np.float64(0.03), rng.standard_normal(4)
    out = qconv_forward(x, Wq, w_scale, x_scale, b, stride=1, pad=1)
    acc = int_conv_reference(quantize(x, x_scale), Wq, 1, 1, 1)
    expected = acc * (x_scale * w_scale).reshape(1, -1, 1, 1) + b.reshape(1, -1, 1, 1)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)

    x = rng.standard_normal((3, 7))
    Wq = random_int8(rng, (7, 2))
    out = qfc_forward(x, Wq, w_scale[:2], x_scale, b[:2])
    expected = int_fc_reference(quantize(x, x_scale), Wq) * (x_scale * w_scale[:2]) + b[:2]
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


def test_weights_get_one_scale_per_output_channel():
    rng = np.random.default_rng(2)
    W = rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * np.array([1, 10, 0.01, 0])[
        :, None, None, None
    ].astype(np.float32)
    Wq, scale = quantize_weights(W, KINDS["conv"].out_axis)
    assert Wq.dtype == np.int8 and scale.dtype == np.float32 and scale.shape == (4,)
    np.testing.assert_array_equal(np.abs(Wq[:3]).max(axis=(1, 2, 3)), [127, 127, 127])
    assert scale[3] == 1 and not Wq[3].any()  # an all-zero filter
    error = np.abs(Wq * scale[:, None, None, None] - W).max(axis=(1, 2, 3))
    assert np.all(error <= scale / 2 * (1 + 1e-6))
    Wfc = rng.standard_normal((6, 3)).astype(np.float32)
    Wq, scale = quantize_weights(Wfc, KINDS["fc"].out_axis)  # (D, M): a scale per column
    np.testing.assert_allclose(scale, np.abs(Wfc).max(axis=0) / 127, rtol=1e-6)


# -- folding and the whole model -------------------------------------------------------------


def test_folding_batch_norm_gives_conv_and_fc_followed_by_batch_norm_in_evaluation_mode():
    blueprint = tiny_blueprint()
    residual = validate_blueprint(
        [
            {"type": "conv", "name": "s", "filters": 3, "kernel": 3, "pad": 1},
            {
                "type": "residual",
                "name": "r",
                "body": [
                    {"type": "conv", "name": "rc", "filters": 3, "kernel": 3, "pad": 1},
                    {"type": "batchnorm", "name": "rb"},
                    {"type": "relu"},
                    {"type": "batchnorm", "name": "kept"},  # after a ReLU: not foldable
                ],
            },
        ]
    )
    x = np.random.default_rng(3).standard_normal((5, *DIGITS_SHAPE))
    for specs, folded_names in [(blueprint, ["b1", "b2", "b3"]), (residual, ["rb"])]:
        params = tiny_params(specs, dtype=np.float64)
        folded_params, folded_specs, folded = fold_batchnorm(params, specs)
        assert folded == folded_names
        assert not any(key.startswith(tuple(f"{n}." for n in folded)) for key in folded_params)
        expected = walk_forward(params, x, specs)[0]
        got = walk_forward(folded_params, x, folded_specs)[0]
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    assert [s["type"] for s in folded_specs[1]["body"]] == ["conv", "relu", "batchnorm"]


def test_the_int8_model_stays_close_to_the_float_model(digits):
    blueprint = tiny_blueprint()
    params = tiny_params(blueprint)
    x = (digits.x_train[:300] / np.float32(255) - np.float32(0.3)) / np.float32(0.4)
    qparams, qblueprint, _ = quantize_model(params, blueprint, x)
    assert quantized_layers(qblueprint) == ["c1", "c2", "f3", "f4"]
    assert qparams["c1.W"].dtype == np.int8 and qparams["f3.x_scale"].shape == ()
    float_scores = walk_forward(params, x, blueprint)[0]
    int8_scores = walk_forward(qparams, x, qblueprint)[0]
    assert int8_scores.dtype == np.float32 and not np.array_equal(int8_scores, float_scores)
    error = np.abs(int8_scores - float_scores).max()
    assert error < 0.05 * float_scores.std(), (error, float_scores.std())


# -- the file and the commands ---------------------------------------------------------------


def test_the_int8_file_round_trips_with_its_dtypes_and_marks(int8_file, tmp_path):
    model = load_model(int8_file)
    assert [s["type"] for s in model.blueprint if "name" in s] == ["qconv", "qconv", "qfc", "qfc"]
    assert model.params["c2.W"].dtype == np.int8 and model.params["c2.W"].shape == (6, 2, 3, 3)
    assert model.params["c2.w_scale"].dtype == np.float32
    assert model.meta["quantization"]["folded_batchnorm"] == ["b1", "b2", "b3"]
    assert model.meta["quantization"]["calibration_images"] == 200
    again = save_model(tmp_path / "again.npz", *model)
    reloaded = load_model(again)
    assert reloaded.blueprint == model.blueprint
    for key, value in model.params.items():
        assert reloaded.params[key].dtype == value.dtype
        np.testing.assert_array_equal(reloaded.params[key], value)


def _altered(path, out, **changes):
    """The arrays of ``path`` with ``changes`` (None deletes a key), saved to ``out``."""
    with np.load(path, allow_pickle=False) as f:
        arrays = {key: f[key] for key in f.files}
    for key, value in changes.items():
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value
    np.savez(out, **arrays)
    return out


@pytest.mark.parametrize(
    "change, message",
    [
        ({"c1.W": np.zeros((4, 1, 3, 3), np.float32)}, r"c1.W is float32; .* must be int8"),
        ({"c1.W": np.zeros((4, 1, 3, 3), np.int16)}, r"c1.W is int16; .* must be int8"),
        ({"c1.x_scale": None}, r"\['c1.x_scale'\] missing"),
        ({"f3.w_scale": np.ones(7, np.float32)}, r"f3.w_scale: expected \(8,\) .*found \(7,\)"),
        ({"c2.x_scale": np.float32(0)}, r"c2.x_scale holds 1 value\(s\) <= 0; .* positive"),
        ({"f4.w_scale": -np.ones(10, np.float32)}, r"f4.w_scale .* must be positive"),
        ({"f3.x_scale": np.float32(np.nan)}, r"f3.x_scale holds 1 NaN .* finite positive number"),
        ({"c1.W": np.full((4, 1, 3, 3), -128, np.int8)}, r"c1.W holds -128; .*\[-127, 127\]"),
        ({"f4.b": np.zeros(10, np.int8)}, r"f4.b is int8; parameters must be floating point"),
    ],
)
def test_a_damaged_int8_file_is_refused_with_one_line(int8_file, change, message, tmp_path, capsys):
    bad = _altered(int8_file, tmp_path / "altered.npz", **change)
    with pytest.raises(UserError, match=message):
        load_model(bad)
    assert main.main(["evaluate", "--params", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {bad}: ")


def test_quantize_then_evaluate_runs_the_int8_model_end_to_end(tmp_path, capsys, float_file):
    int8_file = tmp_path / "tiny.int8.npz"
    argv = [
        "quantize",
        "--params",
        str(float_file),
        "--calibration",
        "200",
        "--out",
        str(int8_file),
    ]
    assert main.main(argv) == 0
    out = capsys.readouterr().out
    assert f"{float_file} -> {int8_file}: 4 layers in int8 (c1, c2, f3, f4)" in out
    assert "3 batch norms folded" in out and "input scales from 200 training images" in out
    argv = ["evaluate", "--params", str(int8_file), "--out", str(tmp_path / "eval")]
    assert main.main(argv) == 0
    out = capsys.readouterr().out
    model = load_model(int8_file)
    x, y, _ = load_test_set(model.meta)
    pred = predict_proba(model.params, model.blueprint, x).argmax(axis=1)
    assert f"test accuracy {100 * np.mean(pred == y):.2f}% ({int((pred != y).sum())} errors" in out
    assert "tiny, digits, seed 0" in out and "int8" in out.splitlines()[0]


def test_quantize_refuses_to_replace_a_file_or_requantize_or_overcalibrate(
    tmp_path, float_file, int8_file, capsys
):
    float_file = Path(shutil.copy(float_file, tmp_path / "model.npz"))
    int8_file = Path(shutil.copy(int8_file, tmp_path / "model.int8.npz"))
    cases = [
        (["--params", str(float_file)], f"error: {int8_file} exists already; replace it with "),
        (["--params", str(float_file), "--out", str(float_file)], "which this command reads"),
        (["--params", str(int8_file), "--out", str(tmp_path / "x.npz")], "already quantized"),
        (["--params", str(float_file), "--out", str(tmp_path / "y.npz"),
          "--calibration", "5000"], "--calibration 5000: the digits training set has only 1437"),
    ]  # fmt: skip
    for argv, message in cases:
        assert main.main(["quantize", *argv]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
    assert main.main(["quantize", "--params", str(float_file), "--overwrite"]) == 0
    assert load_model(int8_file).meta["quantization"]["calibration_images"] == 1000


def test_training_refuses_an_int8_checkpoint_and_an_int8_blueprint(int8_file, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(int8_file, run / "checkpoint.npz")
    assert main.main(["train", "--resume", "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"{run / 'checkpoint.npz'}: a quantized (int8) model (layers c1, c2, f3, f4)" in err
    arch = tmp_path / "int8.json"
    arch.write_text(json.dumps(load_model(int8_file).blueprint))
    argv = ["train", "--dataset", "digits", "--arch", str(arch), "--out", str(tmp_path / "new")]
    assert main.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "are quantized (int8), for inference only" in err


@pytest.mark.parametrize(
    "command",
    [
        ["prune", "--sparsity", "0.5", "--params", "INT8"],
        ["train", "--dataset", "digits", "--arch", "tiny.json", "--init-from", "INT8"],
    ],
    ids=["prune", "init-from"],
)
def test_pruning_and_transfer_refuse_an_int8_model_with_one_line(
    int8_file, float_file, command, tmp_path, capsys
):
    (tmp_path / "tiny.json").write_text(json.dumps(load_model(float_file).blueprint))
    given = {"INT8": str(int8_file), "tiny.json": str(tmp_path / "tiny.json")}
    argv = [given.get(arg, arg) for arg in command] + ["--out", str(tmp_path / "out")]
    assert main.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"{int8_file}: a quantized (int8) model (layers c1, c2, f3, f4)" in err
    assert "needs the float model it was made from" in err
    assert not (tmp_path / "out").exists()


def test_predict_runs_an_int8_digit_model(tmp_path, capsys):
    blueprint = validate_blueprint(
        [
            {"type": "conv", "name": "c1", "filters": 4, "kernel": 3, "pad": 1},
            {"type": "batchnorm", "name": "b1"},
            {"type": "relu"},
            {"type": "maxpool"},
            {"type": "flatten"},
            {"type": "fc", "name": "f2", "units": 10},
        ]
    )
    params = tiny_params(blueprint, (1, 28, 28))
    x = np.random.default_rng(4).standard_normal((50, 1, 28, 28)).astype(np.float32)
    meta = {
        "input_shape": [1, 28, 28],
        "dataset": "mnist",
        "class_names": [str(d) for d in range(10)],
        "normalization": {"mean": [0.13], "std": [0.31]},
        "config": {"arch": "tiny"},
        "seed": 0,
    }
    path = save_model(tmp_path / "tiny.int8.npz", *quantize_model(params, blueprint, x)[:2], meta)
    picture = np.zeros((28, 28), np.uint8)
    picture[4:24, 12:16] = 255  # a "1"
    png = tmp_path / "one.png"
    Image.fromarray(picture).save(png)
    assert main.main(["predict", str(png), "--params", str(path)]) == 0
    model = load_model(path)
    x = model_inputs(load_digit_image(png)[None, None], model.meta)
    classes, _ = top_k(predict_proba(model.params, model.blueprint, x), 3)
    top = ", ".join(model.meta["class_names"][c] for c in classes[0])
    out = capsys.readouterr().out
    assert out.startswith(f"{png}: {classes[0, 0]}   top 3: ")
    assert [part.split(" ")[0] for part in out.split("top 3: ")[1].split(", ")] == top.split(", ")
