"""Save and load trained models and training checkpoints as self-describing ``.npz`` files.

File format (version 1): an uncompressed NumPy ``.npz`` archive (a zip of ``.npy`` files)
holding only numeric arrays and 0-d unicode arrays, so it loads with
``np.load(path, allow_pickle=False)`` and never runs a pickle:

- ``"<layer name>.<param>"``: each parameter, float32, e.g. ``"conv1.W"`` (F, C, KH, KW),
  ``"conv1.b"`` (F,), ``"bn1.running_mean"`` (C,): exactly the keys and shapes the blueprint
  gives for ``meta["input_shape"]``, nothing more, nothing less.
- ``"__blueprint__"``: the validated blueprint (defaults filled in) as JSON text, a 0-d
  unicode array (``np.array(text)``), never an object array.
- ``"__meta__"``: JSON text of a dict with at least ``input_shape`` (list of ints, one
  example, no batch axis), ``dataset`` (str), ``class_names`` (list of str, one per network
  output), ``normalization`` (``{"mean": [...], "std": [...]}``, one value per input channel,
  for images scaled to [0, 1]), ``config`` (dict: the run's settings), ``seed`` (int),
  ``format_version`` (1, set by the writer) and ``created`` (ISO 8601 UTC time, set by the
  writer unless given), plus whatever else the caller adds (``val_acc``, ``epoch``, ...).
  NumPy numbers and arrays in it are stored as JSON numbers and lists.

A checkpoint (``save_checkpoint``) is the same file plus:

- ``"__opt__/<state key>"``: each optimizer state array (core/optim.py names them
  ``"<slot>.<param key>"``, e.g. ``"__opt__/m.conv1.W"``), float32, shaped like its parameter.
  ``check_params`` refuses layer names starting with ``"__"``, so the prefix cannot collide.
- ``"__checkpoint__"``: JSON text of the list of the optimizer state keys (sorted), which marks
  the file as a checkpoint (plain SGD has no state arrays) and shows a missing state array.
  Where the run stands goes in ``meta``, written and read by the trainer.

Checkpoints of earlier versions hold ``"__rng__"`` (a generator state) instead of
``"__checkpoint__"``, and ``meta["epoch"]`` and ``meta["step"]``: they still load, and the
generator state, which nothing reads, is dropped.

Loading accepts any floating dtype and casts it to float32 (the training dtype), so a model
kept in float64 still loads; integer, boolean and complex arrays are refused. Every problem
(missing, foreign or truncated file, a pickle inside, a missing or extra key, a wrong shape
or dtype, NaN or infinity, incomplete meta) is one UserError naming the file and the key.
``load_model`` also reads checkpoints (ignoring the optimizer and generator state).
"""

import json
import os
import zipfile
from datetime import UTC, datetime
from typing import NamedTuple

import numpy as np

from data.checks import is_whole
from data.errors import UserError
from data.files import atomic_write
from data.normalization import Normalization
from model.shapes import trace_shapes

FORMAT_VERSION = 1
BLUEPRINT_KEY = "__blueprint__"
META_KEY = "__meta__"
CHECKPOINT_KEY = "__checkpoint__"
OLD_RNG_KEY = "__rng__"  # marked checkpoints before CHECKPOINT_KEY; read only to be dropped
OPT_PREFIX = "__opt__/"
REQUIRED_META = {
    "input_shape": list,
    "dataset": str,
    "class_names": list,
    "normalization": dict,
    "config": dict,
    "seed": int,
}


class Model(NamedTuple):
    """A trained model as loaded from disk.

    params:    {"conv1.W": float32 array, ...}, the keys and shapes the blueprint gives.
    blueprint: the validated blueprint (list of layer spec dicts, defaults filled in).
    meta:      dict, see the module docstring.
    """

    params: dict
    blueprint: list
    meta: dict


class Checkpoint(NamedTuple):
    """A training run's full state, to resume it exactly.

    params:    as in Model.
    opt_state: {"<slot>.<param key>": float32 array shaped like that parameter}.
    blueprint, meta: as in Model (meta also holds where the run stands, as the trainer wrote it).
    """

    params: dict
    opt_state: dict
    blueprint: list
    meta: dict


