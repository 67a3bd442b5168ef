"""Tests of model.params_io: exact round trips, and one clear refusal for every kind of bad file."""

import errno
import io
import json
import os
import zipfile
from datetime import datetime

import numpy as np
import pytest
from PIL import Image

from data.errors import UserError
from model import params_io
from model.blueprints import PRESETS, validate_blueprint
from model.initialize_parameters import initialize_parameters
from model.params_io import (
    check_params,
    load_checkpoint,
    load_model,
    save_checkpoint,
    save_model,
)

MLP_SHAPE = (2,)


@pytest.fixture
def blueprint():
    return PRESETS["mlp"](n_classes=3, hidden=8)


@pytest.fixture
def params(blueprint):
    return initialize_parameters(blueprint, MLP_SHAPE, np.random.default_rng(0))


@pytest.fixture
def meta():
    return {
        "input_shape": list(MLP_SHAPE),
        "dataset": "spirals",
        "class_names": ["red", "green", "blue"],
        "normalization": {"mean": [0.5, -0.25], "std": [1.5, 2.0]},
        "config": {"arch": "mlp", "lr": 0.1, "epochs": 3},
        "seed": 7,
        "val_acc": 0.875,
    }


@pytest.fixture
def saved(tmp_path, params, blueprint, meta):
    return save_model(tmp_path / "model.npz", params, blueprint, meta)


def _raw(path):
    """Every array of an .npz file, as a dict, to be altered and re-saved by a test."""
    with np.load(path, allow_pickle=False) as f:
        return {key: f[key] for key in f.files}


def _refused(load, path, *fragments):
    """Assert that ``load(path)`` raises one one-line UserError naming the file and fragments."""
    with pytest.raises(UserError) as info:
        load(path)
    message = str(info.value)
    assert "\n" not in message
    for fragment in (str(path), *fragments):
        assert fragment in message, message
    return message


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


# ---- round trips ----------------------------------------------------------------------


def test_model_round_trip(saved, params, blueprint, meta):
    model = load_model(saved)
    assert model.params.keys() == params.keys()
    for key, value in params.items():
        assert model.params[key].dtype == np.float32
        np.testing.assert_array_equal(model.params[key], value)
    assert model.blueprint == validate_blueprint(blueprint)
    assert model.meta == {**meta, "format_version": 1, "created": model.meta["created"]}
    assert datetime.fromisoformat(model.meta["created"]).tzinfo is not None


def test_blueprint_and_meta_are_json_text_never_objects(saved):
    arrays = _raw(saved)
    for key in ("__blueprint__", "__meta__"):
        assert arrays[key].ndim == 0 and arrays[key].dtype.kind == "U"
        json.loads(str(arrays[key]))
    assert all(a.dtype.kind in "fU" for a in arrays.values())


def test_numpy_numbers_in_meta_are_stored_as_plain_numbers(tmp_path, params, blueprint, meta):
    meta = {**meta, "val_acc": np.float64(0.5), "epoch": np.int64(3), "seed": np.int64(7)}
    meta["normalization"] = {"mean": np.array([0.5, 0.0]), "std": np.array([1.0, 2.0])}
    loaded = load_model(save_model(tmp_path / "m.npz", params, blueprint, meta)).meta
    assert (loaded["val_acc"], loaded["epoch"], loaded["seed"]) == (0.5, 3, 7)
    assert loaded["normalization"] == {"mean": [0.5, 0.0], "std": [1.0, 2.0]}


def test_conv_model_round_trip_and_a_wrong_conv_shape(tmp_path):
    blueprint = PRESETS["minivgg"]()
    params = initialize_parameters(blueprint, (1, 28, 28), np.random.default_rng(1))
    meta = {
        "input_shape": [1, 28, 28],
        "dataset": "mnist",
        "class_names": [str(d) for d in range(10)],
        "normalization": {"mean": [0.1307], "std": [0.3081]},
        "config": {},
        "seed": 1,
    }
    path = save_model(tmp_path / "minivgg.npz", params, blueprint, meta)
    np.testing.assert_array_equal(load_model(path).params["conv3.W"], params["conv3.W"])
    arrays = _raw(path)
    arrays["conv1.W"] = arrays["conv1.W"][:8]
    np.savez(path, **arrays)
    _refused(
        load_model, path, "conv1.W: expected (16, 1, 3, 3) for the blueprint, found (8, 1, 3, 3)"
    )


