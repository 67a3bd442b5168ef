"""Training: one loop that reads top to bottom, with small named helpers.

Every random draw is a function of the seed and the position in the run:
the initial weights of ``(seed, 0)``, the validation split of ``(seed, 1)``,
epoch e's shuffle of ``(seed, 2, e)`` and batch b's augmentation and dropout
of ``(seed, 3, e, b)``. So a run interrupted anywhere and resumed from its
checkpoint reaches exactly the parameters of an uninterrupted run.

A run directory holds ``best_params.npz`` (the parameters with the best
validation accuracy so far; for a regression run, the lowest validation MSE),
``checkpoint.npz`` (what resume reads: the parameters, the optimizer state,
the config and the RunState) and ``log.csv`` (one row per epoch), all written
atomically.
"""

import contextlib
import dataclasses
import datetime
import math
import sys
import time
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from tqdm import tqdm

from core.learn.adversarial import fast_fgsm_inputs
from core.learn.config import TrainConfig
from core.learn.eval import SCORE_OF_LOSS, loss_and_score, r_squared
from core.learn.loss import LOSSES
from core.learn.optim import Optimizer, clip_by_global_norm, freezing, make_optimizer
from core.learn.schedules import lr_at
from core.learn.transfer import frozen_keys, frozen_layers, init_from
from core.plots import plot_augmentations, save_figure
from data import (
    fit_normalization,
    iterate_minibatches,
    load_dataset,
    normalize,
    random_affine,
    random_crop,
    random_erasing,
    random_flip,
    stratified_split,
)
from data.checks import check_real, check_whole
from data.errors import UserError
from data.files import atomic_write_text, remove_leftover_temporaries
from data.normalization import Normalization
from data.registry import MIRRORABLE
from model.backward import backward
from model.blueprints import load_blueprint
from model.forward import forward
from model.initialize_parameters import initialize_parameters
from model.params_io import load_checkpoint, load_model, save_checkpoint, save_model
from model.shapes import trace_shapes
from model.walk import quantized_layers

RUN_FILES = {"best": "best_params.npz", "ckpt": "checkpoint.npz", "log": "log.csv"}
LOG_COLUMNS = [
    "epoch",
    "lr",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "seconds",
    "images_per_s",
]


class TrainData(NamedTuple):
    x_train: np.ndarray  # float32 (N, C, H, W), normalized
    y_train: np.ndarray  # int64 (N,); float32 (N,) targets for a regression set
    x_val: np.ndarray
    y_val: np.ndarray
    norm: Normalization
    fill: np.ndarray  # float32 (C,): a black pixel after normalization
    dataset: object  # the data.Dataset (for the test set and class names)


class TrainResult(NamedTuple):
    params: dict  # the best parameters (by validation accuracy, or lowest MSE)
    blueprint: list
    meta: dict  # what save_model stored beside them
    log: pd.DataFrame
    out_dir: Path


class RunState(NamedTuple):
    """Where a run is: what a checkpoint holds besides parameters and optimizer state."""

    epoch: int = 0  # 0-based epoch in progress
    batch: int = 0  # next batch of that epoch
    loss_sum: float = 0.0  # sums over the batches of the epoch so far
    correct: int = 0  # (classification only)
    seen: int = 0
    seconds: float = 0.0
    best_val_acc: float = -1.0  # the best validation score: accuracy, or R² for an MSE run
    best_epoch: int = 0
    log_rows: list = []  # one dict per finished epoch, keyed by log_columns (never mutated)


class Run(NamedTuple):
    """What stays fixed while a run trains."""

    config: TrainConfig
    data: TrainData
    blueprint: list
    optimizer: Optimizer
    paths: dict  # "best", "ckpt", "log": the files in the run folder
    per_epoch: int  # batches per epoch
    total_steps: int  # updates in the whole run, for the schedule
    warmup: int  # warm-up updates
    frozen: frozenset  # parameter keys no update touches (--freeze), running statistics included


class Diverged(UserError):
    """The loss became NaN or infinite."""


