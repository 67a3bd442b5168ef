"""Training: one loop that reads top to bottom, with small named helpers.

Every random draw is a function of the seed and the position in the run:
the initial weights of ``(seed, 0)``, the validation split of ``(seed, 1)``,
epoch e's shuffle of ``(seed, 2, e)`` and batch b's augmentation and dropout
of ``(seed, 3, e, b)``. So a run interrupted anywhere and resumed from its
checkpoint reaches exactly the parameters of an uninterrupted run.

On the GPU (``device="gpu"``, core/learn/device.py) the parameters, the optimizer state and
the data are placed there once, when the run starts, and the loop is the same: every array it
makes is made where its inputs are, and the random numbers are drawn on the CPU from the same
generators, then moved. ``--precision mixed`` (core/learn/precision.py) computes each step in
float16 with dynamic loss scaling (``mixed_step``). ``--ema`` (core/learn/ema.py) keeps an
average of the weights beside them, and the run validates and saves that (``model_params``).

The run's folder, checkpoint and resume are core/learn/runs.py's; what the run prints is the
caller's: it passes a Report (core/progress.py prints one for the train command).
"""

import math
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from core.learn import ema, ood, precision, runs
from core.learn.adversarial import fast_fgsm_inputs
from core.learn.config import check_warmup
from core.learn.device import array_library, check_on_device, placed
from core.learn.eval import SCORE_OF_LOSS, loss_and_score, r_squared
from core.learn.interrupts import BetweenBatches
from core.learn.loss import training_loss
from core.learn.optim import clip_by_global_norm
from core.learn.prepare import (
    check_freeze,
    check_not_quantized,
    check_outputs,
    make_rng,
    on_device,
    prepare_data,
)
from core.learn.schedules import lr_at
from core.learn.transfer import frozen_keys, frozen_layers, start_from
from data import (
    iterate_minibatches,
    random_affine,
    random_crop,
    random_erasing,
    random_flip,
)
from data.errors import UserError
from data.files import refuse_to_write_over
from layers.arraylib import array_module, to_numpy
from model.backward import backward
from model.blueprints import load_blueprint
from model.forward import forward
from model.initialize_parameters import initialize_parameters
from model.params_io import load_model


class Diverged(UserError):
    """The loss became NaN or infinite."""


class Interrupted(KeyboardInterrupt):
    """A Ctrl-C, after the checkpoint was written; its message says where and what next."""


class Report:
    """What the loop tells its caller. This one tells nothing; core/progress.py's prints."""

    def say(self, line):
        """A line about the run: files replaced, layers copied, the run extended or stopped."""

    def started(self, run, out_dir):
        """Once, before the first batch, when the folder ``out_dir`` is ready."""

    def batches(self, run, state, batches):
        """The epoch ``state.epoch``'s ``batches``, (params, opt_state, state) after each."""
        return batches

    def epoch(self, run, row):
        """After each epoch: its row of the log."""


QUIET = Report()


def augmented(config, fill, xb, rng):
    """A training batch with the config's random augmentations, drawn from ``rng``.

    fill: (C,) the normalized value of a black pixel, for what a warp, crop or
    erasing uncovers. A batch on the GPU is augmented there (the draws are the same).
    """
    xp = array_module(xb)
    if config.augment:
        xb = random_affine(xb, rng, fill=fill, xp=xp)
    if config.crop:
        xb = random_crop(xb, rng, pad=config.crop, fill=fill, xp=xp)
    if config.flip:
        xb = random_flip(xb, rng, xp=xp)
    if config.erase:
        xb = random_erasing(xb, rng, p=config.erase, fill=fill, xp=xp)
    return xb


def train_step(params, opt_state, xb, yb, run, step, lr, rng):
    """One update on a batch. Returns (params, opt_state, loss, n_correct (0 for regression)).

    The run's frozen parameter keys (--freeze) stay as they are: its optimizer skips them
    (core/learn/optim.py ``freezing``) and batch norm's new running statistics are dropped for them.
    """
    # A diverging run overflows (inf, then inf - inf = NaN) before its loss stops being finite:
    # the loss check reports that once, as Diverged, instead of NumPy warnings from every layer.
    with warnings.catch_warnings():  # the filter is global: it covers the shards' threads too
        warnings.filterwarnings("ignore", "(overflow|invalid value) encountered", RuntimeWarning)
        scores, caches, loss, grads = gradients(params, xb, yb, run, step, lr, rng)
        params, opt_state = updated(params, opt_state, grads, run, step, lr)
    return with_stats(params, caches, run), opt_state, loss, n_correct(run, scores, yb)


