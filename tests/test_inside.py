"""Looking inside a network: the input gradient against finite differences in float64, the
attacks' definitions and bounds, and saliency, Grad-CAM and occlusion on networks built by
hand, where the right answer is known."""

import numpy as np
import pytest
from test_model import numerical_loss_gradient
from test_residual import SMALL_RESNET

from core.inside.attack import AttackSettings, attack, fgsm, pgd, robustness
from core.inside.explain import (
    gradcam,
    gradcam_layer,
    occlusion,
    occlusion_masks,
    resize,
    saliency,
    smoothgrad,
)
from core.inside.gradients import (
    class_score_gradient,
    layer_gradient,
    loss_gradient,
    top_level_labels,
)
from core.inside.visualize import class_models, gaussian_blur, top_activations
from core.learn.adversarial import ball, fast_fgsm_inputs
from core.learn.eval import predict_scores, softmax
from core.learn.gradcheck import rel_error
from core.report import model_inputs
from data import load_mnist
from data.errors import UserError
from data.normalization import Normalization, to_unit
from model.blueprints import PRESETS
from model.initialize_parameters import initialize_parameters
from model.params_io import load_model
from model.trained import Model

IDENTITY = Normalization(np.zeros(1, np.float32), np.ones(1, np.float32))


def random_model(blueprint, input_shape, seed=0, dtype=np.float64, norm=None):
    """A Model with random weights and, for batch norm, random running statistics (so the
    inference-mode batch norm is not the identity), its inputs normalized by ``norm``."""
    rng = np.random.default_rng(seed)
    params = initialize_parameters(blueprint, input_shape, rng, dtype)
    for key in params:
        if key.endswith(("running_mean", "beta")):
            params[key] = rng.normal(0, 0.3, params[key].shape).astype(dtype)
        elif key.endswith(("running_var", "gamma")):
            params[key] = rng.uniform(0.5, 1.5, params[key].shape).astype(dtype)
    norm = norm or Normalization(np.array([0.2], np.float32), np.array([0.4], np.float32))
    stats = {"mean": norm.mean.tolist(), "std": norm.std.tolist()}
    return Model(params, blueprint, {"normalization": stats})


NETS = {
    "minivgg": (PRESETS["minivgg"](10), (1, 8, 8)),
    "minivgg_bn_dropout (batch norm in eval mode)": (PRESETS["minivgg_bn_dropout"](10), (1, 8, 8)),
    "resnet": (SMALL_RESNET, (1, 8, 8)),
}


@pytest.mark.parametrize("name", list(NETS))
@pytest.mark.parametrize("what", ["class score", "cross-entropy"])
def test_the_input_gradient_matches_finite_differences_in_float64(name, what):
    blueprint, shape = NETS[name]
    model = random_model(blueprint, shape)
    rng = np.random.default_rng(1)
    pixels = rng.uniform(0, 1, (2, *shape))
    labels = np.array([3, 1])

    def value():
        scores = predict_scores(model.params, blueprint, model.inputs(pixels))
        if what == "class score":
            return scores[np.arange(2), labels].sum()
        return -np.log(softmax(scores)[np.arange(2), labels]).sum()

    gradient_of = class_score_gradient if what == "class score" else loss_gradient
    _, analytic = gradient_of(model, pixels.copy(), labels)
    assert analytic.dtype == np.float64 and analytic.shape == pixels.shape
    numeric = numerical_loss_gradient(value, pixels, np.arange(pixels.size))
    assert rel_error(analytic.ravel(), numeric) < 1e-7


def test_a_layers_gradient_matches_finite_differences_of_the_rest_of_the_network():
    blueprint, shape = NETS["minivgg_bn_dropout (batch norm in eval mode)"]
    model = random_model(blueprint, shape)
    pixels = np.random.default_rng(2).uniform(0, 1, (2, *shape))
    classes = np.array([1, 4])
    activations, grads = layer_gradient(model, pixels, "relu3", classes)
    above = blueprint[top_level_labels(blueprint, shape).index("relu3") + 1 :]
    assert activations.shape == grads.shape == (2, 32, 4, 4)

    def score():
        return predict_scores(model.params, above, activations)[np.arange(2), classes].sum()

    picked = np.random.default_rng(3).choice(activations.size, 40, replace=False)
    numeric = numerical_loss_gradient(score, activations, picked)
    assert rel_error(grads.ravel()[picked], numeric) < 1e-7


def test_an_unknown_layer_is_one_clear_error():
    blueprint, shape = NETS["minivgg"]
    model = random_model(blueprint, shape)
    with pytest.raises(UserError, match="no layer 'conv9'.*conv1"):
        layer_gradient(model, np.zeros((1, *shape)), "conv9", np.array([0]))


# ------------------------------------------------------------------ attacks