def save_model(path, params, blueprint, meta):
    """Write a trained model to ``path`` (an ``.npz`` file), atomically.

    path:      str or Path ending in ``.npz``; its folder must exist.
    params:    {"<layer name>.<param>": floating array}, exactly the blueprint's keys and
               shapes for ``meta["input_shape"]``; saved as float32.
    blueprint: list of layer specs (validated; saved with defaults filled in).
    meta:      dict with the keys listed in the module docstring (JSON-serialisable).
    Returns the Path written. Raises UserError, writing nothing, if anything is inconsistent.
    """
    arrays, path = _model_arrays(path, params, blueprint, meta)
    return _write_npz(path, arrays)


def save_checkpoint(path, params, opt_state, blueprint, meta):
    """Write everything needed to resume training to ``path``, atomically.

    path, params, blueprint: as for ``save_model``.
    meta:      as for ``save_model``, plus where the run stands (the trainer's business).
    opt_state: the optimizer state, {"<slot>.<param key>": floating array shaped like that
               parameter} (core/optim.py); may be empty (plain SGD).
    Returns the Path written. Raises UserError, writing nothing, if anything is inconsistent.
    """
    source = os.fspath(path)
    arrays, path = _model_arrays(path, params, blueprint, meta)
    opt_state = _check_opt_state(opt_state, arrays, source)
    arrays.update({OPT_PREFIX + key: value for key, value in opt_state.items()})
    arrays[CHECKPOINT_KEY] = np.array(json.dumps(sorted(opt_state)))
    return _write_npz(path, arrays)


def load_model(path):
    """Read and check a model (or checkpoint) file written by ``save_model``.

    path: str or Path of the ``.npz`` file.
    Returns Model(params {key: float32 array}, blueprint (validated list), meta (dict)).
    Raises UserError naming the file and the key for any problem (see the module docstring).
    """
    source = os.fspath(path)
    arrays = _read_npz(source)
    rest = {
        k: v
        for k, v in arrays.items()
        if not k.startswith(OPT_PREFIX) and k not in (CHECKPOINT_KEY, OLD_RNG_KEY)
    }
    return _model_from(rest, source)


def load_checkpoint(path):
    """Read and check a checkpoint written by ``save_checkpoint``.

    path: str or Path of the ``.npz`` file.
    Returns Checkpoint(params, opt_state, blueprint, meta); see its docstring. Reads the
    checkpoints of earlier versions too (module docstring). Raises UserError naming the file
    and the key for any problem, including a model file without optimizer state.
    """
    source = os.fspath(path)
    arrays = _read_npz(source)
    if CHECKPOINT_KEY not in arrays and OLD_RNG_KEY not in arrays:
        raise UserError(
            f"{source}: no '{CHECKPOINT_KEY}' entry: a model file, not a training checkpoint; "
            "resume from a checkpoint saved during training, or load it with load_model"
        )
    opt_state = {
        key[len(OPT_PREFIX) :]: arrays.pop(key)
        for key in list(arrays)
        if key.startswith(OPT_PREFIX)
    }
    if CHECKPOINT_KEY in arrays:
        listed = set(_parse_json(arrays.pop(CHECKPOINT_KEY), CHECKPOINT_KEY, list, source))
        missing, unlisted = sorted(listed - opt_state.keys()), sorted(opt_state.keys() - listed)
        if missing or unlisted:
            raise UserError(
                f"{source}: the checkpoint is damaged: optimizer state {missing} listed in "
                f"'{CHECKPOINT_KEY}' but missing, {unlisted} present but not listed"
            )
    arrays.pop(OLD_RNG_KEY, None)
    params, blueprint, meta = _model_from(arrays, source)
    opt_state = _check_opt_state(opt_state, params, source)
    return Checkpoint(params, opt_state, blueprint, meta)


def check_params(params, blueprint, input_shape, source):
    """Check a parameter dict against the blueprint and return it in float32.

    params:      {"<layer name>.<param>": array}.
    blueprint:   list of layer specs (validated here).
    input_shape: one example's shape, (C, H, W) or (D,).
    source:      str naming the file, for messages.
    Returns {key: float32 array} (the same arrays when already float32).
    Raises UserError naming ``source`` and the keys for: missing or extra keys, a shape other
    than the blueprint's, a non-floating dtype, NaN or infinite values, an impossible blueprint.
    """
    try:
        rows = trace_shapes(blueprint, input_shape)
    except UserError as err:
        raise UserError(f"{source}: {err}") from None
    expected = {key: shape for row in rows for key, shape in row.param_shapes.items()}
    if missing := [key for key in expected if key not in params]:
        raise UserError(f"{source}: parameter(s) {missing} missing for the blueprint")
    if extra := sorted(set(params) - set(expected)):
        raise UserError(
            f"{source}: unexpected key(s) {extra}: not parameters of the blueprint "
            f"(it has {list(expected)})"
        )
    return _checked_arrays({key: params[key] for key in expected}, expected, source)


