"""Run folders and model files are never lost: a run owns its folder, a stop by signal writes
its checkpoint, a command never writes over its own input, and a sweep's size is bounded.

The commands run as child processes under a memory limit, as a user runs them: each refusal is
one line on stderr with a non-zero exit, and every file that was there before is byte-identical
afterwards.
"""

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import main
from core.experiments.sweep import MAX_RUNS

ROOT = Path(main.__file__).resolve().parent
MEMORY_LIMIT = 6 * 2**30  # bytes of address space: BLAS reserves much, a run uses little
QUICK = ["--dataset", "digits", "--epochs", "1", "--limit", "300"]


def limited():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def python_main(*argv, cwd, **kwargs):
    """``python main.py *argv`` in ``cwd``, under the memory limit: the CompletedProcess."""
    return subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *map(str, argv)],
        cwd=cwd,
        env={**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limited,
        **kwargs,
    )


def snapshot(folder):
    """{path: bytes} of every file under ``folder`` (symlinks as what they point to)."""
    return {p: p.read_bytes() for p in Path(folder).rglob("*") if p.is_file()}


def refused(done, *said):
    """True for one line on stderr, no traceback, exit status 2, saying each of ``said``."""
    lines = done.stderr.strip().splitlines()
    return done.returncode == 2 and len(lines) == 1 and all(s in lines[0] for s in said)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished quick run folder (digits, one epoch)."""
    folder = tmp_path_factory.mktemp("trained")
    assert python_main("train", *QUICK, "--out", "run", cwd=folder).returncode == 0
    return folder / "run"


# -- a run owns its folder ---------------------------------------------------------------------

HOLD = """
import sys
from pathlib import Path
from core.learn.runs import owning
with owning(Path(sys.argv[1])):
    print("holding", flush=True)
    sys.stdin.read()  # until the test closes our stdin
"""


def holding(folder):
    """A child process that holds the run folder ``folder`` until its stdin is closed."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "holding"
    return holder


@pytest.mark.slow
def test_a_second_process_on_a_run_folder_is_refused_naming_the_first(tmp_path):
    holder = holding(tmp_path / "run")
    try:
        done = python_main("train", *QUICK, "--out", "run", cwd=tmp_path)
        assert refused(done, "run is in use by another run", f"process {holder.pid}")
        assert not (tmp_path / "run" / "best_params.npz").exists()
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert not (tmp_path / "run").exists()  # it made the folder and wrote nothing into it


@pytest.mark.slow
def test_a_killed_process_leaves_no_lock_behind(tmp_path):
    holder = holding(tmp_path / "run")
    holder.kill()  # no chance to clean up: the kernel drops its lock
    holder.wait(timeout=60)
    holder.stdin.close()
    done = python_main("train", *QUICK, "--out", "run", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "run" / "run.lock").exists()


