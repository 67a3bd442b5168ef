"""The checks of what a model file's meta says beyond its shapes: each field is checked
against what the program does with it, so a value that would crash or make NaN later is
refused when the file is loaded, in one line naming the file and the field.

``check_meta_records(meta, source)`` is called by model/params_io.py after the required
fields (input_shape, class_names, normalization, ...) have their types. It checks:

- class_names: non-empty text, at most MAX_NAME_CHARS characters each (a figure or a line
  of output shows them cut further, by ``label``);
- the optional records the program writes and reads back: epoch, val_acc / val_r2, pruned
  (prune), quantization (quantize), run_state (a checkpoint), ood (the not-a-digit check,
  core/learn/ood.py): each of its type, numbers finite and within their ranges;
- dataset: a dataset the program knows must have the input shape it gives.

The run's config is checked by core/learn/config.py ``checked_config``, which knows the
training options.
"""

import math
import unicodedata

import numpy as np

from data.errors import UserError
from data.registry import INPUT_SHAPES

META = "__meta__"
MAX_NAME_CHARS = 1000  # a class name; 90,000 characters would make a figure of miles
LABEL_CHARS = 24  # what a figure or a line of output shows of a class name

_PRUNED = {"sparsity": float, "zero_weights": int, "prunable_weights": int}
_RUN_NUMBERS = ("epoch", "batch", "loss_sum", "correct", "seen", "seconds", "best_val_acc",
                "best_epoch")  # fmt: skip
OOD_STATS = 6  # the pixel statistics of core/learn/ood.py picture_stats
OOD_STAT_MAX = 2  # each is at most 1, but the edges, a sum of two means of up to 1
OOD_PRECISION_MAX = 1e12  # the shipped record's largest is about 2e5
_OOD = {"energy_threshold": float, "distance_threshold": float, "mean": list, "precision": list}


def label(name):
    """A class name for a figure or a line of output: control characters escaped (a name
    stays one line), cut to LABEL_CHARS characters with "…". (core/plots.py also escapes
    matplotlib's mathtext sign "$" in what it draws.)"""
    text = "".join(
        f"\\x{ord(c):02x}" if unicodedata.category(c)[0] == "C" else c for c in str(name)
    )
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"


