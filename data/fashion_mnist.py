"""Fashion-MNIST (Zalando; MIT licence): 28x28 grey images of 10 kinds of clothing, as IDX files.

Looked for, in order: the folder the user names; ``/usr/share/datasets/fashion-mnist``
(where Debian's ``dataset-fashion-mnist`` package puts it); else downloaded from the
official address (GitHub as a mirror) into ``<cache>/fashion-mnist`` with MD5 checks.
Files from a folder are checked for structure (see ``read_idx``), not checksums: a
re-compressed copy is as good as the original.
"""

from pathlib import Path

from data.download import default_cache_dir, fetch
from data.mnist_loader import IDX_FILES, find_idx_files, load_idx_dataset

SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)
# MD5 of the official .gz files (github.com/zalandoresearch/fashion-mnist, README).
FASHION_MD5 = {
    "train_images": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train_labels": "25c81989df183df01b3e8a0aad5dffbe",
    "test_images": "bef4ecab320f06d8554ea6380940ec79",
    "test_labels": "bb300cfdad3c16e7a12a480ee83cd310",
}
FASHION_CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
DEBIAN_HINT = (
    "on Debian or Ubuntu, 'sudo apt-get install dataset-fashion-mnist' installs them into "
    f"{SYSTEM_DIR}, where they are found without --data-dir"
)
FASHION_REMEDY = (
    f"download the four Fashion-MNIST .gz files from {FASHION_MIRRORS[0]} into that folder "
    "(or call load_dataset('fashion-mnist') without data_dir to download them into the cache); "
    + DEBIAN_HINT
)


def load_fashion_mnist(data_dir=None, cache_dir=None):
    """Fashion-MNIST: 60000 training and 10000 test images, 28x28 grey levels, 10 classes.

    data_dir:  optional folder holding the four IDX files (raw or .gz), used alone.
    cache_dir: download cache (default ``default_cache_dir()``), used only when
               neither ``data_dir`` nor the Debian folder provides the files.
    Returns Dataset "fashion-mnist": x uint8 (N, 1, 28, 28), y int64 (N,).
    """
    if data_dir is not None:
        paths = find_idx_files(data_dir)
    elif all(path.is_file() for path in find_idx_files(SYSTEM_DIR).values()):
        paths = find_idx_files(SYSTEM_DIR)
    else:
        paths = _download(Path(cache_dir or default_cache_dir()) / "fashion-mnist")
    return load_idx_dataset("fashion-mnist", paths, FASHION_CLASS_NAMES, FASHION_REMEDY)


def _download(folder):
    """Fetch the four official .gz files into ``folder``; return dict role -> Path."""
    alternative = (
        "put the four Fashion-MNIST files in a folder and pass --data-dir <that folder> "
        f"(data_dir= in Python); or, {DEBIAN_HINT}"
    )
    paths = {}
    for role, stem in IDX_FILES.items():
        fname = f"{stem}.gz"
        urls = [base + fname for base in FASHION_MIRRORS]
        paths[role] = fetch(fname, urls, FASHION_MD5[role], folder, alternative)
    return paths
