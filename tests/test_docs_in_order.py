"""The commands of README.md and docs/*.md, run one after another as written, the way a newcomer
runs them: in a fresh copy of the repository, README first, then the pages of docs/.

A run folder that one command writes is what a later one reads (``quantize``, then ``evaluate
--params best_params.int8.npz``), and two commands of the same recipe must not collide (the
default run folders take the next free name). Training is shortened as the options allow: one
epoch on a few hundred images, one seed a sweep, a handful of test pictures for the tools that
look inside. The commands that read only shipped files are run by tests/test_docs.py already.
"""

import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_docs import FENCE, PAGES, ROOT, SHELL, command_of, how_checked, main_commands, name

from data import load_dataset

# Options appended to a command (the last of an option given twice is the one argparse keeps).
SHORTER = {
    None: ["--limit", "300"],  # python main.py: train
    "train": ["--limit", "300"],
    "sweep": ["--limit", "300", "--seeds", "1"],
    "prune": ["--finetune-epochs", "0"],
    "explain": ["--limit", "20"],
    "attack": ["--limit", "20"],
    "visualize": ["--limit", "20"],
}


def shortened(argv):
    """``argv`` with the SHORTER options of its command; a training run of one epoch, or of
    one more than a --warmup-epochs it gives (a warm-up must end before the run)."""
    command = command_of(argv)
    extra = SHORTER.get(command, [])
    if command in (None, "train", "sweep"):
        warmup = float(argv[argv.index("--warmup-epochs") + 1]) if "--warmup-epochs" in argv else 0
        extra = [*extra, "--epochs", str(math.floor(warmup) + 1)]
    return [*argv, *extra]


def why_not_here(argv):
    """Why a command of the pages cannot run in the tests, or None."""
    if command_of(argv) == "serve":
        return "serves until stopped (tests/test_serve_api.py runs the server)"
    if "--scheduler" in argv:
        return "needs a Dask cluster (tests/test_dask_sweep.py starts one)"
    if "cifar10" in argv:
        return "downloads CIFAR-10"
    if any("fashion" in word for word in argv) and not fashion_mnist_here():
        return "needs Fashion-MNIST (Debian's dataset-fashion-mnist)"
    return None


def fashion_mnist_here():
    try:
        load_dataset("fashion-mnist")
    except Exception:  # noqa: BLE001 (any reason it cannot be read means: not here)
        return False
    return True


def commands_in_order():
    """[(page, argv)] of every ``python main.py`` command of the pages, in reading order."""
    return [
        (page, argv)
        for page in PAGES
        for language, code in FENCE.findall(page.read_text())
        if language in SHELL
        for argv in main_commands(code, language)
    ]


def fresh_copy(destination):
    """The repository's committed files (as they are in the working tree) in ``destination``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    for relative in filter(None, listed):
        source = ROOT / relative
        if source.is_file():
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination


@pytest.mark.slow
@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="needs the git checkout to copy")
def test_every_command_of_the_pages_runs_in_order_on_a_fresh_copy(tmp_path):
    clone = fresh_copy(tmp_path / "clone")
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": str(clone)}
    ran, failed = [], []
    for page, argv in commands_in_order():
        if how_checked(argv) != "parse" or why_not_here(argv):
            continue
        full = shortened(argv)
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "main.py", *full],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        ran.append((time.perf_counter() - started, full))
        if done.returncode != 0 or "Traceback" in done.stderr:
            failed.append(f"{name(page)}: python main.py {' '.join(full)}\n{done.stderr[-2000:]}")
    slowest = sorted(ran, reverse=True)[:8]
    print("slowest:", *(f"{s:5.1f} s  {' '.join(argv)}" for s, argv in slowest), sep="\n")
    assert not failed, "\n\n".join(failed)
    assert len(ran) >= 30, len(ran)
    # The README trains the default recipe, then two pages train digits with the same options:
    # each run found its own folder.
    runs = {p.name for p in (clone / "runs").iterdir()}
    assert {"default", "best", "default-digits", "default-digits-2"} <= runs, sorted(runs)
    assert Path(clone / "best_params.int8.npz").exists()  # quantize's, which evaluate then read