@pytest.fixture(scope="module")
def shipped():
    model = load_model("best_params.npz")
    ds = load_mnist()
    return model, ds.x_test[:1000], ds.y_test[:1000]


def test_pixels_reach_the_model_exactly_as_evaluate_feeds_it(shipped):
    model, images, _ = shipped
    assert np.array_equal(model.inputs(to_unit(images)), model_inputs(images, model.meta))


def test_fgsm_and_pgd_at_eps_0_give_exactly_the_clean_accuracy(shipped):
    model, images, labels = shipped
    clean = predict_scores(model.params, model.blueprint, model_inputs(images, model.meta))
    clean_accuracy = float(np.mean(clean.argmax(axis=1) == labels))
    for method in ("fgsm", "pgd"):
        table, _ = robustness(
            model, to_unit(images), labels, [0.0], AttackSettings(method, steps=2)
        )
        assert table["accuracy"].tolist() == [clean_accuracy]
    assert clean_accuracy > 0.99


def test_fgsm_is_one_signed_step_of_the_cross_entropy_gradient():
    """Softmax regression: d CE / d x = W (p - onehot(y)) / std, written out independently."""
    rng = np.random.default_rng(4)
    blueprint = [{"type": "flatten"}, {"type": "fc", "name": "fc", "units": 3}]
    norm = Normalization(np.array([0.3], np.float32), np.array([0.5], np.float32))
    model = random_model(blueprint, (1, 4, 4), norm=norm)
    x = rng.uniform(0, 1, (5, 1, 4, 4))
    y = np.array([0, 1, 2, 0, 1])
    W, b = model.params["fc.W"], model.params["fc.b"]
    p = softmax(((x.reshape(5, -1) - 0.3) / 0.5) @ W + b)
    grad = (p - np.eye(3)[y]) @ W.T / 0.5
    expected = np.clip(x + 0.1 * np.sign(grad.reshape(x.shape)), 0, 1)
    assert np.allclose(fgsm(model, x, y, 0.1), expected, rtol=0, atol=1e-15)
    inside = (x > 0.1) & (x < 0.9)
    step = (fgsm(model, x, y, 0.1) - x)[inside]
    assert np.allclose(step, 0.1 * np.sign(grad.reshape(x.shape))[inside], rtol=0, atol=1e-15)


@pytest.mark.parametrize("eps", [0.01, 0.1, 0.3, 1.0])
def test_pgd_and_fgsm_never_leave_the_eps_ball_or_0_1(shipped, eps):
    model, images, labels = shipped
    pixels = to_unit(images[:50])
    pixels[:, :, :3] = np.float32(0.7)  # values near which float32 rounding bites
    for method, settings in (("fgsm", AttackSettings("fgsm")),
                             ("pgd", AttackSettings("pgd", steps=5, step_size=0.2))):  # fmt: skip
        adversarial = attack(model, pixels, labels[:50], eps, settings)
        assert adversarial.dtype == np.float32, method
        change = np.abs(adversarial.astype(np.float64) - pixels.astype(np.float64))
        assert change.max() <= eps, method
        assert adversarial.min() >= 0 and adversarial.max() <= 1, method
        assert change.max() > 0.5 * min(eps, 0.5), method  # it did move


def test_the_ball_bounds_hold_in_exact_arithmetic_and_are_tight():
    pixels = np.float32([0.0, 0.1, 0.7, 0.9999, 1.0, 1 / 3])
    for eps in (0.0, 0.05, 0.1, 0.3):
        low, high = ball(pixels, eps)
        x = pixels.astype(np.float64)
        assert np.all(low.astype(np.float64) >= np.maximum(x - eps, 0))
        assert np.all(high.astype(np.float64) <= np.minimum(x + eps, 1))
        assert np.all(high - low >= np.minimum(x + eps, 1) - np.maximum(x - eps, 0) - 1e-6)


def test_pgd_is_at_least_as_strong_as_fgsm_and_repeatable(shipped):
    model, images, labels = shipped
    pixels, labels = to_unit(images[:100]), labels[:100]
    fgsm_table, _ = robustness(model, pixels, labels, [0.15], AttackSettings("fgsm"))
    settings = AttackSettings("pgd", steps=5, step_size=0.05)
    first, _ = robustness(model, pixels, labels, [0.15], settings)
    again, _ = robustness(model, pixels, labels, [0.15], settings)
    assert first.equals(again)
    assert first["accuracy"][0] <= fgsm_table["accuracy"][0]
    assert list(first.columns) == ["method", "eps", "accuracy"]


