"""Fashion-MNIST, CIFAR-10, digits, the toy sets and load_dataset, all without the network.

Downloads go through ``data.download.make_downloader``, replaced here by fakes
that write bytes the test chose (or fail as an offline machine would).
"""

import gzip
import hashlib
import io
import tarfile

import numpy as np
import pytest
import requests

import data.cifar10
import data.download
import data.fashion_mnist
from data import (
    DATASETS,
    default_cache_dir,
    load_dataset,
    make_circles,
    make_line,
    make_polynomial,
    make_spiral,
    make_zones,
    read_cifar10_archive,
)
from data.errors import UserError
from data.mnist_loader import IDX_FILES


def idx_bytes(array):
    """The IDX encoding of a uint8 array: magic, big-endian dims, values."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def fashion_files(n_train=12, n_test=5):
    """Small Fashion-MNIST-style files: dict file name -> .gz bytes, and the arrays."""
    rng = np.random.default_rng(1)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": np.arange(n_train, dtype=np.uint8) % 10,
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": np.arange(n_test, dtype=np.uint8) % 10,
    }
    files = {f"{IDX_FILES[r]}.gz": gzip.compress(idx_bytes(a)) for r, a in arrays.items()}
    return files, arrays


class FakeDownloader:
    """Stands in for pooch's HTTPDownloader: serves bytes by file name, or fails."""

    def __init__(self, files, fail_on=()):
        self.files, self.fail_on, self.urls = files, fail_on, []

    def __call__(self, url, output_file, pooch):
        self.urls.append(url)
        if any(url.startswith(prefix) for prefix in self.fail_on):
            raise requests.ConnectionError(f"no route to host for {url}")
        with open(output_file, "wb") as f:
            f.write(self.files[url.rsplit("/", 1)[-1]])


@pytest.fixture
def fake_network(monkeypatch):
    """Install a FakeDownloader; return a function (files, fail_on) -> the fake."""

    def install(files, fail_on=()):
        fake = FakeDownloader(files, fail_on)
        monkeypatch.setattr(data.download, "make_downloader", lambda: fake)
        return fake

    return install


@pytest.fixture
def no_system_fashion(monkeypatch, tmp_path):
    monkeypatch.setattr(data.fashion_mnist, "SYSTEM_DIR", tmp_path / "no-such-dir")


def md5(data):
    return hashlib.md5(data).hexdigest()


# Fashion-MNIST


def check_fashion(dataset, arrays):
    assert dataset.name == "fashion-mnist"
    assert dataset.x_train.shape == (12, 1, 28, 28) and dataset.x_train.dtype == np.uint8
    assert dataset.y_test.dtype == np.int64
    assert dataset.class_names[0] == "T-shirt/top" and dataset.class_names[9] == "Ankle boot"
    np.testing.assert_array_equal(dataset.x_train[:, 0], arrays["train_images"])
    np.testing.assert_array_equal(dataset.y_test, arrays["test_labels"])


def test_fashion_from_user_folder(tmp_path, fake_network):
    fake = fake_network({})
    files, arrays = fashion_files()
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    check_fashion(load_dataset("fashion-mnist", data_dir=tmp_path), arrays)
    assert fake.urls == []


def test_fashion_from_user_folder_missing_file(tmp_path, fake_network):
    fake = fake_network({})
    files, _ = fashion_files()
    for name, content in files.items():
        if not name.startswith("t10k-images"):
            (tmp_path / name).write_bytes(content)
    with pytest.raises(UserError) as info:
        load_dataset("fashion_mnist", data_dir=tmp_path)
    message = str(info.value)
    assert "t10k-images-idx3-ubyte.gz: file not found" in message
    assert "fashion-mnist.s3-website.eu-central-1.amazonaws.com" in message
    assert fake.urls == []


def test_fashion_from_debian_folder(tmp_path, monkeypatch, fake_network):
    fake = fake_network({})
    files, arrays = fashion_files()
    for name, content in files.items():
        (tmp_path / name.removesuffix(".gz")).write_bytes(gzip.decompress(content))
    monkeypatch.setattr(data.fashion_mnist, "SYSTEM_DIR", tmp_path)
    check_fashion(load_dataset("fashion-mnist", cache_dir=tmp_path / "cache"), arrays)
    assert fake.urls == []