def test_float64_parameters_are_accepted_and_cast_to_float32(saved):
    arrays = _raw(saved)
    arrays["fc1.W"] = arrays["fc1.W"].astype(np.float64)
    np.savez(saved, **arrays)
    loaded = load_model(saved).params["fc1.W"]
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, arrays["fc1.W"])


# ---- refusals on load -----------------------------------------------------------------


def test_missing_file(tmp_path):
    _refused(load_model, tmp_path / "nowhere.npz", "no such file")


def test_a_folder(tmp_path):
    _refused(load_model, tmp_path, "cannot read")


@pytest.mark.parametrize(
    "make",
    [
        lambda p: p.write_text("epoch,loss\n1,0.5\n"),
        lambda p: Image.new("L", (8, 8)).save(p, format="PNG"),
    ],
    ids=["text", "png"],
)
def test_not_an_npz(tmp_path, make):
    path = tmp_path / "model.npz"
    make(path)
    message = _refused(load_model, path, "not an .npz archive")
    assert "allow_pickle" not in message  # NumPy's advice to allow a pickle is not passed on


def test_empty_file(tmp_path):
    path = tmp_path / "model.npz"
    path.write_bytes(b"")
    _refused(load_model, path, "the file is empty")


def test_a_single_npy_array(tmp_path):
    path = tmp_path / "model.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros(3))
    _refused(load_model, path, "not an .npz archive")


def test_truncated_file(saved):
    data = saved.read_bytes()
    saved.write_bytes(data[: len(data) // 2])
    _refused(load_model, saved, "truncated or corrupt .npz archive")


def test_corrupt_bytes_inside_an_array(saved):
    data = bytearray(saved.read_bytes())
    at = data.index(b"fc2.W.npy") + 200  # past the zip entry's and the .npy's headers
    data[at : at + 10] = b"\x7f" * 10
    saved.write_bytes(bytes(data))
    _refused(load_model, saved, "'fc2.W' is corrupt or truncated")


def test_a_pickle_inside_is_never_loaded(saved):
    arrays = _raw(saved)
    np.savez(saved, **arrays, trap=np.array([{"run": "os.system"}], dtype=object))
    _refused(load_model, saved, "'trap'", "pickle")


@pytest.mark.parametrize("key", ["__blueprint__", "__meta__"])
def test_missing_blueprint_or_meta(saved, key):
    arrays = _raw(saved)
    del arrays[key]
    np.savez(saved, **arrays)
    _refused(load_model, saved, f"no '{key}' entry")


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (np.array("[{'type': 'fc'"), "'__blueprint__' is not valid JSON"),
        (np.array('{"type": "fc"}'), "must hold a JSON list"),
        (np.array([1.0, 2.0]), "must be JSON text"),
        (np.array(json.dumps([{"type": "warp", "name": "w1"}])), "unknown type 'warp'"),
    ],
    ids=["bad-json", "not-a-list", "not-text", "unknown-layer"],
)
def test_invalid_blueprint(saved, value, fragment):
    arrays = _raw(saved)
    arrays["__blueprint__"] = value
    np.savez(saved, **arrays)
    _refused(load_model, saved, fragment)


def test_missing_parameter(saved):
    arrays = _raw(saved)
    del arrays["fc2.b"]
    np.savez(saved, **arrays)
    _refused(load_model, saved, "['fc2.b'] missing")


def test_extra_key(saved):
    arrays = _raw(saved)
    np.savez(saved, **arrays, **{"fc9.W": np.zeros(2, np.float32)})
    _refused(load_model, saved, "unexpected key(s) ['fc9.W']")


def test_wrong_shape(saved):
    arrays = _raw(saved)
    arrays["fc3.b"] = np.zeros(4, np.float32)
    np.savez(saved, **arrays)
    _refused(load_model, saved, "fc3.b: expected (3,) for the blueprint, found (4,)")


@pytest.mark.parametrize("dtype", [np.int32, np.complex64, np.bool_])
def test_non_floating_dtype(saved, dtype):
    arrays = _raw(saved)
    arrays["fc1.b"] = arrays["fc1.b"].astype(dtype)
    np.savez(saved, **arrays)
    _refused(load_model, saved, f"fc1.b is {np.dtype(dtype)}", "floating point")


def test_nan_and_infinity_are_counted(saved):
    arrays = _raw(saved)
    arrays["fc2.W"][0, :2] = np.nan
    arrays["fc2.W"][1, 0] = -np.inf
    np.savez(saved, **arrays)
    _refused(load_model, saved, "fc2.W holds 2 NaN and 1 infinite value(s) of 64")


