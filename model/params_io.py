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

- ``"__opt__/<state key>"``: each optimizer state array (core/learn/optim.py names them
  ``"<slot>.<param key>"``, e.g. ``"__opt__/m.conv1.W"``), float32, shaped like its parameter.
  ``check_params`` refuses layer names starting with ``"__"``, so the prefix cannot collide.
- ``"__checkpoint__"``: JSON text of the list of the optimizer state keys (sorted), which marks
  the file as a checkpoint (plain SGD has no state arrays) and shows a missing state array.
  Where the run stands goes in ``meta``, written and read by the trainer.

Checkpoints of earlier versions hold ``"__rng__"`` (a generator state) instead of
``"__checkpoint__"``, and ``meta["epoch"]`` and ``meta["step"]``: they still load, and the
generator state, which nothing reads, is dropped.

Loading accepts any floating dtype and casts it to float32 (the training dtype), so a model
kept in float64 still loads; integer, boolean and complex arrays are refused, except where
the layer's record (model/layer_kinds.py ``Param``) says int8: a quantized model
(model/quantized_kinds.py) holds int8 weights, which must be exactly int8 in [-127, 127],
and scales, which must be positive. A quantized model is for inference: ``load_checkpoint``
refuses it. Every problem
(missing, foreign or truncated file, a pickle inside, a missing or extra key, a wrong shape
or dtype, NaN or infinity, incomplete meta) is one UserError naming the file and the key.
``load_model`` also reads checkpoints (ignoring the optimizer and generator state).