def test_fashion_download_checks_md5_and_caches(
    tmp_path, monkeypatch, fake_network, no_system_fashion
):
    files, arrays = fashion_files()
    md5s = {role: md5(files[f"{stem}.gz"]) for role, stem in IDX_FILES.items()}
    monkeypatch.setattr(data.fashion_mnist, "FASHION_MD5", md5s)
    fake = fake_network(files)
    check_fashion(load_dataset("fashion-mnist", cache_dir=tmp_path), arrays)
    assert len(fake.urls) == 4 and all("amazonaws" in url for url in fake.urls)
    assert sorted(p.name for p in (tmp_path / "fashion-mnist").iterdir()) == sorted(files)
    load_dataset("fashion-mnist", cache_dir=tmp_path)  # cached: no second download
    assert len(fake.urls) == 4


def test_fashion_download_falls_back_to_the_mirror(
    tmp_path, monkeypatch, fake_network, no_system_fashion
):
    files, arrays = fashion_files()
    md5s = {role: md5(files[f"{stem}.gz"]) for role, stem in IDX_FILES.items()}
    monkeypatch.setattr(data.fashion_mnist, "FASHION_MD5", md5s)
    fake = fake_network(files, fail_on=("http://fashion-mnist.s3",))
    check_fashion(load_dataset("fashion-mnist", cache_dir=tmp_path), arrays)
    assert sum("raw.githubusercontent.com" in url for url in fake.urls) == 4


def test_fashion_offline_says_what_to_download_and_where(tmp_path, fake_network, no_system_fashion):
    fake_network({}, fail_on=("http",))
    with pytest.raises(UserError) as info:
        load_dataset("fashion-mnist", cache_dir=tmp_path)
    message = str(info.value)
    target = tmp_path / "fashion-mnist" / "train-images-idx3-ubyte.gz"
    assert f"{target}: download failed" in message
    assert "ConnectionError" in message
    assert "amazonaws.com/train-images-idx3-ubyte.gz yourself" in message
    assert "MD5 8d4fb7e6c68d591d4c3dfef9ec88bf0d" in message and f"put it at {target}" in message


def test_fashion_offline_names_the_debian_package_and_its_folder(
    tmp_path, fake_network, no_system_fashion
):
    fake_network({}, fail_on=("http",))
    with pytest.raises(UserError) as info:
        load_dataset("fashion-mnist", cache_dir=tmp_path)
    message = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert "/usr/share/datasets/fashion-mnist" in message


def test_a_long_download_error_is_cut_between_words():
    error = requests.ConnectionError("word " * 100 + "end")
    text = data.download.reason(error)
    assert text.endswith("word ...") and len(text) <= 250
    assert data.download.reason(requests.ConnectionError("short one")) == "short one"


def test_fashion_download_with_wrong_md5(tmp_path, fake_network, no_system_fashion):
    files, _ = fashion_files()  # not the real files: their MD5s are wrong
    fake_network(files)
    with pytest.raises(UserError) as info:
        load_dataset("fashion-mnist", cache_dir=tmp_path)
    message = str(info.value)
    assert "train-images-idx3-ubyte.gz: download failed" in message
    assert f"served a file of MD5 {md5(files['train-images-idx3-ubyte.gz'])}" in message
    assert "(MD5 8d4fb7e6c68d591d4c3dfef9ec88bf0d)" in message
    assert not (tmp_path / "fashion-mnist" / "train-images-idx3-ubyte.gz").exists()


# CIFAR-10 (binary version)


def cifar_archive(per_batch=4, test=3, drop=None, cut_test=0):
    """A small cifar-10-binary.tar.gz: returns (bytes, train records, test records)."""
    rng = np.random.default_rng(2)
    train = rng.integers(0, 256, (5 * per_batch, 3073), dtype=np.uint8)
    train[:, 0] = np.arange(5 * per_batch) % 10
    test_records = rng.integers(0, 256, (test, 3073), dtype=np.uint8)
    test_records[:, 0] = [9, 0, 4][:test]
    members = {
        f"data_batch_{i + 1}.bin": train[i * per_batch : (i + 1) * per_batch].tobytes()
        for i in range(5)
    }
    members["test_batch.bin"] = test_records.tobytes()[: len(test_records.tobytes()) - cut_test]
    members["batches.meta.txt"] = b"airplane\nautomobile\n"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in members.items():
            if name == drop:
                continue
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue(), train, test_records


