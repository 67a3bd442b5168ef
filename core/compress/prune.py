"""Global magnitude pruning of a trained model, then fine-tuning with the masks fixed.

The weights ``W`` of every conv and fc layer are ranked together by magnitude, and the
smallest ``sparsity`` fraction of them (exactly ``round(sparsity * count)``) is set to zero;
biases and batch norm are left whole. The pruned model is then fine-tuned with its own
training recipe (the optimizer, batch size, weight decay and augmentations in its meta) at a
tenth of its learning rate, cosine-decayed over the fine-tuning epochs. The optimizer is
wrapped by core/learn/optim.py ``masking``, so a pruned weight stays exactly zero. Nothing is
selected: the parameters after the last fine-tuning epoch are kept.
"""

import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from core.learn.config import TrainConfig
from core.learn.model_file import load_float_model
from core.learn.prepare import prepare_data
from core.learn.runs import RunState, make_run
from core.learn.train import epoch_batches, validate
from core.plots import plot_pruning, save_figure
from core.report import evaluate, load_test_set
from data.checks import is_real
from data.errors import UserError
from data.files import atomic_write_text, refuse_to_write_over
from model.params_io import save_model
from model.walk import KINDS, iter_layers

FINETUNE_LR_FACTOR = 0.1  # fine-tuning starts at this fraction of the model's own learning rate
TABLE_NAME, FIGURE_NAME = "prune.csv", "prune.png"


def check_sparsity(value, name="--sparsity"):
    """``value`` as a float in [0, 1), or a UserError (1 would prune every weight)."""
    if not is_real(value, 0.0, 1.0, high_open=True):
        raise UserError(f"{name} must be a number in [0, 1) (0.9: nine weights in ten pruned), "
                        f"got {value!r}")  # fmt: skip
    return float(value)


def prunable_keys(blueprint):
    """The keys of the weights pruning ranks: ``"<name>.W"`` of every conv and fc layer."""
    return [f"{spec['name']}.W" for spec in iter_layers(blueprint) if KINDS[spec["type"]].pruned]


def magnitude_masks(params, keys, sparsity):
    """{key: bool mask, True where a weight is kept}: the smallest |w| over all ``keys`` go.

    Exactly ``round(sparsity * n)`` of the n weights are masked out (ties broken by position),
    whatever their values, so the count of zeros is what was asked.
    """
    flat = np.concatenate([np.abs(params[key]).ravel() for key in keys])
    pruned = np.argsort(flat, kind="stable")[: round(sparsity * flat.size)]
    keep = np.ones(flat.size, dtype=bool)
    keep[pruned] = False
    ends = np.cumsum([params[key].size for key in keys])[:-1]
    return {
        key: part.reshape(params[key].shape)
        for key, part in zip(keys, np.split(keep, ends), strict=True)
    }


def apply_masks(params, masks):
    """``params`` with the masked-out weights set to exactly zero (new arrays for those keys)."""
    return {**params, **{key: np.where(m, params[key], 0).astype(params[key].dtype)
                         for key, m in masks.items()}}  # fmt: skip


def finetune_config(meta, epochs, lr, data_dir):
    """The model's own TrainConfig, changed for fine-tuning: ``epochs``, ``lr``, cosine, no warm-up."""
    config = TrainConfig(**meta["config"])  # checked when the file was loaded
    lr = FINETUNE_LR_FACTOR * config.lr if lr is None else lr
    # No --ema: fine-tuning validates and keeps its raw weights, the pruned ones exactly zero.
    changes = {"epochs": epochs, "lr": lr, "schedule": "cosine", "warmup_epochs": 0.0,
               "ema": None}  # fmt: skip
    if data_dir is not None:
        changes["data_dir"] = data_dir
    return dataclasses.replace(config, **changes)


def training_data(config, meta, source):
    """The model's own training/validation split; refused if its normalization changed."""
    data = prepare_data(config)
    saved = meta["normalization"]
    same = np.allclose(data.norm.mean, saved["mean"]) and np.allclose(data.norm.std, saved["std"])
    if not same:
        raise UserError(
            f"{source}: its training images are not the ones it was trained on (their "
            "normalization differs from the one in the file); fine-tune it where they are"
        )
    return data


def fine_tune(params, blueprint, masks, config, data, epochs, echo):
    """``params`` after ``epochs`` of ``config``'s training, pruned weights kept at zero.

    Returns (params, val_acc after the last epoch; None when epochs is 0).
    """
    if epochs == 0:
        return params, None
    run = make_run(config, data, blueprint, masks=masks)  # config.epochs is ``epochs``
    opt_state = run.optimizer.init(params)
    for epoch in range(epochs):
        state = RunState(epoch=epoch)
        batches = epoch_batches(run, params, opt_state, state)
        for params, opt_state, state in batches:  # noqa: B007 (read after the loop)
            pass
        val_loss, val_acc = validate(run, params, epoch)
        echo(f"  fine-tuning epoch {epoch + 1}/{epochs}: train loss "
             f"{state.loss_sum / state.seen:.4f}, val acc {val_acc:.4f}, "
             f"{state.seconds:.0f} s")  # fmt: skip
    return params, val_acc