def _checked_arrays(arrays, shapes, source):
    """``arrays`` as float32 after checking shapes (``shapes[key]``), dtypes and finiteness."""
    arrays = {key: np.asarray(a) for key, a in arrays.items()}
    if wrong := [
        f"{key}: expected {tuple(shapes[key])} for the blueprint, found {a.shape}"
        for key, a in arrays.items()
        if a.shape != tuple(shapes[key])
    ]:
        raise UserError(f"{source}: {'; '.join(wrong)}")
    if wrong := [f"{key} is {a.dtype}" for key, a in arrays.items() if a.dtype.kind != "f"]:
        raise UserError(
            f"{source}: {', '.join(wrong)}; parameters must be floating point (float32)"
        )
    # A float64 value beyond float32's range becomes inf here, and is reported below.
    with np.errstate(over="ignore"):
        arrays = {key: a.astype(np.float32, copy=False) for key, a in arrays.items()}
    bad = []
    for key, a in arrays.items():
        nan, inf = int(np.isnan(a).sum()), int(np.isinf(a).sum())
        if nan or inf:
            bad.append(f"{key} holds {nan} NaN and {inf} infinite value(s) of {a.size}")
    if bad:
        raise UserError(
            f"{source}: {'; '.join(bad)}; the training diverged: lower the learning rate"
        )
    return arrays


def _model_arrays(path, params, blueprint, meta):
    """Check a model for saving; return ({key: array to save}, path as str)."""
    source = os.fspath(path)
    if not source.endswith(".npz"):
        raise UserError(f"{source}: a model file name must end in .npz")
    meta = {**meta, "format_version": FORMAT_VERSION}
    meta.setdefault("created", datetime.now(UTC).isoformat(timespec="seconds"))
    meta = json.loads(_to_json(meta, source, META_KEY))  # what load_model will see
    blueprint = [row.spec for row in _trace(blueprint, meta, source) if row.depth == 0]
    arrays = check_params(params, blueprint, meta["input_shape"], source)
    arrays[BLUEPRINT_KEY] = np.array(json.dumps(blueprint))
    arrays[META_KEY] = np.array(json.dumps(meta))
    return arrays, source


def _model_from(arrays, source):
    """A Model from the arrays of a file, checked as ``save_model`` checks what it writes."""
    for key in (BLUEPRINT_KEY, META_KEY):
        if key not in arrays:
            raise UserError(
                f"{source}: no '{key}' entry: not a model saved by this program "
                f"(it holds {sorted(arrays)})"
            )
    blueprint = _parse_json(arrays.pop(BLUEPRINT_KEY), BLUEPRINT_KEY, list, source)
    meta = _parse_json(arrays.pop(META_KEY), META_KEY, dict, source)
    blueprint = [row.spec for row in _trace(blueprint, meta, source) if row.depth == 0]
    params = check_params(arrays, blueprint, meta["input_shape"], source)
    return Model(params, blueprint, meta)


def _trace(blueprint, meta, source):
    """Check ``meta`` against the blueprint; return the blueprint's LayerShapes rows."""
    if missing := [key for key in REQUIRED_META if key not in meta]:
        raise UserError(f"{source}: {META_KEY} has no {missing}; re-save the model with them")
    for key, kind in REQUIRED_META.items():
        if not isinstance(meta[key], kind) or isinstance(meta[key], bool):
            raise UserError(
                f"{source}: {META_KEY} {key} must be a {kind.__name__}, got {meta[key]!r}"
            )
    if meta.get("format_version", FORMAT_VERSION) != FORMAT_VERSION:
        raise UserError(
            f"{source}: file format version {meta['format_version']!r}; this program reads "
            f"version {FORMAT_VERSION}"
        )
    shape = meta["input_shape"]
    if not shape or not all(is_whole(s, 1) for s in shape):
        raise UserError(f"{source}: {META_KEY} input_shape must be positive ints, got {shape}")
    try:
        rows = trace_shapes(blueprint, shape)
    except UserError as err:
        raise UserError(f"{source}: {BLUEPRINT_KEY}: {err}") from None
    names, outputs = meta["class_names"], rows[-1].out_shape
    if not all(isinstance(name, str) for name in names) or outputs != (len(names),):
        raise UserError(
            f"{source}: {META_KEY} class_names must be one str per network output: the "
            f"network gives {outputs}, class_names has {len(names)}: {names}"
        )
    norm = meta["normalization"]
    numbers = [norm.get(key) for key in ("mean", "std")]
    if set(norm) != {"mean", "std"} or not all(
        isinstance(v, list) and all(isinstance(x, int | float) for x in v) for v in numbers
    ):
        raise UserError(
            f'{source}: {META_KEY} normalization must be {{"mean": [numbers], "std": [numbers]}}'
            f", got {norm!r:.120}"
        )
    Normalization.from_arrays(norm["mean"], norm["std"], source=source)
    if len(norm["mean"]) != shape[0]:
        raise UserError(
            f"{source}: {META_KEY} normalization has {len(norm['mean'])} channel(s) but the "
            f"input shape {tuple(shape)} has {shape[0]}; re-fit it on the training set"
        )
    return rows


