"""End-to-end tests of core.learn.train: accuracy, repeatability, exact resume, divergence, early stop.

The runs are small (a few hundred MNIST images, one or two epochs) and share a reference run
(module-scoped fixture), so the file stays fast on a busy 2-core machine.
"""

import dataclasses

import numpy as np
import pandas as pd
import pytest

import core.learn.runs
import core.learn.train
import core.progress
import main
from core.commands.train import train_config
from core.learn.config import RECIPES
from core.learn.gradcheck import rel_error
from core.learn.train import Diverged, train
from core.progress import Progress
from core.report import evaluate, load_test_set
from data.errors import UserError
from model.params_io import load_checkpoint, load_model
from model.shards import get_threads, set_threads

TIMING = ["seconds", "images_per_s"]  # the only log columns that may differ between runs
# 500 images: 400 to train (25 batches of 16 per epoch) and 100 to validate.
SMALL = dataclasses.replace(RECIPES["default"], limit=500, val_size=100, epochs=2)
BATCHES_PER_EPOCH = 25
# The repeatability and resume tests' run: dropout and augmentation draw random numbers every
# batch, so a stream drawn per epoch instead of per batch, or restarted by resuming, shows.
RANDOM = dataclasses.replace(SMALL, arch="minivgg_bn_dropout", augment=True)


def with_threads(n, run):
    """``run()`` with ``n`` worker threads (shards); the thread count is restored after."""
    before = get_threads()
    set_threads(n)
    try:
        return run()
    finally:
        set_threads(before)


def assert_bit_identical(a, b):
    """Two dicts of arrays with the same keys, dtypes, shapes and bytes."""
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        assert a[key].shape == b[key].shape, key
        assert a[key].tobytes() == b[key].tobytes(), f"{key} differs"


def assert_same_final_state(run_dir, reference_dir):
    """Final checkpoint (parameters, optimizer state, position, generator), best model and log
    of two run folders are the same, timing columns aside."""
    ckpt, ref = (load_checkpoint(d / "checkpoint.npz") for d in (run_dir, reference_dir))
    assert_bit_identical(ckpt.params, ref.params)
    assert_bit_identical(ckpt.opt_state, ref.opt_state)
    assert run_position(ckpt) == run_position(ref)
    assert_bit_identical(
        load_model(run_dir / "best_params.npz").params,
        load_model(reference_dir / "best_params.npz").params,
    )
    pd.testing.assert_frame_equal(log_without_timing(run_dir), log_without_timing(reference_dir))


def run_position(ckpt):
    """A checkpoint's run state without the log rows (their timing differs between runs)."""
    return {key: value for key, value in ckpt.meta["run_state"].items() if key != "log_rows"}


