"""The shipped MNIST files, the IDX parser, and one clear error per kind of bad file."""

import gzip
import shutil

import numpy as np
import pytest

from data import fit_normalization, load_dataset, load_mnist, read_idx
from data.errors import UserError
from data.mnist_loader import IDX_FILES, MNIST_DIR

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def idx_bytes(array, code=0x08):
    """The IDX encoding of a uint8 array: magic, big-endian dims, values."""
    header = bytes([0, 0, code, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def write_mnist_style(folder, n_train=12, n_test=5, compress=True, hw=(28, 28)):
    """Write four small valid IDX files into ``folder``; return the arrays written."""
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, *hw), dtype=np.uint8),
        "train_labels": np.arange(n_train, dtype=np.uint8) % 10,
        "test_images": rng.integers(0, 256, (n_test, *hw), dtype=np.uint8),
        "test_labels": np.arange(n_test, dtype=np.uint8)[::-1] % 10,
    }
    for role, stem in IDX_FILES.items():
        data = idx_bytes(arrays[role])
        if compress:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)
    return arrays


@pytest.fixture(scope="module")
def mnist():
    return load_dataset("mnist")


def test_shipped_mnist_shapes_dtypes_and_labels(mnist):
    assert mnist.name == "mnist"
    assert mnist.x_train.shape == (60000, 1, 28, 28) and mnist.x_train.dtype == np.uint8
    assert mnist.x_test.shape == (10000, 1, 28, 28) and mnist.x_test.dtype == np.uint8
    assert mnist.y_train.dtype == np.int64 and mnist.y_test.dtype == np.int64
    assert mnist.class_names == tuple("0123456789")
    assert mnist.input_shape == (1, 28, 28) and mnist.n_classes == 10
    assert np.bincount(mnist.y_train).tolist() == TRAIN_COUNTS
    assert np.bincount(mnist.y_test).tolist() == TEST_COUNTS
    assert mnist.x_train.flags.writeable and mnist.x_train.flags.c_contiguous


def test_shipped_mnist_pixel_statistics(mnist):
    assert mnist.x_train.max() == 255 and mnist.x_train.min() == 0
    norm = fit_normalization(mnist.x_train)
    assert norm.mean.dtype == np.float32 and norm.mean.shape == (1,)
    assert norm.mean[0] == pytest.approx(0.1307, abs=5e-5)
    assert norm.std[0] == pytest.approx(0.3081, abs=5e-5)


def test_idx_parser_reads_gz_and_raw_alike(tmp_path):
    (tmp_path / "gz").mkdir()
    (tmp_path / "raw").mkdir()
    written = write_mnist_style(tmp_path / "gz")
    write_mnist_style(tmp_path / "raw", compress=False)
    # The checksums are those of the real MNIST, so small files fail them ...
    with pytest.raises(UserError, match="checksum mismatch"):
        load_mnist(tmp_path / "gz")
    # ... while the parser itself reads both encodings to the same arrays.
    for role, stem in IDX_FILES.items():
        ndim = written[role].ndim
        gz = read_idx(tmp_path / "gz" / f"{stem}.gz", ndim, "fix it")
        raw = read_idx(tmp_path / "raw" / stem, ndim, "fix it")
        np.testing.assert_array_equal(gz, written[role])
        np.testing.assert_array_equal(raw, written[role])


def test_read_idx_returns_header_shape(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / "x.idx"
    path.write_bytes(idx_bytes(images))
    out = read_idx(path, 3, "fix it")
    assert out.shape == (2, 3, 4) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, images)


def bad_file_message(tmp_path, data, ndim=3, sha256=None):
    """Write ``data`` to a file, read it as IDX, return the UserError message."""
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(data))
    with pytest.raises(UserError) as info:
        read_idx(path, ndim, "re-copy it", sha256)
    message = str(info.value)
    assert path.name in message and "re-copy it" in message
    return message


IMAGES = np.zeros((5, 28, 28), dtype=np.uint8)


def test_truncated_file(tmp_path):
    message = bad_file_message(tmp_path, idx_bytes(IMAGES)[:1234])
    assert "truncated" in message
    assert "5x28x28" in message and "3920 bytes" in message and str(1234 - 16) in message


