"""What a training run prints as it goes: the Report that the train command (and a sweep's
runs, silently) hands to core/learn/train.py ``train``.

It prints the run's first line, a progress bar on a terminal (or, for a log file or CI, a line
at every tenth of an epoch), one line per epoch, and the loop's other lines; and it draws
``figures/augmentation.png`` of an augmented run before its first batch.
"""

import dataclasses
import sys
import time

from tqdm import tqdm

from core.learn.eval import SCORE_OF_LOSS
from core.learn.runs import plural
from core.learn.train import Report, augmented, make_rng
from core.plots import plot_augmentations, save_figure
from layers.arraylib import to_numpy

# TrainConfig fields that augment a batch, with their names in the figure
AUGMENTATIONS = {
    "augment": "shift, rotate, scale",
    "crop": "crop",
    "flip": "flip",
    "erase": "erase",
}


AUGMENTATION_FIGURE = "figures/augmentation.png"  # in the run folder


def say(line):
    """Print ``line`` at once: to a file or pipe, stdout is block-buffered, which would hold the
    progress lines back until the buffer fills."""
    print(line, flush=True)


class Progress(Report):
    """A Report that prints through ``echo`` (default: stdout, flushed).

    progress: True for a progress bar, False for none; None: a bar when stderr is a terminal,
    else a line through ``echo`` at every tenth of an epoch and at least every 30 s.
    notes: lines printed once the run's options are checked, before its first line.
    """

    def __init__(self, progress=None, echo=say, notes=()):
        if progress is None:
            self.style = "bar" if sys.stderr.isatty() else "lines"
        else:
            self.style = "bar" if progress else None
        self.echo = echo
        self.notes = list(notes)

    def say(self, line):
        self.echo(line)

    def started(self, run, out_dir):
        for line in self.notes:
            self.echo(line)
        self.echo(run_description(run))
        if any(getattr(run.config, field) for field in AUGMENTATIONS):
            write_augmentation_figure(run.config, run.data, out_dir / AUGMENTATION_FIGURE)

    def batches(self, run, state, batches):
        if self.style == "bar":
            return with_bar(run, state, batches)
        if self.style == "lines":
            return with_lines(run, state, batches, self.echo)
        return batches

    def epoch(self, run, row):
        self.echo(epoch_line(run.config.loss, row))


def run_description(run):
    """The first line of a run's output."""
    config, data = run.config, run.data
    images = f"{plural(len(data.y_train), 'image')} to train on, {len(data.y_val)} to validate"
    if config.limit is not None:
        images += f" (the {config.limit} that --limit keeps)"
    batches = plural(run.per_epoch, "batch", "batches")
    return (f"training {config.arch} on {config.dataset}: {images}; "
            f"{plural(config.epochs, 'epoch')} of {batches} of {config.batch_size}")  # fmt: skip


def epoch_line(loss, row):
    """The log line of an epoch: ``row`` is its row of the log (core/learn/train.py end_epoch);
    a mixed-precision run's says how many steps its loss scaling skipped."""
    score, name = SCORE_OF_LOSS[loss], "mse" if loss == "mse" else "loss"
    return (
        f"epoch {row['epoch']:3d}  lr {row['lr']:.2e}  train {name} {row['train_loss']:.4f} "
        f"{score} {row[f'train_{score}']:.4f}  val {name} {row['val_loss']:.4f} {score} "
        f"{row[f'val_{score}']:.4f}  "
        f"{row['seconds']:.1f} s ({row['images_per_s']:.0f} images/s)"
        + (f", {plural(row['skipped_steps'], 'step')} skipped" if "skipped_steps" in row else "")
    )


def epoch_name(run, state):
    """``"epoch 2/5"``: the progress output's name of the epoch in progress."""
    return f"epoch {state.epoch + 1}/{run.config.epochs}"


def with_bar(run, state, batches):
    """``batches`` (of epoch ``state.epoch``) passed on, with a tqdm bar of the epoch on stderr;
    the bar goes when the epoch ends, or when an error or a Ctrl-C leaves it."""
    total, desc = run.per_epoch, epoch_name(run, state)
    with tqdm(total=total, initial=state.batch, leave=False, desc=desc, unit="batch") as bar:
        for params, opt_state, state in batches:
            bar.set_postfix(loss=f"{state.loss_sum / state.seen:.4f}", refresh=False)
            bar.update()
            yield params, opt_state, state


def with_lines(run, state, batches, echo):
    """``batches`` passed on, with a line through ``echo`` as each tenth of the epoch is passed
    and at least every 30 s (none after the last batch: the epoch's own line follows)."""
    per_epoch, desc = run.per_epoch, epoch_name(run, state)
    last_line = time.perf_counter()
    for params, opt_state, state in batches:
        tenth = state.batch * 10 // per_epoch > (state.batch - 1) * 10 // per_epoch
        if state.batch < per_epoch and (tenth or time.perf_counter() - last_line >= 30):
            echo(f"  {desc}: batch {state.batch}/{per_epoch}, "
                 f"loss {state.loss_sum / state.seen:.4f}, {state.seconds:.0f} s")  # fmt: skip
            last_line = time.perf_counter()
        yield params, opt_state, state


def write_augmentation_figure(config, data, path, n=8):
    """A figure of n training images under each of the run's augmentations, and all of them."""
    x = to_numpy(data.x_train[:n])  # drawn on the CPU, from the same draws, wherever the run is
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
