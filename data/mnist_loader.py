"""IDX files (the MNIST format), parsed here, and the MNIST dataset shipped in ``data/mnist/``.

An IDX file is a 4-byte magic number ``0x00 0x00 <dtype code> <number of dims>``,
one big-endian uint32 per dimension, then the values in C order. Every file may be
raw or gzip-compressed (recognized by its first bytes, not its name).

The shipped MNIST files are checked against the SHA-256 of their decompressed
bytes on every load: hashing costs ~0.05 s next to ~0.25 s of decompression, so
a stamp file to skip it would save little and could go stale.
"""

import gzip
import hashlib
import math
import zlib
from pathlib import Path

import numpy as np

from data.dataset import Dataset, check_labels, check_same_count, shown_path
from data.errors import UserError

IDX_UBYTE = 0x08
IDX_DTYPE_NAMES = {
    0x08: "unsigned byte",
    0x09: "signed byte",
    0x0B: "int16",
    0x0C: "int32",
    0x0D: "float32",
    0x0E: "float64",
}
GZIP_MAGIC = b"\x1f\x8b"
MAX_IDX_BYTES = 512 * 2**20  # one IDX file's values; Fashion-MNIST's training images are 47 MB
_CHUNK_BYTES = 16 * 2**20

# The four files of MNIST and of Fashion-MNIST, by role; each may end in .gz or not.
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

MNIST_DIR = Path(__file__).resolve().parent / "mnist"
MNIST_CLASS_NAMES = tuple(str(d) for d in range(10))
# SHA-256 of the decompressed bytes (data/mnist/README.md).
MNIST_SHA256 = {
    "train_images": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train_labels": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "test_images": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "test_labels": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
MNIST_REMEDY = (
    "replace it with an intact copy: the repository ships one in data/mnist/ "
    "(`git checkout -- data/mnist/` restores it); the originals are at "
    "https://storage.googleapis.com/cvdf-datasets/mnist/"
)


def read_idx(path, ndim, remedy, sha256=None):
    """Read one IDX file of unsigned bytes (raw or .gz) and check it thoroughly.

    path:   str or Path of the file.
    ndim:   int, the number of dimensions it must have (3 for images, 1 for labels).
    remedy: str appended to every error message: what the user should do.
    sha256: optional hex str; the SHA-256 the decompressed bytes must have.
    Returns a writable uint8 array whose shape is the header's dimensions.
    Raises UserError naming the file when it is missing, not gzip it claims to be,
    has the wrong magic number, dtype code or number of dimensions, holds fewer or
    more bytes than its header says, or has the wrong SHA-256.
    """
    path = Path(path)
    where = shown_path(path)
    if not path.is_file():
        raise UserError(f"{where}: file not found; {remedy}")
    try:
        with path.open("rb") as f:
            compressed = f.read(2) == GZIP_MAGIC
        opener = gzip.open if compressed else open
        with opener(path, "rb") as f:
            # The header first, then exactly the bytes it declares (and a count of any
            # more): a small .gz that inflates to gigabytes is never read in full.
            head = f.read(4)
            if len(head) == 4 and head[:2] == b"\x00\x00" and head[3] == ndim:
                head += f.read(4 * ndim)
            dims = _parse_header(head, ndim, where, remedy)
            expected = math.prod(dims)
            shape = "x".join(str(d) for d in dims)
            if expected > MAX_IDX_BYTES:
                raise UserError(
                    f"{where}: header says {shape} values = {expected} bytes, more than the "
                    f"{MAX_IDX_BYTES} an IDX file may hold here; {remedy}"
                )
            data = head + f.read(expected)
            extra = _count_rest(f)
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise UserError(f"{where}: damaged gzip stream ({e}); {remedy}") from e

    header_bytes = 4 + 4 * ndim
    held = len(data) - header_bytes + extra
    if held < expected:
        raise UserError(
            f"{where}: truncated: header says {shape} values = {expected} bytes "
            f"but the file holds {held}; {remedy}"
        )
    if held > expected:
        raise UserError(
            f"{where}: size does not match the header: header says {shape} values = "
            f"{expected} bytes but the file holds {held} ({held - expected} extra); {remedy}"
        )
    if sha256 is not None:
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise UserError(
                f"{where}: checksum mismatch: the SHA-256 of its decompressed bytes is "
                f"{actual}, expected {sha256}; the file was altered or damaged; {remedy}"
            )
    # Copy out of the immutable bytes so that callers get an ordinary writable array.
    return np.frombuffer(data, np.uint8, expected, header_bytes).reshape(dims).copy()


def _count_rest(f, limit=_CHUNK_BYTES):
    """How many bytes are left in the open file ``f``, counted in chunks, at most ``limit + 1``."""
    count = 0
    while count <= limit and (chunk := f.read(min(_CHUNK_BYTES, limit + 1 - count))):
        count += len(chunk)
    return count


def _parse_header(data, ndim, where, remedy):
    """Check the IDX magic number of ``data`` (bytes); return its dimensions (tuple of int)."""
    if len(data) < 4:
        raise UserError(
            f"{where}: truncated: {len(data)} bytes, too short for the 4-byte IDX magic "
            f"number; {remedy}"
        )
    magic = int.from_bytes(data[:4], "big")
    expected_magic = (IDX_UBYTE << 8) | ndim
    if data[0] != 0 or data[1] != 0:
        raise UserError(
            f"{where}: wrong magic number 0x{magic:08X}, expected 0x{expected_magic:08X}: "
            f"not an IDX file; {remedy}"
        )
    code, file_ndim = data[2], data[3]
    if code != IDX_UBYTE:
        kind = IDX_DTYPE_NAMES.get(code, "not an IDX type")
        raise UserError(
            f"{where}: wrong dtype code 0x{code:02X} ({kind}), expected 0x{IDX_UBYTE:02X} "
            f"(unsigned byte); {remedy}"
        )
    if file_ndim != ndim:
        raise UserError(
            f"{where}: header says {file_ndim} dimensions, expected {ndim} "
            f"(magic 0x{magic:08X}, expected 0x{expected_magic:08X}); {remedy}"
        )
    if len(data) < 4 + 4 * ndim:
        raise UserError(
            f"{where}: truncated: {len(data)} bytes, too short for a header of {ndim} "
            f"dimensions; {remedy}"
        )
    return tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, 4))


