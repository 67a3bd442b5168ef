"""The training options: one record of everything that decides a run's result, the named
recipes built from it, and what each option takes.

Each TrainConfig field carries its option's help and its check (``option(default, help,
...)``, nanoGPT's configurator in spirit: the typed default is the source). The command
line's train options are generated from the fields (core/commands/train.py), ``sweep --set``
reads its values through ``setting_value``, and a resumed run's changes are field values.
Checks that need the dataset or the network (--limit against the dataset's size, --flip,
--loss) are made when the run starts.
"""

import dataclasses
import math
import types
from typing import NamedTuple

from core.learn.loss import LOSSES
from core.learn.optim import OPTIMIZERS
from core.learn.schedules import SCHEDULES
from data.errors import UserError
from data.registry import DATASETS, MIRRORABLE
from model.blueprints import PRESETS

ADVERSARIAL = ("fgsm",)  # the ways of adversarial training (core/learn/adversarial.py)
DEVICES = ("cpu", "gpu")  # where a command computes (core/learn/device.py)
PRECISIONS = ("float32", "mixed")  # how a run computes (core/learn/precision.py)
TRUE, FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")  # a bool as text


class Number(NamedTuple):
    """The numbers an option takes: whole (int) or real (float), finite, within bounds.

    NaN and infinity are refused: float() reads "nan" and "inf", and every comparison with
    NaN is False, so a NaN would pass a plain ``value < low`` check.
    """

    name: str  # what argparse calls a text that is no such number: "invalid <name> value"
    kind: type  # int or float
    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False  # (low, high] rather than [low, high]
    high_open: bool = False  # [low, high) rather than [low, high]

    def wanted(self):
        """What a number must be, for messages: 'a whole number >= 1', 'a positive number'."""
        if self.kind is int:
            least = "" if self.low == -math.inf else f" >= {self.low}"
            most = "" if self.high == math.inf else f" <= {self.high}"
            return f"a whole number{least}{' and' if least and most else ''}{most}"
        if math.isfinite(self.high):
            return (f"a number in {'(' if self.low_open else '['}{self.low:g}, "
                    f"{self.high:g}{')' if self.high_open else ']'}")  # fmt: skip
        if self.low_open and self.low == 0:
            return "a positive number"
        if self.low == -math.inf:
            return "a finite number"
        return f"a finite number {'>' if self.low_open else '>='} {self.low:g}"

    def read(self, text):
        """``text`` as a number of this kind within the bounds.

        Raises ValueError if ``text`` is no number of the kind ("1.5" for a whole number),
        OutOfRange ("must be <wanted>, got <text>") if it is one outside the bounds.
        """
        value = self.kind(text)
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        if not (math.isfinite(value) and above and below):
            raise OutOfRange(f"must be {self.wanted()}, got {text}")
        return value


class OutOfRange(UserError):
    """A number outside the bounds of its option; the message says what it must be."""


WHOLE = Number("int", int)  # a whole number whose range depends on the dataset
POSITIVE_INT = Number("positive_int", int, low=1)  # epochs, batch size, counts
NON_NEGATIVE_INT = Number("non_negative_int", int, low=0)  # a seed, a padding
POSITIVE_FLOAT = Number("positive_float", float, low=0.0, low_open=True)  # a learning rate
NON_NEGATIVE_FLOAT = Number("non_negative_float", float, low=0.0)  # weight decay
PROBABILITY = Number("probability", float, low=0.0, high=1.0)
SMOOTHING = Number("smoothing", float, low=0.0, high=1.0, high_open=True)  # [0, 1)
DECAY = Number("decay", float, low=0.0, high=1.0, low_open=True, high_open=True)  # (0, 1)