def test_cifar10_reader_layout(tmp_path):
    archive, train, test = cifar_archive()
    path = tmp_path / "cifar-10-binary.tar.gz"
    path.write_bytes(archive)
    ds = read_cifar10_archive(path)
    assert ds.name == "cifar10" and ds.class_names[1] == "automobile"
    assert ds.x_train.shape == (20, 3, 32, 32) and ds.x_train.dtype == np.uint8
    assert ds.x_test.shape == (3, 3, 32, 32) and ds.y_train.dtype == np.int64
    np.testing.assert_array_equal(ds.y_train, train[:, 0])
    np.testing.assert_array_equal(ds.y_test, [9, 0, 4])
    # Record layout: label, 1024 red (32 rows of 32), 1024 green, 1024 blue.
    np.testing.assert_array_equal(ds.x_train[5, 0, 1], train[5, 1 + 32 : 1 + 64])
    np.testing.assert_array_equal(ds.x_train[5, 2, 31], train[5, 3073 - 32 :])
    assert ds.x_train.flags.c_contiguous and ds.x_train.flags.writeable


def test_cifar10_download_with_fake_fetcher(tmp_path, monkeypatch, fake_network):
    archive, train, _ = cifar_archive()
    monkeypatch.setattr(data.cifar10, "CIFAR10_MD5", md5(archive))
    fake = fake_network({"cifar-10-binary.tar.gz": archive})
    ds = load_dataset("cifar10", cache_dir=tmp_path)
    assert fake.urls == ["https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"]
    assert (tmp_path / "cifar10" / "cifar-10-binary.tar.gz").is_file()
    np.testing.assert_array_equal(ds.y_train, train[:, 0])


def test_cifar10_download_md5_mismatch(tmp_path, fake_network):
    archive, _, _ = cifar_archive()  # not the official archive: its MD5 differs
    fake_network({"cifar-10-binary.tar.gz": archive})
    with pytest.raises(UserError) as info:
        load_dataset("cifar10", cache_dir=tmp_path)
    message = str(info.value)
    assert "cifar-10-binary.tar.gz: download failed" in message
    assert f"served a file of MD5 {md5(archive)}" in message
    assert "MD5 c32a1d4ab5d03f1284b67883e8d87530" in message
    assert "data_dir=" in message


def test_cifar10_from_user_folder_checks_md5(tmp_path, monkeypatch, fake_network):
    fake = fake_network({})
    archive, _, _ = cifar_archive()
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(archive)
    with pytest.raises(UserError, match="cifar-10-binary.tar.gz: checksum mismatch: MD5"):
        load_dataset("cifar10", data_dir=tmp_path)
    monkeypatch.setattr(data.cifar10, "CIFAR10_MD5", md5(archive))
    assert load_dataset("cifar10", data_dir=tmp_path).x_train.shape == (20, 3, 32, 32)
    with pytest.raises(UserError, match="cifar-10-binary.tar.gz: file not found"):
        load_dataset("cifar10", data_dir=tmp_path / "empty")
    assert fake.urls == []


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"drop": "data_batch_3.bin"}, "data_batch_3.bin is missing from the archive"),
        ({"cut_test": 5}, "test_batch.bin: truncated or padded: 9214 bytes"),
    ],
)
def test_cifar10_bad_archives(tmp_path, kwargs, expected):
    archive, _, _ = cifar_archive(**kwargs)
    path = tmp_path / "cifar-10-binary.tar.gz"
    path.write_bytes(archive)
    with pytest.raises(UserError, match=expected):
        read_cifar10_archive(path)


def test_cifar10_not_an_archive(tmp_path):
    path = tmp_path / "cifar-10-binary.tar.gz"
    path.write_bytes(gzip.compress(b"not a tar file at all" * 100))
    with pytest.raises(UserError, match="cifar-10-binary.tar.gz: not a readable tar.gz"):
        read_cifar10_archive(path)


