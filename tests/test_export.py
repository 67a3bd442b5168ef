"""ONNX export: every preset, the shipped models and int8 files, run by ONNX Runtime against
numpy-cnn; the batch axis; 8x8 and 3x32x32 inputs; nested residual nodes; the refusals.

Fresh models get random batch-norm statistics (tiny_params), so that folding changes
something. The check compares probabilities within 1e-5 (float) and classes up to the share of
ties (int8): core/export/check.py.
"""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from test_quantize import tiny_blueprint, tiny_params

import main
from core.export.check import FLOAT_TOLERANCE, check_onnx, pixels_of, run_onnx
from core.export.graph import DEFAULT_OPSET, build_onnx
from core.export.kinds import TRANSLATIONS
from core.export.onnx_file import CHECK_IMAGES, export_file
from core.learn.eval import predict_proba
from core.report import model_inputs
from data import fit_normalization, load_dataset
from data.errors import UserError
from model.blueprints import PRESETS, validate_blueprint
from model.params_io import load_model, save_checkpoint, save_model
from model.quantize import quantize_model
from model.trained import Model
from model.walk import KINDS

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "best_params.npz"
FASHION = ROOT / "plot/fashion/fashion_params.npz"
ENSEMBLE = sorted((ROOT / "plot/ensemble").glob("*/best_params.npz"))
ADVERSARIAL = ROOT / "plot/inside/adversarial/adversarial_params.npz"
CHECKED = 256  # inputs each model is checked on


@pytest.fixture(scope="module")
def mnist():
    return load_dataset("mnist")


def fresh_model(blueprint, dataset, shape, loss="cross_entropy"):
    """A freshly initialized Model of ``blueprint`` (random batch-norm statistics too), with
    the meta the trainer writes, normalized on the dataset's training set."""
    blueprint = validate_blueprint(blueprint)
    norm = fit_normalization(dataset.x_train)
    meta = {
        "input_shape": list(shape),
        "dataset": dataset.name,
        "class_names": list(dataset.class_names),
        "normalization": {"mean": norm.mean.tolist(), "std": norm.std.tolist()},
        "config": {"arch": "test", "loss": loss},
        "seed": 0,
    }
    return Model(tiny_params(blueprint, tuple(shape)), blueprint, meta)


def exported(model, raw, logits=False, opset=21):
    """(serialized ONNX model, Agreement) of ``model`` checked on ``raw``."""
    proto = build_onnx(model, None, opset, logits)
    return proto.SerializeToString(), check_onnx(proto, model, raw, logits)


# -- every kind, every preset -----------------------------------------------------------------


def test_every_layer_kind_has_an_onnx_translation():
    assert set(TRANSLATIONS) == set(KINDS)


def test_the_command_line_defaults_are_the_exporters(capsys):
    from core.commands.export import DEFAULT_OPSET as command_opset

    assert command_opset == DEFAULT_OPSET
    with pytest.raises(SystemExit):
        main.main(["export", "--help"])
    assert f"(default: {CHECK_IMAGES})" in " ".join(capsys.readouterr().out.split())


IMAGE_PRESETS = ["minivgg", "minivgg_bn", "minivgg_bn_dropout", "lenet5", "wide", "resnet",
                 "mobilenet"]  # fmt: skip
assert set(IMAGE_PRESETS) | {"mlp", "mlp_regression"} == set(PRESETS)


@pytest.mark.parametrize("preset", IMAGE_PRESETS)
def test_a_fresh_preset_agrees_with_onnx_runtime(preset, mnist):
    model = fresh_model(PRESETS[preset](10), mnist, (1, 28, 28))
    _, agreement = exported(model, mnist.x_test[:CHECKED])
    assert agreement.images == CHECKED and agreement.output == "probabilities"
    assert agreement.largest <= FLOAT_TOLERANCE and agreement.same_class == CHECKED


def test_the_mlp_on_points_and_the_regression_mlp():
    spiral = load_dataset("spiral")
    model = fresh_model(PRESETS["mlp"](len(spiral.class_names)), spiral, (2,))
    _, agreement = exported(model, spiral.x_test[:CHECKED])
    assert agreement.passed and agreement.output == "probabilities"
    polynomial = load_dataset("polynomial")
    model = fresh_model(PRESETS["mlp_regression"](1), polynomial, (1,), loss="mse")
    serialized, agreement = exported(model, polynomial.x_test[:CHECKED])
    assert agreement.output == "predictions" and agreement.largest <= agreement.tolerance
    assert onnx.load_from_string(serialized).graph.output[0].name == "predictions"


def test_logits_are_the_scores_and_their_softmax_the_probabilities(mnist):
    model = fresh_model(tiny_blueprint(), load_dataset("digits"), (1, 8, 8))
    raw = load_dataset("digits").x_test[:CHECKED]
    logits, agreement = exported(model, raw, logits=True)
    probabilities, _ = exported(model, raw)
    scores = run_onnx(logits, pixels_of(raw))
    assert agreement.output == "logits" and agreement.passed
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    np.testing.assert_allclose(run_onnx(probabilities, pixels_of(raw)),
                               shifted / shifted.sum(axis=1, keepdims=True), atol=1e-6)  # fmt: skip


