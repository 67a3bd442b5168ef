"""Robustness of the command line: bad input, interrupted runs and untrusted files.

A mistake the user can make ends with one line on stderr and exit status 2 (no traceback; --debug
shows it). A run killed with SIGKILL leaves whole files behind; one stopped with Ctrl-C writes a
checkpoint and says so; both resume to exactly the parameters of an uninterrupted run.
"""

import contextlib
import dataclasses
import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import main
from core.learn.config import RECIPES
from core.learn.train import Interrupted, Report, train
from data.errors import UserError
from model.blueprints import load_blueprint
from model.initialize_parameters import initialize_parameters
from model.params_io import load_checkpoint, load_model, save_model

ROOT = Path(main.__file__).resolve().parent
QUICK = ["--limit", "500", "--val-size", "100", "--epochs", "1"]

# The run that the interrupted subprocesses make, and the same run in-process.
RUN = ["--limit", "1000", "--epochs", "3", "--val-size", "100"]
RUN_CONFIG = dataclasses.replace(RECIPES["default"], limit=1000, epochs=3, val_size=100)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The broken and foreign files of the error cases, and a valid (untrained) model."""
    folder = tmp_path_factory.mktemp("files")
    text = folder / "notes.txt"
    text.write_text("not a model, not a picture\n")
    (folder / "invalid.json").write_text('[{"type": "relu"},')
    (folder / "unknown_layer.json").write_text('[{"type": "frobnicate"}]')
    conv = {"type": "conv", "name": "conv1", "filters": 2, "kernel": 3, "pad": 1}
    pool = {"type": "maxpool", "size": 2, "stride": 2}  # 28 -> 14 -> 7 -> 3 -> 1 -> too small
    fc = {"type": "fc", "name": "fc1", "units": 10}
    (folder / "six_pools.json").write_text(json.dumps([conv, *[pool] * 6, {"type": "flatten"}, fc]))
    (folder / "empty_run").mkdir()
    _, blueprint = load_blueprint("minivgg")
    meta = {
        "input_shape": [1, 28, 28],
        "dataset": "mnist",
        "class_names": [str(k) for k in range(10)],
        "normalization": {"mean": [0.13], "std": [0.31]},
        "config": {},
        "seed": 0,
    }
    params = initialize_parameters(blueprint, (1, 28, 28), np.random.default_rng(0))
    save_model(folder / "model.npz", params, blueprint, meta)
    return folder


# (name, argv with {f} for the files folder and {out} for a fresh run folder, the message's parts)
USER_ERRORS = [
    # (an unknown --optimizer or --dataset is argparse's choice: tests/test_first_hour.py)
    ("unknown arch", ["train", "--arch", "nope"], ["unknown architecture 'nope'", "minivgg"]),
    ("unknown arch in summary", ["summary", "--arch", "nope"], ["unknown architecture 'nope'"]),
    (
        "blueprint not JSON",
        ["train", "--arch", "{f}/invalid.json"],
        ["invalid.json", "not valid JSON"],
    ),
    (
        "blueprint with an unknown layer",
        ["train", "--arch", "{f}/unknown_layer.json"],
        ["unknown_layer.json", "unknown type 'frobnicate'"],
    ),
    (
        "architecture that does not fit 28x28",
        ["train", "--arch", "{f}/six_pools.json", *QUICK],
        ["layer maxpool5", "(2, 1, 1)", "window size 2"],
    ),
    (
        "val size too big",
        ["train", "--val-size", "600", *QUICK[:2]],
        ["--val-size", "between 1 and 499"],
    ),
    ("limit below 10", ["train", "--limit", "5"], ["--limit must be between 10 and 60000, got 5"]),
    (
        "missing params file",
        ["evaluate", "--params", "{f}/missing.npz"],
        ["missing.npz", "no such file"],
    ),
    (
        "params file that is not an npz",
        ["evaluate", "--params", "{f}/notes.txt"],
        ["notes.txt", "not an .npz archive"],
    ),
    (
        "predict with a params file that is not an npz",
        ["predict", "{f}/notes.txt", "--params", "{f}/notes.txt"],
        ["notes.txt", "not an .npz archive"],
    ),
    (
        "predict on a missing picture",
        ["predict", "{f}/missing.png", "--params", "{f}/model.npz"],
        ["missing.png", "no such file"],
    ),
    (
        "predict on a text file",
        ["predict", "{f}/notes.txt", "--params", "{f}/model.npz"],
        ["notes.txt", "not an image"],
    ),
    (
        "resume without a checkpoint",
        ["train", "--resume", "--out", "{f}/empty_run"],
        ["empty_run holds no run to resume (no checkpoint.npz)"],
    ),
    (
        "train output inside a regular file",
        ["train", *QUICK, "--out", "{f}/notes.txt/run"],
        ["notes.txt/run", "Not a directory"],
    ),
    (
        "sweep output inside a regular file",
        ["sweep", "--out", "{f}/notes.txt/sweep"],
        ["notes.txt/sweep", "Not a directory"],
    ),
]


def filled(argv, files, out):
    argv = [arg.format(f=files, out=out) for arg in argv]
    return argv if "--out" in argv or argv[0] != "train" else [*argv, "--out", str(out)]


@pytest.mark.parametrize(
    ("argv", "parts"), [case[1:] for case in USER_ERRORS], ids=[case[0] for case in USER_ERRORS]
)
def test_a_user_error_is_one_line_and_exit_status_2(argv, parts, files, tmp_path, capsys):
    argv = filled(argv, files, tmp_path / "run")
    assert main.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for part in parts:
        assert part in err

    with pytest.raises((UserError, OSError)) as caught:
        main.main(["--debug", *argv])
    assert parts[-1] in str(caught.value)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--preset", "nope"], "argument --preset: invalid choice: 'nope'"),
        (["train", "--lr", "0"], "argument --lr: must be a positive number, got 0"),
        (["train", "--lr", "-1"], "argument --lr: must be a positive number, got -1"),
        (["train", "--lr", "nan"], "argument --lr: must be a positive number, got nan"),
        (["train", "--lr", "inf"], "argument --lr: must be a positive number, got inf"),
        (["train", "--lr", "fast"], "argument --lr: invalid positive_float value: 'fast'"),
        (["train", "--batch-size", "0"], "argument --batch-size: must be a whole number >= 1"),
        (["train", "--epochs", "0"], "argument --epochs: must be a whole number >= 1, got 0"),
        (["--threads", "0", "summary"], "argument --threads: must be a whole number >= 1"),
    ],
)
def test_a_bad_option_value_is_refused_by_the_parser_with_exit_status_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exited:
        main.main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert message in err.splitlines()[-1]


def test_the_script_prints_one_line_and_exits_2_and_debug_shows_the_traceback():
    def run(*argv):
        return subprocess.run(
            [sys.executable, "main.py", *argv], cwd=ROOT, capture_output=True, text=True
        )

    plain, debug = run("summary", "--arch", "nope"), run("--debug", "summary", "--arch", "nope")
    assert plain.returncode == 2
    assert plain.stderr.startswith("error: unknown architecture 'nope'")
    assert plain.stderr.count("\n") == 1
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stderr
    assert "data.errors.UserError: unknown architecture 'nope'" in debug.stderr


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The folder of an uninterrupted RUN, trained in-process."""
    out = tmp_path_factory.mktemp("reference")
    train(RUN_CONFIG, out)
    return out