def test_float64_beyond_float32_range_is_refused(saved):
    arrays = _raw(saved)
    arrays["fc1.b"] = arrays["fc1.b"].astype(np.float64)
    arrays["fc1.b"][0] = 1e300
    np.savez(saved, **arrays)
    _refused(load_model, saved, "fc1.b holds 0 NaN and 1 infinite")


def _with_meta(path, **changes):
    """Rewrite the file at ``path`` with its meta changed (a value None deletes the key)."""
    arrays = _raw(path)
    meta = json.loads(str(arrays["__meta__"]))
    meta.update(changes)
    meta = {key: value for key, value in meta.items() if value is not None}
    arrays["__meta__"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)


@pytest.mark.parametrize("key", ["input_shape", "class_names", "normalization"])
def test_meta_missing_a_key(saved, key):
    _with_meta(saved, **{key: None})
    _refused(load_model, saved, f"has no ['{key}']")


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"normalization": {"mean": [0.5], "std": [1.0]}}, "1 channel(s) but the input shape (2,)"),
        ({"normalization": {"mean": [0.5, 0.5], "std": [1.0, 0.0]}}, "stds between"),
        ({"normalization": {"mean": [0.5, 0.5]}}, "normalization must be"),
        ({"class_names": ["a", "b"]}, "the network gives (3,), class_names has 2"),
        ({"input_shape": [3, 4]}, "cannot take input"),
        ({"input_shape": [0]}, "positive ints"),
        ({"seed": "seven"}, "seed must be a int"),
        ({"format_version": 2}, "format version 2"),
    ],
    ids=["channels", "zero-std", "no-std", "classes", "shape", "zero-shape", "seed", "version"],
)
def test_inconsistent_meta(saved, changes, fragment):
    _with_meta(saved, **changes)
    _refused(load_model, saved, fragment)


# ---- refusals on save: nothing inconsistent is written --------------------------------


def test_save_refuses_params_that_do_not_fit(tmp_path, params, blueprint, meta):
    params = {**params, "fc1.W": params["fc1.W"][:, :4]}
    with pytest.raises(UserError, match=r"fc1.W: expected \(2, 8\) for the blueprint, found"):
        save_model(tmp_path / "m.npz", params, blueprint, meta)
    assert _names(tmp_path) == []


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"class_names": None}, "has no ['class_names']"),
        ({"config": {"when": object()}}, "cannot be stored as JSON"),
    ],
)
def test_save_refuses_bad_meta(tmp_path, params, blueprint, meta, changes, fragment):
    meta = {key: value for key, value in {**meta, **changes}.items() if value is not None}
    _refused(lambda p: save_model(p, params, blueprint, meta), tmp_path / "m.npz", fragment)
    assert _names(tmp_path) == []


def test_save_refuses_nan_and_other_suffixes(tmp_path, params, blueprint, meta):
    bad = {**params, "fc3.b": np.full(3, np.nan, np.float32)}
    _refused(lambda p: save_model(p, bad, blueprint, meta), tmp_path / "m.npz", "3 NaN")
    _refused(lambda p: save_model(p, params, blueprint, meta), tmp_path / "m.pkl", "end in .npz")
    assert _names(tmp_path) == []


def test_check_params_refuses_reserved_layer_names(params):
    blueprint = [{"type": "fc", "name": "__meta", "units": 3}]
    # validate_blueprint refuses such names, so no parameter key can collide with "__meta__"
    with pytest.raises(UserError, match=r"m.npz: layer 0 \(fc\): 'name' must be.*'__meta'"):
        check_params({}, blueprint, MLP_SHAPE, "m.npz")


def test_check_params_returns_float32(params, blueprint):
    checked = check_params(
        {k: v.astype(np.float64) for k, v in params.items()}, blueprint, MLP_SHAPE, "m.npz"
    )
    assert all(a.dtype == np.float32 for a in checked.values())


# ---- atomic saving --------------------------------------------------------------------


def test_a_save_failing_midway_keeps_the_old_file(saved, params, blueprint, meta, monkeypatch):
    old = saved.read_bytes()

    def half_then_crash(file, **arrays):
        with open(file, "wb") as f:
            f.write(b"PK\x03\x04 the first bytes of a zip")
        raise RuntimeError("crashed while writing")

    monkeypatch.setattr(np, "savez", half_then_crash)
    with pytest.raises(RuntimeError, match="crashed"):
        save_model(saved, params, blueprint, meta)
    assert saved.read_bytes() == old
    assert _names(saved.parent) == ["model.npz"]


