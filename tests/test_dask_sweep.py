"""Sweeps on a Dask cluster (``sweep --scheduler``): a real LocalCluster of two worker processes
of one thread each gives exactly the table of local processes (the same seeds, one thread per
run), and still does when a worker is killed in the middle of a run.

The runs are tiny: an MLP on 200 of the 8x8 digits for one epoch, four per sweep.
"""

import os
import signal
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from dask.distributed import Client, LocalCluster

import main

pytestmark = pytest.mark.slow  # a cluster of two processes and eight training runs

ROOT = Path(main.__file__).resolve().parent
MLP = str(ROOT / "plot" / "sweep_digits" / "mlp_digits.json")
SWEEP = ["sweep", "--dataset", "digits", "--arch", MLP, "--limit", "200", "--epochs", "1",
         "--seeds", "2", "--set", "optimizer=sgd,adam"]  # fmt: skip
WAIT_S = 120  # the longest wait for a run to finish on a busy 2-core machine


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def local_runs(tmp_path_factory):
    """The table of the sweep run in local processes."""
    out = tmp_path_factory.mktemp("local")
    assert main.main([*SWEEP, "--jobs", "2", "--out", str(out)]) == 0
    return pd.read_csv(out / "runs.csv")


def test_the_cluster_gives_exactly_the_table_of_local_processes(
    cluster, local_runs, tmp_path, capsys
):
    argv = [*SWEEP, "--scheduler", cluster.scheduler_address, "--out", str(tmp_path)]
    assert main.main(argv) == 0
    assert f"on the Dask cluster at {cluster.scheduler_address}" in capsys.readouterr().out
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert len(runs) == 4
    pd.testing.assert_frame_equal(runs, local_runs, check_exact=True)
    assert len(list(tmp_path.glob("*/result.json"))) == 4


def kill_a_busy_worker(scheduler, killed):
    """As soon as a worker process holds a run, SIGKILL it; records the worker's address and
    the tasks it held in ``killed``.

    It does not wait for a first run to finish: the four runs take about a second each, and
    the last ones could end between two polls (a CI run once found no worker busy then).
    """
    with Client(scheduler) as client:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            busy = {w: tasks for w, tasks in client.processing().items() if tasks}
            if busy:
                worker, tasks = next(iter(busy.items()))
                pid = client.run(os.getpid, workers=[worker])[worker]
                os.kill(pid, signal.SIGKILL)
                killed.update(worker=worker, tasks=tasks)
                return
            time.sleep(0.01)  # a poll, not a wait for something to happen in time


def test_a_killed_worker_costs_a_rerun_not_a_row(cluster, local_runs, tmp_path):
    killed = {}
    killer = threading.Thread(
        target=kill_a_busy_worker, args=(cluster.scheduler_address, killed)
    )
    killer.start()
    argv = [*SWEEP, "--scheduler", cluster.scheduler_address, "--out", str(tmp_path)]
    assert main.main(argv) == 0
    killer.join(WAIT_S)
    assert killed, "no worker was ever seen holding a run"
    runs = pd.read_csv(tmp_path / "runs.csv")
    pd.testing.assert_frame_equal(runs, local_runs, check_exact=True)
    assert len(list(tmp_path.glob("*/result.json"))) == 4
