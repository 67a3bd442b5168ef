"""The set-up every notebook shares, in one import: ``from nbsetup import ROOT``.

Puts the repository on ``sys.path`` (core/, data/, layers/ and model/ are plain folders of it,
never installed), keeps figures small (the notebooks are committed with their outputs) and
quiets one harmless warning. ``ROOT`` is the repository's folder.
"""

import sys
import warnings
from pathlib import Path

import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
plt.rcParams["figure.dpi"] = 75
# pooch (the dataset downloader) imports tqdm.auto, which warns in a kernel without
# ipywidgets; nothing here downloads or shows a progress bar.
warnings.filterwarnings("ignore", message="IProgress not found")


def one_blas_thread():
    """BLAS on one thread, as model/shards.py sets it for the library: the same matrix
    products on the same arrays then give the same bits by hand and in the library."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")