def option(default, help, number=None, *, choices=None, metavar=None):
    """A TrainConfig field: its default, and what its command-line option says and takes.

    help:    the option's help; the default is added to it (a None default is explained here)
    number:  the Number an int or float field must be
    choices: the only values a text field takes, from their registry
    metavar: the option's value in the usage line (default: the name in capitals)
    """
    metadata = {"help": help, "number": number, "choices": choices, "metavar": metavar}
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run's result (saved in its files)."""

    dataset: str = option("mnist", f"one of {', '.join(DATASETS)}; a regression dataset "
                          "(float targets) trains with --loss mse", choices=tuple(DATASETS),
                          metavar="NAME")  # fmt: skip
    arch: str = option("minivgg", f"a preset architecture ({', '.join(PRESETS)}) or a "
                       "blueprint .json file")  # fmt: skip
    loss: str = option("cross_entropy", "the loss: mse for a regression dataset",
                       choices=tuple(LOSSES))  # fmt: skip
    label_smoothing: float = option(0.0, "cross-entropy against targets smoothed by EPS, "
                                    "(1 - EPS) on the label and EPS spread evenly over all "
                                    "classes, as PyTorch's label_smoothing; the training loss "
                                    "only (the validation loss stays plain cross-entropy)",
                                    SMOOTHING, metavar="EPS")  # fmt: skip
    epochs: int = option(5, "passes over the training set", POSITIVE_INT)
    # small batches: many updates, so even a short run learns a lot
    batch_size: int = option(16, "examples per update", POSITIVE_INT)
    optimizer: str = option("adam", f"one of {', '.join(OPTIMIZERS)}", choices=tuple(OPTIMIZERS),
                            metavar="NAME")  # fmt: skip
    lr: float = option(2e-3, "base learning rate", POSITIVE_FLOAT)
    schedule: str = option("cosine", f"learning-rate schedule: {', '.join(SCHEDULES)}",
                           choices=tuple(SCHEDULES), metavar="NAME")  # fmt: skip
    warmup_epochs: float = option(0.0, "linear learning-rate warm-up, in epochs",
                                  NON_NEGATIVE_FLOAT)  # fmt: skip
    weight_decay: float = option(0.0, "L2 weight decay on the weights (decoupled for adamw)",
                                 NON_NEGATIVE_FLOAT)  # fmt: skip
    augment: bool = option(False, "random shifts, rotations and scaling of the training images")
    crop: int = option(0, "random crops of the images zero-padded by PAD pixels, 0 for none",
                       NON_NEGATIVE_INT, metavar="PAD")  # fmt: skip
    flip: bool = option(False, f"random horizontal flips (only {', '.join(MIRRORABLE)}: "
                        "never digits)")  # fmt: skip
    erase: float = option(0.0, "random erasing (cutout) of a rectangle in each image with "
                          "probability P", PROBABILITY, metavar="P")  # fmt: skip
    seed: int = option(0, "makes the run repeatable", NON_NEGATIVE_INT)
    val_size: int | None = option(None, "validation images held out of training (default: "
                                  "5000, or a tenth of the training images if fewer)",
                                  WHOLE)  # fmt: skip
    limit: int | None = option(None, "use N images of the training set only, the validation "
                               "images included (a stratified sample), for a quick run",
                               POSITIVE_INT)  # fmt: skip
    clip_norm: float | None = option(None, "clip the gradients' global norm to this value",
                                     POSITIVE_FLOAT)  # fmt: skip
    ema: float | None = option(None, "validate, select and save an exponential moving average "
                               "of the weights (batch-norm statistics averaged too), updated "
                               "after every step: ema = DECAY * ema + (1 - DECAY) * weights",
                               DECAY, metavar="DECAY")  # fmt: skip
    patience: int | None = option(None, "stop after N epochs without a better validation "
                                  "accuracy", POSITIVE_INT)  # fmt: skip
    data_dir: str | None = option(None, "folder holding the dataset's files, if not the default")
    init_from: str | None = option(None, "start from the model FILE: every layer whose name "
                                   "and array shapes match is copied (the run says which were "
                                   "and were not)", metavar="FILE")  # fmt: skip
    freeze: str | None = option(None, "comma-separated layer names or patterns (conv1,conv2 or "
                                "'conv*') copied by --init-from and never updated: no optimizer "
                                "state, no weight decay, fixed batch-norm running statistics",
                                metavar="LAYERS")  # fmt: skip
    adversarial: str | None = option(None, "adversarial training: each batch is replaced by its "
                                     "adversarial pictures from a random start in the "
                                     "--adv-eps ball (fast adversarial training, Wong et al. "
                                     "2020)", choices=ADVERSARIAL)  # fmt: skip
    adv_eps: float = option(0.1, "the L-infinity budget of --adversarial, pixels in [0, 1]",
                            POSITIVE_FLOAT, metavar="EPS")  # fmt: skip
    precision: str = option("float32", "mixed: float16 products on a GPU's tensor cores, "
                            "float32 master weights, batch-norm statistics and loss, dynamic "
                            "loss scaling (needs --device gpu)", choices=PRECISIONS)  # fmt: skip


FIELDS = {field.name: field for field in dataclasses.fields(TrainConfig)}


def value_type(field):
    """The type of a field's values: its annotation without None (``int | None`` -> int)."""
    if isinstance(field.type, types.UnionType):
        return next(t for t in field.type.__args__ if t is not type(None))
    return field.type