def test_pgd_starts_at_random_inside_the_ball():
    blueprint = [{"type": "flatten"}, {"type": "fc", "name": "fc", "units": 2}]
    model = random_model(blueprint, (1, 3, 3), norm=IDENTITY)
    x = np.full((4, 1, 3, 3), 0.5)
    a = pgd(model, x, np.zeros(4, int), 0.1, 0, 0.01, np.random.default_rng(0))
    b = pgd(model, x, np.zeros(4, int), 0.1, 0, 0.01, np.random.default_rng(1))
    assert not np.array_equal(a, b)
    assert np.abs(a - x).max() <= 0.1 and np.abs(a - x).max() > 0.05


def test_bad_attack_settings_are_clear_errors():
    model = random_model(*NETS["minivgg"])
    x, y = np.zeros((1, 1, 8, 8), np.float32), np.zeros(1, int)
    with pytest.raises(UserError, match="--method"):
        robustness(model, x, y, [0.1], AttackSettings("cw"))
    with pytest.raises(UserError, match="--eps"):
        robustness(model, x, y, [1.5], AttackSettings("fgsm"))
    with pytest.raises(UserError, match="--step-size"):
        robustness(model, x, y, [0.1], AttackSettings("pgd", step_size=0.0))


@pytest.mark.parametrize("name", ["minivgg_bn_dropout (batch norm in eval mode)", "resnet"])
def test_fast_fgsm_training_inputs_stay_in_the_ball_of_the_pixels(name):
    blueprint, shape = NETS[name]
    model = random_model(blueprint, shape, dtype=np.float32)
    rng = np.random.default_rng(5)
    pixels = rng.uniform(0, 1, (6, *shape)).astype(np.float32)
    inputs = model.inputs(pixels)
    labels = np.arange(6) % 5
    adversarial = fast_fgsm_inputs(model.params, blueprint, model.norm, inputs, labels, 0.1, rng)
    back = adversarial.astype(np.float64) * 0.4 + 0.2
    assert adversarial.dtype == np.float32 and adversarial.shape == inputs.shape
    assert np.abs(back - pixels).max() <= 0.1 + 1e-6
    assert back.min() >= -1e-6 and back.max() <= 1 + 1e-6
    assert np.abs(back - pixels).max() > 0.09


# ------------------------------------------------------------------ explanations


def masked_linear_model():
    """Scores = W·x on 3x3 pictures, where pixel 4 (the centre) has no weight at all."""
    blueprint = [{"type": "flatten"}, {"type": "fc", "name": "fc", "units": 2}]
    model = random_model(blueprint, (1, 3, 3), norm=IDENTITY)
    model.params["fc.W"][4] = 0.0
    return model


def test_a_pixel_that_cannot_affect_the_score_gets_zero_saliency():
    model = masked_linear_model()
    x = np.random.default_rng(6).uniform(0, 1, (3, 1, 3, 3))
    classes = np.array([0, 1, 1])
    maps = saliency(model, x, classes)
    assert maps.shape == (3, 3, 3)
    assert np.all(maps[:, 1, 1] == 0)
    expected = np.abs(model.params["fc.W"][:, classes].T.reshape(3, 3, 3))
    assert np.allclose(maps, expected, rtol=1e-12)


def test_smoothgrad_without_noise_is_saliency_and_with_noise_still_ignores_dead_pixels():
    model = masked_linear_model()
    x = np.random.default_rng(7).uniform(0, 1, (2, 1, 3, 3))
    classes = np.array([0, 1])
    rng = np.random.default_rng(0)
    assert np.allclose(smoothgrad(model, x, classes, rng, samples=3, noise=0.0),
                       saliency(model, x, classes))  # fmt: skip
    assert np.all(smoothgrad(model, x, classes, rng, samples=5)[:, 1, 1] == 0)


def pooled_model(weights):
    """conv 1x1 (weight 1) -> relu -> global average pooling -> fc: score_k = w_k · mean(relu(x))."""
    blueprint = [
        {"type": "conv", "name": "c", "filters": 1, "kernel": 1, "pad": 0},
        {"type": "relu"},
        {"type": "global_avgpool"},
        {"type": "fc", "name": "fc", "units": len(weights)},
    ]
    model = random_model(blueprint, (1, 4, 4), norm=IDENTITY)
    model.params["c.W"][:] = 1.0
    model.params["c.b"][:] = 0.0
    model.params["fc.W"][:] = np.array([weights])
    model.params["fc.b"][:] = 0.0
    return model


def test_gradcam_of_a_pooled_net_is_the_positive_input_for_a_class_it_raises():
    model = pooled_model([2.0, -1.0])
    x = np.random.default_rng(8).normal(0, 1, (2, 1, 4, 4))
    assert gradcam_layer(model.blueprint, (1, 4, 4)) == "relu1"
    cam, layer = gradcam(model, x, np.array([0, 1]))
    assert layer == "relu1" and cam.shape == (2, 4, 4)
    # alpha = 2 / 16 for class 0: cam = relu(alpha * relu(x)); class 1's alpha is negative
    assert np.allclose(cam[0], 2 / 16 * np.maximum(x[0, 0], 0), rtol=1e-12)
    assert np.all(cam[1] == 0)