def find_idx_files(folder):
    """Paths of the four IDX files in ``folder``, preferring ``<name>.gz`` over ``<name>``.

    folder: str or Path.
    Returns a dict role -> Path (roles as in ``IDX_FILES``); a file found under
    neither name is given as ``<name>.gz``, so that reading it reports it missing.
    """
    folder = Path(folder)
    found = {}
    for role, stem in IDX_FILES.items():
        gz, raw = folder / f"{stem}.gz", folder / stem
        found[role] = raw if raw.is_file() and not gz.is_file() else gz
    return found


def load_idx_dataset(name, paths, class_names, remedy, sha256=None):
    """Read four IDX files (train/test images and labels) into a ``Dataset``.

    name:        str, the dataset's name.
    paths:       dict role -> path, roles as in ``IDX_FILES``.
    class_names: tuple of str, one per class.
    remedy:      str, what to do when a file is bad (goes into every message).
    sha256:      optional dict role -> hex str of the decompressed bytes.
    Returns Dataset with x uint8 (N, 1, H, W) and y int64 (N,).
    """
    sha256 = sha256 or {}
    arrays = {}
    for role, path in paths.items():
        ndim = 3 if role.endswith("images") else 1
        arrays[role] = read_idx(path, ndim, remedy, sha256.get(role))
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        images_path, labels_path = paths[f"{split}_images"], paths[f"{split}_labels"]
        check_same_count(images, labels, shown_path(images_path), shown_path(labels_path), remedy)
        check_labels(labels, len(class_names), shown_path(labels_path), remedy)
    train_hw, test_hw = arrays["train_images"].shape[1:], arrays["test_images"].shape[1:]
    if train_hw != test_hw:
        raise UserError(
            f"{shown_path(paths['test_images'])}: images are {test_hw[0]}x{test_hw[1]} but "
            f"the training images are {train_hw[0]}x{train_hw[1]}; {remedy}"
        )
    return Dataset(
        name=name,
        x_train=arrays["train_images"][:, None],  # (N, H, W) -> (N, 1, H, W), a view
        y_train=arrays["train_labels"].astype(np.int64),
        x_test=arrays["test_images"][:, None],
        y_test=arrays["test_labels"].astype(np.int64),
        class_names=class_names,
    )


def load_mnist(data_dir=None):
    """MNIST: 60000 training and 10000 test digits, 28x28 grey levels.

    data_dir: folder holding the four IDX files (raw or .gz); default the copy
              shipped in ``data/mnist/``. Their SHA-256 is checked either way.
    Returns Dataset "mnist": x uint8 (N, 1, 28, 28), y int64 (N,), classes "0".."9".
    """
    folder = MNIST_DIR if data_dir is None else Path(data_dir)
    return load_idx_dataset(
        "mnist", find_idx_files(folder), MNIST_CLASS_NAMES, MNIST_REMEDY, MNIST_SHA256
    )
