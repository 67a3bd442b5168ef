"""The same training over a grid of settings and several seeds, in parallel.

A sweep is the product of its axes, each a list of settings ``{key: value}``:
``--set lr=0.01,0.002`` is the axis ``[{"lr": 0.01}, {"lr": 0.002}]``, over any
TrainConfig field, or ``activation`` (every activation layer of the blueprint
swapped for one kind). Each combination runs once per seed.

Each run trains on one core (one worker thread) in its own process: local
processes (joblib), or the workers of a Dask cluster (``--scheduler``). Each
run's folder, under the sweep's folder, gets ``result.json`` last, atomically,
once the run has finished: a sweep started again skips the runs whose result
is there (for the same settings) and restarts the others from scratch. The
table of every run (runs.csv) and its summary, mean ± standard deviation of
the test and validation accuracy per configuration (summary.csv), are rebuilt
from these results, with a figure (sweep.png).
"""

import dataclasses
import hashlib
import itertools
import json
import math
import os
import re
from pathlib import Path
from typing import NamedTuple

import pandas as pd
from joblib import Parallel, delayed, parallel_config

from core.learn.config import (
    FIELDS,
    RECIPES,
    TrainConfig,
    check_warmup,
    setting_value,
    with_settings,
)
from core.learn.optim import OPTIMIZERS
from core.learn.runs import plural
from data.errors import UserError
from data.files import atomic_write_text
from model.blueprints import ACTIVATIONS

# A learning rate that suits each optimizer on these nets (a sweep compares optimizers, not lrs).
USUAL_LR = {"sgd": 0.05, "momentum": 0.01, "nesterov": 0.01, "rmsprop": 1e-3,
            "adagrad": 0.02, "adam": 2e-3, "adamw": 2e-3}  # fmt: skip
DEFAULT_OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam")  # the sweep of no --set
ACTIVATION = "activation"  # the one --set key that is no TrainConfig field
PRESET = "preset"  # the column of a sweep of one --preset and no --set (its base says it all)
RESULT_FILE = "result.json"  # in a run's folder: written last, only by a finished run
QUICK = {"arch": "minivgg", "epochs": 1, "limit": 5000}  # a sweep of no --preset, by default
NAME_CHARACTERS = 80  # of the readable part of a run folder's name
MAX_RUNS = 1000  # in one sweep: a grid larger than this is a typo (1000 x 1000), not a plan


class PlannedRun(NamedTuple):
    """One run of a sweep."""

    config: TrainConfig  # everything train() reads, the seed included
    activation: str | None  # swap every activation of config.arch for this kind (None: keep)
    varied: dict  # {key: value} of the grid's settings for this run (its table columns)

    @property
    def label(self):
        """The configuration's name in the tables: ``key=value`` pairs, seed excluded."""
        return " ".join(f"{key}={value}" for key, value in self.varied.items())

    @property
    def folder(self):
        """A file-system-safe folder name, unique per configuration and seed.

        The readable part keeps letters, digits, '.', '=' and '-'; the hash of the
        settings tells apart two that differ only in replaced characters.
        """
        readable = "_".join(f"{key}-{value}" for key, value in self.varied.items())
        safe = re.sub(r"[^A-Za-z0-9.=-]+", "_", readable)[:NAME_CHARACTERS]
        digest = hashlib.sha256(json.dumps(self.varied).encode()).hexdigest()[:8]
        return f"{safe}_{digest}_seed{self.config.seed}"


# ---- the grid --------------------------------------------------------------------------


def settable_keys():
    """The keys --set accepts: every TrainConfig field but the seed, and ``activation``."""
    return [name for name in FIELDS if name != "seed"] + [ACTIVATION]


def parse_value(key, text):
    """``text`` as a value of the setting ``key``: an activation, or a TrainConfig field's
    value, typed and checked as train's option of that field checks it (core/learn/config.py).

    Raises a one-line UserError naming the key and the value.
    """
    if key == ACTIVATION:
        if text not in ACTIVATIONS:
            raise UserError(f"--set {key}={text}: choose from {', '.join(ACTIVATIONS)}")
        return text
    try:
        return setting_value(key, text)
    except UserError as err:
        raise UserError(f"--set {key}={text}: {err}") from None