def test_cifar10_a_batch_declaring_gigabytes_is_refused_unread(tmp_path):
    """A tar header may declare any size: it is checked before the member is read."""
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    buffer = io.BytesIO()
    for name in names:
        info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
        info.size = 2**31 if name == "test_batch.bin" else 0
        buffer.write(info.tobuf(format=tarfile.GNU_FORMAT))
    path = tmp_path / "cifar-10-binary.tar.gz"
    path.write_bytes(gzip.compress(buffer.getvalue()))  # the 2 GiB never follow
    with pytest.raises(UserError, match="test_batch.bin: declares 2147483648 bytes"):
        read_cifar10_archive(path)


def test_cifar10_an_archive_of_too_many_members(tmp_path, monkeypatch):
    monkeypatch.setattr(data.cifar10, "MAX_TAR_MEMBERS", 3)
    archive, _, _ = cifar_archive()
    path = tmp_path / "cifar-10-binary.tar.gz"
    path.write_bytes(archive)
    with pytest.raises(UserError, match="more than 3 members"):
        read_cifar10_archive(path)


# digits, toy sets, load_dataset


def test_digits():
    ds = load_dataset("digits")
    assert ds.x_train.shape == (1437, 1, 8, 8) and ds.x_test.shape == (360, 1, 8, 8)
    assert ds.x_train.dtype == np.uint8 and ds.x_train.max() == 255
    assert ds.y_train.dtype == np.int64
    assert np.all(np.abs(np.bincount(ds.y_test, minlength=10) - 36) <= 1)
    again = load_dataset("digits")
    np.testing.assert_array_equal(ds.x_test, again.x_test)


def test_make_spiral():
    x, y = make_spiral(50, 4, np.random.default_rng(0), noise=0.1)
    assert x.shape == (200, 2) and x.dtype == np.float32
    assert y.dtype == np.int64 and np.bincount(y).tolist() == [50] * 4
    assert np.all(np.linalg.norm(x, axis=1) <= 1 + 1e-6)
    x2, _ = make_spiral(50, 4, np.random.default_rng(0), noise=0.1)
    x3, _ = make_spiral(50, 4, np.random.default_rng(1), noise=0.1)
    np.testing.assert_array_equal(x, x2)
    assert not np.array_equal(x, x3)


def test_make_circles():
    x, y = make_circles(101, np.random.default_rng(0), noise=0.0, factor=0.3)
    assert x.shape == (101, 2) and x.dtype == np.float32 and y.dtype == np.int64
    radius = np.linalg.norm(x, axis=1)
    np.testing.assert_allclose(radius[y == 0], 1.0, rtol=1e-6)
    np.testing.assert_allclose(radius[y == 1], 0.3, rtol=1e-6)
    assert np.bincount(y).tolist() == [50, 51]


def test_make_line_splits_the_plane_at_its_line():
    angle = 0.4
    x, y = make_line(201, np.random.default_rng(0), angle=angle, noise=0.0)
    assert x.shape == (201, 2) and x.dtype == np.float32 and y.dtype == np.int64
    assert np.bincount(y).tolist() == [100, 101]
    side = x @ np.array([-np.sin(angle), np.cos(angle)])  # signed distance from the line
    assert np.all((side > 0) == (y == 1))
    assert np.all(np.abs(side) <= 1 + 1e-6)
    noisy, _ = make_line(201, np.random.default_rng(0), angle=angle, noise=0.3)
    assert np.any((noisy @ np.array([-np.sin(angle), np.cos(angle)]) > 0) != (y == 1))


@pytest.mark.parametrize("dims", [2, 3])
def test_make_zones_gives_each_point_the_class_of_its_grid_cell(dims):
    x, y = make_zones(100, 3, np.random.default_rng(0), dims=dims)
    assert x.shape == (300, dims) and x.dtype == np.float32 and y.dtype == np.int64
    assert np.bincount(y).tolist() == [100] * 3
    assert np.all(np.abs(x) <= 1)
    cell = np.floor((x + 1) * 3 / 2).astype(int)  # 3 cells per side of [-1, 1]
    assert np.array_equal(cell.sum(axis=1) % 3, y)
    # every cell of a class gets points: the classes are stripes, not one block each
    assert len({tuple(c) for c in cell}) == 3**dims
    again, _ = make_zones(100, 3, np.random.default_rng(0), dims=dims)
    other, _ = make_zones(100, 3, np.random.default_rng(1), dims=dims)
    np.testing.assert_array_equal(x, again)
    assert not np.array_equal(x, other)