def _number(value):
    """True for a finite JSON number (never a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _refuse(source, field, problem):
    raise UserError(f"{source}: {META} {field} {problem}")


def check_meta_records(meta, source):
    """UserError naming ``source`` and the field for any meta field the program would misuse
    (see the module docstring); returns None."""
    for i, name in enumerate(meta["class_names"]):
        if not name.strip() or len(name) > MAX_NAME_CHARS:
            _refuse(source, f"class_names[{i}]", f"must be 1 to {MAX_NAME_CHARS} characters of "
                    f"text, got {len(name)} characters: {label(name)!r}")  # fmt: skip
    dataset, shape = str(meta["dataset"]).strip().lower().replace("_", "-"), meta["input_shape"]
    if dataset in INPUT_SHAPES and tuple(shape) != INPUT_SHAPES[dataset]:
        _refuse(source, "dataset", f"{meta['dataset']!r} gives inputs of shape "
                f"{INPUT_SHAPES[dataset]}, but input_shape says {tuple(shape)}")  # fmt: skip
    for field in ("epoch",):
        if field in meta and not (_number(meta[field]) and isinstance(meta[field], int)
                                  and meta[field] >= 0):  # fmt: skip
            _refuse(source, field, f"must be a whole number >= 0, got {meta[field]!r:.60}")
    for field in ("val_acc", "val_r2"):
        if field in meta and not _number(meta[field]):
            _refuse(source, field, f"must be a finite number, got {meta[field]!r:.60}")
    if "pruned" in meta:
        _check_fields(meta["pruned"], _PRUNED, source, "pruned")
        if not 0 <= meta["pruned"]["sparsity"] < 1:
            _refuse(
                source, "pruned.sparsity", f"must be in [0, 1), got {meta['pruned']['sparsity']}"
            )
    if "quantization" in meta and not isinstance(meta["quantization"], dict):
        _refuse(source, "quantization", f"must be a dict, got {meta['quantization']!r:.60}")
    if "run_state" in meta:
        _check_run_state(meta["run_state"], source)
    if "ood" in meta:
        _check_fields(meta["ood"], _OOD, source, "ood")
        ood = meta["ood"]
        square = all(isinstance(row, list) and len(row) == OOD_STATS for row in ood["precision"])
        if len(ood["mean"]) != OOD_STATS or len(ood["precision"]) != OOD_STATS or not square:
            _refuse(source, "ood", f"must hold a mean of {OOD_STATS} statistics and their "
                    f"{OOD_STATS}x{OOD_STATS} precision matrix")  # fmt: skip
        _check_ood_numbers(ood, source)
        looks_like = ood.get("looks_like")
        if (
            not isinstance(looks_like, str)
            or not looks_like.strip()
            or len(looks_like) > MAX_NAME_CHARS
        ):
            _refuse(source, "ood.looks_like", f"must be 1 to {MAX_NAME_CHARS} characters of text "
                    f"(what the model's pictures are), got {label(looks_like)!r}")  # fmt: skip


def _check_ood_numbers(ood, source):
    """The statistics' mean within what picture_stats can give, the precision matrix symmetric,
    positive definite and of a size whose distances cannot overflow, the distance threshold
    >= 0: otherwise every picture, or none, would be 'not a digit'."""
    mean, precision = np.asarray(ood["mean"], float), np.asarray(ood["precision"], float)
    if not ((mean >= 0) & (mean <= OOD_STAT_MAX)).all():
        _refuse(source, "ood.mean", f"must hold numbers in [0, {OOD_STAT_MAX}] (pixel statistics)")
    if np.abs(precision).max() > OOD_PRECISION_MAX or not np.allclose(precision, precision.T):
        _refuse(source, "ood.precision", f"must be a symmetric matrix of numbers at most "
                f"{OOD_PRECISION_MAX:.0e} in size")  # fmt: skip
    if np.linalg.eigvalsh(precision).min() <= 0:
        _refuse(source, "ood.precision", "must be positive definite (an inverse covariance)")
    if ood["distance_threshold"] < 0:
        _refuse(source, "ood.distance_threshold", f"must be >= 0, got {ood['distance_threshold']}")


def _check_run_state(state, source):
    """The run state's numbers finite and >= 0 where counted, its log rows a list."""
    if not isinstance(state, dict):
        _refuse(source, "run_state", f"must be a dict, got {state!r:.60}")
    for key in _RUN_NUMBERS:
        if key in state and not _number(state[key]):
            _refuse(source, f"run_state.{key}", f"must be a finite number, got {state[key]!r:.60}")
        if key in state and key != "best_val_acc" and key != "loss_sum" and state[key] < 0:
            _refuse(source, f"run_state.{key}", f"must be >= 0, got {state[key]!r:.60}")
    rows = state.get("log_rows", [])
    if not isinstance(rows, list) or not all(isinstance(row, dict | list) for row in rows):
        _refuse(source, "run_state.log_rows", "must be a list of the epochs' log rows")


def _check_fields(record, fields, source, name):
    """``record`` a dict holding each of ``fields`` {key: int, float or list} of that type
    (numbers finite; a list of finite numbers, or of such lists)."""
    if not isinstance(record, dict):
        _refuse(source, name, f"must be a dict, got {record!r:.60}")
    for key, kind in fields.items():
        value = record.get(key)
        if kind is list:
            rows = value if isinstance(value, list) else None
            flat = (
                []
                if rows is None
                else [x for row in rows for x in (row if isinstance(row, list) else [row])]
            )
            good = rows is not None and all(_number(x) for x in flat)
        else:
            good = _number(value) and (kind is float or isinstance(value, int))
        if not good:
            _refuse(
                source,
                f"{name}.{key}",
                f"must be {'a list of finite numbers' if kind is list else 'a finite number'}, got {value!r:.60}",
            )
