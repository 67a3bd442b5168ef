"""Sweeps on a Dask cluster (``sweep --scheduler``): a real LocalCluster of two worker processes
of one thread each gives exactly the table of local processes (the same seeds, one thread per
run), and still does when a worker is killed in the middle of a run.

The runs are tiny: an MLP on 200 of the 8x8 digits for one epoch, four per sweep.
"""

import os
import signal
from pathlib import Path

import pandas as pd
import pytest
from dask.distributed import Client, LocalCluster, WorkerPlugin

import main

pytestmark = pytest.mark.slow  # a cluster of two processes and eight training runs

ROOT = Path(main.__file__).resolve().parent
MLP = str(ROOT / "plot" / "sweep_digits" / "mlp_digits.json")
SWEEP = ["sweep", "--dataset", "digits", "--arch", MLP, "--limit", "200", "--epochs", "1",
         "--seeds", "2", "--set", "optimizer=sgd,adam"]  # fmt: skip


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


class KillOnFirstRun(WorkerPlugin):
    """SIGKILLs the worker process that starts the sweep's first run, once: ``marker`` (a file
    it creates first) tells the workers the nanny starts again that it is done.

    In the worker, not in a thread of the test that polls the scheduler: the runs are so short
    once the workers are warm that a poll could miss them all (a CI run did).
    """

    name = "kill-on-first-run"

    def __init__(self, marker):
        self.marker = str(marker)

    def transition(self, key, start, finish, **kwargs):
        if finish == "executing":
            try:
                Path(self.marker).touch(exist_ok=False)
            except FileExistsError:
                return
            os.kill(os.getpid(), signal.SIGKILL)


def test_a_killed_worker_costs_a_rerun_not_a_row(cluster, local_runs, tmp_path):
    marker = tmp_path.parent / f"{tmp_path.name}-killed"
    with Client(cluster.scheduler_address) as client:
        client.register_plugin(KillOnFirstRun(marker))
        try:
            argv = [*SWEEP, "--scheduler", cluster.scheduler_address, "--out", str(tmp_path)]
            assert main.main(argv) == 0
        finally:
            client.unregister_worker_plugin(KillOnFirstRun.name)
    assert marker.exists(), "no worker was killed"
    runs = pd.read_csv(tmp_path / "runs.csv")
    pd.testing.assert_frame_equal(runs, local_runs, check_exact=True)
    assert len(list(tmp_path.glob("*/result.json"))) == 4