def test_make_polynomial_follows_its_polynomial_up_to_the_noise():
    x, y = make_polynomial(
        2000, np.random.default_rng(0), coefficients=(1.0, 0.0, -2.0), low=-1, high=2, noise=0.1
    )
    assert x.shape == (2000, 1) and x.dtype == np.float32 and y.dtype == np.float32
    assert x.min() >= -1 and x.max() < 2 and np.all(np.diff(x[:, 0]) >= 0)
    residual = y - (1 - 2 * x[:, 0] ** 2)
    assert abs(residual.mean()) < 0.01 and abs(residual.std() - 0.1) < 0.01
    x, y = make_polynomial(5, np.random.default_rng(0), coefficients=(0.5, 3.0), noise=0.0)
    np.testing.assert_allclose(y, 0.5 + 3 * x[:, 0], rtol=1e-6)


@pytest.mark.parametrize(
    "call",
    [
        lambda: make_line(1, np.random.default_rng(0)),
        lambda: make_zones(10, 1, np.random.default_rng(0)),
        lambda: make_zones(10, 3, np.random.default_rng(0), dims=0),
        lambda: make_polynomial(10, np.random.default_rng(0), low=1.0, high=1.0),
        lambda: make_polynomial(10, np.random.default_rng(0), noise=-0.1),
        lambda: make_spiral(0, 3, np.random.default_rng(0)),
        lambda: make_spiral(10, 1, np.random.default_rng(0)),
        lambda: make_circles(10, np.random.default_rng(0), noise=-1.0),
        lambda: make_circles(10, np.random.default_rng(0), factor=1.5),
    ],
)
def test_toy_sets_reject_bad_arguments(call):
    with pytest.raises(UserError):
        call()


@pytest.mark.parametrize(
    "name, n_train, n_test, dims, classes",
    [
        ("spiral", 900, 300, 2, 3),
        ("circles", 1000, 400, 2, 2),
        ("line", 600, 200, 2, 2),
        ("zone", 900, 300, 2, 3),
        ("zone3d", 1800, 600, 3, 3),
    ],
)
def test_toy_datasets_are_fixed(name, n_train, n_test, dims, classes):
    ds, again = load_dataset(name), load_dataset(name)
    assert ds.x_train.shape == (n_train, dims) and ds.x_test.shape == (n_test, dims)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert ds.n_classes == classes and not ds.regression
    assert np.ptp(np.bincount(ds.y_train, minlength=classes)) <= 1  # balanced
    np.testing.assert_array_equal(ds.x_train, again.x_train)
    assert not np.array_equal(ds.x_train[: len(ds.x_test)], ds.x_test)  # test set differs


def test_the_polynomial_dataset_is_a_fixed_regression_set():
    ds, again = load_dataset("polynomial"), load_dataset("polynomial")
    assert ds.x_train.shape == (500, 1) and ds.x_test.shape == (200, 1)
    assert ds.y_train.shape == (500,) and ds.y_train.dtype == np.float32
    assert ds.regression and ds.class_names == ("y",) and ds.input_shape == (1,)
    np.testing.assert_array_equal(ds.y_train, again.y_train)
    assert not np.array_equal(ds.x_train[:200], ds.x_test)


def test_unknown_dataset_lists_known_names():
    with pytest.raises(UserError) as info:
        load_dataset("imagenet")
    message = str(info.value)
    assert "'imagenet'" in message
    assert all(name in message for name in DATASETS)
    assert DATASETS == (
        "mnist",
        "fashion-mnist",
        "digits",
        "cifar10",
        "spiral",
        "circles",
        "line",
        "zone",
        "zone3d",
        "polynomial",
    )


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("NUMPY_CNN_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("NUMPY_CNN_CACHE")
    assert "numpy-cnn" in str(default_cache_dir())