def test_resize_matches_a_loop_and_keeps_constants():
    maps = np.random.default_rng(9).normal(size=(2, 3, 4))
    out = resize(maps, (7, 5))
    expected = np.empty((2, 7, 5))
    for i in range(7):
        for j in range(5):
            y = min(max((i + 0.5) * 3 / 7 - 0.5, 0), 2)
            x = min(max((j + 0.5) * 4 / 5 - 0.5, 0), 3)
            y0, x0 = int(y), int(x)
            y1, x1 = min(y0 + 1, 2), min(x0 + 1, 3)
            ty, tx = y - y0, x - x0
            expected[:, i, j] = ((1 - ty) * (1 - tx) * maps[:, y0, x0] + (1 - ty) * tx * maps[:, y0, x1]
                                 + ty * (1 - tx) * maps[:, y1, x0] + ty * tx * maps[:, y1, x1])  # fmt: skip
    assert np.allclose(out, expected, rtol=1e-12)
    assert np.allclose(resize(np.full((1, 7, 7), 3.0), (28, 28)), 3.0)


def test_occlusion_matches_a_loop_over_the_squares():
    blueprint, shape = NETS["minivgg"]
    model = random_model(blueprint, shape)
    x = np.random.default_rng(10).uniform(0, 1, (2, *shape))
    classes = np.array([2, 5])
    maps = occlusion(model, x, classes, patch=3, stride=2)
    total, count = np.zeros((2, 8, 8)), np.zeros((8, 8))
    probs = softmax(predict_scores(model.params, blueprint, model.inputs(x)))
    for top in range(0, 6, 2):
        for left in range(0, 6, 2):
            hidden = x.copy()
            hidden[:, :, top : top + 3, left : left + 3] = 0
            p = softmax(predict_scores(model.params, blueprint, model.inputs(hidden)))
            total[:, top : top + 3, left : left + 3] += (probs - p)[np.arange(2), classes][
                :, None, None
            ]
            count[top : top + 3, left : left + 3] += 1
    assert np.allclose(maps, total / np.maximum(count, 1), rtol=1e-10, atol=1e-15)
    assert occlusion_masks((8, 8), 3, 2).shape == (9, 8, 8)


def test_occlusion_of_a_pixel_the_score_ignores_is_zero():
    model = masked_linear_model()
    x = np.random.default_rng(11).uniform(0, 1, (1, 1, 3, 3))
    maps = occlusion(model, x, np.array([0]), patch=1, stride=1)
    assert maps[0, 1, 1] == 0 and np.count_nonzero(maps) == 8


# ------------------------------------------------------------------ visualization


def test_a_class_model_scores_its_class_far_above_the_start(shipped):
    model, _, _ = shipped
    classes = np.array([3, 8])
    pictures, scores = class_models(model, classes, (1, 28, 28), np.random.default_rng(0))
    assert pictures.shape == (2, 1, 28, 28) and pictures.dtype == np.float32
    assert pictures.min() >= 0 and pictures.max() <= 1
    start = class_score_gradient(model, np.zeros((2, 1, 28, 28), np.float32), classes)[0]
    assert np.all(scores > start[np.arange(2), classes] + 5)
    assert np.all(predict_scores(model.params, model.blueprint,
                                 model.inputs(pictures)).argmax(axis=1) == classes)  # fmt: skip


def test_the_blur_keeps_constants_and_spreads_a_point():
    flat = np.full((1, 1, 5, 5), 0.4, np.float32)
    assert np.allclose(gaussian_blur(flat, 0.5), 0.4)
    point = np.zeros((1, 1, 5, 5))
    point[0, 0, 2, 2] = 1
    blurred = gaussian_blur(point, 0.5)
    assert np.isclose(blurred.sum(), 1) and 0 < blurred[0, 0, 2, 3] < blurred[0, 0, 2, 2] < 1


def test_top_activations_are_the_pictures_with_the_largest_channel_maximum():
    blueprint, shape = NETS["minivgg"]
    model = random_model(blueprint, shape)
    x = np.random.default_rng(12).uniform(0, 1, (30, *shape))
    top = top_activations(model, x, "relu1", k=4)
    out = predict_scores(model.params, blueprint[:2], model.inputs(x))
    strongest = out.max(axis=(2, 3))  # (N, C)
    for c in range(out.shape[1]):
        assert list(top.indices[c]) == list(np.argsort(-strongest[:, c], kind="stable")[:4])
        assert np.allclose(top.values[c], np.sort(strongest[:, c])[::-1][:4])
    with pytest.raises(UserError, match="--layer fc5: choose a layer that makes maps"):
        top_activations(model, x, "fc5", k=2)