def log_without_timing(run_dir):
    return pd.read_csv(run_dir / "log.csv").drop(columns=TIMING)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The folder of an uninterrupted RANDOM run on 2 threads."""
    out = tmp_path_factory.mktemp("reference")
    with_threads(2, lambda: train(RANDOM, out))
    return out


@pytest.mark.slow
def test_2000_images_and_one_epoch_beat_90_percent_on_the_mnist_test_set(tmp_path):
    args = main.build_parser().parse_args(["train", "--limit", "2000", "--epochs", "1"])
    config = train_config(args)  # what `python main.py train --limit 2000 --epochs 1` runs
    assert config == dataclasses.replace(RECIPES["default"], limit=2000, epochs=1)
    model, _ = train(config, tmp_path)
    x_test, y_test, _ = load_test_set(model.meta)
    assert len(y_test) == 10_000
    assert evaluate(model, x_test, y_test).accuracy > 0.90


@pytest.mark.slow
def test_the_same_seed_gives_a_bit_identical_run(reference, tmp_path):
    with_threads(2, lambda: train(RANDOM, tmp_path))
    assert_same_final_state(tmp_path, reference)
    assert list(pd.read_csv(tmp_path / "log.csv").columns[-2:]) == TIMING


@pytest.mark.slow
def test_another_seed_gives_other_parameters(reference, tmp_path):
    with_threads(2, lambda: train(dataclasses.replace(RANDOM, seed=1), tmp_path))
    other = load_model(tmp_path / "best_params.npz").params
    ref = load_model(reference / "best_params.npz").params
    weights = [key for key in ref if key.endswith(".W")]
    assert len(weights) == 6  # minivgg_bn_dropout: 4 conv and 2 fc layers
    for key in weights:
        assert not np.array_equal(other[key], ref[key]), key


# Dropout, augmentation and erasing draw random numbers per batch; plain SGD at a small rate
# does not amplify rounding as Adam does (it divides by the root of small second moments, so
# 50 Adam steps drift by 2e-4 on one CPU and 1.3e-2 on another).
SHARDED = dataclasses.replace(RANDOM, optimizer="sgd", lr=0.01, erase=0.25)


@pytest.mark.slow
def test_one_thread_gives_the_same_run_up_to_float_rounding(tmp_path):
    """One shard instead of two sums the gradients and batch norm's statistics in another
    order: rounding, nothing else (batches, masks and augmentation do not depend on the
    thread count)."""
    runs = {}
    for name, threads, seed in [("two", 2, 0), ("one", 1, 0), ("other seed", 2, 1)]:
        out = tmp_path / name
        config = dataclasses.replace(SHARDED, seed=seed)
        with_threads(threads, lambda config=config, out=out: train(config, out))
        params = load_checkpoint(out / "checkpoint.npz").params
        runs[name] = (params, log_without_timing(out))
    (one, log_one), (two, log_two) = runs["one"], runs["two"]
    assert sorted(one) == sorted(two)
    assert any(not np.array_equal(one[key], two[key]) for key in one)  # really another order
    vector = {
        name: np.concatenate([p[k].ravel() for k in sorted(p)]) for name, (p, _) in runs.items()
    }
    # measured 1.6e-5 (AMD EPYC); another seed, or other batches or masks, move it by order 1
    assert rel_error(vector["one"], vector["two"]) < 1e-3
    assert rel_error(vector["other seed"], vector["two"]) > 0.1
    for column in ("train_loss", "val_loss"):
        np.testing.assert_allclose(log_one[column], log_two[column], rtol=1e-4)


def interrupt_at(monkeypatch, name, call, module=core.learn.train):
    """Make ``module.<name>`` raise KeyboardInterrupt (a Ctrl-C) at its ``call``-th call."""
    real, calls = getattr(module, name), []

    def interrupting(*args, **kwargs):
        calls.append(None)
        if len(calls) == call:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, interrupting)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("module", "name", "call"),
    [
        # mid-epoch 2, before its 11th batch
        (core.learn.train, "train_step", BATCHES_PER_EPOCH + 11),
        # while the files of epoch 2 are written (the log first, then the models)
        (core.learn.runs, "write_log", 2),
    ],
)
def test_an_interrupted_run_resumes_to_the_uninterrupted_result(
    reference, tmp_path, monkeypatch, module, name, call
):
    interrupt_at(monkeypatch, name, call, module)
    with pytest.raises(KeyboardInterrupt):
        with_threads(2, lambda: train(RANDOM, tmp_path))
    state = load_checkpoint(tmp_path / "checkpoint.npz").meta["run_state"]
    if name == "train_step":
        assert (state["epoch"], state["batch"]) == (1, 10)  # 0-based: epoch 2, batch 11 next
    assert len(pd.read_csv(tmp_path / "log.csv")) == 1  # epoch 1 only

    monkeypatch.undo()
    # The checkpoint's config is used: a different one passed here must not matter.
    model, _ = with_threads(2, lambda: train(RECIPES["best"], tmp_path, resume=True))
    assert model.meta["config"] == dataclasses.asdict(RANDOM)
    assert_same_final_state(tmp_path, reference)


def test_a_huge_learning_rate_stops_with_one_clear_error(tmp_path, capsys):
    config = dataclasses.replace(SMALL, optimizer="sgd", lr=10.0, epochs=1)
    with pytest.raises(Diverged) as caught:
        train(config, tmp_path / "in_process")
    assert isinstance(caught.value, UserError)
    message = str(caught.value)
    assert "loss became nan" in message or "loss became inf" in message
    assert "smaller --lr" in message
    assert "no epoch finished" in message
    assert not (tmp_path / "in_process" / "best_params.npz").exists()

    argv = ["train", "--optimizer", "sgd", "--lr", "10", "--limit", "500", "--val-size", "100"]
    assert main.main([*argv, "--epochs", "1", "--out", str(tmp_path / "cli")]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {message}\n"  # one line, the same run, no traceback


def test_a_run_that_diverges_later_keeps_the_files_of_its_last_good_epoch(tmp_path, monkeypatch):
    real = core.learn.train.train_step

    def explode_in_epoch_2(params, opt_state, xb, yb, run, step, lr, rng):
        if step >= BATCHES_PER_EPOCH:
            lr = 1e6
        return real(params, opt_state, xb, yb, run, step, lr, rng)

    monkeypatch.setattr(core.learn.train, "train_step", explode_in_epoch_2)
    with pytest.raises(Diverged, match="smaller --lr") as caught:
        train(SMALL, tmp_path)
    assert str(tmp_path / "best_params.npz") in str(caught.value)
    best = load_model(tmp_path / "best_params.npz")  # whole, finite (load_model checks)
    assert best.meta["epoch"] == 1
    ckpt = load_checkpoint(tmp_path / "checkpoint.npz")
    assert ckpt.meta["run_state"]["epoch"] == 1
    assert_bit_identical(ckpt.params, best.params)
    assert list(pd.read_csv(tmp_path / "log.csv")["epoch"]) == [1]


@pytest.mark.slow
def test_patience_stops_the_run_when_validation_accuracy_stops_improving(tmp_path, monkeypatch):
    # The same validation result every epoch: only epoch 1 counts as an improvement.
    monkeypatch.setattr(core.learn.train, "loss_and_score", lambda *args, **kwargs: (1.0, 0.5))
    config = dataclasses.replace(SMALL, limit=300, epochs=5, patience=2)
    lines = []
    model, log = train(config, tmp_path, report=Progress(progress=False, echo=lines.append))
    assert list(log["epoch"]) == [1, 2, 3]  # epochs 2 and 3 did not improve on epoch 1
    assert list(pd.read_csv(tmp_path / "log.csv")["epoch"]) == [1, 2, 3]
    assert any("early stop: no better validation accuracy for 2 epochs" in line for line in lines)
    assert model.meta["epoch"] == 1
    assert load_checkpoint(tmp_path / "checkpoint.npz").meta["run_state"]["epoch"] == 3


@pytest.mark.slow
def test_the_log_has_the_documented_columns_and_one_row_per_epoch(reference):
    text = (reference / "log.csv").read_text()
    header = "epoch,lr,train_loss,train_acc,val_loss,val_acc,seconds,images_per_s"
    assert text.splitlines()[0] == header
    log = pd.read_csv(reference / "log.csv")
    assert list(log["epoch"]) == [1, 2]
    assert log.notna().all().all()
    for column in ["train_acc", "val_acc"]:
        assert log[column].between(0, 1).all()
    assert (log[["lr", "train_loss", "val_loss", "seconds", "images_per_s"]] > 0).all().all()
    assert log["lr"].iloc[1] < log["lr"].iloc[0]  # the default cosine schedule decays
    best = load_model(reference / "best_params.npz").meta
    assert best["val_acc"] == log["val_acc"].max()
    assert best["epoch"] == log["epoch"][log["val_acc"].idxmax()]


def test_mlp_on_the_spiral_trains_end_to_end_with_its_figures(tmp_path, capsys):
    """2-D points, no convolution: the run still evaluates and draws what applies to it."""
    assert main.main(["train", "--dataset", "spiral", "--arch", "mlp", "--epochs", "3",
                      "--out", str(tmp_path)]) == 0  # fmt: skip
    assert "test accuracy" in capsys.readouterr().out
    figures = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert figures == ["confusion_matrix.png", "decision_boundary.png", "history.png"]


# ---- the run folder and the command line: never lose a run, never ignore an option ----------

SPIRAL = ["train", "--dataset", "spiral", "--arch", "mlp", "--limit", "200", "--epochs", "1"]


def cli(capsys, *argv):
    """``python main.py *argv`` in-process: (exit status, stdout, stderr)."""
    try:
        status = main.main([str(arg) for arg in argv])
    except SystemExit as stop:  # refused by the option parser, before any command runs
        status = stop.code
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.slow
def test_a_new_run_never_replaces_a_run_unless_told_to(tmp_path, capsys):
    assert cli(capsys, *SPIRAL, "--out", tmp_path)[0] == 0
    before = (tmp_path / "checkpoint.npz").read_bytes()
    status, out, err = cli(capsys, *SPIRAL, "--seed", "1", "--out", tmp_path)
    assert status == 2 and out == ""
    assert err == (
        f"error: {tmp_path} holds a run already (best_params.npz, checkpoint.npz, log.csv); "
        f"continue it with: python main.py train --resume --out {tmp_path}; replace it with "
        "--overwrite, or choose another --out\n"
    )
    assert (tmp_path / "checkpoint.npz").read_bytes() == before

    status, out, _ = cli(capsys, *SPIRAL, "--seed", "1", "--out", tmp_path, "--overwrite")
    assert status == 0
    assert f"replacing the run in {tmp_path} (--overwrite)" in out
    assert load_checkpoint(tmp_path / "checkpoint.npz").meta["config"]["seed"] == 1


@pytest.mark.parametrize(
    "bad",
    [
        ["--optimizer", "nope"],
        ["--schedule", "nope"],
        ["--arch", "nope"],
        ["--limit", "5"],
        ["--val-size", "500"],
        ["--warmup-epochs", "-1"],
    ],
)
def test_a_run_refused_for_its_options_or_data_leaves_no_folder(tmp_path, capsys, bad):
    out = tmp_path / "run" / "nested"
    status, _, err = cli(capsys, *SPIRAL, *bad, "--out", out)
    assert status == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_resume_removes_only_the_files_killed_writes_left(tmp_path, capsys, monkeypatch):
    interrupt_at(monkeypatch, "train_step", 5)
    assert cli(capsys, *SPIRAL, "--epochs", "2", "--out", tmp_path)[0] == 130
    monkeypatch.undo()
    leftovers = [".checkpoint.npz.0123456789ab.tmp.npz", ".log.csv.abcdef012345.tmp.csv"]
    others = ["notes.tmp", ".log.csv.tmp.csv", ".checkpoint.npz.0123456789ab.tmp"]
    for name in leftovers + others:
        (tmp_path / name).write_bytes(b"half a file")
    status, out, _ = cli(capsys, "train", "--resume", "--out", tmp_path)
    assert status == 0
    assert f"removed what interrupted writes left in {tmp_path}: {', '.join(leftovers)}" in out
    names = {p.name for p in tmp_path.iterdir()}
    assert not names & set(leftovers) and set(others) <= names


def test_ctrl_c_says_interrupted_once_with_where_the_checkpoint_is(tmp_path, capsys, monkeypatch):
    interrupt_at(monkeypatch, "train_step", 3)
    status, out, err = cli(capsys, *SPIRAL, "--out", tmp_path)
    assert status == 130
    checkpoint = tmp_path / "checkpoint.npz"
    assert err == (f"interrupted: checkpoint written to {checkpoint}; continue with: "
                   f"python main.py train --resume --out {checkpoint.parent}\n")  # fmt: skip
    assert "interrupted" not in out
    assert load_checkpoint(checkpoint).meta["run_state"]["batch"] == 2


@pytest.mark.slow
def test_resume_extends_a_run_with_a_constant_schedule_to_exactly_the_longer_run(tmp_path, capsys):
    constant = [*SPIRAL, "--schedule", "constant"]
    assert cli(capsys, *constant, "--epochs", "2", "--out", tmp_path / "two")[0] == 0
    assert cli(capsys, *constant, "--out", tmp_path / "one")[0] == 0
    status, out, _ = cli(capsys, "train", "--resume", "--epochs", "2", "--out", tmp_path / "one")
    assert status == 0
    assert "extending the run from 1 to 2 epochs\n" in out  # nothing to re-plan
    assert_same_final_state(tmp_path / "one", tmp_path / "two")
    assert load_checkpoint(tmp_path / "one" / "checkpoint.npz").meta["config"]["epochs"] == 2


@pytest.mark.slow
def test_resume_extends_a_cosine_run_and_says_the_schedule_is_planned_anew(tmp_path, capsys):
    assert cli(capsys, *SPIRAL, "--out", tmp_path)[0] == 0
    status, out, _ = cli(capsys, "train", "--resume", "--epochs", "3", "--out", tmp_path)
    assert status == 0
    assert "extending the run from 1 to 3 epochs; the cosine schedule is planned anew" in out
    log = pd.read_csv(tmp_path / "log.csv")
    assert list(log["epoch"]) == [1, 2, 3]
    assert log["lr"][1] > log["lr"][0]  # epoch 1 ended its own cosine near 0; the new one is higher


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (["--epochs", "1"], "--epochs 1: the run was planned for 2 epochs; a resumed run can be "
                            "extended, not shortened"),
        (["--lr", "0.1", "--seed", "3"], "--resume continues the run with its own settings "
                                         "(--lr 0.002, --seed 0), not --lr 0.1, --seed 3"),
        (["--no-augment", "--augment"], "(--augment False), not --augment True"),
    ],
)  # fmt: skip
def test_resume_refuses_options_that_conflict_with_the_checkpoint(tmp_path, capsys, monkeypatch,
                                                                  given, message):  # fmt: skip
    interrupt_at(monkeypatch, "train_step", 3)
    assert cli(capsys, *SPIRAL, "--epochs", "2", "--out", tmp_path)[0] == 130
    before = (tmp_path / "checkpoint.npz").read_bytes()
    status, out, err = cli(capsys, "train", "--resume", *given, "--out", tmp_path)
    assert status == 2 and out == ""
    assert message in err and err.count("\n") == 1
    assert (tmp_path / "checkpoint.npz").read_bytes() == before
    # the same values as the checkpoint's are no conflict
    assert cli(capsys, "train", "--resume", "--lr", "0.002", "--out", tmp_path)[0] == 0


@pytest.mark.slow
def test_resuming_a_finished_run_says_so_and_trains_nothing(tmp_path, capsys):
    assert cli(capsys, *SPIRAL, "--out", tmp_path)[0] == 0
    log = (tmp_path / "log.csv").read_bytes()
    status, out, _ = cli(capsys, "train", "--resume", "--out", tmp_path)
    assert status == 0
    finished = [line for line in out.splitlines() if "had finished" in line]
    assert finished == [
        f"the run in {tmp_path} had finished its 1 epoch; nothing to train: give a larger "
        "--epochs to extend it"
    ]
    assert not any(line.startswith("epoch ") for line in out.splitlines())
    assert (tmp_path / "log.csv").read_bytes() == log


def test_the_first_line_counts_limit_and_validation_truly_in_the_singular_too(tmp_path, capsys):
    status, out, _ = cli(capsys, *SPIRAL, "--out", tmp_path)
    assert status == 0
    assert out.splitlines()[0] == (
        "training mlp on spiral: 180 images to train on, 20 to validate (the 200 that --limit "
        "keeps); 1 epoch of 12 batches of 16"
    )
    assert "1 epochs" not in out
    with pytest.raises(SystemExit):
        main.main(["train", "--help"])
    assert "the validation images included" in " ".join(capsys.readouterr().out.split())


def test_without_a_terminal_an_epoch_prints_a_line_every_tenth(tmp_path, monkeypatch):
    monkeypatch.setattr(core.progress.sys.stderr, "isatty", lambda: False)
    config = dataclasses.replace(SMALL, dataset="spiral", arch="mlp", limit=None, val_size=None)
    lines = []
    train(config, tmp_path, report=Progress(echo=lines.append))  # progress=None: by the terminal
    progress = [line for line in lines if line.startswith("  epoch 1/2: batch ")]
    # 810 points to train on: 51 batches; a line as each tenth is passed, none at the end
    batches = [int(line.split("batch ")[1].split("/")[0]) for line in progress]
    assert batches == [6, 11, 16, 21, 26, 31, 36, 41, 46]
    assert all(line.endswith(" s") and "/51, loss " in line for line in progress)