def test_a_full_disk_keeps_the_old_file(saved, params, blueprint, meta, monkeypatch):
    old = saved.read_bytes()

    def no_space(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", no_space)
    _refused(lambda p: save_model(p, params, blueprint, meta), saved, "No space left on device")
    assert saved.read_bytes() == old
    assert _names(saved.parent) == ["model.npz"]


def test_a_missing_or_blocked_folder_writes_nothing(tmp_path, params, blueprint, meta):
    (tmp_path / "blocker").write_bytes(b"a file where a folder should be")
    for path in (tmp_path / "runs" / "m.npz", tmp_path / "blocker" / "m.npz"):
        _refused(lambda p: save_model(p, params, blueprint, meta), path, "cannot write")
    assert _names(tmp_path) == ["blocker"]


# ---- checkpoints ----------------------------------------------------------------------


@pytest.fixture
def checkpoint(tmp_path, params, blueprint, meta):
    """A saved checkpoint and the optimizer state it holds."""
    opt_state = {f"{slot}.{k}": np.full_like(v, 0.5) for slot in "mv" for k, v in params.items()}
    meta = {**meta, "run_state": {"epoch": 4, "batch": 0}}  # the trainer's, passed through
    path = save_checkpoint(tmp_path / "ckpt.npz", params, opt_state, blueprint, meta)
    return path, opt_state


def test_checkpoint_round_trip(checkpoint, params, blueprint):
    path, opt_state = checkpoint
    ckpt = load_checkpoint(path)
    assert ckpt.meta["run_state"] == {"epoch": 4, "batch": 0}
    assert ckpt.blueprint == validate_blueprint(blueprint)
    assert ckpt.opt_state.keys() == opt_state.keys()
    for key, value in opt_state.items():
        np.testing.assert_array_equal(ckpt.opt_state[key], value)
    for key, value in params.items():
        np.testing.assert_array_equal(ckpt.params[key], value)
    raw = _raw(path)
    assert "__opt__/m.fc1.W" in raw
    assert json.loads(str(raw["__checkpoint__"])) == sorted(opt_state)
    assert "__rng__" not in raw  # nothing resumes from a generator state: not written


def test_a_checkpoint_without_optimizer_state_is_still_a_checkpoint(
    tmp_path, params, blueprint, meta
):
    path = save_checkpoint(tmp_path / "sgd.npz", params, {}, blueprint, meta)  # plain SGD
    assert load_checkpoint(path).opt_state == {}


def test_a_checkpoint_of_the_earlier_format_still_loads(checkpoint, params):
    """Before: a generator state in "__rng__" and meta "epoch" and "step", no "__checkpoint__"."""
    path, opt_state = checkpoint
    arrays = _raw(path)
    del arrays["__checkpoint__"]
    arrays["__rng__"] = np.array(json.dumps(np.random.default_rng(0).bit_generator.state))
    meta = {**json.loads(str(arrays["__meta__"])), "epoch": 4, "step": 120}
    arrays["__meta__"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)
    ckpt = load_checkpoint(path)
    assert ckpt.opt_state.keys() == opt_state.keys()
    assert ckpt.meta["run_state"] == {"epoch": 4, "batch": 0}
    assert load_model(path).params.keys() == params.keys()


def test_load_model_reads_a_checkpoint(checkpoint, params):
    model = load_model(checkpoint[0])
    assert model.params.keys() == params.keys()


def test_load_checkpoint_refuses_a_model_file(saved):
    _refused(load_checkpoint, saved, "not a training checkpoint")


def test_checkpoint_opt_state_must_fit_the_params(tmp_path, params, blueprint, meta):
    path = tmp_path / "ckpt.npz"
    wrong = [
        ({"m.fc7.W": np.zeros((2, 8), np.float32)}, "'m.fc7.W' names no parameter"),
        ({"m.fc1.W": np.zeros((8, 2), np.float32)}, "m.fc1.W: expected (2, 8)"),
    ]
    for opt_state, fragment in wrong:
        _refused(
            lambda p, o=opt_state: save_checkpoint(p, params, o, blueprint, meta),
            path,
            fragment,
        )
    assert _names(tmp_path) == []


def test_checkpoint_missing_an_optimizer_state_array(checkpoint):
    path = checkpoint[0]
    arrays = _raw(path)
    del arrays["__opt__/v.fc3.b"]
    np.savez(path, **arrays)
    _refused(load_checkpoint, path, "v.fc3.b", "the checkpoint is damaged")


def test_checkpoint_with_nan_in_the_optimizer_state(checkpoint):
    path = checkpoint[0]
    arrays = _raw(path)
    arrays["__opt__/v.fc3.b"][1] = np.nan
    np.savez(path, **arrays)
    _refused(load_checkpoint, path, "optimizer state: v.fc3.b holds 1 NaN")


# ---- hostile files: refused from their headers, before any data is read ----------------


def _with_member(path, name, data):
    """Rewrite the zip at ``path`` with member ``name`` (a .npy file's bytes) replaced or added."""
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    members[name] = data
    with zipfile.ZipFile(path, "w") as archive:
        for member, content in members.items():
            archive.writestr(member, content)


def _header(shape, descr="<f4"):
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": descr, "fortran_order": False, "shape": shape}
    )
    return buffer.getvalue()


