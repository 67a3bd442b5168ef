"""The same training over several configurations and seeds, in parallel processes.

Each run trains on one core (one worker thread) in its own process (joblib),
so a 2-core machine runs two at a time. The result is a table of the final
test accuracy of every run and its summary, mean ± standard deviation per
configuration, as CSV files and a figure.
"""

import dataclasses
import os
from pathlib import Path

import pandas as pd
from joblib import Parallel, delayed

from core.optim import OPTIMIZERS
from core.train import RECIPES
from data.errors import UserError
from data.files import atomic_write_text

# A learning rate that suits each optimizer on these nets (a sweep compares optimizers, not lrs).
USUAL_LR = {"sgd": 0.05, "momentum": 0.01, "nesterov": 0.01, "rmsprop": 1e-3,
            "adagrad": 0.02, "adam": 2e-3, "adamw": 2e-3}  # fmt: skip


def one_run(config, run_dir):
    """Train one configuration on one core; returns its final figures as a dict."""
    from core.report import evaluate, load_test_set
    from core.train import train
    from model.shards import set_threads

    set_threads(1)
    # a run folder of the sweep's own: a new sweep replaces it, as it replaces the sweep's table
    result = train(config, run_dir, progress=False, echo=lambda *_: None, overwrite=True)
    x_test, y_test, _ = load_test_set(result.meta, config.data_dir)
    return {
        "config": f"{config.optimizer} lr={config.lr:g}",
        "optimizer": config.optimizer,
        "lr": config.lr,
        "seed": config.seed,
        "val_acc": result.meta["val_acc"],
        "test_acc": evaluate(result, x_test, y_test).accuracy,
    }


def summarize(runs):
    """Mean ± std of the test accuracy per configuration: DataFrame config, mean, std, n."""
    grouped = runs.groupby("config", sort=False)["test_acc"]
    return pd.DataFrame({"mean": grouped.mean(), "std": grouped.std(ddof=1).fillna(0.0),
                         "n": grouped.size()}).reset_index()  # fmt: skip


def sweep_configs(optimizers, lrs, seeds, **common):
    """One TrainConfig per (optimizer, seed), on top of the default recipe."""
    if unknown := [o for o in optimizers if o not in OPTIMIZERS]:
        raise UserError(f"unknown optimizer(s) {unknown}; choose from {', '.join(OPTIMIZERS)}")
    lrs = lrs or [USUAL_LR[o] for o in optimizers]
    if len(lrs) != len(optimizers):
        raise UserError(f"--lrs gives {len(lrs)} rates for {len(optimizers)} optimizers")
    return [
        dataclasses.replace(RECIPES["default"], optimizer=o, lr=lr, seed=seed, **common)
        for o, lr in zip(optimizers, lrs, strict=True)
        for seed in range(seeds)
    ]


def run_sweep(args, echo=print):
    """The ``sweep`` command: run, tabulate, plot. Returns (runs, summary) DataFrames."""
    from core.plots import plot_sweep, save_figure

    try:
        lrs = [float(v) for v in args.lrs.split(",")] if args.lrs else None
    except ValueError:
        raise UserError(f"--lrs must be comma-separated numbers, got {args.lrs!r}") from None
    configs = sweep_configs(args.optimizers.split(","), lrs, args.seeds,
                            arch=args.arch, epochs=args.epochs, limit=args.limit)  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = args.jobs or len(os.sched_getaffinity(0))
    echo(f"sweep: {len(configs)} runs ({args.arch}, {args.epochs} epoch(s) on {args.limit} "
         f"images each), {jobs} at a time")  # fmt: skip
    results = Parallel(n_jobs=jobs)(
        delayed(one_run)(c, out / f"{c.optimizer}-seed{c.seed}") for c in configs
    )
    runs = pd.DataFrame(results)
    summary = summarize(runs)
    atomic_write_text(out / "runs.csv", runs.to_csv(index=False))
    atomic_write_text(out / "summary.csv", summary.to_csv(index=False))
    caption = f"{args.arch}, {args.epochs} epoch(s) on {args.limit} images, {args.seeds} seeds"
    save_figure(plot_sweep(summary, caption=caption), out / "sweep.png")
    echo(
        summary.to_string(index=False, formatters={"mean": "{:.4f}".format, "std": "{:.4f}".format})
    )
    echo(f"files in {out}: runs.csv, summary.csv, sweep.png")
    return runs, summary
