"""Hostile inputs: every one ends in one line on stderr and a non-zero exit, in a child process
whose address space is capped, so that an allocation the input dictates fails the test.

Families: model files (zip bombs, forged headers, pickles, wrong shapes, too many members,
truncation, deep or huge JSON), blueprint JSON files, images, numeric options, data files.
Each case runs ``python main.py ...`` in a folder of its own and checks that it finishes
well within a timeout, prints no traceback, and leaves every file there byte-identical.
The hostile files are built here, small on disk (a few MB at most) however much they declare.
"""

import gzip
import hashlib
import io
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from model.params_io import MAX_MEMBERS

ROOT = Path(__file__).resolve().parent.parent
MAIN = ROOT / "main.py"
SHIPPED = ROOT / "best_params.npz"
MNIST_DIR = ROOT / "data" / "mnist"

# A normal command (imports, the shipped model, the MNIST test set) needs under 0.75 GiB of
# address space with one BLAS thread (measured: summary, predict and evaluate all pass under
# 0.75 GiB); every bomb below declares 2 GiB or more, so reading it as declared fails here.
ADDRESS_SPACE = 1536 * 2**20
TIMEOUT_S = 120  # each case takes a few seconds; a loop over a bomb would take minutes
BOMB_BYTES = 2**31  # what the bombs inflate to (and declare)
ENV = {
    **os.environ,
    "OPENBLAS_NUM_THREADS": "1",  # BLAS reserves address space per thread
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "MPLBACKEND": "Agg",
}