def parse_settings(items):
    """The axes of ``--set KEY=V1,V2,...`` options: [[{key: value}, ...], ...], in order."""
    axes, seen = [], set()
    for item in items or []:
        key, equals, values = item.partition("=")
        key = key.strip().replace("-", "_")
        if key == "seed":
            raise UserError("--set seed: the seeds are set by --seeds (0, 1, ... N-1)")
        if key not in settable_keys():
            raise UserError(
                f"--set {item}: unknown key {key!r}; valid keys: {', '.join(settable_keys())}"
            )
        texts = [v.strip() for v in values.split(",")]
        if not equals or "" in texts:
            raise UserError(f"--set {item}: give KEY=VALUE[,VALUE...], e.g. --set lr=0.01,0.002")
        if key in seen:
            raise UserError(f"--set {key} is given twice; give its values in one --set")
        parsed = [parse_value(key, text) for text in texts]
        if len(set(map(repr, parsed))) < len(parsed):
            raise UserError(f"--set {item}: a value is given twice")
        seen.add(key)
        axes.append([{key: value} for value in parsed])
    return axes


def optimizer_axis(optimizers, lrs=None):
    """The axis of ``--optimizers`` (with ``--lrs``, one rate per optimizer, paired)."""
    if lrs is None:
        return [{"optimizer": o} for o in optimizers]
    if len(lrs) != len(optimizers):
        raise UserError(f"--lrs gives {len(lrs)} rates for {len(optimizers)} optimizers")
    return [{"optimizer": o, "lr": lr} for o, lr in zip(optimizers, lrs, strict=True)]


def plan_runs(axes, seeds, base):
    """One PlannedRun per combination of the axes and seed 0 .. seeds-1, on top of ``base``.

    An optimizer varied without the learning rate runs at its ``USUAL_LR``. A grid of more
    than MAX_RUNS runs is refused before one is built.
    """
    sizes = [len(axis) for axis in axes]
    if (total := math.prod(sizes) * seeds) > MAX_RUNS:
        grid = " x ".join(map(str, sizes))
        raise UserError(f"the sweep would train {total:,} runs ({grid} settings x "
                        f"{plural(seeds, 'seed')}); at most {MAX_RUNS:,}: give fewer --set "
                        "values or --seeds")  # fmt: skip
    planned = []
    for combination in itertools.product(*axes):
        varied = {key: value for setting in combination for key, value in setting.items()}
        if "optimizer" in varied:
            if varied["optimizer"] not in OPTIMIZERS:
                raise UserError(
                    f"unknown optimizer {varied['optimizer']!r}; choose from {', '.join(OPTIMIZERS)}"
                )
            varied.setdefault("lr", USUAL_LR[varied["optimizer"]])
        fields = {key: value for key, value in varied.items() if key not in (ACTIVATION, PRESET)}
        for seed in range(seeds):
            config = with_settings(base, {**fields, "seed": seed})
            check_warmup(config)
            planned.append(PlannedRun(config, varied.get(ACTIVATION), varied))
    return planned


def sweep_configs(optimizers, lrs, seeds, **common):
    """One TrainConfig per (optimizer, seed), on top of the default recipe."""
    base = dataclasses.replace(RECIPES["default"], **common)
    return [run.config for run in plan_runs([optimizer_axis(optimizers, lrs)], seeds, base)]


# ---- one run -----------------------------------------------------------------------------


def one_run(config, run_dir, activation=None, varied=None):
    """Train one configuration on one core; returns its row of the table, a dict.

    run_dir:    its folder, replaced if it holds anything of an earlier start.
    activation: swap every activation layer of ``config.arch`` for this kind; the
                variant blueprint is saved as ``run_dir/blueprint.json`` and trained.
    varied:     {key: value} of the sweep's settings, the row's columns (default:
                optimizer and lr).
    The row (config, the varied keys, seed, val_acc, test_acc) is also written to
    ``run_dir/result.json``, last and atomically: a run killed before the end leaves
    none, and a retried run (a Dask worker died) starts again from scratch.
    """
    from core.learn.train import train
    from core.progress import Progress
    from core.report import evaluate, load_test_set
    from model.shards import set_threads

    set_threads(1)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RESULT_FILE).unlink(missing_ok=True)  # the result of other settings, if any
    varied = varied or {"optimizer": config.optimizer, "lr": config.lr}
    trained = config
    if activation is not None:
        trained = dataclasses.replace(
            config, arch=str(variant_blueprint(config, activation, run_dir))
        )
    # a run folder of the sweep's own: a new start replaces it (half-finished or other settings)
    # silent: no lines, no bar; figures/augmentation.png is drawn as for the train command
    silent = Progress(progress=False, echo=lambda line: None)
    model, _ = train(trained, run_dir, overwrite=True, report=silent)
    x_test, y_test, _ = load_test_set(model.meta, config.data_dir)
    row = {
        "config": PlannedRun(config, activation, varied).label,
        **varied,
        "seed": config.seed,
        "val_acc": model.meta["val_acc"],
        "test_acc": evaluate(model, x_test, y_test).accuracy,
    }
    record = {"config": _jsonable(config), ACTIVATION: activation, "row": row}
    atomic_write_text(run_dir / RESULT_FILE, json.dumps(record, indent=1) + "\n")
    return row