@pytest.mark.parametrize("shape", [(10**6, 10**6), (2**62, 2**62, 2**62)], ids=["huge", "overflow"])
def test_a_header_declaring_a_huge_shape_is_refused_unread(saved, shape):
    _with_member(saved, "fc1.W.npy", _header(shape) + bytes(16))
    _refused(load_model, saved, "'fc1.W' declares shape", "allowed for one array")


def test_the_total_budget_is_checked_before_reading(saved, monkeypatch):
    monkeypatch.setattr(params_io, "MAX_TOTAL_BYTES", 100)
    _refused(load_model, saved, "more than 100 bytes in all")


def test_a_bzip2_member_is_refused(saved):
    arrays = _raw(saved)
    with zipfile.ZipFile(saved, "w", zipfile.ZIP_BZIP2) as archive:
        for key, value in arrays.items():
            with archive.open(f"{key}.npy", "w") as member:
                np.lib.format.write_array(member, value)
    _refused(load_model, saved, "zip compression method 12")


def test_a_negative_shape_is_refused(saved):
    _with_member(saved, "fc1.b.npy", _header((-1, -1)) + bytes(4))
    _refused(load_model, saved, "'fc1.b' declares a negative shape (-1, -1)")


def test_a_header_disagreeing_with_the_zip_entry_is_refused(saved):
    _with_member(saved, "fc1.b.npy", _header((8,)) + bytes(8))
    _refused(load_model, saved, "'fc1.b' declares shape (8,)", "corrupt or forged")


def test_a_wrong_shape_is_refused_from_the_header(saved, monkeypatch):
    read, original = [], params_io._read_member

    def recording(archive, member, source):
        read.append(member.key)
        return original(archive, member, source)

    monkeypatch.setattr(params_io, "_read_member", recording)
    _with_member(saved, "fc1.W.npy", _header((3, 3)) + bytes(36))
    _refused(load_model, saved, "fc1.W: expected (2, 8) for the blueprint, found (3, 3)")
    assert read == ["__blueprint__", "__meta__"]  # no parameter's data was read


def test_a_structured_dtype_is_refused(saved):
    _with_member(saved, "fc1.b.npy", _header((8,), [("a", "<f4")]) + bytes(32))
    _refused(load_model, saved, "'fc1.b' has dtype")


def test_too_many_members_are_refused_before_zipfile_reads_them(saved, monkeypatch):
    monkeypatch.setattr(params_io, "MAX_MEMBERS", 5)
    _refused(load_model, saved, "declares 8 members", "at most 5")


@pytest.mark.parametrize("key", ["__blueprint__", "__meta__"])
def test_deeply_nested_json_is_refused(saved, key):
    arrays = _raw(saved)
    arrays[key] = np.array("[" * 50_000 + "]" * 50_000)
    np.savez(saved, **arrays)
    _refused(load_model, saved, f"'{key}': JSON nested 50000 levels deep")


def test_huge_json_is_refused_from_its_header(saved):
    arrays = _raw(saved)
    arrays["__meta__"] = np.array(" " * 2_000_000 + "{}")
    np.savez(saved, **arrays)
    _refused(load_model, saved, "'__meta__' holds 2000002 characters")


def test_a_compressed_model_still_loads(saved, params):
    np.savez_compressed(saved, **_raw(saved))
    model = load_model(saved)
    for key, value in params.items():
        np.testing.assert_array_equal(model.params[key], value.astype(np.float32))


def test_loaded_parameters_are_writable(saved):
    model = load_model(saved)
    model.params["fc1.W"] += 1  # training updates them in place
