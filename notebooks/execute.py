"""Run the notebooks top to bottom and save them in place, with their outputs.

    python notebooks/execute.py                   # every notebook of NOTEBOOKS
    python notebooks/execute.py 03_forward.ipynb  # only the ones named

The notebooks are kept with their outputs, so that a code host shows the figures:
re-run this after changing a notebook or shipping a new best_params.npz. Each
notebook runs in a fresh "python3" kernel (ipykernel) whose working directory is
this folder, as in Jupyter. A cell that fails stops everything and leaves that
notebook's file as it was; a finished one replaces its file atomically.
"""

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS_DIR = Path(__file__).resolve().parent
NOTEBOOKS = (  # the learning path, in its order (docs/notebooks.md)
    "01_one_neuron.ipynb",
    "02_convolution_by_hand.ipynb",
    "03_forward.ipynb",
    "04_backward.ipynb",
    "05_update.ipynb",
    "06_experiment.ipynb",
    "07_playground.ipynb",
    "08_architectures.ipynb",
    "09_inside.ipynb",
)
CELL_TIMEOUT_S = 600


def execute_notebook(path, cell_timeout=CELL_TIMEOUT_S, cwd=None):
    """Execute a notebook in memory and return it with its outputs; the file is not changed.

    path:         str or Path of the ``.ipynb`` file.
    cell_timeout: seconds one cell may run before the run fails.
    cwd:          the kernel's working directory; default the notebook's folder, as in Jupyter.
    Returns the executed nbformat.NotebookNode. Raises nbclient's CellExecutionError
    (naming the cell and its traceback) when a cell fails, CellTimeoutError on a timeout.
    """
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=cell_timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(cwd or path.parent)}},
        record_timing=False,  # no timestamps in the saved file: re-runs give small diffs
    )
    return client.execute()


def main(argv):
    """Execute and save each notebook named in ``argv`` (default: all); returns the exit status."""
    sys.path.insert(0, str(NOTEBOOKS_DIR.parent))  # core/ is a folder of the repository
    from data.files import atomic_write_text

    for name in argv or NOTEBOOKS:
        path = NOTEBOOKS_DIR / name
        started = time.perf_counter()
        nb = execute_notebook(path)
        atomic_write_text(path, nbformat.writes(nb) + "\n")
        size_kb = path.stat().st_size / 1024
        print(f"{path.name}: executed in {time.perf_counter() - started:.0f} s, {size_kb:.0f} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