def variant_blueprint(config, activation, run_dir):
    """``config.arch`` with its activations swapped, saved as run_dir/blueprint.json."""
    from data import load_dataset
    from model.blueprints import load_blueprint, swap_activations

    n_classes = load_dataset(config.dataset, config.data_dir).n_classes
    _, blueprint = load_blueprint(config.arch, n_classes)
    path = run_dir / "blueprint.json"
    atomic_write_text(path, json.dumps(swap_activations(blueprint, activation), indent=1) + "\n")
    return path


def _jsonable(config):
    """``config`` as a dict, as it reads back from JSON (to compare with a saved one)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def finished_row(run, run_dir, echo=print):
    """The row of ``run`` from its folder's result file, or None if it has not finished.

    A result of other settings (another --epochs, say, in the same --out) is not
    this run's: None, and the run starts again. So is a damaged one, which ``echo`` reports.
    """
    path = Path(run_dir) / RESULT_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValueError) as err:  # written atomically: not by us
        echo(f"{path}: unreadable ({type(err).__name__}); that run is done again")
        return None
    if not is_result(record):
        echo(f"{path}: not a result this sweep writes; that run is done again")
        return None
    same = record["config"] == _jsonable(run.config) and record[ACTIVATION] == run.activation
    return record["row"] if same else None


def is_result(record):
    """True for a dict as ``one_run`` writes it: config, activation, and a row whose
    accuracies are numbers in [0, 1]."""
    if not isinstance(record, dict) or not {"config", ACTIVATION, "row"} <= set(record):
        return False
    row = record["row"]
    return isinstance(row, dict) and all(
        isinstance(row.get(key), int | float) and not isinstance(row.get(key), bool)
        and 0 <= row[key] <= 1 for key in ("val_acc", "test_acc")
    )  # fmt: skip


# ---- the whole sweep -------------------------------------------------------------------


def run_all(todo, jobs, scheduler=None):
    """The rows of ``todo`` [(PlannedRun, run_dir)], in order, run ``jobs`` at a time in
    local processes, or on the workers of the Dask scheduler at ``scheduler``."""
    calls = [delayed(one_run)(r.config, d, r.activation, r.varied) for r, d in todo]
    if not calls:
        return []
    if scheduler is None:
        return Parallel(n_jobs=jobs)(calls)
    try:
        from dask.distributed import Client
    except ImportError:
        raise UserError(
            '--scheduler needs Dask: pip install "dask[distributed]" (or the project\'s '
            '"cluster" extra), on this machine and on every worker'
        ) from None
    try:
        client = Client(scheduler, timeout="20s")
    except (OSError, TimeoutError, ValueError) as err:
        raise UserError(f"--scheduler {scheduler}: cannot connect ({err})") from None
    # one run per task: a run is minutes long, and a dead worker costs only its own runs
    with client, parallel_config(backend="dask"):
        return Parallel(n_jobs=-1, batch_size=1)(calls)


def summarize(runs):
    """Mean ± standard deviation of the test and validation accuracy per configuration.

    runs: the table of every run, columns config, the varied keys, seed, val_acc, test_acc.
    Returns a DataFrame: config, the varied keys, n, test_mean, test_std, val_mean, val_std,
    one row per configuration in the order of ``runs`` (the std of one run is 0).
    """
    keys = [c for c in runs.columns if c not in ("config", "seed", "val_acc", "test_acc")]
    grouped = runs.groupby("config", sort=False)
    table = grouped[keys].first()
    table["n"] = grouped.size()
    for name, column in (("test", "test_acc"), ("val", "val_acc")):
        table[f"{name}_mean"] = grouped[column].mean()
        table[f"{name}_std"] = grouped[column].std(ddof=1).fillna(0.0)
    return table.reset_index()


def format_summary(summary):
    """The summary as text for the console, accuracies in % as mean ± std (a configuration
    of one run: its accuracy, which has no spread)."""
    shown = summary[["config", "n"]].copy()
    for name, title in (("test", "test accuracy %"), ("val", "validation accuracy %")):
        shown[title] = [
            f"{100 * m:.2f}" + (f" ± {100 * s:.2f}" if n > 1 else "")
            for m, s, n in zip(
                summary[f"{name}_mean"], summary[f"{name}_std"], summary["n"], strict=True
            )
        ]
    return shown.to_string(index=False)


def sweep_axes(args):
    """The axes of the command line: --set, or --optimizers/--lrs, or the default optimizers;
    with --preset and none of these, the preset alone (its runs differ by seed only)."""
    axes = parse_settings(args.set)
    keys = {key for axis in axes for key in axis[0]}
    lrs = [float(v) for v in args.lrs.split(",")] if args.lrs else None
    if (args.optimizers or lrs) and keys & {"optimizer", "lr"}:
        raise UserError("give the optimizers and rates by --set or by --optimizers/--lrs, not both")
    if args.preset and not (axes or args.optimizers or lrs):
        return [[{PRESET: args.preset}]]  # the recipe as it is, once per seed
    if args.optimizers or lrs or not axes:
        optimizers = (args.optimizers or ",".join(DEFAULT_OPTIMIZERS)).split(",")
        axes.append(optimizer_axis(optimizers, lrs))
    return axes


def caption(base, planned, seeds):
    """The figure's caption: the settings every run shares (the varied ones are its rows)."""
    varied = {key for run in planned for key in run.varied}
    parts = [f"{getattr(base, key)}" for key in ("dataset", "arch") if key not in varied]
    if "epochs" not in varied:
        parts.append(
            f"{base.epochs} epoch(s)"
            + (f" on {base.limit} images" if base.limit and "limit" not in varied else "")
        )
    return ", ".join([*parts, plural(seeds, "seed")])