def may_be_none(field):
    """True for a field whose annotation admits None (``int | None``)."""
    return isinstance(field.type, types.UnionType) and type(None) in field.type.__args__


def setting_value(name, text):
    """``text`` as a value of the TrainConfig field ``name``, checked as its option checks it.

    The value takes the field's type: "none" is None where the field may be None; a bool
    takes true/false, yes/no, on/off, 1/0; a number must be the field's Number; a text with
    choices one of them. Raises a one-line UserError "<name> must be ..., got <text>".
    """
    field, kind = FIELDS[name], value_type(FIELDS[name])
    number, choices = field.metadata["number"], field.metadata["choices"]
    if may_be_none(field) and text.lower() == "none":
        return None
    if kind is bool:
        if text.lower() not in TRUE + FALSE:
            raise UserError(f"{name} must be true or false, got {text}")
        return text.lower() in TRUE
    if number is not None:
        try:
            return number.read(text)
        except ValueError:  # no number, or OutOfRange
            raise UserError(f"{name} must be {number.wanted()}, got {text}") from None
    if choices is not None and text not in choices:
        raise UserError(f"{name} must be one of {', '.join(choices)}, got {text}")
    return text


def checked_config(config, source):
    """The TrainConfig a model file's ``meta["config"]`` holds, each value checked as its
    option checks it (the same Number and choices), a missing key taking its default (files
    older than the option).

    config: the dict read from the file; source: the file, for messages.
    Raises a one-line UserError "<source>: __meta__ config <key> must be ..., got ..." for a
    key no option has, a value of the wrong type or out of range.
    """
    if unknown := sorted(set(config) - FIELDS.keys()):
        raise UserError(f"{source}: __meta__ config has unknown setting(s) {unknown!s:.120}; "
                        f"the settings are {', '.join(FIELDS)}")  # fmt: skip
    for name, value in config.items():
        field, kind = FIELDS[name], value_type(FIELDS[name])
        if value is None and may_be_none(field):
            continue
        number, choices = field.metadata["number"], field.metadata["choices"]
        typed = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            typed = True
        try:
            if not typed:
                raise UserError(f"must be a {kind.__name__}")
            if number is not None:
                number.read(value)
            if choices is not None and value not in choices:
                raise UserError(f"must be one of {', '.join(choices)}")
        except UserError as err:
            raise UserError(f"{source}: __meta__ config {name} "
                            f"{str(err).split(', got')[0]}, got {value!r:.60}") from None  # fmt: skip
    checked = TrainConfig(**config)
    if checked.adversarial is not None and not checked.adv_eps:
        raise UserError(f"{source}: __meta__ config adversarial {checked.adversarial!r:.40} "
                        f"needs its adv_eps, a number in (0, 1], got {checked.adv_eps!r}")  # fmt: skip
    return checked


def with_settings(recipe, settings):
    """The TrainConfig ``recipe`` with ``settings`` ({field: value}) on top.

    A warm-up the recipe brings (not one of the settings) that would fill the whole of a
    shorter run is cut to half of it: ``--preset best --epochs 1`` warms up for half an epoch.
    """
    config = dataclasses.replace(recipe, **settings)
    if "warmup_epochs" not in settings and config.warmup_epochs >= config.epochs:
        config = dataclasses.replace(config, warmup_epochs=config.epochs / 2)
    return config


def check_warmup(config):
    """UserError unless the warm-up ends before the run does."""
    if config.warmup_epochs and config.warmup_epochs >= config.epochs:
        raise UserError(
            f"--warmup-epochs {config.warmup_epochs:g} must be shorter than --epochs {config.epochs}: "
            "the warm-up is the start of the run"
        )


FASHION_EPOCHS = 24

# Named training recipes: the main job, the shipped model and the Fashion-MNIST model.
RECIPES = {
    "default": TrainConfig(),
    "best": TrainConfig(
        arch="minivgg_bn_dropout",
        epochs=20,
        batch_size=64,
        optimizer="adam",
        lr=2e-3,
        schedule="cosine",
        warmup_epochs=1,
        augment=True,
    ),
    # Fashion-MNIST: a small residual network, SGD with Nesterov momentum, and the
    # augmentations of natural images (crops, flips). No erasing: with it this net
    # underfits in a 2-hour budget (train accuracy 94.5% after 16 epochs).
    "fashion": TrainConfig(
        dataset="fashion-mnist",
        arch="resnet",
        epochs=FASHION_EPOCHS,
        batch_size=128,
        optimizer="nesterov",
        lr=0.1,
        schedule="cosine",
        warmup_epochs=1,
        weight_decay=5e-4,
        crop=2,
        flip=True,
    ),
}