def test_a_users_own_figure_in_the_run_folder_is_refused_never_replaced(tmp_path):
    mine = tmp_path / "run" / "figures" / "history.png"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"my own picture")
    before = snapshot(tmp_path)
    done = python_main("train", *QUICK, "--out", "run", cwd=tmp_path)
    assert refused(done, "holds files that are not a run's", "figures/history.png")
    assert snapshot(tmp_path) == before
    # said so: --overwrite replaces it
    assert python_main("train", *QUICK, "--out", "run", "--overwrite", cwd=tmp_path).returncode == 0
    assert mine.read_bytes() != b"my own picture"


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP])
def test_a_stop_by_signal_writes_the_checkpoint_as_ctrl_c_does(tmp_path, stop):
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), "train", "--dataset", "digits", "--epochs", "30",
         "--out", "run"],
        cwd=tmp_path,
        env={**os.environ, "MPLBACKEND": "Agg"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=limited,
    )  # fmt: skip
    for line in process.stdout:  # the first epoch's line: the run is under way
        if line.startswith("epoch"):
            break
    process.send_signal(stop)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + stop
    assert err.strip().splitlines() == [
        "interrupted: checkpoint written to run/checkpoint.npz; continue with: "
        "python main.py train --resume --out run"
    ]
    resumed = python_main("train", "--resume", "--out", "run", "--epochs", "30", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr


# -- a command never writes over its input ------------------------------------------------------


def test_quantize_through_a_symlink_to_the_models_folder_is_refused(trained, tmp_path):
    link = tmp_path / "link"
    link.symlink_to(trained, target_is_directory=True)
    before = snapshot(trained)
    done = python_main(
        "quantize", "--params", trained / "best_params.npz", "--out", link / "best_params.npz",
        "--overwrite", cwd=tmp_path,
    )  # fmt: skip
    assert refused(done, "which this command reads")
    assert snapshot(trained) == before


def test_quantize_onto_a_hard_link_of_its_input_is_refused(trained, tmp_path):
    twin = tmp_path / "twin.npz"
    os.link(trained / "best_params.npz", twin)
    before = snapshot(trained)
    done = python_main("quantize", "--params", trained / "best_params.npz", "--out", twin,
                       "--overwrite", cwd=tmp_path)  # fmt: skip
    assert refused(done, "which this command reads") and snapshot(trained) == before


def test_prune_never_writes_over_the_model_it_prunes(trained, tmp_path):
    model = tmp_path / "sparsity_0.5.npz"
    model.write_bytes((trained / "best_params.npz").read_bytes())
    before = snapshot(tmp_path)
    done = python_main("prune", "--params", model, "--sparsity", "0.5", "--finetune-epochs", "0",
                       "--out", tmp_path, "--overwrite", cwd=tmp_path)  # fmt: skip
    assert refused(done, "which this command reads") and snapshot(tmp_path) == before


def test_a_run_started_from_a_model_in_its_own_folder_keeps_that_model(trained, tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "best_params.npz").write_bytes((trained / "best_params.npz").read_bytes())
    before = snapshot(tmp_path)
    done = python_main("train", *QUICK, "--out", "run", "--overwrite", "--init-from",
                       "run/best_params.npz", cwd=tmp_path)  # fmt: skip
    assert refused(done, "which this command reads") and snapshot(tmp_path) == before


# -- a sweep's size --------------------------------------------------------------------------------


def test_a_sweep_grid_beyond_the_limit_is_refused_before_anything_starts(tmp_path):
    values = ",".join(f"{0.001 * (i + 1):g}" for i in range(1000))
    sizes = ",".join(str(i + 1) for i in range(1000))
    done = python_main("sweep", "--set", f"lr={values}", "--set", f"batch_size={sizes}",
                       "--out", "sweep", cwd=tmp_path)  # fmt: skip
    assert refused(done, "would train 3,000,000 runs", f"at most {MAX_RUNS:,}")
    assert not (tmp_path / "sweep").exists()


def test_a_sweep_with_more_jobs_than_cores_is_refused(tmp_path):
    done = python_main("sweep", "--jobs", "1000", "--out", "sweep", cwd=tmp_path)
    assert refused(done, "--jobs 1000", "cores")
    assert not (tmp_path / "sweep").exists()


@pytest.mark.parametrize(
    "setting, said",
    [
        ("arch=minivgg,no_such_arch", "unknown architecture 'no_such_arch'"),
        ("arch=blueprint.json", "blueprint.json is not valid JSON"),
        ("init_from=minivgg.npz", "minivgg.npz: no such file"),
        ("freeze=conv1", "--freeze conv1 needs --init-from"),
        ("val_size=100,5000", "--val-size must be between 1 and 299"),
    ],
)
def test_a_configuration_train_would_refuse_stops_the_sweep_before_any_run(
    tmp_path, setting, said
):
    """Its last configuration included: the first ones are not trained for hours first."""
    (tmp_path / "blueprint.json").write_text("[{\"type\": ")
    done = python_main("sweep", *QUICK, "--set", setting, "--out", "sweep", cwd=tmp_path)
    key, values = setting.split("=")
    assert refused(done, f"sweep configuration {key}={values.split(',')[-1]}", said), done.stderr
    assert not (tmp_path / "sweep").exists()


@pytest.mark.parametrize("setting, option", [("clip_norm=0", "--clip-norm"),
                                             ("batch_size=0", "--batch-size"),
                                             ("epochs=0", "--epochs")])  # fmt: skip
def test_a_set_value_is_refused_in_the_words_of_its_train_option(tmp_path, setting, option):
    swept = python_main("sweep", "--set", setting, "--out", "sweep", cwd=tmp_path)
    trained = python_main("train", option, "0", cwd=tmp_path)
    key = setting.split("=")[0]
    assert refused(swept, f"--set {setting}: {key} must be")
    assert refused(trained, option)
    # the same check, so the same words after the option's name
    assert swept.stderr.split(" must be ")[1] == trained.stderr.split(" must be ")[1].replace(
        "; see python main.py train --help", ""
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "damage", [b"{not json", b"[1, 2]", b'{"config": {}, "activation": null, "row": {"val_acc": '
               b'"high", "test_acc": 2}}', b"\xff\xfe"]  # fmt: skip
)
def test_a_damaged_result_file_is_reported_and_its_run_done_again(tmp_path, damage):
    argv = ["sweep", "--dataset", "digits", "--optimizers", "adam", "--seeds", "1", "--epochs",
            "1", "--limit", "200", "--jobs", "1", "--out", "sweep"]  # fmt: skip
    assert python_main(*argv, cwd=tmp_path).returncode == 0
    (result,) = (tmp_path / "sweep").glob("*/result.json")
    good = json.loads(result.read_text())
    result.write_bytes(damage)
    done = python_main(*argv, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"{result.relative_to(tmp_path)}:" in done.stdout and "done again" in done.stdout
    assert json.loads(result.read_text())["row"] == good["row"]  # the same run, the same row