def sweep_base(args):
    """The TrainConfig every run starts from: --preset (or the quick default recipe) with the
    --dataset, --data-dir, --arch, --epochs and --limit given on top."""
    options = vars(args)
    base = RECIPES[args.preset] if args.preset else dataclasses.replace(RECIPES["default"], **QUICK)
    given = {key: options[key] for key in ("arch", "epochs", "limit") if key in options}
    given |= {key: options[key] for key in ("dataset", "data_dir") if options[key] is not None}
    return with_settings(base, given)


def check_jobs(jobs):
    """The processes to run at once: ``jobs``, or one per core; more than the cores is refused
    (each run trains on one core: more only makes them all slower)."""
    cores = len(os.sched_getaffinity(0))
    if jobs is not None and jobs > cores:
        raise UserError(f"--jobs {jobs}: this machine gives this process {cores} cores; at most "
                        f"--jobs {cores}")  # fmt: skip
    return jobs or cores


def check_configurations(planned):
    """Each configuration's checks of a new run (core/learn/train.py ``check_new_run``: its
    blueprint, data sizes, schedule, --init-from), before any run starts; an error names the
    configuration."""
    from core.learn.train import check_new_run

    for run in planned:
        if run.config.seed == 0:  # the other seeds make the same checks
            try:
                check_new_run(run.config)
            except UserError as err:
                where = f"sweep configuration {run.label}" if run.label else "sweep"
                raise UserError(f"{where}: {err}") from None


def run_sweep(args, echo=print):
    """The ``sweep`` command: run what is not finished, tabulate, plot. Returns (runs, summary)."""
    from core.plots import plot_sweep, save_figure

    base = sweep_base(args)
    planned = plan_runs(sweep_axes(args), args.seeds, base)
    jobs = None if args.scheduler else check_jobs(args.jobs)
    check_configurations(planned)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [finished_row(run, out / run.folder, echo) for run in planned]
    todo = [(run, out / run.folder) for run, row in zip(planned, rows, strict=True) if row is None]
    where = f"on the Dask cluster at {args.scheduler}" if args.scheduler else f"{jobs} at a time"
    configurations = plural(len(planned) // args.seeds, "configuration")
    echo(f"sweep: {plural(len(planned), 'run')} of {configurations} x "
         f"{plural(args.seeds, 'seed')}; {len(planned) - len(todo)} finished already in {out}, "
         f"{len(todo)} to run {where}")  # fmt: skip
    fresh = iter(run_all(todo, jobs, args.scheduler))
    runs = pd.DataFrame([row if row is not None else next(fresh) for row in rows])
    summary = summarize(runs)
    atomic_write_text(out / "runs.csv", runs.to_csv(index=False))
    atomic_write_text(out / "summary.csv", summary.to_csv(index=False))
    save_figure(plot_sweep(summary, caption=caption(base, planned, args.seeds)), out / "sweep.png")
    echo(f"mean ± std over {args.seeds} seeds:" if args.seeds > 1 else "one seed, so no spread:")
    echo(format_summary(summary))
    echo(f"files in {out}: runs.csv, summary.csv, sweep.png, one folder per run")
    return runs, summary