def mixed_step(params, opt_state, xb, yb, run, step, lr, rng, scaling):
    """train_step in mixed precision (core/learn/precision.py), the loss scaled as ``scaling``
    (a Scaling) says: the batch and float16 copies of the weights compute the scores, the loss
    is taken in float32 and its gradient scaled; the gradients, unscaled in float32, update the
    float32 ``params`` if they are all finite, else the update is skipped.
    Returns (params, opt_state, loss, n_correct, the next Scaling).
    """
    with warnings.catch_warnings():  # as in train_step; float16 overflows skip the step
        warnings.filterwarnings("ignore", "(overflow|invalid value) encountered", RuntimeWarning)
        half = precision.half_copies(params, precision.half_keys(run.blueprint))
        xb = xb.astype(precision.HALF)
        scale = scaling.loss_scale
        scores, caches, loss, grads = gradients(half, xb, yb, run, step, lr, rng, scale)
        grads, finite = precision.unscaled(grads, scale)
        if finite:
            params, opt_state = updated(params, opt_state, grads, run, step, lr)
    correct, scaling = n_correct(run, scores, yb), precision.next_scaling(scaling, finite)
    return with_stats(params, caches, run), opt_state, loss, correct, scaling


def gradients(params, xb, yb, run, step, lr, rng, loss_scale=None):
    """(scores, caches, loss, grads) of a training batch; Diverged if the loss is not finite.

    loss_scale: mixed precision's (the loss is then taken on the scores in float32 and the
    gradients come back multiplied by it); None for float32.
    """
    blueprint, config = run.blueprint, run.config
    if config.adversarial:
        xb = fast_fgsm_inputs(params, blueprint, run.data.norm, xb, yb, config.adv_eps, rng)
    scores, caches = forward(params, xb, blueprint, train=True, rng=rng)
    loss_of = training_loss(config.loss, config.label_smoothing)
    if loss_scale is None:
        loss, dscores = loss_of(scores, yb)
    else:
        loss, dscores = loss_of(scores.astype(np.float32), yb)
        dscores = precision.scaled(dscores, loss_scale)
    if not math.isfinite(loss):
        raise Diverged(
            f"the training loss became {loss} at step {step + 1} (learning rate {lr:.3g})"
        )
    return scores, caches, loss, backward(dscores, caches, blueprint)


def updated(params, opt_state, grads, run, step, lr):
    """(params, opt_state) after the optimizer's update with ``grads`` (clipped by --clip-norm)."""
    if run.config.clip_norm:
        grads, _ = clip_by_global_norm(grads, run.config.clip_norm)
    return run.optimizer.update(params, grads, opt_state, step + 1, lr)


def with_stats(params, caches, run):
    """``params`` with batch norm's new running statistics, but those of frozen layers."""
    stats = {k: v for k, v in caches.running_stats.items() if k not in run.frozen}
    return {**params, **stats}


def n_correct(run, scores, yb):
    """The batch's correct predictions (0 for regression)."""
    return 0 if run.config.loss == "mse" else int((scores.argmax(axis=1) == yb).sum())


def lr_of(run, step):
    """The learning rate of 0-based update ``step``."""
    config = run.config
    return lr_at(step, run.total_steps, config.lr, config.schedule, run.warmup)


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
        if config.precision == "mixed":
            params, opt_state, loss, correct, scaling = mixed_step(
                params, opt_state, xb, yb, run, step, lr, rng, precision.scaling_of(state)
            )
            state = state._replace(**scaling._asdict())
        else:
            params, opt_state, loss, correct = train_step(
                params, opt_state, xb, yb, run, step, lr, rng
            )
        if config.ema:
            opt_state = ema.updated_average(opt_state, params, config.ema)
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
        return r_squared(state.loss_sum / state.seen, to_numpy(run.data.y_train))
    return state.correct / state.seen


def model_params(run, params, opt_state):
    """The weights a run validates and saves: the raw ``params``, or with --ema their
    average, from ``opt_state`` (core/learn/ema.py)."""
    return ema.averaged_params(params, opt_state) if run.config.ema else params


