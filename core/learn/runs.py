"""A run: the record of what stays fixed while it trains, its folder, its checkpoint and resume.

A run folder holds ``best_params.npz`` (the parameters with the best validation accuracy so
far; for a regression run, the lowest validation MSE; with --ema, the averaged parameters),
``checkpoint.npz`` (what resume reads: the parameters, the optimizer state with the --ema
average in it, the config and the RunState) and ``log.csv`` (one row per epoch), all written
atomically.
"""

import contextlib
import dataclasses
import datetime
import fcntl
import math
import os
import sys
from numbers import Real
from typing import NamedTuple

import pandas as pd

from core.learn.config import TrainConfig, checked_config
from core.learn.eval import SCORE_OF_LOSS
from core.learn.optim import Optimizer, freezing, make_optimizer, masking
from core.learn.precision import Scaling
from data.errors import UserError
from data.files import MAX_NUMBERED, atomic_write_text, numbered, remove_leftover_temporaries
from model.params_io import load_checkpoint, save_checkpoint, save_model

RUN_FILES = {"best": "best_params.npz", "ckpt": "checkpoint.npz", "log": "log.csv"}
LOCK_FILE = "run.lock"  # there while a process trains in the folder; says which process
HOLDER_CHARACTERS = 200  # of the lock file's text shown to another process
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


class Run(NamedTuple):
    """What stays fixed while a run trains."""

    config: TrainConfig
    data: NamedTuple  # the TrainData of core/learn/train.py prepare_data
    blueprint: list
    optimizer: Optimizer
    paths: dict  # "best", "ckpt", "log": the files in the run folder ({}: none are written)
    per_epoch: int  # batches per epoch
    total_steps: int  # updates in the whole run, for the schedule
    warmup: int  # warm-up updates
    frozen: frozenset  # parameter keys no update touches (--freeze), running statistics included


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
    # mixed precision's loss scaling (core/learn/precision.py Scaling), untouched in float32
    loss_scale: float = Scaling().loss_scale
    scale_streak: int = 0
    skipped: int = 0  # steps skipped in the epoch so far


def make_run(config, data, blueprint, out_dir=None, frozen=frozenset(), masks=None):
    """The Run of ``config`` on ``data`` (a TrainData) with ``blueprint``.

    out_dir: the run folder (its files are RUN_FILES), or None for a run that writes none.
    frozen: the parameter keys that ``--freeze`` keeps as they are.
    masks: {weight key: bool array, True where kept}: the optimizer keeps the rest at zero
           (fine-tuning a pruned net; core/learn/optim.py ``masking``).
    """
    optimizer = freezing(make_optimizer(config.optimizer, weight_decay=config.weight_decay), frozen)
    per_epoch = math.ceil(len(data.y_train) / config.batch_size)
    return Run(
        config=config,
        data=data,
        blueprint=blueprint,
        optimizer=optimizer if masks is None else masking(optimizer, masks),
        paths={} if out_dir is None else {key: out_dir / name for key, name in RUN_FILES.items()},
        per_epoch=per_epoch,
        total_steps=config.epochs * per_epoch,
        warmup=round(config.warmup_epochs * per_epoch),
        frozen=frozenset(frozen),
    )


def log_columns(config):
    """The log's columns for a run of ``config``: LOG_COLUMNS, with "r2" for "acc" for MSE,
    and "skipped_steps" (the steps mixed precision skipped) for ``--precision mixed``."""
    columns = [column.replace("acc", SCORE_OF_LOSS[config.loss]) for column in LOG_COLUMNS]
    return [*columns, "skipped_steps"] if config.precision == "mixed" else columns


def write_log(path, rows, config):
    """The log rows (dicts keyed by ``log_columns(config)``) as CSV, written atomically."""
    atomic_write_text(path, pd.DataFrame(rows, columns=log_columns(config)).to_csv(index=False))


def run_meta(run, **extra):
    """What a saved model says about itself."""
    config, data = run.config, run.data
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
    meta = run_meta(run, run_state=state._asdict())
    save_checkpoint(run.paths["ckpt"], params, opt_state, run.blueprint, meta)


def save_epoch(run, params, opt_state, state, improved, model=None):
    """The files of a finished epoch: the log, the best model if ``improved``, the checkpoint.

    state: the RunState after the epoch (its last log row is the epoch's).
    model: the weights the best model file holds (with --ema, the averaged ones; default
           ``params``); the checkpoint holds ``params`` and ``opt_state`` whatever it is.
    """
    # The files first, then the state: a Ctrl-C while they are written checkpoints the epoch as
    # not yet finished, and the resumed run validates it and writes them again.
    write_log(run.paths["log"], state.log_rows, run.config)
    if improved:
        score = f"val_{SCORE_OF_LOSS[run.config.loss]}"
        meta = run_meta(run, epoch=state.epoch, **{score: state.log_rows[-1][score]})
        save_model(run.paths["best"], params if model is None else model, run.blueprint, meta)
    save_run(run, params, opt_state, state)


