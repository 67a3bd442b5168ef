"""The training figures of a model's run, for the live page's Model tab.

A run folder written by ``train`` holds ``best_params.npz``, ``log.csv`` and
``figures/`` (``history.png``, ``confusion_matrix.png``); the repository keeps the
shipped model's in ``plot/`` beside ``best_params.npz``. Only those fixed names are
looked up, and only beside the model file the server was started with: the browser
asks for a figure by its name in ``FIGURES`` and never names a file.
"""

import io
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from core import plots
from data.errors import UserError

FIGURES = {
    "history.png": "Loss and accuracy per epoch",
    "confusion_matrix.png": "Confusion matrix (test set)",
}
FIGURE_FOLDERS = ("figures", "plot")  # train's run layout, the repository's for its model
LOG_NAME = "log.csv"


def run_figures(params_path):
    """{name: PNG bytes} of the run that made ``params_path``, read once at start.

    Each name of ``FIGURES`` is taken from ``figures/`` or ``plot/`` beside the model
    file. Without a ``history.png`` but with a ``log.csv`` there (or beside the file),
    the curves are drawn from the log with ``plots.plot_history``. A run without them
    gets none: the Model tab then says so.
    """
    folder = Path(params_path).resolve().parent
    found = {}
    for name in FIGURES:
        path = next((f / name for f in _folders(folder) if (f / name).is_file()), None)
        if path is not None:
            found[name] = path.read_bytes()
    if "history.png" not in found:
        log = next((f / LOG_NAME for f in _folders(folder) if (f / LOG_NAME).is_file()), None)
        if log is not None:
            found["history.png"] = _history_png(log)
    return found


def _folders(folder):
    """Where a run's figures and log may be: the model's folder and its figure folders."""
    return [folder, *(folder / name for name in FIGURE_FOLDERS)]


def _history_png(log_path):
    """The loss and accuracy curves of ``log_path`` (a training log.csv) as PNG bytes."""
    try:
        log = pd.read_csv(log_path)
    except (OSError, ValueError) as err:
        raise UserError(f"{log_path}: cannot read the training log ({err})") from err
    figure = plots.plot_history(log, caption=str(log_path))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()
