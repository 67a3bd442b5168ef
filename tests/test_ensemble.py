"""Ensembles (core/experiments/ensemble.py, evaluate and predict with several --params): the mean of the
members' softmax probabilities, each member normalizing with its own statistics; members
that do not fit together are refused with one line naming the file and both values.

The members are tiny MLPs on the 8x8 digits, trained once for the module.
"""

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest

import main
from core.experiments.ensemble import ensemble_table, load_members, member_probs
from core.learn.config import RECIPES
from core.learn.eval import predict_proba
from core.learn.train import train
from core.report import evaluation_dir, load_test_set, model_inputs
from data.errors import UserError
from model.params_io import load_model, save_model

ROOT = Path(main.__file__).resolve().parent
MLP = str(ROOT / "plot" / "sweep_digits" / "mlp_digits.json")


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    """Three model files of the digits: MLPs of seeds 0, 1, 2, one epoch on 300 images."""
    paths = []
    for seed in range(3):
        out = tmp_path_factory.mktemp(f"seed{seed}")
        config = dataclasses.replace(
            RECIPES["default"], dataset="digits", arch=MLP, limit=300, epochs=1, seed=seed
        )
        train(config, out)
        paths.append(out / "best_params.npz")
    return paths


def test_the_ensemble_averages_each_members_own_probabilities(members):
    models = load_members(members)
    _, y, raw = load_test_set(models[0].meta)
    probs = member_probs(models, raw)
    assert probs.shape == (3, len(y), 10)
    for model, p in zip(models, probs, strict=True):  # each with its own normalization
        expected = predict_proba(model.params, model.blueprint, model_inputs(raw, model.meta))
        np.testing.assert_array_equal(p, expected)
    table = ensemble_table(members, probs, y)
    # the members by the folders that tell them apart, not best_params.npz three times
    assert list(table["model"]) == [f"{p.parent.name}/{p.name}" for p in members] + ["ensemble"]
    mean = probs.mean(axis=0)
    assert table["accuracy"].iloc[-1] == pytest.approx(np.mean(mean.argmax(axis=1) == y))
    assert table["errors"].iloc[-1] == int((mean.argmax(axis=1) != y).sum())
    for path, p, row in zip(members, probs, table.iloc[:-1].itertuples(), strict=True):
        assert row.model == f"{path.parent.name}/{path.name}"
        assert row.accuracy == pytest.approx(np.mean(p.argmax(axis=1) == y))


def test_evaluate_with_several_params_prints_each_member_and_the_ensemble(
    members, tmp_path, capsys
):
    assert main.main(["evaluate", "--params", *map(str, members), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    models = load_members(members)
    _, y, raw = load_test_set(models[0].meta)
    table = ensemble_table(members, member_probs(models, raw), y)
    for row in table.itertuples():
        # the table's line: after the line that describes each file
        line = [ln for ln in out.splitlines() if ln.strip().startswith(row.model)][-1]
        assert re.search(rf"\b{row.accuracy:.4f}\b", line), line
    assert "softmax probabilities averaged" in out
    assert (tmp_path / "confusion_matrix_test.png").is_file()


def test_evaluate_with_one_params_is_unchanged(members, tmp_path, capsys):
    assert main.main(["evaluate", "--params", str(members[0]), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "ensemble" not in out and re.search(r"test accuracy \d+\.\d\d% ", out)


def test_members_of_another_dataset_or_input_shape_are_refused(members, tmp_path, capsys):
    model = load_model(members[1])
    other = tmp_path / "other.npz"
    # a dataset the program does not know: a known one of another input shape (mnist) is
    # refused when the file is loaded (tests/test_hostile.py)
    meta = {**model.meta, "dataset": "my-digits"}
    save_model(other, model.params, model.blueprint, meta)
    with pytest.raises(UserError) as info:
        load_members([members[0], other])
    message = str(info.value)
    assert str(other) in message and "dataset my-digits" in message and "digits" in message
    assert main.main(["evaluate", "--params", str(members[0]), str(other)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(other) in err and "Traceback" not in err

    names = tmp_path / "names.npz"
    save_model(
        names, model.params, model.blueprint, {**model.meta, "class_names": list("abcdefghij")}
    )
    with pytest.raises(UserError, match="class_names"):
        load_members([members[0], names])


def test_ensemble_folders_are_one_per_list_of_files(members):
    assert evaluation_dir(members) == evaluation_dir(list(members))
    assert evaluation_dir(members) != evaluation_dir(members[:2])
    assert evaluation_dir(members) != evaluation_dir(members[::-1])
    assert evaluation_dir(members).name.startswith("ensemble-")


@pytest.mark.slow
def test_predict_averages_an_int8_member_and_the_shipped_model(tmp_path, capsys):
    from PIL import Image

    from core.compress.quantize import quantize_file
    from data.digit_image import load_digit_image

    int8 = quantize_file(ROOT / "best_params.npz", tmp_path / "int8.npz", 200, None, False).path
    picture = tmp_path / "seven.png"
    images = load_test_set(load_model(ROOT / "best_params.npz").meta)[2]
    Image.fromarray(255 - images[0, 0]).save(picture)  # a dark digit on white, as photographed
    paths = [ROOT / "best_params.npz", int8]
    assert main.main(["predict", str(picture), "--params", *map(str, paths)]) == 0
    out = capsys.readouterr().out
    image = load_digit_image(picture)
    models = [load_model(p) for p in paths]
    mean = member_probs(models, image[None, None]).mean(axis=0)[0]
    assert f"{picture}: {mean.argmax()}" in out
    assert f"({100 * mean.max():.1f}%)" in out
    assert "members: best_params.npz" in out and "int8.npz" in out