def load_run(path):
    """(config, params, opt_state, state) from the checkpoint ``path``."""
    if not path.exists():
        raise UserError(f"{path.parent} holds no run to resume (no {path.name}); start one "
                        "without --resume")  # fmt: skip
    ckpt = load_checkpoint(path)
    source = os.fspath(path)
    config = checked_config(ckpt.meta["config"], source)
    saved = ckpt.meta.get("run_state")
    if saved is None:
        raise UserError(f"{source}: __meta__ has no run_state, so there is no place in a run "
                        "to resume from; start a new run without --resume")  # fmt: skip
    if unknown := sorted(set(saved) - set(RunState._fields)):
        raise UserError(f"{source}: __meta__ run_state has unknown field(s) {unknown!s:.120}")
    # checkpoints written before the log rows were dicts hold them as lists in LOG_COLUMNS order
    rows = [row if isinstance(row, dict) else dict(zip(LOG_COLUMNS, row, strict=False)) for row in
            saved.get("log_rows", [])]  # fmt: skip
    columns = log_columns(config)
    if bad := [i for i, row in enumerate(rows) if not set(columns) <= set(row)
               or not all(isinstance(v, Real) and not isinstance(v, bool) for v in row.values())]:  # fmt: skip
        raise UserError(f"{source}: __meta__ run_state log_rows[{bad[0]}] must hold the "
                        f"numbers {', '.join(columns)}")  # fmt: skip
    state = RunState(**{**saved, "log_rows": rows})
    return config, ckpt.params, ckpt.opt_state, state


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


def resume_command(out_dir):
    """The command line that continues the run in ``out_dir``."""
    return f"python main.py train --resume --out {out_dir}"


def refuse_to_replace(out_dir, resume, overwrite, writes=()):
    """The run files already in ``out_dir``; a UserError if a new run would replace them, or
    one of the files ``writes`` (paths in the folder the caller writes besides them), unasked.
    """
    found = [name for name in RUN_FILES.values() if (out_dir / name).exists()]
    if resume or overwrite:
        return found
    if found:
        raise UserError(
            f"{out_dir} holds a run already ({', '.join(found)}); continue it with: "
            f"{resume_command(out_dir)}; replace it with --overwrite, or choose another --out"
        )
    if theirs := [name for name in writes if (out_dir / name).exists()]:
        raise UserError(
            f"{out_dir} holds files that are not a run's where a run writes ({', '.join(theirs)});"
            " move them, or choose another --out"
        )
    return found


@contextlib.contextmanager
def owning(out_dir):
    """Hold the run folder ``out_dir`` (made if missing) for this process while the block runs.

    A second process that tries gets one UserError naming the first. The lock is the
    kernel's (flock), so it ends with its process however that ends: a killed run leaves no
    lock behind. The folders this made stay only if the block wrote something into them.
    """
    made = [folder for folder in (out_dir, *out_dir.parents) if not folder.exists()]
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"{out_dir}: cannot create this folder ({err.strerror})") from None
    handle = lock(out_dir / LOCK_FILE)
    try:
        yield
    finally:
        (out_dir / LOCK_FILE).unlink(missing_ok=True)
        handle.close()
        for folder in made:  # the innermost first
            if any(folder.iterdir()):
                break
            folder.rmdir()


def lock(path):
    """The open, locked lock file ``path``, holding this process's id and command line."""
    for _ in range(3):  # the holder may remove the file between our open and our lock
        handle = open(path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            text = handle.read(HOLDER_CHARACTERS)
            handle.close()
            holder = "".join(c if c.isprintable() else "?" for c in text).strip() or "a process"
            raise UserError(
                f"{path.parent} is in use by another run ({holder}); wait for it to "
                "end, or choose another --out"
            ) from None
        if os.path.exists(path) and os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino:
            handle.seek(0)
            handle.truncate()
            started = datetime.datetime.now().isoformat(timespec="seconds")
            handle.write(f"process {os.getpid()}, {' '.join(sys.argv)}, since {started}\n")
            handle.flush()
            return handle
        handle.close()
    raise UserError(f"{path.parent}: cannot take its lock file {path.name}; try again")


def free_run_folder(wanted):
    """A folder for a new run: ``wanted``, or ``wanted-2``, ``wanted-3``, ..., the first that
    does not exist or is empty (it is made when the run starts)."""
    for folder in numbered(wanted):
        if not folder.exists() or (folder.is_dir() and not any(folder.iterdir())):
            return folder
    raise UserError(f"{wanted}: {MAX_NUMBERED:,} runs of that name exist; choose an --out")


def latest_run_folder(wanted):
    """The last of ``wanted``, ``wanted-2``, ... that holds a checkpoint (``wanted`` if none)."""
    latest = wanted
    for folder in numbered(wanted):
        if not folder.exists():
            break
        if (folder / RUN_FILES["ckpt"]).exists():
            latest = folder
    return latest


def prepare_folder(out_dir, replaced, say):
    """Make ``out_dir`` ready once everything is checked (so a refused run leaves no folder).

    replaced: the files of an earlier run to delete (--overwrite). Files that killed atomic
    writes left behind are removed too. say: where the lines that tell so go.
    """
    if replaced:
        say(f"replacing the run in {out_dir} (--overwrite): {', '.join(replaced)} deleted")
        for name in replaced:
            (out_dir / name).unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
    if removed := remove_leftover_temporaries(out_dir):
        say(f"removed what interrupted writes left in {out_dir}: {', '.join(removed)}")