def end_epoch(run, params, opt_state, state, report):
    """Validate the finished epoch, log it, save the files; returns the next epoch's state."""
    epoch, score = state.epoch, SCORE_OF_LOSS[run.config.loss]
    model = model_params(run, params, opt_state)
    val_loss, val_score = validate(run, model, epoch)
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
    if run.config.precision == "mixed":
        row["skipped_steps"] = state.skipped
    report.epoch(run, row)
    # A higher R² is a lower MSE. The first epoch always counts: R² can be below -1.
    improved = state.best_epoch == 0 or val_score > state.best_val_acc
    done = runs.RunState(
        epoch=epoch + 1,
        best_val_acc=val_score if improved else state.best_val_acc,
        best_epoch=epoch + 1 if improved else state.best_epoch,
        log_rows=[*state.log_rows, row],
        loss_scale=state.loss_scale,  # the loss scaling goes on; its count of skips is the epoch's
        scale_streak=state.scale_streak,
    )
    runs.save_epoch(run, params, opt_state, done, improved, model)
    return done


def stopped_early(config, state):
    """True once ``config.patience`` epochs have passed without a better validation score."""
    return bool(config.patience) and state.epoch - state.best_epoch >= config.patience


def checked_plan(config, xp=np):
    """The checks of ``config`` that need its data and blueprint, and what they give: (data
    on the CPU, blueprint, the names of the frozen layers). UserError for a mistake."""
    check_warmup(config)
    check_freeze(config)
    check_on_device(config, xp)
    data = prepare_data(config)
    _, blueprint = load_blueprint(config.arch, data.dataset.n_classes)
    check_not_quantized(blueprint, config.arch)
    check_outputs(blueprint, data)
    frozen_names = frozen_layers(blueprint, data.x_train.shape[1:], config.freeze)
    return data, blueprint, frozen_names


def check_new_run(config):
    """Every check a new run of ``config`` makes before it writes a file (its --init-from
    model included), without a folder: a sweep makes them for each configuration before its
    first run, so a mistake in the last one is not found hours later."""
    data, blueprint, frozen_names = checked_plan(config)
    in_shape = data.x_train.shape[1:]
    lr_of(runs.make_run(config, data, blueprint), 0)  # the schedule and warm-up
    if config.init_from:
        params = initialize_parameters(blueprint, in_shape, make_rng(config.seed, 0))
        start_from(params, blueprint, in_shape, config.init_from, frozen_names, lambda line: None)


def start(config, out_dir, resume, changes, overwrite, say, writes=(), device="cpu"):
    """Everything a run needs before its first batch: (run, params, opt_state, state), the
    arrays on ``device``.

    Every option is checked before the folder is: a mistyped option is the error shown.
    """
    xp = array_library(device)
    if resume:
        saved, params, opt_state, state = runs.load_run(out_dir / runs.RUN_FILES["ckpt"])
        config = runs.resumed_config(saved, changes, out_dir / runs.RUN_FILES["ckpt"])
    data, blueprint, frozen_names = checked_plan(config, xp)
    data = on_device(data, xp)
    in_shape = data.x_train.shape[1:]
    frozen = frozen_keys(blueprint, in_shape, frozen_names)
    run = runs.make_run(config, data, blueprint, out_dir, frozen)
    lr_of(run, 0)  # checks the schedule and warm-up now, before anything is written
    found = runs.refuse_to_replace(out_dir, resume, overwrite, writes)
    if not resume:
        if config.init_from:  # --overwrite would delete it before the run saves its own
            refuse_to_write_over(out_dir / runs.RUN_FILES["best"], [config.init_from],
                                 "--init-from's run folder")  # fmt: skip
            refuse_to_write_over(out_dir / runs.RUN_FILES["ckpt"], [config.init_from],
                                 "--init-from's run folder")  # fmt: skip
        params = initialize_parameters(blueprint, in_shape, make_rng(config.seed, 0))
        if config.init_from:
            params = start_from(params, blueprint, in_shape, config.init_from, frozen_names, say)
    runs.prepare_folder(out_dir, [] if resume else found, say)
    params = placed(params, xp)
    if not resume:
        return run, params, initial_state(run, params), runs.RunState()
    opt_state = placed(opt_state, xp)
    if config.ema:
        ema.check_average(opt_state, params, run.frozen, out_dir / runs.RUN_FILES["ckpt"])
    if config.epochs != saved.epochs:
        step = state.epoch * run.per_epoch + state.batch
        replanned = "" if config.schedule == "constant" else (
            f"; the {config.schedule} schedule is planned anew over {config.epochs} epochs "
            f"(learning rate {lr_of(run, step):.2e} where the run resumes)"
        )  # fmt: skip
        say(f"extending the run from {saved.epochs} to {config.epochs} epochs{replanned}")
    return run, params, opt_state, state