def _cap_address_space():
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def _hashes(folder):
    """{relative path: SHA-256} of every file under ``folder``."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def _refused(folder, *argv, fragments=()):
    """Run ``python main.py *argv`` in ``folder``; assert one clean line and no file touched."""
    before = _hashes(folder)
    done = subprocess.run(
        [sys.executable, str(MAIN), *map(str, argv)],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        preexec_fn=_cap_address_space,
        env=ENV,
        check=False,
    )
    assert done.returncode != 0, done.stdout[-1000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr[-3000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert _hashes(folder) == before
    return lines[0]


# ---- building hostile files -----------------------------------------------------------


def _npy(array):
    """The bytes of ``array`` (no objects) as a .npy file."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _npy_header(shape, descr="<f4"):
    """A .npy header (magic included) declaring ``shape`` of ``descr``, with no data."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": descr, "fortran_order": False, "shape": tuple(shape)}
    )
    return buffer.getvalue()


class Raw:
    """A zip member given as its deflate stream, with the sizes and CRC to declare."""

    def __init__(self, compressed, crc, size):
        self.compressed, self.crc, self.size = compressed, crc, size


def _write_zip(path, members, declared_entries=None):
    """A zip file written by hand: {name: bytes (stored) or Raw (deflated)}.

    declared_entries: the member count to write in the end record (default: the true one).
    """
    local, central = bytearray(), bytearray()
    for name, data in members.items():
        encoded = name.encode()
        if isinstance(data, Raw):
            method, crc, body, size = 8, data.crc, data.compressed, data.size
        else:
            method, crc, body, size = 0, zlib.crc32(data), data, len(data)
        offset = len(local)
        fields = (20, 0, method, 0, 33, crc, len(body), size, len(encoded), 0)
        local += struct.pack("<4s5H3L2H", b"PK\x03\x04", *fields) + encoded + body
        central += (
            struct.pack(
                "<4s6H3L5H2L",
                b"PK\x01\x02",
                20,
                *fields[:-2],
                len(encoded),
                0,
                0,
                0,
                0,
                0,
                offset,
            )
            + encoded
        )
    count = len(members) if declared_entries is None else declared_entries
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, len(central), len(local), 0)
    path.write_bytes(bytes(local + central + end))
    return path


def _deflate_then_zeros(prefix, n_zeros, wbits=-15):
    """(deflate stream of prefix + n_zeros zero bytes, its CRC-32), built in a few MB.

    After a full flush the compressor starts afresh, so each 16 MiB block of zeros
    compresses to the same bytes: one block is compressed, then repeated.
    """
    block = 16 * 2**20
    assert n_zeros % block == 0
    compressor = zlib.compressobj(9, zlib.DEFLATED, wbits)
    head = compressor.compress(prefix) + compressor.flush(zlib.Z_FULL_FLUSH)
    zeros = bytes(block)
    body = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    repeats = n_zeros // block
    crc = zlib.crc32(prefix)
    for _ in range(repeats):
        crc = zlib.crc32(zeros, crc)
    return head + body * repeats + compressor.flush(), crc


@pytest.fixture(scope="module")
def bomb_member():
    """A zip member: a .npy header declaring 2 GiB of float32 and the zeros, deflated."""
    header = _npy_header((BOMB_BYTES // 4,))
    compressed, crc = _deflate_then_zeros(header, BOMB_BYTES)
    assert len(compressed) < 4 * 2**20
    return Raw(compressed, crc, len(header) + BOMB_BYTES)


@pytest.fixture(scope="module")
def shipped_members():
    """{member name: bytes} of the shipped model, to be altered by each case."""
    with zipfile.ZipFile(SHIPPED) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


@pytest.fixture
def work(tmp_path):
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


def _model(work, shipped_members, **changes):
    """The shipped model with members replaced ({key: bytes or Raw}; None deletes)."""
    members = dict(shipped_members)
    for key, value in changes.items():
        name = key.replace("__dot__", ".") + ".npy"
        if value is None:
            del members[name]
        else:
            members[name] = value
    return _write_zip(work / "model.npz", members)


# ---- model files --------------------------------------------------------------------------


@pytest.mark.slow
def test_a_zip_bomb_member_is_refused_from_its_header(work, shipped_members, bomb_member):
    path = _model(work, shipped_members, conv1__dot__W=bomb_member)
    assert path.stat().st_size < 8 * 2**20
    _refused(work, "evaluate", "--params", path, fragments=[str(path), "'conv1.W'"])


@pytest.mark.slow
def test_a_zip_bomb_under_a_harmless_name_is_refused(work, shipped_members, bomb_member):
    path = _model(work, shipped_members, notes=bomb_member)
    _refused(work, "evaluate", "--params", path, fragments=[str(path), "'notes'"])


@pytest.mark.slow
def test_a_member_inflating_past_its_declared_size(work, shipped_members):
    """The zip entry declares the true parameter size; the stream goes on for 2 GiB."""
    honest = shipped_members["conv1.W.npy"]
    compressed, _ = _deflate_then_zeros(honest, BOMB_BYTES)
    raw = Raw(compressed, zlib.crc32(honest), len(honest))
    path = _model(work, shipped_members, conv1__dot__W=raw)
    # zipfile stops at the declared size: the model loads; evaluate then needs MNIST.
    done = subprocess.run(
        [sys.executable, str(MAIN), "evaluate", "--params", str(path), "--out", str(work)],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        preexec_fn=_cap_address_space,
        env=ENV,
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize(
    "shape", [(100_000, 100_000, 100), (2**40,), (2**62, 2**62)], ids=["3d", "1d", "overflow"]
)
def test_a_header_declaring_a_huge_shape(work, shipped_members, shape):
    path = _model(work, shipped_members, conv1__dot__b=_npy_header(shape) + bytes(64))
    _refused(work, "evaluate", "--params", path, fragments=[str(path), "'conv1.b'"])


@pytest.mark.slow
def test_an_object_array_is_never_unpickled(work, shipped_members):
    # An object array's header, then bytes that start like a pickle: the header alone must
    # stop the loader (this test makes no pickle, so none could run if it did not).
    trap = _npy_header((1,), descr="|O") + b"\x80\x04\x95 not a pickle to run."
    path = _model(work, shipped_members, conv1__dot__b=trap)
    _refused(work, "evaluate", "--params", path, fragments=[str(path), "pickle"])


@pytest.mark.slow
def test_a_structured_dtype_is_refused(work, shipped_members):
    member = _npy(np.zeros(3, dtype=[("a", "<f4"), ("b", "<i4")]))
    path = _model(work, shipped_members, conv1__dot__b=member)
    _refused(work, "evaluate", "--params", path, fragments=[str(path), "'conv1.b'"])


@pytest.mark.slow
def test_a_shape_the_blueprint_does_not_give(work, shipped_members):
    path = _model(work, shipped_members, conv1__dot__W=_npy(np.zeros((300, 300), np.float32)))
    _refused(work, "evaluate", "--params", path, fragments=[str(path), "conv1.W: expected"])


@pytest.mark.slow
def test_a_header_size_that_disagrees_with_the_zip_entry(work, shipped_members):
    member = shipped_members["conv1.b.npy"] + bytes(4096)
    path = _model(work, shipped_members, conv1__dot__b=member)
    _refused(work, "evaluate", "--params", path, fragments=[str(path), "'conv1.b'"])


@pytest.mark.slow
def test_too_many_members(work):
    path = work / "model.npz"
    header = _npy_header((1,))
    members = {f"m{i}.npy": header + bytes(4) for i in range(MAX_MEMBERS + 1)}
    _write_zip(path, members)
    _refused(work, "evaluate", "--params", path, fragments=[str(path), "members"])


@pytest.mark.slow
def test_an_end_record_declaring_more_members_than_allowed(work, shipped_members):
    path = _write_zip(work / "model.npz", shipped_members, declared_entries=65535)
    _refused(work, "evaluate", "--params", path, fragments=[str(path)])


@pytest.mark.slow
def test_a_truncated_model_file(work):
    path = work / "model.npz"
    path.write_bytes(SHIPPED.read_bytes()[: SHIPPED.stat().st_size // 2])
    _refused(work, "evaluate", "--params", path, fragments=[str(path), "truncated"])


@pytest.mark.slow
@pytest.mark.parametrize("key", ["__meta__", "__blueprint__"])
def test_deeply_nested_json_in_a_model_file(work, shipped_members, key):
    deep = _npy(np.array("[" * 100_000 + "]" * 100_000))
    path = _model(work, shipped_members, **{key: deep})
    _refused(work, "evaluate", "--params", path, fragments=[str(path), key, "nested"])


def test_huge_json_in_a_model_file(work, shipped_members):
    huge = _npy(np.array('["' + "x" * 3_000_000 + '"]'))
    path = _model(work, shipped_members, __meta__=huge)
    _refused(work, "evaluate", "--params", path, fragments=[str(path), "__meta__"])


# ---- blueprint files (load_blueprint) ------------------------------------------------------


def test_a_deeply_nested_blueprint_file(work):
    path = work / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    _refused(work, "summary", "--arch", path, fragments=[str(path)])


def test_a_huge_blueprint_file(work):
    path = work / "huge.json"
    with open(path, "w") as f:
        f.write("[")
        f.write('{"type": "relu"},' * 2_000_000)
        f.write('{"type": "relu"}]')
    _refused(work, "summary", "--arch", path, fragments=[str(path)])


def test_a_summary_of_an_absurd_input_shape_allocates_nothing(work):
    """Shapes only: a table or one line, never an allocation of 10^10 pixels."""
    before = _hashes(work)
    done = subprocess.run(
        [sys.executable, str(MAIN), "summary", "--input-shape", "1x100000x100000"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        preexec_fn=_cap_address_space,
        env=ENV,
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.returncode == 0 or len(done.stderr.splitlines()) == 1, done.stderr[-3000:]
    assert _hashes(work) == before


# ---- what a model file says: every field checked at load --------------------------------


def _meta_of(shipped_members):
    return json.loads(str(np.load(io.BytesIO(shipped_members["__meta__.npy"]))))


def _with_meta(work, shipped_members, change, name="model.npz"):
    """The shipped model whose meta is ``change(meta)`` (a dict changed in place)."""
    meta = _meta_of(shipped_members)
    change(meta)
    members = {**shipped_members, "__meta__.npy": _npy(np.array(json.dumps(meta)))}
    return _write_zip(work / name, members)


def _set(path, value):
    """A change of the meta: the field at ``path`` ("config.batch_size") set to ``value``."""

    def change(meta):
        *parents, last = path.split(".")
        for key in parents:
            meta = meta[key]
        meta[last] = value

    return change


def _scaled(key, factor):
    """A change of the members: the array ``key`` multiplied by ``factor``."""

    def scale(members):
        name = key + ".npy"
        members[name] = _npy(np.load(io.BytesIO(members[name])) * np.float32(factor))

    return scale


@pytest.mark.slow
@pytest.mark.parametrize(
    ("change", "field"),
    [
        (_set("config.adversarial", "fgsm"), "adv"),  # with adv_eps null below
        (_set("config.batch_size", 0), "batch_size"),
        (_set("config.lr", "fast"), "lr"),
        (_set("config.no_such_setting", 1), "no_such_setting"),
        (_set("config.optimizer", "rmsprop-ish"), "optimizer"),
        (_set("pruned", "half"), "pruned"),
        (_set("pruned", {"sparsity": 2.0, "zero_weights": 1, "prunable_weights": 2}), "sparsity"),
        (_set("class_names", ["x" * 90_000] + [str(d) for d in range(1, 10)]), "class_names[0]"),
        (_set("class_names", [" "] + [str(d) for d in range(1, 10)]), "class_names[0]"),
        (_set("dataset", "digits"), "dataset"),  # digits are 8x8, the input 28x28
        (_set("epoch", -3), "epoch"),
        (_set("val_acc", "best"), "val_acc"),
        (_set("normalization.std", [1e-40]), "normalization"),
        (_set("normalization.mean", [1e300]), "normalization"),
        (_set("run_state", "halfway"), "run_state"),
        (_set("ood", {"energy_threshold": "low"}), "ood"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_a_meta_field_that_would_misuse_the_program(work, shipped_members, change, field):
    if field == "adv":
        adversarial = change
        change = lambda meta: (adversarial(meta), meta["config"].update(adv_eps=None))  # noqa: E731
    model = _with_meta(work, shipped_members, change)
    line = _refused(work, "evaluate", "--params", model, "--out", work / "out",
                    fragments=[str(model)])  # fmt: skip
    assert field in line
    assert len(line) < 600  # a 90,000-character class name is cut in the message too


@pytest.mark.slow
@pytest.mark.parametrize(
    ("change", "what"),
    [
        (_scaled("conv1.W", 1e37), "conv1.W"),  # finite, and the forward pass overflows to NaN
        (_scaled("bn1.running_var", -1.0), "bn1.running_var"),  # a negative variance
    ],
    ids=["weights of 1e37", "a negative running variance"],
)
def test_values_that_pass_the_finite_check_and_would_make_nan(work, shipped_members, change, what):
    members = dict(shipped_members)
    change(members)
    model = _write_zip(work / "model.npz", members)
    for argv in (["predict", "--params", model, ROOT / "docs" / "digit.png"],
                 ["evaluate", "--params", model, "--out", work / "out"]):  # fmt: skip
        assert what in _refused(work, *argv, fragments=[str(model)])


def _checkpoint(work, with_state):
    """A real run's checkpoint (1 epoch of the spiral toy set), its meta changed."""
    run = work / "run"
    subprocess.run([sys.executable, str(MAIN), "train", "--dataset", "spiral", "--arch", "mlp",
                    "--epochs", "1", "--out", run], check=True, capture_output=True, env=ENV,
                   timeout=TIMEOUT_S)  # fmt: skip
    path = run / "checkpoint.npz"
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    meta = _meta_of(members)
    with_state(meta)
    _write_zip(path, {**members, "__meta__.npy": _npy(np.array(json.dumps(meta)))})
    return run


