"""A run's data: the training images loaded, limited, split and normalized, and the checks of
the options that need the dataset or the blueprint.

Each check raises one UserError naming the option, before anything of the run is written. The
range of a single option is checked where the option is declared; these are the ones that
depend on what the option meets: the dataset's targets and pixels, its size, the network's
outputs.
"""

from typing import NamedTuple

import numpy as np

from core.learn.config import ADVERSARIAL
from core.learn.loss import LOSSES
from data import fit_normalization, load_dataset, normalize, stratified_split
from data.checks import check_real, check_whole
from data.errors import UserError
from data.normalization import Normalization
from data.registry import check_mirrorable
from model.shapes import trace_shapes
from model.walk import quantized_layers


class TrainData(NamedTuple):
    x_train: np.ndarray  # float32 (N, C, H, W), normalized (on the run's device: on_device)
    y_train: np.ndarray  # int64 (N,); float32 (N,) targets for a regression set
    x_val: np.ndarray
    y_val: np.ndarray
    norm: Normalization
    fill: np.ndarray  # float32 (C,): a black pixel after normalization
    dataset: object  # the data.Dataset (for the test set and class names)


def make_rng(seed, *stream):
    """The generator of one named stream of random numbers of a run."""
    return np.random.default_rng([seed, *stream])


def prepare_data(config):
    """Load, limit, split and normalize the dataset of ``config``."""
    check_augmentation(config)
    ds = load_dataset(config.dataset, config.data_dir)
    check_loss(config, ds)
    check_adversarial(config, ds)
    x, y = ds.x_train, ds.y_train
    rng = make_rng(config.seed, 1)
    # Float targets are no classes: a regression set is split at random, as one stratum.
    strata = (lambda y: np.zeros(len(y), np.int64)) if ds.regression else (lambda y: y)
    if config.limit is not None:
        check_limit(config.limit, len(y))
        _, keep = stratified_split(strata(y), config.limit, rng)
        x, y = x[keep], y[keep]
    val_size = config.val_size if config.val_size is not None else min(5000, len(y) // 10)
    check_val_size(val_size, len(y))
    train_idx, val_idx = stratified_split(strata(y), val_size, rng)
    norm = fit_normalization(x[train_idx])
    fill = (-norm.mean / norm.std).astype(np.float32)  # pixel value 0, normalized
    return TrainData(
        x_train=normalize(x[train_idx], norm),
        y_train=y[train_idx],
        x_val=normalize(x[val_idx], norm),
        y_val=y[val_idx],
        norm=norm,
        fill=fill,
        dataset=ds,
    )


def on_device(data, xp):
    """The TrainData with its four arrays in the library ``xp``: on the GPU for cupy, placed
    once for the whole run (for numpy: the very same arrays)."""
    arrays = ("x_train", "y_train", "x_val", "y_val")
    return data._replace(**{name: xp.asarray(getattr(data, name)) for name in arrays})


def check_loss(config, ds):
    """UserError unless ``config.loss`` is known and fits the dataset ``ds``'s targets."""
    if config.loss not in LOSSES:
        raise UserError(f"--loss must be one of {', '.join(LOSSES)}, got {config.loss!r}")
    if ds.regression and config.loss != "mse":
        raise UserError(
            f"--loss {config.loss}: {ds.name} is a regression dataset (float targets); "
            "train it with --loss mse (and e.g. --arch mlp_regression)"
        )
    if config.loss == "mse" and not ds.regression:
        raise UserError(
            f"--loss mse fits float targets, but {ds.name} is a classification dataset "
            "(class labels); use --loss cross_entropy, or a regression dataset such as polynomial"
        )
    if config.label_smoothing and config.loss != "cross_entropy":
        raise UserError(
            f"--label-smoothing {config.label_smoothing:g} smooths the class labels of "
            f"--loss cross_entropy; --loss {config.loss} has no classes to smooth"
        )


def check_adversarial(config, ds):
    """UserError unless --adversarial and --adv-eps make sense for the dataset ``ds``."""
    if config.adversarial is None:
        return
    if config.adversarial not in ADVERSARIAL:
        raise UserError(f"--adversarial must be one of {', '.join(ADVERSARIAL)}, "
                        f"got {config.adversarial!r}")  # fmt: skip
    if check_real("--adv-eps", config.adv_eps, 0, 1) == 0:
        raise UserError("--adv-eps must be a number in (0, 1], got 0")
    if ds.x_train.dtype != np.uint8 or ds.regression:
        raise UserError(
            f"--adversarial perturbs pictures whose pixels lie in [0, 1]; {ds.name} is not a "
            "classification set of pictures (choose mnist, fashion-mnist, digits or cifar10)"
        )


def check_augmentation(config):
    """UserError unless the augmentation settings are valid for the dataset."""
    check_whole("--crop", config.crop, 0)
    check_real("--erase", config.erase, 0, 1)
    if config.flip:
        check_mirrorable(config.dataset, "--flip")


def check_limit(limit, n):
    """UserError unless --limit keeps between 10 and all ``n`` training images."""
    if not 10 <= limit <= n:
        raise UserError(f"--limit must be between 10 and {n}, got {limit}")


def check_val_size(val_size, n):
    """UserError unless the validation split leaves some of the ``n`` images to train on."""
    if not 1 <= val_size < n:  # the best epoch is chosen on it; training needs the rest
        raise UserError(
            f"--val-size must be between 1 and {n - 1} (of the {n} training images), got {val_size}"
        )


def check_freeze(config):
    """UserError if --freeze is given without --init-from."""
    if config.freeze and not config.init_from:
        raise UserError(
            f"--freeze {config.freeze} needs --init-from: frozen layers of a new run would "
            "keep their random initial weights"
        )


def check_not_quantized(blueprint, arch):
    """UserError if the blueprint ``arch`` holds quantized layers: they only run inference."""
    if names := quantized_layers(blueprint):
        raise UserError(
            f"--arch {arch}: layers {', '.join(names)} are quantized (int8), for "
            "inference only; train the float blueprint, then run quantize"
        )


def check_outputs(blueprint, data):
    """UserError unless the network gives one output per class (or per regression target)."""
    rows = trace_shapes(blueprint, data.x_train.shape[1:])
    outputs, wanted = [row for row in rows if row.depth == 0][-1].out_shape, data.dataset.n_classes
    if outputs != (wanted,):
        kind = "target" if data.dataset.regression else "class"
        raise UserError(
            f"the network gives outputs of shape {outputs} per example, but "
            f"{data.dataset.name} needs one per {kind}: ({wanted},); fix the last layer's units"
        )