def assert_same_final_state(run_dir, reference_dir):
    """Final checkpoint, best model and log (timing aside) of two run folders are identical."""
    ckpt, ref = (load_checkpoint(d / "checkpoint.npz") for d in (run_dir, reference_dir))
    best, ref_best = (load_model(d / "best_params.npz") for d in (run_dir, reference_dir))
    for arrays, ref_arrays in [
        (ckpt.params, ref.params),
        (ckpt.opt_state, ref.opt_state),
        (best.params, ref_best.params),
    ]:
        assert sorted(arrays) == sorted(ref_arrays)
        for key in arrays:
            assert arrays[key].tobytes() == ref_arrays[key].tobytes(), key
    position = [
        {k: v for k, v in c.meta["run_state"].items() if k != "log_rows"} for c in (ckpt, ref)
    ]
    assert position[0] == position[1]  # the log rows hold timing; the log is compared below
    timing = ["seconds", "images_per_s"]
    logs = [pd.read_csv(d / "log.csv").drop(columns=timing) for d in (run_dir, reference_dir)]
    pd.testing.assert_frame_equal(*logs)


@contextlib.contextmanager
def interruptible_children():
    """Children started inside get Python's Ctrl-C handler even if this process ignores SIGINT.

    A handler (unlike SIG_IGN) is reset to the default by exec, and Python then installs its own.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def start_training(out):
    """``python main.py train RUN --out out`` with unbuffered output: lines arrive as printed."""
    with interruptible_children():
        return subprocess.Popen(
            [sys.executable, "-u", "main.py", "train", *RUN, "--out", str(out)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


def read_until_epoch(process, epoch):
    """Read the run's output (blocking) until its line for ``epoch``; returns the lines read."""
    lines = []
    for line in process.stdout:
        lines.append(line)
        if re.match(rf"epoch +{epoch} ", line):
            return lines
    process.wait()
    pytest.fail(f"the run ended before epoch {epoch}:\n{''.join(lines)}{process.stderr.read()}")