# -- shapes and the batch axis --------------------------------------------------------------------


def test_8x8_digits_and_the_batch_axis_at_1_and_1000():
    digits = load_dataset("digits")
    model = fresh_model(tiny_blueprint(), digits, (1, 8, 8))
    serialized, agreement = exported(model, digits.x_test[:CHECKED])
    assert agreement.passed
    raw = np.concatenate([digits.x_test, digits.x_train])[:1000]
    reference = predict_proba(model.params, model.blueprint, model_inputs(raw, model.meta))
    for n in (1, 1000):
        got = run_onnx(serialized, pixels_of(raw[:n]))
        assert got.shape == (n, 10)
        np.testing.assert_allclose(got, reference[:n], atol=FLOAT_TOLERANCE, rtol=0)
    dims = onnx.load_from_string(serialized).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["N", 1, 8, 8]


def test_a_3x32x32_model_with_three_channels_normalized_each():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (300, 3, 32, 32), dtype=np.uint8)
    images[:, 1] //= 2  # the channels' statistics differ

    class Colour:  # a dataset of random colour pictures, the fields fresh_model reads
        name, x_train, class_names = "cifar10", images, tuple("abcdefghij")

    model = fresh_model(PRESETS["resnet"](10), Colour, (3, 32, 32))
    assert len(set(model.meta["normalization"]["mean"])) == 3
    serialized, agreement = exported(model, images[:CHECKED])
    assert agreement.largest <= FLOAT_TOLERANCE and agreement.same_class == CHECKED
    assert run_onnx(serialized, pixels_of(images[:1])).shape == (1, 10)


def test_nested_residual_nodes_unfolded_batch_norm_and_every_other_kind(mnist):
    inner = {"type": "residual", "name": "inner", "body": [
        {"type": "conv", "name": "i1", "filters": 6, "kernel": 3, "pad": 1, "groups": 3},
        {"type": "sigmoid"},
    ]}  # fmt: skip
    outer = {"type": "residual", "name": "outer", "body": [inner, {"type": "tanh"}, inner | {
        "name": "inner2", "body": [{"type": "batchnorm", "name": "bn_alone"}]}],
        "shortcut": [{"type": "conv", "name": "proj", "filters": 6, "kernel": 1}]}  # fmt: skip
    blueprint = [
        {"type": "conv", "name": "c1", "filters": 6, "kernel": [3, 2], "stride": 2, "pad": 1},
        {"type": "leaky_relu", "alpha": 0.1},
        outer,
        {"type": "avgpool", "size": 3, "stride": 2},
        {"type": "global_avgpool"},
        {"type": "dropout", "p": 0.5},
        {"type": "batchnorm", "name": "bn_vector"},  # after dropout: not folded, (N, D)
        {"type": "fc", "name": "out", "units": 10},
    ]
    model = fresh_model(blueprint, mnist, (1, 28, 28))
    serialized, agreement = exported(model, mnist.x_test[:CHECKED])
    assert agreement.largest <= FLOAT_TOLERANCE and agreement.same_class == CHECKED
    ops = [node.op_type for node in onnx.load_from_string(serialized).graph.node]
    assert ops.count("Add") == 3 and ops.count("BatchNormalization") == 2, ops
    assert "Dropout" not in ops


# -- int8 ------------------------------------------------------------------------------------------


def test_an_int8_model_runs_its_integer_arithmetic_in_onnx_runtime():
    digits = load_dataset("digits")
    model = fresh_model(tiny_blueprint(), digits, (1, 8, 8))
    x = model_inputs(digits.x_train[:300], model.meta)
    params, blueprint, _ = quantize_model(model.params, model.blueprint, x)
    int8 = Model(params, blueprint, model.meta)
    serialized, agreement = exported(int8, digits.x_test[:CHECKED])
    assert agreement.int8 and agreement.same_class == CHECKED
    assert agreement.largest <= FLOAT_TOLERANCE  # exact integer sums: only float rounding left
    graph = onnx.load_from_string(serialized).graph
    ops = {node.op_type for node in graph.node}
    assert {"QuantizeLinear", "ConvInteger", "MatMulInteger"} <= ops and "Conv" not in ops
    weights = {t.name: t.data_type for t in graph.initializer}
    assert weights["c1.W"] == weights["f4.W"] == onnx.TensorProto.INT8


def test_the_shipped_model_quantized_by_the_command_exports(tmp_path):
    params = tmp_path / "best_params.npz"
    params.write_bytes(SHIPPED.read_bytes())
    assert main.main(["quantize", "--params", str(params), "--calibration", "200"]) == 0
    done = export_file(params.with_suffix(".int8.npz"), check_images=CHECKED)
    assert done.agreement.int8 and done.agreement.passed