def initial_state(run, params):
    """A new run's optimizer state: the optimizer's slots, and with --ema the average's."""
    opt_state = run.optimizer.init(params)
    if run.config.ema:
        opt_state = {**opt_state, **ema.initial_average(params, run.frozen)}
    return opt_state


def nothing_to_train(run, state, out_dir):
    """Why a resumed run trains no further (it stopped early, or finished), or ""."""
    done = runs.plural(state.epoch, "epoch")
    if stopped_early(run.config, state):
        return (f"the run in {out_dir} stopped early after {done} "
                f"(--patience {run.config.patience}); nothing to train")  # fmt: skip
    if state.epoch >= run.config.epochs:
        return (f"the run in {out_dir} had finished its {done}; nothing to train: give a "
                "larger --epochs to extend it")  # fmt: skip
    return ""


def train(
    config,
    out_dir,
    resume=False,
    changes=None,
    overwrite=False,
    report=QUIET,
    writes=(),
    device="cpu",
):
    """Train a model as ``config`` says, writing its files to ``out_dir``.

    resume: continue from ``out_dir/checkpoint.npz`` with its config (``config`` is not read),
            changed by ``changes`` ({field: value}; see core/learn/runs.py ``resumed_config``:
            only ``epochs`` may grow); a finished run says so and trains no further.
    overwrite: replace a run already in ``out_dir`` (refused otherwise, with a UserError).
    report: what is told of the run as it goes (default: nothing; core/progress.py Progress
            prints the train command's lines and progress bar).
    writes: the paths in ``out_dir`` that the caller writes too (figures/...): a new run
            refuses a folder where one of them exists (it is not a run's), unless ``overwrite``.
    device: "cpu", or "gpu" (core/learn/device.py): where the run computes. Its files are the
            same NumPy files either way, and a checkpoint resumes on either device.
    The run holds ``out_dir`` (core/learn/runs.py ``owning``): a second process is refused.
    Returns (model, log): the best model as saved (``best_params.npz``, read back as a Model)
    and the log, a DataFrame of one row per epoch. Raises Diverged on a NaN/infinite loss (the files of the
    last good epoch stay) and Interrupted (a KeyboardInterrupt) after writing a checkpoint.
    """
    out_dir = Path(out_dir)
    with runs.owning(out_dir):
        return train_owned(config, out_dir, resume, changes, overwrite, report, writes, device)


def train_owned(config, out_dir, resume, changes, overwrite, report, writes, device):
    """``train``, once it holds the run folder."""
    run, params, opt_state, state = start(
        config, out_dir, resume, changes, overwrite, report.say, writes, device
    )
    config = run.config
    report.started(run, out_dir)
    if why := nothing_to_train(run, state, out_dir):
        report.say(why)
    trained_now = not why
    try:
        with BetweenBatches() as stops:  # a Ctrl-C waits for the batch's end: never lost
            while state.epoch < config.epochs and not stopped_early(config, state):
                batches = report.batches(run, state, epoch_batches(run, params, opt_state, state))
                for params, opt_state, state in batches:  # noqa: B007 (read after the loop)
                    stops.check()
                state = end_epoch(run, params, opt_state, state, report)
                stops.check()
                if stopped_early(config, state):
                    mse = config.loss == "mse"
                    better = "lower validation MSE" if mse else "better validation accuracy"
                    report.say(
                        f"early stop: no {better} for {runs.plural(config.patience, 'epoch')}"
                    )
    except KeyboardInterrupt:
        runs.save_run(run, params, opt_state, state)
        raise Interrupted(
            f"interrupted: checkpoint written to {run.paths['ckpt']}; continue with: "
            f"{runs.resume_command(out_dir)}"
        ) from None
    except Diverged as e:
        kept = (
            f"the last good parameters are in {run.paths['best']}"
            if run.paths["best"].exists()
            else "no epoch finished, so no parameters were kept"
        )
        raise Diverged(f"{e}: training stopped; try a smaller --lr; {kept}") from None
    if trained_now and ood.needs_record(run.data.x_train.shape[1:], config.loss):
        started = time.perf_counter()
        record = ood.save_record(run.paths["best"], config)
        report.say(
            f"not-a-digit check: too few validation images ({len(run.data.x_val)}) to set its "
            "thresholds; predict will give no verdict with this model"
            if record is None
            else f"not-a-digit check: thresholds set on {record['validation_images']} validation "
            f"pictures in {time.perf_counter() - started:.0f} s, saved in {run.paths['best']}"
        )
    log = pd.DataFrame(state.log_rows, columns=runs.log_columns(config))
    return load_model(run.paths["best"]), log