def _check_opt_state(opt_state, params, source):
    """Check optimizer state against the (checked) params; return it as float32."""
    shapes = {}
    for key in opt_state:
        param_key = key.split(".", 1)[1] if "." in key else None
        if param_key not in params:
            raise UserError(
                f"{source}: optimizer state '{key}' names no parameter; state keys are "
                "'<slot>.<param key>' (core/optim.py), e.g. 'm.conv1.W'"
            )
        shapes[key] = params[param_key].shape
    return _checked_arrays(opt_state, shapes, f"{source}: optimizer state")


def _to_json(obj, source, key):
    """``obj`` as JSON text; NumPy numbers and arrays become numbers and lists."""

    def plain(value):
        if isinstance(value, np.generic | np.ndarray):
            return value.tolist()
        raise TypeError(f"{type(value).__name__} {value!r} is not JSON serializable")

    try:
        return json.dumps(obj, default=plain)
    except (TypeError, ValueError) as err:
        raise UserError(
            f"{source}: {key}: cannot be stored as JSON ({err}); use numbers, strings, "
            "lists and dicts"
        ) from None


def _parse_json(array, key, kind, source):
    """The value of a 0-d unicode array of JSON text, which must be a ``kind``."""
    if array.ndim != 0 or array.dtype.kind != "U":
        raise UserError(
            f"{source}: '{key}' must be JSON text (a 0-d unicode array), found "
            f"{array.dtype} {array.shape}"
        )
    try:
        value = json.loads(str(array))
    except json.JSONDecodeError as err:
        raise UserError(f"{source}: '{key}' is not valid JSON ({err})") from None
    if not isinstance(value, kind):
        raise UserError(f"{source}: '{key}' must hold a JSON {kind.__name__}, got {value!r:.80}")
    return value


def _read_npz(source):
    """Every array of the ``.npz`` file ``source``, read with ``allow_pickle=False``."""
    advice = "give a .npz model file saved by this program"
    try:
        archive = np.load(source, allow_pickle=False)
    except FileNotFoundError:
        raise UserError(f"{source}: no such file; check the path") from None
    except OSError as err:
        raise UserError(f"{source}: cannot read ({err.strerror or err})") from None
    except EOFError:
        raise UserError(f"{source}: the file is empty; {advice}") from None
    except ValueError:
        # Neither a zip nor a .npy file: NumPy would need a pickle, and its message suggests
        # allowing one, which is the wrong advice for a foreign file (text, PNG, ...).
        raise UserError(f"{source}: not an .npz archive (no zip signature); {advice}") from None
    except zipfile.BadZipFile as err:
        # A zip signature but no directory at the end: typically an interrupted copy.
        raise UserError(f"{source}: truncated or corrupt .npz archive ({err}); {advice}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise UserError(f"{source}: a single .npy array, not an .npz archive; {advice}")
    arrays = {}
    with archive:
        for key in archive.files:
            try:
                arrays[key] = archive[key]
            except ValueError as err:
                if "pickle" in str(err):
                    raise UserError(
                        f"{source}: '{key}' holds Python objects (a pickle), which this program "
                        f"never loads; {advice}"
                    ) from None
                raise UserError(f"{source}: '{key}' is not a valid array ({err})") from None
            except (OSError, EOFError, zipfile.BadZipFile) as err:
                raise UserError(f"{source}: '{key}' is corrupt or truncated ({err})") from None
    return arrays


def _write_npz(path, arrays):
    """Write ``arrays`` to ``path`` atomically, uncompressed.

    Uncompressed: trained float weights shrink by only a few percent when zipped, and
    uncompressed archives load faster.
    """
    return atomic_write(path, lambda tmp: np.savez(tmp, **arrays))