@pytest.mark.slow
@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda meta: meta.pop("run_state"), "run_state"),
        (lambda meta: meta["run_state"].update(epoch="one"), "run_state.epoch"),
        (lambda meta: meta["run_state"].update(log_rows=[{"epoch": 1}]), "log_rows"),
        (lambda meta: meta["config"].update(batch_size=0), "batch_size"),
    ],
    ids=["no run state", "an epoch in words", "a log row missing its columns", "batch size 0"],
)
def test_a_checkpoint_that_cannot_be_resumed(work, change, field):
    run = _checkpoint(work, change)
    line = _refused(work, "train", "--resume", "--out", run, fragments=["checkpoint.npz"])
    assert field in line


def test_class_names_are_plain_text_in_figures_and_cut():
    from core.plots import plain

    assert plain("$\\frac{1}{0}$") == "\\$\\frac{1}{0}\\$"  # no mathtext: drawn as typed
    assert len(plain("y" * 90_000)) <= 24
    assert "\n" not in plain("two\nlines")


# ---- images ----------------------------------------------------------------------------


def _png(width, height):
    """A PNG whose header declares width x height grey pixels, with one tiny IDAT chunk."""

    def chunk(kind, data):
        return (
            struct.pack(">L", len(data)) + kind + data + struct.pack(">L", zlib.crc32(kind + data))
        )

    header = struct.pack(">2L5B", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(bytes(width + 1))  # one row of the declared width, at most
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("width", "height"), [(100_000, 100_000), (7_000, 7_000), (65_535, 1)], ids=str
)
def test_an_image_bomb(work, width, height):
    path = work / "digit.png"
    path.write_bytes(_png(width, height))
    _refused(work, "predict", path, fragments=[str(path)])