def test_file_too_short_for_a_header(tmp_path):
    assert "truncated" in bad_file_message(tmp_path, b"\x00\x00")
    assert "truncated" in bad_file_message(tmp_path, idx_bytes(IMAGES)[:10])


def test_wrong_magic_number(tmp_path):
    data = b"\x12\x34" + idx_bytes(IMAGES)[2:]
    message = bad_file_message(tmp_path, data)
    assert "wrong magic number 0x12340803" in message and "0x00000803" in message


def test_wrong_dtype_code(tmp_path):
    message = bad_file_message(tmp_path, idx_bytes(IMAGES, code=0x0D))
    assert "dtype code 0x0D (float32)" in message and "0x08" in message


def test_wrong_number_of_dimensions(tmp_path):
    labels = np.zeros(5, dtype=np.uint8)
    message = bad_file_message(tmp_path, idx_bytes(labels), ndim=3)
    assert "1 dimensions, expected 3" in message


def test_size_does_not_match_header(tmp_path):
    message = bad_file_message(tmp_path, idx_bytes(IMAGES) + b"\x00" * 7)
    assert "does not match the header" in message and "7 extra" in message


def test_checksum_mismatch(tmp_path):
    message = bad_file_message(tmp_path, idx_bytes(IMAGES), sha256="0" * 64)
    assert "checksum mismatch" in message and "0" * 64 in message


def test_damaged_gzip_stream(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(IMAGES))[:-12])
    with pytest.raises(UserError, match="t10k-images-idx3-ubyte.gz: damaged gzip"):
        read_idx(path, 3, "re-copy it")


def test_a_gzip_bomb_is_refused_without_reading_it_all(tmp_path):
    """A valid header, then far more data than it declares: counted, never held."""
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(idx_bytes(np.zeros(10, np.uint8)))
        zeros = bytes(2**20)
        for _ in range(40):
            f.write(zeros)
    assert path.stat().st_size < 2**20
    with pytest.raises(UserError, match="size does not match the header"):
        read_idx(path, 1, "re-copy it")


def test_a_header_declaring_too_much_is_refused_before_reading(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(
        b"\x00\x00\x08\x03" + b"".join(n.to_bytes(4, "big") for n in (100_000, 4096, 4096))
    )
    with pytest.raises(UserError, match="more than the"):
        read_idx(path, 3, "re-copy it")


def test_missing_file(tmp_path):
    with pytest.raises(UserError) as info:
        load_mnist(tmp_path)
    message = str(info.value)
    assert "train-images-idx3-ubyte.gz: file not found" in message
    assert "git checkout -- data/mnist/" in message


def test_images_and_labels_of_different_counts(tmp_path):
    write_mnist_style(tmp_path)
    labels = np.zeros(11, dtype=np.uint8)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    with pytest.raises(UserError) as info:
        load_dataset("fashion-mnist", data_dir=tmp_path)  # same IDX reader, no checksums
    message = str(info.value)
    assert "train-images-idx3-ubyte.gz holds 12 images" in message
    assert "train-labels-idx1-ubyte.gz holds 11 labels" in message


def test_label_out_of_range(tmp_path):
    write_mnist_style(tmp_path)
    labels = np.array([0, 1, 12, 3, 4], dtype=np.uint8)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    with pytest.raises(UserError, match=r"t10k-labels-idx1-ubyte.gz: label 12 at index 2"):
        load_dataset("fashion-mnist", data_dir=tmp_path)


def test_altered_shipped_file_fails_its_checksum(tmp_path):
    for path in MNIST_DIR.glob("*.gz"):
        shutil.copy(path, tmp_path / path.name)
    # Change one label: the file stays a perfectly valid IDX file.
    altered = tmp_path / "train-labels-idx1-ubyte.gz"
    data = bytearray(gzip.decompress(altered.read_bytes()))
    data[100] = (data[100] + 1) % 10
    altered.write_bytes(gzip.compress(bytes(data)))
    with pytest.raises(UserError) as info:
        load_mnist(tmp_path)
    message = str(info.value)
    assert "train-labels-idx1-ubyte.gz: checksum mismatch" in message
    assert "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5" in message