# -- the shipped models, through the file -------------------------------------------------------


def test_the_shipped_model_exports_beside_itself_with_its_metadata(tmp_path):
    params = tmp_path / "best_params.npz"
    params.write_bytes(SHIPPED.read_bytes())
    assert main.main(["export", "--params", str(params), "--check", str(CHECKED)]) == 0
    proto = onnx.load(params.with_suffix(".onnx"))
    onnx.checker.check_model(proto, full_check=True)
    props = {p.key: p.value for p in proto.metadata_props}
    meta = load_model(params).meta
    assert json.loads(props["class_names"]) == meta["class_names"]
    assert json.loads(props["input_shape"]) == [1, 28, 28] and props["dataset"] == "mnist"
    assert props["source"] == "best_params.npz" and len(props["source_sha256"]) == 64
    assert proto.opset_import[0].version == 21 and proto.graph.output[0].name == "probabilities"


@pytest.mark.parametrize("params", [FASHION, ADVERSARIAL, *ENSEMBLE],
                         ids=lambda p: str(p.relative_to(ROOT)))  # fmt: skip
def test_a_shipped_model_exports_and_agrees(params, tmp_path):
    done = export_file(params, tmp_path / "model.onnx", check_images=CHECKED)
    assert done.agreement.largest <= FLOAT_TOLERANCE and done.agreement.same_class == CHECKED


@pytest.mark.parametrize("opset", [13, onnx.defs.onnx_opset_version()])
def test_the_lowest_and_highest_opsets(opset):
    digits = load_dataset("digits")
    model = fresh_model(tiny_blueprint(), digits, (1, 8, 8))
    serialized, agreement = exported(model, digits.x_test[:CHECKED], opset=opset)
    assert agreement.passed
    assert onnx.load_from_string(serialized).opset_import[0].version == opset


# -- refusals -------------------------------------------------------------------------------------


@pytest.fixture
def digits_file(tmp_path):
    digits = load_dataset("digits")
    model = fresh_model(tiny_blueprint(), digits, (1, 8, 8))
    return save_model(tmp_path / "model.npz", *model)


def refused(capsys, argv):
    assert main.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_an_existing_output_is_replaced_only_with_overwrite(digits_file, capsys):
    out = digits_file.with_suffix(".onnx")
    out.write_text("the user's file")
    err = refused(capsys, ["export", "--params", str(digits_file)])
    assert "exists already" in err and "--overwrite" in err
    assert out.read_text() == "the user's file"
    assert main.main(["export", "--params", str(digits_file), "--overwrite"]) == 0
    assert onnx.load(out).graph.output[0].name == "probabilities"


def test_a_folder_as_out_the_model_file_itself_and_a_missing_folder(digits_file, capsys):
    assert "a folder" in refused(capsys, ["export", "--params", str(digits_file), "--out",
                                          str(digits_file.parent)])  # fmt: skip
    same = refused(capsys, ["export", "--params", str(digits_file), "--out", str(digits_file)])
    assert "the model file itself" in same
    missing = digits_file.parent / "nowhere" / "m.onnx"
    assert "does not exist" in refused(capsys, ["export", "--params", str(digits_file),
                                                "--out", str(missing)])  # fmt: skip
    assert list(digits_file.parent.iterdir()) == [digits_file]


def test_a_checkpoint_and_an_opset_out_of_range_are_refused(digits_file, capsys):
    model = load_model(digits_file)
    checkpoint = save_checkpoint(digits_file.with_name("checkpoint.npz"), model.params, {},
                                 model.blueprint, model.meta)  # fmt: skip
    err = refused(capsys, ["export", "--params", str(checkpoint)])
    assert "checkpoint" in err and "best_params.npz" in err
    err = refused(capsys, ["export", "--params", str(digits_file), "--opset", "9"])
    assert "--opset 9" in err
    assert not list(digits_file.parent.glob("*.onnx"))


def test_a_kind_without_a_translation_is_refused_naming_the_layer(monkeypatch):
    digits = load_dataset("digits")
    model = fresh_model(tiny_blueprint(), digits, (1, 8, 8))
    monkeypatch.delitem(TRANSLATIONS, "maxpool")
    with pytest.raises(UserError, match=r"layer maxpool \(maxpool\): no ONNX translation"):
        build_onnx(model, None)


def test_an_export_that_disagrees_fails_with_one_line():
    digits = load_dataset("digits")
    model = fresh_model(tiny_blueprint(), digits, (1, 8, 8))
    proto = build_onnx(model, None)
    moved = model.params["f4.b"] + np.arange(10, dtype=np.float32) / 10  # numpy-cnn's scores
    wrong = model.params | {"f4.b": moved}
    with pytest.raises(UserError, match="disagrees with numpy-cnn") as err:
        check_onnx(proto, model._replace(params=wrong), digits.x_test[:CHECKED])
    assert "\n" not in str(err.value)