def test_an_image_that_is_not_one(work):
    path = work / "digit.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    _refused(work, "predict", path, fragments=[str(path)])


# ---- numeric options ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--warmup-epochs", "nan"],
        ["train", "--seed", "-1"],
        ["train", "--lr", "inf"],
        ["train", "--weight-decay", "-1e-4"],
        ["train", "--epochs", "1e400"],
        ["--threads", "100000000", "summary"],
        ["sweep", "--lrs", "0.1,nan"],
        ["summary", "--classes", "-1"],
    ],
    ids=lambda argv: " ".join(argv),
)
def test_a_bad_number(work, argv):
    option = next(arg for arg in argv if arg.startswith("--"))
    _refused(work, *argv, fragments=[option])


# ---- data files --------------------------------------------------------------------------


def _mnist_copy(work):
    folder = work / "mnist"
    shutil.copytree(MNIST_DIR, folder)
    return folder


def _evaluate_refused(work, folder, fragments):
    """``evaluate`` of the shipped model on the MNIST files in ``folder`` is refused."""
    out = work / "figures"
    _refused(work, "evaluate", "--params", SHIPPED, "--data-dir", folder, "--out", out,
             fragments=fragments)  # fmt: skip


def test_a_gzip_bomb_in_a_data_folder(work):
    folder = _mnist_copy(work)
    header = b"\x00\x00\x08\x03" + b"".join(n.to_bytes(4, "big") for n in (10_000, 28, 28))
    deflated, crc = _deflate_then_zeros(header, BOMB_BYTES)
    size = len(header) + BOMB_BYTES
    gz = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + deflated
    gz += struct.pack("<2L", crc, size % 2**32)
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(gz)
    _evaluate_refused(work, folder, ["t10k-images-idx3-ubyte.gz", "does not match the header"])


def test_an_idx_header_declaring_a_huge_count(work):
    folder = _mnist_copy(work)
    header = b"\x00\x00\x08\x03" + b"".join(n.to_bytes(4, "big") for n in (2**31, 28, 28))
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(header + bytes(784)))
    _evaluate_refused(work, folder, ["t10k-images-idx3-ubyte.gz"])