@pytest.mark.slow
def test_a_killed_run_leaves_whole_files_and_resumes_exactly(reference, tmp_path):
    process = start_training(tmp_path)
    read_until_epoch(process, 2)
    process.kill()  # SIGKILL: no handler runs, files may be half written
    process.communicate()
    assert process.returncode == -signal.SIGKILL

    best = load_model(tmp_path / "best_params.npz")  # whole and valid, or this raises
    state = load_checkpoint(tmp_path / "checkpoint.npz").meta["run_state"]
    assert best.meta["epoch"] in (1, 2)
    assert state["epoch"] in (1, 2) and state["batch"] == 0
    assert len(pd.read_csv(tmp_path / "log.csv")) >= state["epoch"]
    # A write cut short may leave its hidden temporary file; it must not get in the way.
    assert all(".tmp" in p.name for p in tmp_path.iterdir() if p.name.startswith("."))

    train(RUN_CONFIG, tmp_path, resume=True)
    assert_same_final_state(tmp_path, reference)


@pytest.mark.slow
def test_ctrl_c_writes_a_checkpoint_and_resume_finishes_the_run_exactly(reference, tmp_path):
    process = start_training(tmp_path)
    read_until_epoch(process, 1)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate()
    assert process.returncode == 130
    checkpoint = tmp_path / "checkpoint.npz"
    # one line, on stderr, said once; no traceback
    assert err.splitlines() == [
        f"interrupted: checkpoint written to {checkpoint}; continue with: python main.py train "
        f"--resume --out {checkpoint.parent}"
    ]
    assert "interrupted" not in out
    assert load_checkpoint(checkpoint).meta["run_state"]["epoch"] in (0, 1)

    train(RECIPES["default"], tmp_path, resume=True)  # the checkpoint says which run
    assert_same_final_state(tmp_path, reference)


class RaisesSigintInAFinalizer:
    """An object whose ``__del__`` sends this process SIGINT: Python runs the handler inside
    the finalizer, where a KeyboardInterrupt is printed as "Exception ignored" and lost."""

    def __del__(self):
        signal.raise_signal(signal.SIGINT)
        sum(range(10))  # bytecode after the signal: where its handler runs


class StopAtSecondBatch(Report):
    """Tells nothing; during the second batch, a SIGINT arrives inside a finalizer."""

    def batches(self, run, state, batches):
        for b, item in enumerate(batches):
            if b == 1:
                RaisesSigintInAFinalizer()  # made and finalized at once
            yield item


def test_a_ctrl_c_that_lands_in_a_finalizer_still_stops_the_run_after_its_batch(tmp_path):
    config = dataclasses.replace(RUN_CONFIG, epochs=1, limit=600)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(Interrupted, match="interrupted: checkpoint written to"):
            train(config, tmp_path, report=StopAtSecondBatch())
    finally:
        signal.signal(signal.SIGINT, previous)
    state = load_checkpoint(tmp_path / "checkpoint.npz").meta["run_state"]
    assert (state["epoch"], state["batch"]) == (0, 2)  # the second batch done, no more
    assert signal.getsignal(signal.SIGINT) is previous  # the handler given back
