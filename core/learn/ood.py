"""Not a digit: is a prepared picture far from what a model was trained on?

Two measured scores, each with its threshold set on the model's own validation split
(docs/not-a-digit.md has the table and the command that measured it):

- the energy score of the network's logits s (K,), ``-logsumexp(s)`` (Liu et al. 2020):
  high where no class is strongly supported (a stroke, a shoe);
- the distance of the picture's pixel statistics (``picture_stats``: mean, spread, ink
  area, stroke edges) from the training images', a Mahalanobis distance: high for noise,
  gradients and a single dark pixel, which the network itself reads with confidence.

A picture is "not a digit" when either score is above its threshold. Each threshold is the
``1 - FALSE_ALARMS / 2`` quantile of the scores of the validation images, prepared as a
user's picture is (``drawn``: dark on white, 10 times larger, and as the image's own PNG
file, each then through data/digit_image.py), so at most FALSE_ALARMS of real digits are
flagged; the pixel statistics are fitted on training images prepared the same two ways.
The record (``calibrate``) is saved in the model file's meta under "ood": ``train`` saves one
in every 1x28x28 classifier it makes (``save_record``); a model file without one gets no
verdict, never another model's threshold.
"""

import io

import numpy as np
from PIL import Image

from core.learn.eval import predict_scores
from core.learn.model_file import load_model
from core.learn.prepare import prepare_data
from data.digit_image import CANVAS_SIDE, digit_image_from_bytes
from data.errors import UserError
from model.meta_checks import label
from model.params_io import save_model
from model.trained import inputs_to_pixels

# Of real validation digits flagged, both scores together: half the 1% allowed on real
# digits, since a threshold set on 5,000 validation images flags more of unseen ones.
FALSE_ALARMS = 0.005
STATS_IMAGES = 5_000  # training images the statistics are fitted on, each in two ways
DRAWN_SCALE = 10  # a validation digit is drawn this much larger, as on the live page
# Fewer validation pictures than this set no threshold worth the name (a tiny --limit run):
# the 99.75% quantile of 200 scores is their maximum.
MIN_PICTURES = 400


def picture_stats(images):
    """Pixel statistics of prepared pictures: (N, 28, 28) or (N, 1, 28, 28) uint8 ->
    (N, 6) float64: mean, std, fraction above 0.5, fraction above 0.05, mean absolute
    difference of neighbours (edges), fraction above 0.95 (solid ink). No statistic is a
    sum of others, so their covariance can be inverted."""
    u = np.asarray(images, dtype=np.float64).reshape(len(images), -1) / 255.0
    side = int(round(u.shape[1] ** 0.5))
    square = u.reshape(-1, side, side)
    edges = np.abs(np.diff(square, axis=1)).mean((1, 2)) + np.abs(np.diff(square, axis=2)).mean(
        (1, 2)
    )
    solid = (u > 0.95).mean(1)
    return np.stack([u.mean(1), u.std(1), (u > 0.5).mean(1), (u > 0.05).mean(1), edges, solid], 1)


def energy(logits):
    """The energy score ``-logsumexp(logits)`` (N,) of logits (N, K), in float64."""
    s = np.asarray(logits, dtype=np.float64)
    top = s.max(axis=1)
    return -(top + np.log(np.exp(s - top[:, None]).sum(axis=1)))


def distance(record, images):
    """Squared Mahalanobis distance (N,) of the pictures' statistics from the record's."""
    d = picture_stats(images) - np.asarray(record["mean"])
    return np.einsum("ni,ij,nj->n", d, np.asarray(record["precision"]), d)


def foreign(record, logits, images):
    """(N,) bool: True where a picture does not look like the training images."""
    return (energy(logits) > record["energy_threshold"]) | (
        distance(record, images) > record["distance_threshold"]
    )