class Interrupted(KeyboardInterrupt):
    """A Ctrl-C, after the checkpoint was written; its message says where and what next."""


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
        if not 10 <= config.limit <= len(y):
            raise UserError(f"--limit must be between 10 and {len(y)}, got {config.limit}")
        _, keep = stratified_split(strata(y), config.limit, rng)
        x, y = x[keep], y[keep]
    val_size = config.val_size if config.val_size is not None else min(5000, len(y) // 10)
    if not 1 <= val_size < len(y):  # the best epoch is chosen on it; training needs the rest
        raise UserError(
            f"--val-size must be between 1 and {len(y) - 1} (of the {len(y)} training "
            f"images), got {val_size}"
        )
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


ADVERSARIAL = ("fgsm",)


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
    if config.flip and config.dataset not in MIRRORABLE:
        raise UserError(
            f"--flip mirrors the pictures, but a mirrored {config.dataset} picture means "
            f"something else; flip only {', '.join(MIRRORABLE)}"
        )


def augmented(config, fill, xb, rng):
    """A training batch with the config's random augmentations, drawn from ``rng``.

    fill: (C,) the normalized value of a black pixel, for what a warp, crop or
    erasing uncovers.
    """
    if config.augment:
        xb = random_affine(xb, rng, fill=fill)
    if config.crop:
        xb = random_crop(xb, rng, pad=config.crop, fill=fill)
    if config.flip:
        xb = random_flip(xb, rng)
    if config.erase:
        xb = random_erasing(xb, rng, p=config.erase, fill=fill)
    return xb


AUGMENTATIONS = {
    "augment": "shift, rotate, scale",
    "crop": "crop",
    "flip": "flip",
    "erase": "erase",
}


def write_augmentation_figure(config, data, path, n=8):
    """A figure of n training images under each of the run's augmentations, and all of them."""
    x = data.x_train[:n]
    variants = {"original": x}
    none = dataclasses.replace(config, augment=False, crop=0, flip=False, erase=0.0)
    for field, name in AUGMENTATIONS.items():
        if getattr(config, field):
            alone = dataclasses.replace(none, **{field: getattr(config, field)})
            variants[name] = augmented(alone, data.fill, x, make_rng(config.seed, 4))
    if len(variants) > 2:
        variants["all, as in training"] = augmented(config, data.fill, x, make_rng(config.seed, 4))
    caption = f"{config.dataset}: training augmentations (--seed {config.seed}), random per image"
    save_figure(plot_augmentations(variants, caption=caption), path)


def train_step(params, opt_state, xb, yb, run, step, lr, rng):
    """One update on a batch. Returns (params, opt_state, loss, n_correct (0 for regression)).

    The run's frozen parameter keys (--freeze) stay as they are: its optimizer skips them
    (core/learn/optim.py ``freezing``) and batch norm's new running statistics are dropped for them.
    """
    blueprint, config = run.blueprint, run.config
    # A diverging run overflows (inf, then inf - inf = NaN) before its loss stops being finite:
    # the loss check reports that once, as Diverged, instead of NumPy warnings from every layer.
    with (
        warnings.catch_warnings()
    ):  # the filter is global: it covers the shards' worker threads too
        warnings.filterwarnings("ignore", "(overflow|invalid value) encountered", RuntimeWarning)
        if config.adversarial:
            xb = fast_fgsm_inputs(params, blueprint, run.data.norm, xb, yb, config.adv_eps, rng)
        scores, caches = forward(params, xb, blueprint, train=True, rng=rng)
        loss, dscores = LOSSES[config.loss](scores, yb)
        if not math.isfinite(loss):
            raise Diverged(
                f"the training loss became {loss} at step {step + 1} (learning rate {lr:.3g})"
            )
        grads = backward(dscores, caches, blueprint)
        if config.clip_norm:
            grads, _ = clip_by_global_norm(grads, config.clip_norm)
        params, opt_state = run.optimizer.update(params, grads, opt_state, step + 1, lr)
    stats = {k: v for k, v in caches.running_stats.items() if k not in run.frozen}
    params = {**params, **stats}  # batch norm's new running statistics
    correct = 0 if config.loss == "mse" else int((scores.argmax(axis=1) == yb).sum())
    return params, opt_state, loss, correct


def lr_of(run, step):
    """The learning rate of 0-based update ``step``."""
    config = run.config
    return lr_at(step, run.total_steps, config.lr, config.schedule, run.warmup)


def log_columns(loss):
    """The log's columns for a run with ``loss``: LOG_COLUMNS, with "r2" for "acc" for MSE."""
    return [column.replace("acc", SCORE_OF_LOSS[loss]) for column in LOG_COLUMNS]


def write_log(path, rows, loss):
    """The log rows (dicts keyed by ``log_columns(loss)``) as CSV, written atomically."""
    atomic_write_text(path, pd.DataFrame(rows, columns=log_columns(loss)).to_csv(index=False))


def run_meta(config, data, blueprint, **extra):
    """What a saved model says about itself."""
    return {
        "input_shape": list(data.x_train.shape[1:]),
        "dataset": config.dataset,
        "class_names": list(data.dataset.class_names),
        "normalization": {"mean": data.norm.mean.tolist(), "std": data.norm.std.tolist()},
        "config": dataclasses.asdict(config),
        "seed": config.seed,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        **extra,
    }


def save_run(run, params, opt_state, state):
    """The checkpoint: parameters, optimizer state, and the config and state that resume reads."""
    meta = run_meta(run.config, run.data, run.blueprint, run_state=state._asdict())
    save_checkpoint(run.paths["ckpt"], params, opt_state, run.blueprint, meta)


def load_run(path):
    """(config, params, opt_state, state) from the checkpoint ``path``."""
    ckpt = load_checkpoint(path)
    saved = ckpt.meta["run_state"]
    # checkpoints written before the log rows were dicts hold them as lists in LOG_COLUMNS order
    rows = [row if isinstance(row, dict) else dict(zip(LOG_COLUMNS, row, strict=True))
            for row in saved["log_rows"]]  # fmt: skip
    state = RunState(**{**saved, "log_rows": rows})
    return TrainConfig(**ckpt.meta["config"]), ckpt.params, ckpt.opt_state, state


def epoch_batches(run, params, opt_state, state):
    """Train the rest of epoch ``state.epoch``, yielding (params, opt_state, state) per batch.

    The caller's loop variables then always hold a consistent triple, whatever batch a Ctrl-C
    lands in; the epoch's shuffle comes from its own stream, so a resumed run can skip the
    batches it has done.
    """
    config, data, epoch = run.config, run.data, state.epoch
    shuffle = make_rng(config.seed, 2, epoch)
    batches = iterate_minibatches(data.x_train, data.y_train, config.batch_size, shuffle)
    t0 = time.perf_counter() - state.seconds
    for b, (xb, yb) in enumerate(batches):
        if b < state.batch:
            continue
        step = epoch * run.per_epoch + b
        lr = lr_of(run, step)
        rng = make_rng(config.seed, 3, epoch, b)
        xb = augmented(config, data.fill, xb, rng)
        params, opt_state, loss, correct = train_step(params, opt_state, xb, yb, run, step, lr, rng)
        state = state._replace(
            batch=b + 1,
            loss_sum=state.loss_sum + loss * len(yb),
            correct=state.correct + correct,
            seen=state.seen + len(yb),
            seconds=time.perf_counter() - t0,
        )
        yield params, opt_state, state


def validate(run, params, epoch):
    """(val_loss, val_score) after 0-based ``epoch``; Diverged if the loss is not finite.

    The score is the accuracy, or R² for an MSE run (see core.learn.eval.loss_and_score).
    """
    data = run.data
    val_loss, val_score = loss_and_score(
        params, run.blueprint, data.x_val, data.y_val, run.config.loss
    )
    if not math.isfinite(val_loss):  # the very last update can still blow up
        raise Diverged(f"the validation loss became {val_loss} after epoch {epoch + 1}")
    return val_loss, val_score


def train_score(run, state):
    """The epoch's training score: the accuracy, or for an MSE run R² of its mean loss."""
    if run.config.loss == "mse":
        return r_squared(state.loss_sum / state.seen, run.data.y_train)
    return state.correct / state.seen


def end_epoch(run, params, opt_state, state, echo):
    """Validate the finished epoch, log it, save the files; returns the next epoch's state."""
    epoch, score = state.epoch, SCORE_OF_LOSS[run.config.loss]
    val_loss, val_score = validate(run, params, epoch)
    row = {
        "epoch": epoch + 1,
        "lr": lr_of(run, (epoch + 1) * run.per_epoch - 1),  # the epoch's last update's
        "train_loss": state.loss_sum / state.seen,
        f"train_{score}": train_score(run, state),
        "val_loss": val_loss,
        f"val_{score}": val_score,
        "seconds": state.seconds,
        "images_per_s": state.seen / state.seconds,
    }
    loss = "mse" if run.config.loss == "mse" else "loss"
    echo(
        f"epoch {row['epoch']:3d}  lr {row['lr']:.2e}  train {loss} {row['train_loss']:.4f} "
        f"{score} {row[f'train_{score}']:.4f}  val {loss} {val_loss:.4f} {score} {val_score:.4f}  "
        f"{row['seconds']:.1f} s ({row['images_per_s']:.0f} images/s)"
    )
    # A higher R² is a lower MSE. The first epoch always counts: R² can be below -1.
    improved = state.best_epoch == 0 or val_score > state.best_val_acc
    done = RunState(
        epoch=epoch + 1,
        best_val_acc=val_score if improved else state.best_val_acc,
        best_epoch=epoch + 1 if improved else state.best_epoch,
        log_rows=[*state.log_rows, row],
    )
    # The files first, then the state: a Ctrl-C while they are written checkpoints the epoch as
    # not yet finished, and the resumed run validates it and writes them again.
    write_log(run.paths["log"], done.log_rows, run.config.loss)
    if improved:
        meta = run_meta(
            run.config, run.data, run.blueprint, epoch=epoch + 1, **{f"val_{score}": val_score}
        )
        save_model(run.paths["best"], params, run.blueprint, meta)
    save_run(run, params, opt_state, done)
    return done


def stopped_early(config, state):
    """True once ``config.patience`` epochs have passed without a better validation score."""
    return bool(config.patience) and state.epoch - state.best_epoch >= config.patience


def plural(count, word, words=None):
    """``"1 epoch"``, ``"2 epochs"``; ``words`` for another plural (``"batches"``)."""
    return f"{count} {word if count == 1 else words or word + 's'}"


def option(field):
    """The command-line option of a TrainConfig field: ``"weight_decay"`` -> ``"--weight-decay"``."""
    return "--" + field.replace("_", "-")


def resumed_config(saved, changes, source):
    """The config a resumed run continues with: ``saved`` with ``changes`` applied.

    changes: {TrainConfig field: value} the user gave. ``epochs`` may grow (the run is
    extended; the schedule is then planned over the new total), ``data_dir`` may move; any
    other value that differs from the saved one is refused, never ignored.
    """
    changes = dict(changes or {})
    if conflicts := [
        f for f in changes if f not in ("epochs", "data_dir") and changes[f] != getattr(saved, f)
    ]:
        given = ", ".join(f"{option(f)} {changes[f]}" for f in conflicts)
        kept = ", ".join(f"{option(f)} {getattr(saved, f)}" for f in conflicts)
        raise UserError(
            f"{source}: --resume continues the run with its own settings ({kept}), not "
            f"{given}; only --epochs (to extend it) may change; start a new run in another --out"
        )
    if changes.get("epochs", saved.epochs) < saved.epochs:
        raise UserError(
            f"{source}: --epochs {changes['epochs']}: the run was planned for "
            f"{plural(saved.epochs, 'epoch')}; a resumed run can be extended, not shortened"
        )
    return dataclasses.replace(saved, **changes)


def refuse_to_replace(out_dir, resume, overwrite):
    """The run files already in ``out_dir``; a UserError if a new run would replace them unasked."""
    found = [name for name in RUN_FILES.values() if (out_dir / name).exists()]
    if found and not resume and not overwrite:
        raise UserError(
            f"{out_dir} holds a run already ({', '.join(found)}); continue it with --resume, "
            "replace it with --overwrite, or choose another --out"
        )
    return found


def prepare_folder(out_dir, replaced, echo):
    """Make ``out_dir`` ready once everything is checked (so a refused run leaves no folder).

    replaced: the files of an earlier run to delete (--overwrite). Files that killed atomic
    writes left behind are removed too.
    """
    if replaced:
        echo(f"replacing the run in {out_dir} (--overwrite): {', '.join(replaced)} deleted")
        for name in replaced:
            (out_dir / name).unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
    if removed := remove_leftover_temporaries(out_dir):
        echo(f"removed what interrupted writes left in {out_dir}: {', '.join(removed)}")


def start(config, out_dir, resume, changes, overwrite, echo):
    """Everything a run needs before its first batch: (run, params, opt_state, state)."""
    paths = {key: out_dir / name for key, name in RUN_FILES.items()}
    found = refuse_to_replace(out_dir, resume, overwrite)
    if resume:
        saved, params, opt_state, state = load_run(paths["ckpt"])
        config = resumed_config(saved, changes, paths["ckpt"])
    if config.freeze and not config.init_from:
        raise UserError(
            f"--freeze {config.freeze} needs --init-from: frozen layers of a new run would "
            "keep their random initial weights"
        )
    data = prepare_data(config)
    _, blueprint = load_blueprint(config.arch, data.dataset.n_classes)
    if names := quantized_layers(blueprint):
        raise UserError(
            f"--arch {config.arch}: layers {', '.join(names)} are quantized (int8), for "
            "inference only; train the float blueprint, then run quantize"
        )
    check_outputs(blueprint, data)
    in_shape = data.x_train.shape[1:]
    frozen_names = frozen_layers(blueprint, in_shape, config.freeze)
    fixed = frozenset(frozen_keys(blueprint, in_shape, frozen_names))
    optimizer = make_optimizer(config.optimizer, weight_decay=config.weight_decay)
    per_epoch = math.ceil(len(data.y_train) / config.batch_size)
    run = Run(
        config=config,
        data=data,
        blueprint=blueprint,
        optimizer=freezing(optimizer, fixed),
        paths=paths,
        per_epoch=per_epoch,
        total_steps=config.epochs * per_epoch,
        warmup=round(config.warmup_epochs * per_epoch),
        frozen=fixed,
    )
    lr_of(run, 0)  # checks the schedule and warm-up now, before anything is written
    if not resume:
        params = initialize_parameters(blueprint, in_shape, make_rng(config.seed, 0))
        if config.init_from:
            params = start_from(params, run, frozen_names, echo)
    prepare_folder(out_dir, [] if resume else found, echo)
    if any(getattr(config, field) for field in AUGMENTATIONS):
        write_augmentation_figure(config, data, out_dir / "figures" / "augmentation.png")
    if not resume:
        return run, params, run.optimizer.init(params), RunState()
    if config.epochs != saved.epochs:
        step = state.epoch * per_epoch + state.batch
        replanned = "" if config.schedule == "constant" else (
            f"; the {config.schedule} schedule is planned anew over {config.epochs} epochs "
            f"(learning rate {lr_of(run, step):.2e} where the run resumes)"
        )  # fmt: skip
        echo(f"extending the run from {saved.epochs} to {config.epochs} epochs{replanned}")
    return run, params, opt_state, state


def start_from(params, run, frozen_names, echo):
    """``params`` with the layers of ``--init-from`` copied in; says which were and were not.

    frozen_names: the layers ``--freeze`` names; each must be among the copied ones.
    """
    config, in_shape = run.config, run.data.x_train.shape[1:]
    params, copied, skipped = init_from(params, run.blueprint, in_shape, config.init_from)
    if not_copied := [name for name in frozen_names if name not in copied]:
        raise UserError(
            f"--freeze: {', '.join(not_copied)} not copied from {config.init_from} "
            f"({', '.join(skipped[name] for name in not_copied)}): frozen, it would keep its "
            "random initial weights"
        )
    echo(f"copied from {config.init_from}: {', '.join(copied)}")
    if skipped:
        echo("not copied (initialized afresh): "
             + "; ".join(f"{name} ({why})" for name, why in skipped.items()))  # fmt: skip
    if frozen_names:
        echo(f"frozen: {', '.join(frozen_names)}")
    return params


def describe(run):
    """The first line of a run's output."""
    config, data = run.config, run.data
    images = f"{plural(len(data.y_train), 'image')} to train on, {len(data.y_val)} to validate"
    if config.limit is not None:
        images += f" (the {config.limit} that --limit keeps)"
    return (
        f"training {config.arch} on {config.dataset}: {images}; "
        f"{plural(config.epochs, 'epoch')} of {plural(run.per_epoch, 'batch', 'batches')} of {config.batch_size}"
    )


@contextlib.contextmanager
def progress_report(run, state, style, echo):
    """A function ``report(state)`` to call after each batch of the epoch ``state.epoch``.

    style: "bar" (tqdm, for a terminal), "lines" (a line through ``echo`` at every tenth of
    the epoch and at least every 30 s: a log file or CI sees the run move) or None.
    """
    desc = f"epoch {state.epoch + 1}/{run.config.epochs}"
    if style == "bar":
        with tqdm(
            total=run.per_epoch, initial=state.batch, leave=False, desc=desc, unit="batch"
        ) as bar:

            def report(state):
                bar.set_postfix(loss=f"{state.loss_sum / state.seen:.4f}", refresh=False)
                bar.update()

            yield report
        return
    last_line = time.perf_counter()

    def report(state):
        nonlocal last_line
        tenth = state.batch * 10 // run.per_epoch > (state.batch - 1) * 10 // run.per_epoch
        if state.batch < run.per_epoch and (tenth or time.perf_counter() - last_line >= 30):
            echo(f"  {desc}: batch {state.batch}/{run.per_epoch}, "
                 f"loss {state.loss_sum / state.seen:.4f}, {state.seconds:.0f} s")  # fmt: skip
            last_line = time.perf_counter()

    yield report if style == "lines" else lambda state: None


def say(line):
    """Print ``line`` at once: to a file or pipe, stdout is block-buffered, which would hold the
    progress lines back until the buffer fills."""
    print(line, flush=True)


def train(config, out_dir, resume=False, progress=None, echo=say, changes=None, overwrite=False):
    """Train a model as ``config`` says, writing its files to ``out_dir``.

    resume: continue from ``out_dir/checkpoint.npz`` with its config (``config`` is not read),
            changed by ``changes`` ({field: value}; see ``resumed_config``: only ``epochs`` may
            grow); a finished run says so and trains no further.
    overwrite: replace a run already in ``out_dir`` (refused otherwise, with a UserError).
    progress: True for a progress bar, False for none; None: a bar when stderr is a terminal,
              else a line through ``echo`` every tenth of an epoch (a log file, CI).
    echo: where the one-line-per-epoch log and the progress lines go (default: stdout, flushed).
    Returns a TrainResult. Raises Diverged on a NaN/infinite loss (the files of the last good
    epoch stay) and Interrupted (a KeyboardInterrupt) after writing a checkpoint.
    """
    out_dir = Path(out_dir)
    run, params, opt_state, state = start(config, out_dir, resume, changes, overwrite, echo)
    config = run.config
    if progress is None:
        style = "bar" if sys.stderr.isatty() else "lines"
    else:
        style = "bar" if progress else None
    echo(describe(run))
    if stopped_early(config, state):
        echo(f"the run in {out_dir} stopped early after {plural(state.epoch, 'epoch')} "
             f"(--patience {config.patience}); nothing to train")  # fmt: skip
    elif state.epoch >= config.epochs:
        echo(f"the run in {out_dir} had finished its {plural(state.epoch, 'epoch')}; nothing to "
             "train: give a larger --epochs to extend it")  # fmt: skip
    try:
        while state.epoch < config.epochs and not stopped_early(config, state):
            with progress_report(run, state, style, echo) as report:
                batches = epoch_batches(run, params, opt_state, state)
                for params, opt_state, state in batches:  # noqa: B007 (read after the loop)
                    report(state)
            state = end_epoch(run, params, opt_state, state, echo)
            if stopped_early(config, state):
                patience = plural(config.patience, "epoch")
                better = (
                    "lower validation MSE" if config.loss == "mse" else "better validation accuracy"
                )
                echo(f"early stop: no {better} for {patience}")
    except KeyboardInterrupt:
        save_run(run, params, opt_state, state)
        raise Interrupted(
            f"interrupted: checkpoint written to {run.paths['ckpt']}; continue with --resume"
        ) from None
    except Diverged as e:
        kept = (
            f"the last good parameters are in {run.paths['best']}"
            if run.paths["best"].exists()
            else "no epoch finished, so no parameters were kept"
        )
        raise Diverged(f"{e}: training stopped; try a smaller --lr; {kept}") from None

    best = load_model(run.paths["best"])
    log = pd.DataFrame(state.log_rows, columns=log_columns(config.loss))
    return TrainResult(best.params, best.blueprint, best.meta, log, out_dir)