def output_paths(out_dir, sparsities):
    """{"table", "figure", sparsity: model file} in ``out_dir``."""
    paths = {"table": out_dir / TABLE_NAME, "figure": out_dir / FIGURE_NAME}
    paths.update({s: out_dir / f"sparsity_{s:g}.npz" for s in sparsities})
    return paths


def refuse_to_replace(paths, overwrite, model_path):
    """UserError if a file pruning writes is there already and ``overwrite`` is false, or is
    the model file ``model_path`` it prunes."""
    for path in paths.values():
        refuse_to_write_over(path, [model_path])
    if not overwrite and (found := [p.name for p in paths.values() if p.exists()]):
        out_dir = next(iter(paths.values())).parent
        raise UserError(f"{out_dir} holds pruning results already ({', '.join(found)}); "
                        "replace them with --overwrite, or choose another --out")  # fmt: skip


def prune(path, sparsities, epochs, out_dir, lr=None, data_dir=None, overwrite=False, echo=print):
    """Prune the model file ``path`` at each sparsity, fine-tune, and write the results.

    sparsities: fractions in [0, 1); epochs: fine-tuning epochs (0: none); lr: the fine-tuning
    learning rate (default: a tenth of the model's own). Writes ``prune.csv`` (sparsity,
    accuracy_before, accuracy_after: test accuracies), ``prune.png`` and one model file per
    sparsity into ``out_dir``. Returns (table DataFrame, unpruned test accuracy).
    """
    sparsities = list(dict.fromkeys(check_sparsity(s) for s in sparsities))  # each once
    out_dir = Path(out_dir)
    paths = output_paths(out_dir, sparsities)
    refuse_to_replace(paths, overwrite, path)
    model = load_float_model(path, "pruning")
    config = finetune_config(model.meta, epochs, lr, data_dir)
    keys = prunable_keys(model.blueprint)
    x_test, y_test, _ = load_test_set(model.meta, config.data_dir)
    test_acc = lambda params: evaluate(model._replace(params=params), x_test, y_test).accuracy  # noqa: E731
    data = training_data(config, model.meta, path) if epochs else None
    baseline = test_acc(model.params)
    n = sum(model.params[key].size for key in keys)
    echo(f"{path}: {n:,} conv and fc weights; test accuracy {100 * baseline:.2f}% unpruned; "
         f"fine-tuning: {epochs} epoch(s) of {config.optimizer}, lr {config.lr:g} "
         "cosine-decayed")  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for sparsity in sparsities:
        started = time.perf_counter()
        masks = magnitude_masks(model.params, keys, sparsity)
        params = apply_masks(model.params, masks)
        before = test_acc(params)
        echo(f"sparsity {sparsity:g}: test accuracy {100 * before:.2f}% before fine-tuning")
        params, val_acc = fine_tune(params, model.blueprint, masks, config, data, epochs, echo)
        after = test_acc(params) if epochs else math.nan
        zeros = int(sum(np.count_nonzero(params[key] == 0) for key in keys))
        meta = {key: v for key, v in model.meta.items() if key != "created"}
        meta["pruned"] = {
            "sparsity": sparsity,
            "zero_weights": zeros,
            "prunable_weights": n,
            "from": str(path),
            "finetune_epochs": epochs,
            "finetune_lr": config.lr if epochs else None,
        }
        if val_acc is not None:
            meta["val_acc"] = val_acc
        save_model(paths[sparsity], params, model.blueprint, meta)
        seconds = time.perf_counter() - started
        result = f"test accuracy {100 * after:.2f}% after fine-tuning" if epochs else "not fine-tuned"
        echo(f"sparsity {sparsity:g}: {result} ({zeros:,} of {n:,} weights zero; "
             f"{seconds:.0f} s) -> {paths[sparsity]}")  # fmt: skip
        rows.append({"sparsity": sparsity, "accuracy_before": before, "accuracy_after": after})
    table = pd.DataFrame(rows, columns=["sparsity", "accuracy_before", "accuracy_after"])
    atomic_write_text(paths["table"], table.to_csv(index=False))
    caption = (f"{Path(path).name}: {model.meta['config'].get('arch', '?')} on "
               f"{model.meta['dataset']}, {epochs} fine-tuning epoch(s) at lr {config.lr:g}")  # fmt: skip
    save_figure(plot_pruning(table, baseline, caption=caption), paths["figure"])
    return table, baseline
