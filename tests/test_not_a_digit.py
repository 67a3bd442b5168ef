"""The not-a-digit check (core/learn/ood.py): its scores, its verdict on real digits and on
pictures that are none, and its record's checks at load."""

import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.learn import ood
from core.learn.eval import predict_scores
from core.learn.model_file import load_model
from data.digit_image import digit_image_from_bytes, load_digit_image
from data.errors import UserError
from model.meta_checks import check_meta_records

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "best_params.npz"


@pytest.fixture(scope="module")
def model():
    return load_model(SHIPPED)


def _verdict(model, image):
    logits = predict_scores(
        model.params, model.blueprint, model.inputs(image[None, None] / np.float32(255))
    )
    return ood.verdict(model, logits[0], image, "x")


def _prepared(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return digit_image_from_bytes(buffer.getvalue(), "a picture")


def test_the_energy_score_is_minus_logsumexp():
    logits = np.array([[1.0, 2.0, 3.0], [1000.0, 0.0, -5.0]])
    expected = [
        -np.log(np.exp(logits[0]).sum()),
        -1000.0 - np.log(1 + np.exp(-1000) + np.exp(-1005)),
    ]
    np.testing.assert_allclose(ood.energy(logits), expected)


def test_the_statistics_are_independent_so_their_covariance_inverts():
    rng = np.random.default_rng(0)
    pictures = (rng.random((500, 28, 28)) ** rng.uniform(1, 8, (500, 1, 1)) * 255).astype(np.uint8)
    assert np.linalg.cond(np.cov(ood.picture_stats(pictures).T)) < 1e8


def test_the_shipped_model_carries_a_record_with_its_thresholds(model):
    record = model.meta["ood"]
    assert record["looks_like"] == "digit" and record["false_alarm_rate"] <= 0.01
    assert np.all(np.linalg.eigvalsh(np.asarray(record["precision"])) > 0)


def test_a_real_digit_is_a_digit(model):
    assert _verdict(model, load_digit_image(ROOT / "docs" / "digit.png")) is None


@pytest.mark.parametrize("kind", ["noise", "one dark pixel"])
def test_pictures_that_are_no_digit_are_said_so(model, kind):
    rng = np.random.default_rng(3)
    if kind == "noise":
        array = rng.integers(0, 256, (280, 280)).astype(np.uint8)
    else:
        array = np.full((100, 100), 255, np.uint8)
        array[40, 60] = 0
    assert _verdict(model, _prepared(array)) == "this does not look like a digit"


def test_a_model_without_a_record_gets_no_verdict_and_no_other_models_threshold(model):
    bare = model._replace(meta={k: v for k, v in model.meta.items() if k != "ood"})
    noise = _prepared(np.random.default_rng(4).integers(0, 256, (200, 200)).astype(np.uint8))
    assert _verdict(bare, noise) is None


def test_outputs_that_are_not_finite_are_refused_never_printed(model):
    with pytest.raises(UserError, match="not finite"):
        ood.verdict(model, np.array([np.nan] * 10), np.zeros((28, 28), np.uint8), "m.npz")


SIX = np.eye(6).tolist()
MALFORMED = {  # {case: (fields changed, the field the refusal names)}
    "a precision of one row": ({"precision": [[1.0, 2.0]]}, "ood"),
    "a NaN threshold": ({"energy_threshold": float("nan")}, "ood.energy_threshold"),
    "a negative distance threshold": ({"distance_threshold": -1.0}, "ood.distance_threshold"),
    "a mean no picture gives": ({"mean": [0.1, 0.2, 0.1, 0.2, 0.1, 50.0]}, "ood.mean"),
    "a precision that overflows": ({"precision": (np.eye(6) * 1e300).tolist()}, "ood.precision"),
    "a precision not symmetric": (
        {"precision": np.triu(np.ones((6, 6))).tolist()},
        "ood.precision",
    ),
    "a precision not positive": ({"precision": (-np.eye(6)).tolist()}, "ood.precision"),
    "a looks_like of 5000 characters": ({"looks_like": "a" * 5000}, "ood.looks_like"),
    "an empty looks_like": ({"looks_like": " "}, "ood.looks_like"),
    "a looks_like that is a number": ({"looks_like": 7}, "ood.looks_like"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_a_malformed_record_is_refused_at_load(model, case):
    changed, field = MALFORMED[case]
    meta = {**model.meta, "ood": {**model.meta["ood"], **changed}}
    with pytest.raises(UserError, match=rf"^m\.npz: __meta__ {re.escape(field)} "):
        check_meta_records(meta, "m.npz")


def test_a_looks_like_with_terminal_escapes_is_printed_escaped(model):
    record = {**model.meta["ood"], "looks_like": "digit\x1b[2J\n"}
    check_meta_records({**model.meta, "ood": record}, "m.npz")  # text: taken, and shown escaped
    noise = _prepared(np.random.default_rng(4).integers(0, 256, (200, 200)).astype(np.uint8))
    said = _verdict(model._replace(meta={**model.meta, "ood": record}), noise)
    assert said == "this does not look like a digit\\x1b[2J\\x0a" and said.isprintable()


@pytest.mark.slow  # two training runs
def test_train_saves_a_record_in_a_digit_model_and_says_when_it_cannot(tmp_path, capsys):
    import main

    argv = ["train", "--arch", "lenet5", "--epochs", "1", "--seed", "3"]
    assert main.main([*argv, "--limit", "2000", "--out", str(tmp_path / "run")]) == 0
    said = capsys.readouterr().out
    trained = load_model(tmp_path / "run" / "best_params.npz")
    record = trained.meta["ood"]
    assert f"thresholds set on {record['validation_images']} validation pictures" in said
    assert record["validation_images"] >= ood.MIN_PICTURES and record["looks_like"] == "digit"
    check_meta_records(trained.meta, "the run's model")  # what loading checks: it loads again
    noise = _prepared(np.random.default_rng(4).integers(0, 256, (200, 200)).astype(np.uint8))
    assert _verdict(trained, noise) == "this does not look like a digit"

    assert main.main([*argv, "--limit", "300", "--out", str(tmp_path / "tiny")]) == 0
    assert "too few validation images (30)" in capsys.readouterr().out
    assert "ood" not in load_model(tmp_path / "tiny" / "best_params.npz").meta


def test_no_record_is_made_for_other_pictures_or_regression():
    assert ood.needs_record((1, 28, 28), "cross_entropy")
    assert not ood.needs_record((1, 28, 28), "mse")
    assert not ood.needs_record((1, 8, 8), "cross_entropy")
    assert not ood.needs_record((3, 28, 28), "cross_entropy")
