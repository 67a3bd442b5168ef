"""CIFAR-10 (A. Krizhevsky, 2009): 32x32 colour images of 10 classes, from the *binary* archive.

``cifar-10-binary.tar.gz`` holds ``cifar-10-batches-bin/data_batch_1.bin`` .. ``_5.bin``
and ``test_batch.bin``; each is a run of 3073-byte records: one label byte, then
1024 red, 1024 green and 1024 blue bytes (rows of 32). The python version of the
archive stores pickles, which this project never loads.

The archive is read in place (no extraction) from the folder the user names, or
downloaded from the official address into ``<cache>/cifar10`` with its MD5 checked.
"""

import tarfile
import zlib
from pathlib import Path

import numpy as np
import pooch

from data.dataset import Dataset, check_labels, shown_path
from data.download import default_cache_dir, fetch
from data.errors import UserError

CIFAR10_ARCHIVE = "cifar-10-binary.tar.gz"
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR10_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR10_TEST_BATCH = "test_batch.bin"
CIFAR10_CLASS_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
RECORD_BYTES = 1 + 3 * 32 * 32
MAX_BATCH_BYTES = 256 * 2**20  # one batch file; the real ones are 30.7 MB
MAX_TAR_MEMBERS = 1000  # the real archive holds 8 files
CIFAR10_REMEDY = (
    f"download {CIFAR10_URL} again (MD5 {CIFAR10_MD5}); it is the binary version, "
    "not the python one"
)


def load_cifar10(data_dir=None, cache_dir=None):
    """CIFAR-10: 50000 training and 10000 test colour images, 32x32, 10 classes.

    data_dir:  optional folder holding ``cifar-10-binary.tar.gz`` (its MD5 is checked).
    cache_dir: download cache (default ``default_cache_dir()``) when data_dir is None.
    Returns Dataset "cifar10": x uint8 (N, 3, 32, 32), y int64 (N,).
    """
    if data_dir is None:
        folder = Path(cache_dir or default_cache_dir()) / "cifar10"
        alternative = f"put {CIFAR10_ARCHIVE} in a folder and pass --data-dir <that folder> (data_dir= in Python)"
        archive = fetch(CIFAR10_ARCHIVE, [CIFAR10_URL], CIFAR10_MD5, folder, alternative)
    else:
        archive = Path(data_dir) / CIFAR10_ARCHIVE
        _check_md5(archive)
    return read_cifar10_archive(archive)


def _check_md5(archive):
    """Raise UserError unless ``archive`` exists and has the official MD5."""
    where = shown_path(archive)
    if not archive.is_file():
        raise UserError(f"{where}: file not found; {CIFAR10_REMEDY} and put it there")
    actual = pooch.file_hash(str(archive), alg="md5")
    if actual != CIFAR10_MD5:
        raise UserError(
            f"{where}: checksum mismatch: MD5 {actual}, expected {CIFAR10_MD5}; {CIFAR10_REMEDY}"
        )


def read_cifar10_archive(path):
    """Parse a CIFAR-10 binary tar.gz (any number of records per batch).

    path: str or Path of the archive; batches are found by file name, in any folder.
    Returns Dataset "cifar10": x uint8 (N, 3, 32, 32), y int64 (N,).
    """
    path = Path(path)
    where = shown_path(path)
    try:
        with tarfile.open(path, "r:gz") as tar:
            members = _batch_members(tar, where)
            batches = {}
            for name in (*CIFAR10_TRAIN_BATCHES, CIFAR10_TEST_BATCH):
                if name not in members:
                    raise UserError(
                        f"{where}: {name} is missing from the archive; {CIFAR10_REMEDY}"
                    )
                if members[name].size > MAX_BATCH_BYTES:  # before reading: never trust it
                    raise UserError(
                        f"{where}:{name}: declares {members[name].size} bytes, more than the "
                        f"{MAX_BATCH_BYTES} a batch may hold here; {CIFAR10_REMEDY}"
                    )
                batches[name] = tar.extractfile(members[name]).read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise UserError(f"{where}: not a readable tar.gz archive ({e}); {CIFAR10_REMEDY}") from e
    train = [_parse_batch(batches[n], f"{where}:{n}") for n in CIFAR10_TRAIN_BATCHES]
    x_test, y_test = _parse_batch(batches[CIFAR10_TEST_BATCH], f"{where}:{CIFAR10_TEST_BATCH}")
    return Dataset(
        name="cifar10",
        x_train=np.concatenate([x for x, _ in train]),
        y_train=np.concatenate([y for _, y in train]),
        x_test=x_test,
        y_test=y_test,
        class_names=CIFAR10_CLASS_NAMES,
    )


def _batch_members(tar, where):
    """{file name: TarInfo} of the batch files, reading at most MAX_TAR_MEMBERS headers.

    Stops as soon as every batch is found; refuses an archive of more members than that
    (each header read is kept in memory by tarfile).
    """
    wanted, members = {*CIFAR10_TRAIN_BATCHES, CIFAR10_TEST_BATCH}, {}
    for count, member in enumerate(tar, 1):
        if count > MAX_TAR_MEMBERS:
            raise UserError(
                f"{where}: more than {MAX_TAR_MEMBERS} members; not the CIFAR-10 archive; "
                f"{CIFAR10_REMEDY}"
            )
        if member.isfile() and Path(member.name).name in wanted:
            members[Path(member.name).name] = member
            if len(members) == len(wanted):
                break
    return members


def _parse_batch(data, source):
    """Split one batch (bytes) into images uint8 (N, 3, 32, 32) and labels int64 (N,)."""
    if len(data) % RECORD_BYTES:
        raise UserError(
            f"{source}: truncated or padded: {len(data)} bytes is not a whole number of "
            f"{RECORD_BYTES}-byte records ({len(data) // RECORD_BYTES} records and "
            f"{len(data) % RECORD_BYTES} bytes over); {CIFAR10_REMEDY}"
        )
    records = np.frombuffer(data, np.uint8).reshape(-1, RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    check_labels(labels, len(CIFAR10_CLASS_NAMES), source, CIFAR10_REMEDY)
    images = records[:, 1:].reshape(-1, 3, 32, 32).copy()  # contiguous and writable
    return images, labels