A file is never trusted to say how much memory to take. Before any array data is read:
the zip end record must declare at most MAX_MEMBERS members; each member's ``.npy`` header
must give a plain dtype (numbers, bool, unicode; never objects) and a shape whose bytes
equal the zip entry's uncompressed size minus the header, at most MAX_MEMBER_BYTES (and
MAX_TOTAL_BYTES for the file); the blueprint and meta (JSON text of at most MAX_JSON_BYTES
characters and data.json_text's nesting cap) are read first, and every parameter's header
must then give the shape and floating dtype the blueprint expects. Each member is then
streamed into a buffer of its declared size, refusing one that ends early or goes on.
"""

import json
import math
import os
import zipfile
import zlib
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import NamedTuple

import numpy as np

from data.checks import is_whole
from data.errors import UserError
from data.files import atomic_write
from data.json_text import parse_json
from data.normalization import Normalization
from layers.arraylib import to_numpy
from model.blueprints import validate_blueprint
from model.layer_kinds import Param
from model.meta_checks import check_meta_records
from model.shapes import trace_shapes
from model.trained import Model
from model.walk import quantized_layers

FORMAT_VERSION = 1
BLUEPRINT_KEY = "__blueprint__"
META_KEY = "__meta__"
CHECKPOINT_KEY = "__checkpoint__"
OLD_RNG_KEY = "__rng__"  # marked checkpoints before CHECKPOINT_KEY; read only to be dropped
OPT_PREFIX = "__opt__/"
# Caps on what a file may make this program allocate, checked before reading any data.
MAX_MEMBERS = 10_000  # arrays in one file (a deep network with Adam state has a few hundred)
MAX_MEMBER_BYTES = 512 * 2**20  # one array's data
MAX_TOTAL_BYTES = 2 * 2**30  # all arrays together: a model with its optimizer state
MAX_JSON_BYTES = 1_000_000  # the blueprint, meta and generator state, each, in characters
# The largest |value| of a float parameter: trained weights and batch-norm statistics stay
# far below it, and a forward pass through a few layers of weights of 3e38 overflows to NaN.
MAX_PARAM = 1e6
_MAX_ENTRY_BYTES = 1024  # one zip directory entry: 46 bytes, a name and extra fields
_CHUNK_BYTES = 16 * 2**20  # reading granularity
_PLAIN_KINDS = "biufcU"  # bool, integers, floats, complex, unicode text
REQUIRED_META = {
    "input_shape": list,
    "dataset": str,
    "class_names": list,
    "normalization": dict,
    "config": dict,
    "seed": int,
}


class Checkpoint(NamedTuple):
    """A training run's full state, to resume it exactly: a Model (model/trained.py) and the
    optimizer's state.

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
               shapes for ``meta["input_shape"]``; saved as float32 NumPy arrays (a run on
               the GPU saves the same file as one on the CPU).
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
               parameter} (core/learn/optim.py); may be empty (plain SGD).
    Returns the Path written. Raises UserError, writing nothing, if anything is inconsistent.
    """
    source = os.fspath(path)
    arrays, path = _model_arrays(path, params, blueprint, meta)
    opt_state = _check_opt_state({key: to_numpy(a) for key, a in opt_state.items()}, arrays, source)
    arrays.update({OPT_PREFIX + key: value for key, value in opt_state.items()})
    arrays[CHECKPOINT_KEY] = np.array(json.dumps(sorted(opt_state)))
    return _write_npz(path, arrays)


def load_model(path, checkpoints=True):
    """Read and check a model (or checkpoint) file written by ``save_model``.

    path: str or Path of the ``.npz`` file.
    checkpoints: False refuses a training checkpoint (a command that hands the model on,
    such as ``export``, takes the run's model file, not its resumable state).
    Returns a Model (model/trained.py): params {key: float32 array}, blueprint (validated
    list), meta (dict).
    Raises UserError naming the file and the key for any problem (see the module docstring).
    """
    source = os.fspath(path)
    with _open_archive(source) as archive:
        members = _members(archive, source)
        if not checkpoints and (CHECKPOINT_KEY in members or OLD_RNG_KEY in members):
            raise UserError(
                f"{source}: a training checkpoint (it holds the optimizer's state), not a "
                "model file; give the best_params.npz of its run folder"
            )
        rest = {
            k: m
            for k, m in members.items()
            if not k.startswith(OPT_PREFIX) and k not in (CHECKPOINT_KEY, OLD_RNG_KEY)
        }
        return _model_from(archive, rest, source)


def load_float_model(path, purpose):
    """load_model, refusing a quantized (int8) model: ``purpose`` (e.g. "pruning") names
    what needs the float arrays, in the one-line UserError."""
    model = load_model(path)
    if names := quantized_layers(model.blueprint):
        raise UserError(
            f"{os.fspath(path)}: a quantized (int8) model (layers {', '.join(names)}): "
            f"{purpose} needs the float model it was made from"
        )
    return model


def load_checkpoint(path):
    """Read and check a checkpoint written by ``save_checkpoint``.

    path: str or Path of the ``.npz`` file.
    Returns Checkpoint(params, opt_state, blueprint, meta); see its docstring. Reads the
    checkpoints of earlier versions too (module docstring). Raises UserError naming the file
    and the key for any problem, including a model file without optimizer state.
    """
    source = os.fspath(path)
    with _open_archive(source) as archive:
        members = _members(archive, source)
        _refuse_quantized(archive, members, source)
        if CHECKPOINT_KEY not in members and OLD_RNG_KEY not in members:
            raise UserError(
                f"{source}: no '{CHECKPOINT_KEY}' entry: a model file, not a training checkpoint; "
                "resume from a checkpoint saved during training, or load it with load_model"
            )
        opt_members = {
            key[len(OPT_PREFIX) :]: members.pop(key)
            for key in list(members)
            if key.startswith(OPT_PREFIX)
        }
        if CHECKPOINT_KEY in members:
            listed = set(_json_member(archive, members.pop(CHECKPOINT_KEY), list, source))
            missing = sorted(listed - opt_members.keys())
            unlisted = sorted(opt_members.keys() - listed)
            if missing or unlisted:
                raise UserError(
                    f"{source}: the checkpoint is damaged: optimizer state {missing} listed in "
                    f"'{CHECKPOINT_KEY}' but missing, {unlisted} present but not listed"
                )
        members.pop(OLD_RNG_KEY, None)
        params, blueprint, meta = _model_from(archive, members, source)
        where = f"{source}: optimizer state"
        records = _opt_records(opt_members, params, source)
        _check_headers(opt_members, records, where)
        opt_state = {key: _read_member(archive, m, source) for key, m in opt_members.items()}
    opt_state = _checked_arrays(opt_state, records, where, bounded=False)
    return Checkpoint(params, opt_state, blueprint, meta)


def check_params(params, blueprint, input_shape, source):
    """Check a parameter dict against the blueprint and return it in float32.

    params:      {"<layer name>.<param>": array}.
    blueprint:   list of layer specs (validated here).
    input_shape: one example's shape, (C, H, W) or (D,).
    source:      str naming the file, for messages.
    Returns {key: float32 array} (the same arrays when already float32; int8 weights of
    quantized layers stay int8).
    Raises UserError naming ``source`` and the keys for: missing or extra keys, a shape other
    than the blueprint's, a dtype other than the layer's (floating point, or int8 for a
    quantized layer's weights), NaN or infinite values, a scale that is not positive, an
    impossible blueprint.
    """
    try:
        rows = trace_shapes(blueprint, input_shape)
    except UserError as err:
        raise UserError(f"{source}: {err}") from None
    expected = _param_records(rows)
    _check_keys(params, expected, source)
    return _checked_arrays({key: params[key] for key in expected}, expected, source)


def _param_records(rows):
    """{"<layer name>.<param>": Param} of the blueprint's LayerShapes rows, in order."""
    return {key: p for row in rows for key, p in row.params.items()}


def _check_keys(names, expected, source):
    """Refuse parameter names (any container of keys) missing from or foreign to ``expected``."""
    if missing := [key for key in expected if key not in names]:
        raise UserError(f"{source}: parameter(s) {missing} missing for the blueprint")
    if extra := sorted(set(names) - set(expected)):
        raise UserError(
            f"{source}: unexpected key(s) {extra}: not parameters of the blueprint "
            f"(it has {list(expected)})"
        )


def _checked_arrays(arrays, records, source, bounded=True):
    """``arrays`` after checking shapes and dtypes (``records[key]``, a Param) and values.

    Floating arrays come back as float32 (finite; within ±MAX_PARAM if ``bounded``, which
    optimizer state is not; positive or non-negative where the record says so), int8 ones
    unchanged (in [-127, 127]).
    """
    arrays = {key: np.asarray(a) for key, a in arrays.items()}
    _check_shapes_and_dtypes(
        {key: (a.shape, a.dtype) for key, a in arrays.items()}, records, source
    )
    # A float64 value beyond float32's range becomes inf here, and is reported below.
    with np.errstate(over="ignore"):
        arrays = {
            key: a if records[key].dtype == "int8" else a.astype(np.float32, copy=False)
            for key, a in arrays.items()
        }
    bad, scales = [], False
    for key, a in arrays.items():
        if records[key].dtype == "int8":
            continue
        nan, inf = int(np.isnan(a).sum()), int(np.isinf(a).sum())
        if nan or inf:
            bad.append(f"{key} holds {nan} NaN and {inf} infinite value(s) of {a.size}")
            scales |= records[key].positive
    if bad:
        advice = (
            "a quantization scale must be a finite positive number"
            if scales
            else "the training diverged: lower the learning rate"
        )
        raise UserError(f"{source}: {'; '.join(bad)}; {advice}")
    if bad := [
        f"{key} holds {int((np.abs(a) > MAX_PARAM).sum())} value(s) beyond ±{MAX_PARAM:g} "
        f"(largest {float(np.abs(a).max()):.3g})"
        for key, a in arrays.items()
        if bounded and records[key].dtype != "int8" and a.size and np.abs(a).max() > MAX_PARAM
    ]:
        raise UserError(f"{source}: {'; '.join(bad)}; no trained parameter is that large")
    if bad := [
        f"{key} holds {int((a < 0).sum())} negative value(s)"
        for key, a in arrays.items()
        if records[key].non_negative and (a < 0).any()
    ]:
        raise UserError(f"{source}: {'; '.join(bad)}; a variance is never negative")
    if bad := [
        f"{key} holds {int((a <= 0).sum())} value(s) <= 0"
        for key, a in arrays.items()
        if records[key].positive and (a <= 0).any()
    ]:
        raise UserError(f"{source}: {'; '.join(bad)}; a quantization scale must be positive")
    if bad := [
        f"{key} holds -128"
        for key, a in arrays.items()
        if records[key].dtype == "int8" and a.size and a.min() < -127
    ]:
        raise UserError(f"{source}: {'; '.join(bad)}; int8 weights are symmetric, in [-127, 127]")
    return arrays


def _check_shapes_and_dtypes(found, records, source):
    """Refuse any ``found[key] = (shape, dtype)`` other than ``records[key]`` (a Param) says."""
    if wrong := [
        f"{key}: expected {tuple(records[key].shape)} for the blueprint, found {shape}"
        for key, (shape, _) in found.items()
        if shape != tuple(records[key].shape)
    ]:
        raise UserError(f"{source}: {'; '.join(wrong)}")
    if wrong := [
        f"{key} is {dtype}"
        for key, (_, dtype) in found.items()
        if records[key].dtype == "float" and dtype.kind != "f"
    ]:
        raise UserError(
            f"{source}: {', '.join(wrong)}; parameters must be floating point (float32)"
        )
    if wrong := [
        f"{key} is {dtype}"
        for key, (_, dtype) in found.items()
        if records[key].dtype == "int8" and dtype != np.int8
    ]:
        raise UserError(f"{source}: {', '.join(wrong)}; a quantized layer's weights must be int8")


def _model_arrays(path, params, blueprint, meta):
    """Check a model for saving; return ({key: array to save}, path as str)."""
    source = os.fspath(path)
    if not source.endswith(".npz"):
        raise UserError(f"{source}: a model file name must end in .npz")
    meta = {**meta, "format_version": FORMAT_VERSION}
    meta.setdefault("created", datetime.now(UTC).isoformat(timespec="seconds"))
    meta = json.loads(_to_json(meta, source, META_KEY))  # what load_model will see
    blueprint = [row.spec for row in _trace(blueprint, meta, source) if row.depth == 0]
    params = {key: to_numpy(a) for key, a in params.items()}  # from the GPU, if there
    arrays = check_params(params, blueprint, meta["input_shape"], source)
    arrays[BLUEPRINT_KEY] = np.array(json.dumps(blueprint))
    arrays[META_KEY] = np.array(json.dumps(meta))
    return arrays, source


def _model_from(archive, members, source):
    """A Model from an archive's members, checked as ``save_model`` checks what it writes.

    members: {key: _Member} of the model's entries (no optimizer or generator state). The
    blueprint and meta are read first; each parameter's header must then give the shape and
    a floating dtype the blueprint expects before its data is read.
    """
    for key in (BLUEPRINT_KEY, META_KEY):
        if key not in members:
            raise UserError(
                f"{source}: no '{key}' entry: not a model saved by this program "
                f"(it holds {sorted(members)})"
            )
    members = dict(members)
    blueprint = _json_member(archive, members.pop(BLUEPRINT_KEY), list, source)
    meta = _json_member(archive, members.pop(META_KEY), dict, source)
    rows = _trace(blueprint, meta, source)
    blueprint = [row.spec for row in rows if row.depth == 0]
    expected = _param_records(rows)
    _check_keys(members, expected, source)
    _check_headers({key: members[key] for key in expected}, expected, source)
    arrays = {key: _read_member(archive, members[key], source) for key in expected}
    return Model(_checked_arrays(arrays, expected, source), blueprint, meta)


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
    names, outputs = meta["class_names"], [row for row in rows if row.depth == 0][-1].out_shape
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
    Normalization.from_arrays(norm["mean"], norm["std"], source=f"{source}: {META_KEY}")
    if len(norm["mean"]) != shape[0]:
        raise UserError(
            f"{source}: {META_KEY} normalization has {len(norm['mean'])} channel(s) but the "
            f"input shape {tuple(shape)} has {shape[0]}; re-fit it on the training set"
        )
    check_meta_records(meta, source)
    return rows


def _check_opt_state(opt_state, params, source):
    """Check optimizer state against the (checked) params; return it as float32."""
    records = _opt_records(opt_state, params, source)
    return _checked_arrays(opt_state, records, f"{source}: optimizer state", bounded=False)


def _opt_records(opt_state, params, source):
    """{state key: a float Param of its parameter's shape}; refuses a key that names no
    parameter."""
    records = {}
    for key in opt_state:
        param_key = key.split(".", 1)[1] if "." in key else None
        if param_key not in params:
            raise UserError(
                f"{source}: optimizer state '{key}' names no parameter; state keys are "
                "'<slot>.<param key>' (core/learn/optim.py), e.g. 'm.conv1.W'"
            )
        records[key] = Param(shape=params[param_key].shape, init="zeros")
    return records


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


def _json_member(archive, member, kind, source):
    """The value of a member holding JSON text (a 0-d unicode array), which must be a ``kind``.

    The member's header is checked (0-d, unicode, at most MAX_JSON_BYTES characters) before
    its data is read; the text is parsed by ``parse_json`` (size and nesting caps).
    """
    key = member.key
    if member.shape != () or member.dtype.kind != "U":
        raise UserError(
            f"{source}: '{key}' must be JSON text (a 0-d unicode array), found "
            f"{member.dtype} {member.shape}"
        )
    if member.dtype.itemsize > 4 * MAX_JSON_BYTES:
        raise UserError(
            f"{source}: '{key}' holds {member.dtype.itemsize // 4} characters of JSON text, "
            f"more than the {MAX_JSON_BYTES} allowed"
        )
    text = str(_read_member(archive, member, source))
    value = parse_json(text, f"{source}: '{key}'", max_bytes=4 * MAX_JSON_BYTES)
    if not isinstance(value, kind):
        raise UserError(f"{source}: '{key}' must hold a JSON {kind.__name__}, got {value!r:.80}")
    return value


class _Member(NamedTuple):
    """One ``.npy`` member of an archive, as its headers describe it (nothing read yet).

    key: the array's name (the member's name without ".npy"); info: its zipfile.ZipInfo;
    shape, fortran_order, dtype: from the .npy header; header_bytes: the .npy header's
    length; nbytes: the data's length, shape product times itemsize.
    """

    key: str
    info: zipfile.ZipInfo
    shape: tuple
    fortran_order: bool
    dtype: np.dtype
    header_bytes: int
    nbytes: int


_ADVICE = "give a .npz model file saved by this program"
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a first member, or an empty archive
_END_RECORD, _END_LOCATOR64, _END_RECORD64 = b"PK\x05\x06", b"PK\x06\x07", b"PK\x06\x06"


@contextmanager
def _open_archive(source):
    """The zip archive ``source``, opened after checking its signature and its directory's size.

    Yields a zipfile.ZipFile. Raises UserError for a missing, unreadable, empty, foreign or
    truncated file, and for a directory of more than MAX_MEMBERS entries (checked from the
    end record, before zipfile reads the directory into memory).
    """
    try:
        file = open(source, "rb")  # noqa: SIM115 (closed by the with below)
    except FileNotFoundError:
        raise UserError(f"{source}: no such file; check the path") from None
    except OSError as err:
        raise UserError(f"{source}: cannot read ({err.strerror or err})") from None
    with file:
        head = file.read(6)
        if not head:
            raise UserError(f"{source}: the file is empty; {_ADVICE}")
        if head == b"\x93NUMPY":
            raise UserError(f"{source}: a single .npy array, not an .npz archive; {_ADVICE}")
        if head[:4] not in _ZIP_MAGIC:
            # NumPy would try a pickle here, and its message suggests allowing one, which is
            # the wrong advice for a foreign file (text, PNG, ...).
            raise UserError(f"{source}: not an .npz archive (no zip signature); {_ADVICE}")
        try:
            _check_directory_size(file, source)
            archive = zipfile.ZipFile(file)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
            # A zip signature but no directory at the end: typically an interrupted copy.
            raise UserError(
                f"{source}: truncated or corrupt .npz archive ({err}); {_ADVICE}"
            ) from None
        with archive:
            yield archive


def _check_directory_size(file, source):
    """Refuse an archive whose end record declares more than MAX_MEMBERS entries.

    Reads the end of central directory record (and its zip64 form, which zipfile prefers
    when present) the way zipfile finds it; raises zipfile.BadZipFile when there is none.
    """
    size = file.seek(0, os.SEEK_END)
    tail_length = min(size, 22 + 65535)  # the record, and a comment of at most 64 kB
    file.seek(size - tail_length)
    tail = file.read(tail_length)
    at = len(tail) - 22 if tail[-22:-18] == _END_RECORD else tail.rfind(_END_RECORD)
    if at < 0 or len(tail) - at < 22:
        raise zipfile.BadZipFile("File is not a zip file (no end of central directory)")
    entries = int.from_bytes(tail[at + 10 : at + 12], "little")
    directory_bytes = int.from_bytes(tail[at + 12 : at + 16], "little")
    locator = size - tail_length + at - 20
    if locator >= 0:
        file.seek(locator)
        record = file.read(20)
        if record[:4] == _END_LOCATOR64:
            file.seek(int.from_bytes(record[8:16], "little"))
            record = file.read(56)
            if record[:4] == _END_RECORD64 and len(record) == 56:
                entries = int.from_bytes(record[32:40], "little")
                directory_bytes = int.from_bytes(record[40:48], "little")
    # zipfile reads every directory entry (46 bytes and a name) into a ZipInfo object.
    if entries > MAX_MEMBERS or directory_bytes > MAX_MEMBERS * _MAX_ENTRY_BYTES:
        raise UserError(
            f"{source}: the archive declares {entries} members in a {directory_bytes}-byte "
            f"directory; a model file has at most {MAX_MEMBERS}; {_ADVICE}"
        )


def _members(archive, source):
    """{key: _Member} for every member of ``archive``, from the headers only.

    Checks, before any array data is read: names ending in ".npy", no duplicates, stored
    or deflated (as NumPy writes), a readable .npy header of a plain dtype (numbers, bool, unicode; never objects), data
    length = shape product x itemsize = the zip entry's uncompressed size minus the header,
    at most MAX_MEMBER_BYTES per member and MAX_TOTAL_BYTES in all. Raises UserError.
    """
    members, total = {}, 0
    for info in archive.infolist():
        name = info.filename
        if not name.endswith(".npy") or info.is_dir():
            raise UserError(f"{source}: member '{name}' is not a .npy array; {_ADVICE}")
        key = name[: -len(".npy")]
        if key in members:
            raise UserError(f"{source}: member '{name}' appears twice; {_ADVICE}")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            # NumPy writes only these; zipfile inflates bzip2 and lzma without a size limit.
            raise UserError(
                f"{source}: member '{name}' uses zip compression method "
                f"{info.compress_type}; a model file is stored or deflated; {_ADVICE}"
            )
        member = _member(archive, info, key, source)
        total += member.nbytes
        if total > MAX_TOTAL_BYTES:
            raise UserError(
                f"{source}: the arrays declare more than {MAX_TOTAL_BYTES} bytes in all "
                f"(the limit for a model file); {_ADVICE}"
            )
        members[key] = member
    return members


def _member(archive, info, key, source):
    """The _Member of ``info``, from its .npy header (read from the stream, data untouched)."""
    try:
        with archive.open(info) as stream:
            version = np.lib.format.read_magic(stream)
            if version == (1, 0):
                shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(stream)
            elif version == (2, 0):
                shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(stream)
            else:
                raise ValueError(f".npy format version {version} (1.0 and 2.0 are read)")
            header_bytes = stream.tell()
    except ValueError as err:
        raise UserError(f"{source}: '{key}' is not a valid .npy array ({err})") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError) as err:
        raise UserError(f"{source}: '{key}' is corrupt or truncated ({err})") from None
    except RuntimeError as err:  # an encrypted member
        raise UserError(f"{source}: '{key}' cannot be read ({err}); {_ADVICE}") from None
    if dtype.hasobject:
        raise UserError(
            f"{source}: '{key}' holds Python objects (a pickle), which this program never "
            f"loads; {_ADVICE}"
        )
    if dtype.kind not in _PLAIN_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise UserError(
            f"{source}: '{key}' has dtype {dtype}; a model file holds only numbers and text"
        )
    if any(n < 0 for n in shape):
        raise UserError(f"{source}: '{key}' declares a negative shape {shape}; {_ADVICE}")
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > MAX_MEMBER_BYTES:
        raise UserError(
            f"{source}: '{key}' declares shape {shape} of {dtype}, {nbytes} bytes, more than "
            f"the {MAX_MEMBER_BYTES} allowed for one array; {_ADVICE}"
        )
    if nbytes != info.file_size - header_bytes:
        raise UserError(
            f"{source}: '{key}' declares shape {shape} of {dtype} ({nbytes} bytes) but its "
            f"zip entry holds {info.file_size - header_bytes} bytes of data: corrupt or forged"
        )
    return _Member(key, info, shape, fortran_order, dtype, header_bytes, nbytes)


def _check_headers(members, records, source):
    """Refuse members whose header shape or dtype is not what ``records`` (Params) expects,
    before any data is read."""
    _check_shapes_and_dtypes(
        {key: (m.shape, m.dtype) for key, m in members.items()}, records, source
    )


def _refuse_quantized(archive, members, source):
    """Refuse a quantized model where training needs a float one (its blueprint is read)."""
    if BLUEPRINT_KEY not in members:
        return  # _model_from names the missing entry
    blueprint = _json_member(archive, members[BLUEPRINT_KEY], list, source)
    try:
        names = quantized_layers(validate_blueprint(blueprint))
    except UserError:
        return  # _model_from reports the blueprint's problem
    if names:
        raise UserError(
            f"{source}: a quantized (int8) model (layers {', '.join(names)}): it can be "
            "evaluated but not trained; resume from the float model's run checkpoint"
        )


def _read_member(archive, member, source):
    """The array of ``member``, streamed into a buffer of exactly its declared size.

    Never trusts the zip entry alone: reads at most the declared bytes and one more, and
    refuses a member that ends early or goes on (a forged size), or fails its CRC.
    """
    buffer = bytearray(member.nbytes)
    view, got = memoryview(buffer), 0
    try:
        with archive.open(member.info) as stream:
            stream.read(member.header_bytes)
            while got < member.nbytes:
                chunk = stream.read(min(_CHUNK_BYTES, member.nbytes - got))
                if not chunk:
                    break
                view[got : got + len(chunk)] = chunk
                got += len(chunk)
            more = stream.read(1)
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError) as err:
        raise UserError(f"{source}: '{member.key}' is corrupt or truncated ({err})") from None
    if got < member.nbytes or more:
        raise UserError(
            f"{source}: '{member.key}' is corrupt or truncated ({member.nbytes} bytes declared, "
            f"{'more' if more else got} found)"
        )
    order = "F" if member.fortran_order else "C"
    return np.frombuffer(buffer, member.dtype).reshape(member.shape, order=order)


def _write_npz(path, arrays):
    """Write ``arrays`` to ``path`` atomically, uncompressed.

    Uncompressed: trained float weights shrink by only a few percent when zipped, and
    uncompressed archives load faster.
    """
    return atomic_write(path, lambda tmp: np.savez(tmp, **arrays))
