"""A mutation check of the hand-written code: does a small, realistic bug fail the fast tests?

    python benchmarks/mutation.py                                    # every module of the config
    python benchmarks/mutation.py --modules data/augment.py core/learn/schedules.py
    python benchmarks/mutation.py --without tests/test_file_checks.py   # the score without a file
    python benchmarks/mutation.py --modules model/params_io.py --tests tests/test_params_io.py

mutmut 3 (``pip install mutmut``) makes mutants of the modules that pyproject.toml's
``[tool.mutmut]`` lists under ``only_mutate`` (a flipped operator or comparison, a changed
constant, a dropped argument or call, an altered string), runs the fast tests of its
``pytest_add_cli_args_test_selection`` once to learn which tests reach which function, then
runs each mutant against the tests that reach its function. A mutant is killed when one of
them fails (or it hangs past mutmut's timeout), survives when all pass.

It runs in a scratch copy of the repository (``--scratch``, replaced each run; the files git
tracks, and the untracked ones it does not ignore), never in the working tree, under
``nice -n 10``. ``--modules``, ``--tests`` and ``--without`` change the copy's configuration
only: a module with the test files that cover it runs much sooner than the whole selection. Then it
prints, per module: the mutants, killed, survived, not reached by any selected test, and the
score (killed / mutants), with the wall time and the CPU; the survivors' names go to
``<scratch>/survivors.txt``, and ``cd <scratch> && mutmut show NAME`` shows one's diff.
A figure, not a test, and not part of CI: a full run takes tens of minutes on two cores.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections import Counter
from pathlib import Path

from bench_quantize import cpu_name  # one place for the CPU's name (benchmarks/ is on the path)

ROOT = Path(__file__).resolve().parent.parent
SCRATCH = Path("/tmp/numpy-cnn-mutation")
KILLED = {"killed", "timeout", "segfault"}  # the tests noticed the mutant
NOT_REACHED = "no tests"


def copy_repository(scratch):
    """The files git tracks, and the untracked ones it does not ignore, copied to ``scratch``."""
    if scratch.exists():
        shutil.rmtree(scratch)
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout.split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (scratch / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, scratch / name)


def toml_value(value):
    """A list of strings, a string or a bool as TOML text (all [tool.mutmut] holds)."""
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def configure(scratch, modules, tests, without):
    """Rewrite the copy's [tool.mutmut]: ``modules`` to mutate, ``tests`` to select (each
    default: pyproject.toml's), less the test files ``without``; return the configuration."""
    path = scratch / "pyproject.toml"
    text = path.read_text()
    config = tomllib.loads(text)["tool"]["mutmut"]
    if modules:
        config["only_mutate"] = list(modules)
    tests = list(tests) or config["pytest_add_cli_args_test_selection"]
    if unknown := sorted(set(without) - set(tests)):
        sys.exit(f"--without {' '.join(unknown)}: not in the test selection")
    config["pytest_add_cli_args_test_selection"] = [t for t in tests if t not in without]
    start = text.index("[tool.mutmut]")
    after = re.search(r"^\[", text[start + 1 :], re.M)
    end = start + 1 + after.start() if after else len(text)
    table = "[tool.mutmut]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in config.items())
    path.write_text(text[:start] + table + "\n" + text[end:])
    return config


def module_of(mutant):
    """The module path of a mutant's name: "core.learn.schedules.x_lr_at__mutmut_3" ->
    "core/learn/schedules.py" (methods are "module.xǁClassǁmethod__mutmut_N")."""
    parts = mutant.split(".")
    at = next(i for i, part in enumerate(parts) if part.startswith(("x_", "xǁ")))
    return "/".join(parts[:at]) + ".py"


def results(scratch):
    """{mutant name: status} from ``mutmut results --all true``."""
    out = subprocess.run(
        ["mutmut", "results", "--all", "true"],
        cwd=scratch, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return dict(re.findall(r"^\s*(\S+): (.+?)\s*$", out, re.M))


def table(statuses):
    """Markdown rows: module, mutants, killed, survived, not reached, score."""
    per_module = {}
    for mutant, status in statuses.items():
        per_module.setdefault(module_of(mutant), Counter())[status] += 1
    rows = ["| module | mutants | killed | survived | not reached | score |",
            "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    totals = Counter()
    for module, counts in sorted(per_module.items()):
        totals += counts
        rows.append(row(module, counts))
    rows.append(row("all", totals))
    return rows


def row(module, counts):
    total = sum(counts.values())
    killed = sum(counts[s] for s in KILLED)
    reached_not = counts[NOT_REACHED]
    survived = total - killed - reached_not
    return (
        f"| `{module}` | {total} | {killed} | {survived} | {reached_not} | {killed / total:.1%} |"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--modules",
        nargs="+",
        default=[],
        help="glob patterns of files to mutate (default: pyproject.toml's)",
    )
    parser.add_argument(
        "--tests",
        nargs="+",
        default=[],
        help="test files to run instead of pyproject.toml's selection",
    )
    parser.add_argument(
        "--without",
        nargs="+",
        default=[],
        help="test files to leave out of the selection (a score before them)",
    )
    parser.add_argument("--children", type=int, default=2, help="mutants run at once")
    parser.add_argument("--scratch", type=Path, default=SCRATCH,
                        help=f"the copy to run in, replaced (default {SCRATCH})")  # fmt: skip
    args = parser.parse_args()
    if shutil.which("mutmut") is None:
        sys.exit("mutmut is not installed: pip install mutmut (3.x)")

    copy_repository(args.scratch)
    config = configure(args.scratch, args.modules, args.tests, args.without)
    print(f"mutating {' '.join(config['only_mutate'])}")
    print(f"against {len(config['pytest_add_cli_args_test_selection'])} test files, "
          f"{' '.join(config['pytest_add_cli_args'])}")  # fmt: skip
    log = args.scratch / "mutmut.log"
    start = time.perf_counter()
    with open(log, "w") as out:
        run = subprocess.run(
            ["nice", "-n", "10", "mutmut", "run", "--max-children", str(args.children)],
            cwd=args.scratch, stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": "."},
        )  # fmt: skip
    seconds = time.perf_counter() - start
    if run.returncode != 0:
        sys.exit(f"mutmut run failed (exit status {run.returncode}); see {log}")
    statuses = results(args.scratch)
    survivors = sorted(m for m, s in statuses.items() if s not in KILLED)
    (args.scratch / "survivors.txt").write_text("".join(f"{m}: {statuses[m]}\n" for m in survivors))
    print("\n".join(table(statuses)))
    print(f"\n{len(statuses)} mutants in {seconds / 60:.1f} min on {cpu_name()}, "
          f"{args.children} at once (os.cpu_count() {os.cpu_count()})")  # fmt: skip
    print(f"survivors: {args.scratch / 'survivors.txt'}; show one: "
          f"cd {args.scratch} && mutmut show NAME")  # fmt: skip


if __name__ == "__main__":
    main()