def verdict(model, logits, image, source):
    """The words to print beside the top 3 when ``image`` (28, 28) uint8, with its logits
    (K,), does not look like the model's training images; None when it does or the model
    file holds no record. Logits that are not finite (a model file whose weights overflow)
    are a UserError naming ``source``: no NaN is ever printed or sent."""
    if not np.isfinite(logits).all():
        raise UserError(f"{source}: the network's outputs for this picture are not finite "
                        "numbers (its weights overflow float32); retrain or re-save the model")  # fmt: skip
    record = model.meta.get("ood")
    if record is None or not foreign(record, logits[None], image[None])[0]:
        return None
    return f"this does not look like a {label(record['looks_like'])}"


def drawn(images, scale=DRAWN_SCALE):
    """Images (N, 1, 28, 28) uint8 of the dataset prepared as a user's picture would be:
    drawn dark on white ``scale`` times larger (``scale`` 1: the image itself as a PNG file,
    light on dark), then data/digit_image.py."""
    out = []
    for digit in images[:, 0]:
        big = (
            Image.fromarray(255 - digit).resize((28 * scale, 28 * scale), Image.Resampling.BILINEAR)
            if scale > 1
            else Image.fromarray(digit)
        )
        buffer = io.BytesIO()
        big.save(buffer, format="PNG")
        try:
            out.append(digit_image_from_bytes(buffer.getvalue(), "a validation image"))
        except UserError:
            continue  # a faint validation image with no ink: not a picture a user sends
    return np.stack(out)[:, None]


def calibrate(model, config, logits_of):
    """The "ood" record of ``model`` from its own training data.

    config: its TrainConfig (its dataset, seed and validation split, as training made it).
    logits_of: function (N, C, H, W) uint8 pictures -> (N, K) logits of the model.
    Returns a JSON-ready dict: thresholds, the statistics' mean (6,) and precision (6, 6),
    the false-alarm rate aimed at, the validation images used; None when the validation
    split, prepared both ways, holds fewer than MIN_PICTURES pictures.
    """
    data = prepare_data(config)
    if 2 * len(data.x_val) < MIN_PICTURES:
        return None
    pixels = lambda x: np.round(inputs_to_pixels(x, data.norm) * 255).astype(np.uint8)  # noqa: E731
    # fitted on training images drawn as a user's are, so that a drawn digit is typical
    train = pixels(data.x_train[:STATS_IMAGES])
    stats = picture_stats(np.concatenate([drawn(train), drawn(train, scale=1)]))
    record = {"mean": stats.mean(0).tolist(), "precision": np.linalg.inv(np.cov(stats.T)).tolist()}
    val = pixels(data.x_val)
    val = np.concatenate([drawn(val), drawn(val, scale=1)])
    quantile = 1 - FALSE_ALARMS / 2
    record["energy_threshold"] = float(np.quantile(energy(logits_of(val)), quantile))
    record["distance_threshold"] = float(np.quantile(distance(record, val), quantile))
    record["false_alarm_rate"] = FALSE_ALARMS
    record["validation_images"] = len(val)
    record["looks_like"] = "digit" if config.dataset == "mnist" else f"{config.dataset} image"
    return record


def needs_record(input_shape, loss):
    """True for a classifier of 1x28x28 pictures (its input shape, its loss): the pictures
    that predict, explain and serve prepare from a user's file."""
    return tuple(input_shape) == (1, CANVAS_SIDE, CANVAS_SIDE) and loss != "mse"


def save_record(path, config):
    """Calibrate the model file ``path`` on its own training data (``config``, its TrainConfig)
    and save the record in it, atomically; returns the record, or None (nothing saved) when
    the run had fewer than MIN_PICTURES validation pictures."""
    model = load_model(path)

    def logits_of(pictures):
        return predict_scores(
            model.params, model.blueprint, model.inputs(pictures / np.float32(255))
        )

    record = calibrate(model, config, logits_of)
    if record is None:
        return None
    meta = {key: value for key, value in model.meta.items() if key != "format_version"}
    save_model(path, model.params, model.blueprint, {**meta, "ood": record})
    return record
