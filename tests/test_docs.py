"""README.md and docs/*.md tell the truth: their Python blocks run, their `python main.py`
commands are taken by the real parser (the cheap ones run), and every relative link and every
repository path they name exists."""

import contextlib
import glob
import io
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
SHELL = {"bash", "sh", "console"}
# Top-level names a path in backticks can start with: the repository's own files and folders.
SOURCE_ROOTS = {
    "layers", "model", "core", "data", "tests", "notebooks", "exercises", "benchmarks", "plot",
    "docs", ".ci",
    "main.py", "best_params.npz", "LICENSE", "pyproject.toml", "README.md",
}  # fmt: skip


def name(page):
    return str(page.relative_to(ROOT))


def blocks(languages):
    """[(page, code)] of every fenced block in one of ``languages``, page by page."""
    return [
        (page, code)
        for page in PAGES
        for language, code in FENCE.findall(page.read_text())
        if language in languages
    ]


def prose(text):
    """The text without its fenced blocks (links and paths are looked for in prose only)."""
    return FENCE.sub("", text)


# -- Python blocks ---------------------------------------------------------------------------

PYTHON = blocks({"python"})


def test_the_pages_hold_python_blocks_and_commands():
    assert len(PYTHON) >= 3 and len(COMMANDS) >= 30, (len(PYTHON), len(COMMANDS))


@pytest.mark.parametrize(
    "page, code", PYTHON, ids=[f"{name(p)}-{i}" for i, (p, _) in enumerate(PYTHON)]
)
def test_a_python_block_runs_as_a_script_outside_the_repository(page, code, tmp_path):
    script = tmp_path / "snippet.py"
    script.write_text(code)
    # As the pages say: the repository on the path, files named relative to its root.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    cwd = ROOT if "best_params.npz" in code else tmp_path
    done = subprocess.run(
        [sys.executable, str(script)], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    for expected in re.findall(r"print\(.*\)\s+# (\[.*\])", code):
        assert expected in done.stdout, (expected, done.stdout)


# -- commands ----------------------------------------------------------------------------------


def main_commands(code, language):
    """The arguments after ``main.py`` of each ``python main.py ...`` in a shell block."""
    lines = code.replace("\\\n", " ").splitlines()
    if language == "console":  # only the prompts are commands; the rest is their output
        lines = [line[2:] for line in lines if line.startswith("$ ")]
    for line in lines:
        words = shlex.split(line, comments=True)
        command = []
        for word in [*words, "&&"]:
            if word not in ("&&", "||", ";", "|"):
                command.append(word)
                continue
            if command[:2] in (["python", "main.py"], ["python3", "main.py"]):
                yield [path for word in command[2:] for path in expand(word)]
            command = []


def expand(word):
    """[word], or the paths a shell wildcard in a path matches, from the repository root."""
    found = sorted(glob.glob(word, root_dir=ROOT)) if "*" in word and "/" in word else []
    return found or [word]


def page_commands():
    """{argv: the first page that gives it} over every shell block of every page."""
    found = {}
    for page in PAGES:
        for language, code in FENCE.findall(page.read_text()):
            if language in SHELL:
                for argv in main_commands(code, language):
                    found.setdefault(tuple(argv), page)
    return found


COMMANDS = page_commands()


def real_parser():
    """main.py's parser, built the way main.main builds it (adapt here if main.py changes)."""
    import main

    if hasattr(main, "build_parser"):
        return main.build_parser()
    from core.commands import build_parser  # a parser built from the command registry

    return build_parser()


def refusal(argv):
    """None when the real parser takes ``argv``, else its error line."""
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said), contextlib.redirect_stdout(io.StringIO()):
            real_parser().parse_args(list(argv))
    except SystemExit as stop:
        return None if stop.code == 0 else said.getvalue().strip() or f"exit status {stop.code}"
    return None


def command_of(argv):
    """The command word of ``argv``, past the global options (--debug, --threads N)."""
    words = list(argv)
    while words and words[0].startswith("-") and words[0] not in ("-h", "--help"):
        words = words[2:] if words[0] == "--threads" else words[1:]
    return words[0] if words else None


def how_checked(argv):
    """How a command of the pages is checked: "run", "slow" (run in the slow tests) or "parse".

    Runs: --help, and summary, gradcheck, evaluate and predict when every file they name
    exists; evaluate of anything but the shipped model on its test set is slow. Training and
    the commands that write models or serve are only parsed.
    """
    if "--help" in argv or "-h" in argv:
        return "run"
    if command_of(argv) not in ("summary", "gradcheck", "evaluate", "predict") or "--show" in argv:
        return "parse"
    files = [w for w in argv if re.search(r"\.(npz|png|jpe?g|json)$", w)]
    if not all((ROOT / f).exists() for f in files):
        return "parse"
    if command_of(argv) == "evaluate" and ("--split" in argv or set(files) - {"best_params.npz"}):
        return "slow"
    return "run"


def shown(argv):
    line = " ".join(["python main.py", *argv])
    return line if len(line) <= 90 else line[:87] + "..."


@pytest.mark.parametrize("argv", list(COMMANDS), ids=[shown(a) for a in COMMANDS])
def test_a_command_of_the_pages_is_taken_by_the_real_parser(argv):
    assert refusal(argv) is None, f"{name(COMMANDS[argv])}: {shown(argv)}: {refusal(argv)}"


@pytest.mark.parametrize(
    "argv",
    [["trian"], ["train", "--epoch-count", "3"], ["train", "--epochs", "-1"],
     ["attack", "--method", "fgsmm"], ["serve", "--port", "70000"]],
)  # fmt: skip
def test_the_parser_check_refuses_an_unknown_command_option_or_bad_value(argv):
    assert refusal(argv) is not None


RUNS = [
    pytest.param(argv, marks=[pytest.mark.slow] if how_checked(argv) == "slow" else [])
    for argv in COMMANDS
    if how_checked(argv) != "parse"
]


@pytest.mark.parametrize("argv", RUNS, ids=[shown(p.values[0]) for p in RUNS])
def test_a_cheap_command_of_the_pages_runs(argv, tmp_path):
    # evaluate writes its figure into --out: keep the checkout clean
    extra = ["--out", str(tmp_path)] if command_of(argv) == "evaluate" else []
    done = subprocess.run(
        [sys.executable, "main.py", *argv, *extra],
        cwd=ROOT,
        env={**os.environ, "MPLBACKEND": "Agg"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"{name(COMMANDS[argv])}: {shown(argv)}\n{done.stderr}"


def test_the_cheap_commands_include_each_kind_of_run():
    ran = {command_of(p.values[0]) for p in RUNS}
    assert {"summary", "gradcheck", "evaluate", "predict"} <= ran, ran
    assert how_checked(["train", "--preset", "best"]) == "parse"


# -- links and paths -----------------------------------------------------------------------------


def slug(heading):
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page):
    """Every heading's anchor in a page; a repeated heading gets -1, -2, ... as on GitHub."""
    seen = {}
    for heading in re.findall(r"^#{1,6} (.+)$", prose(page.read_text()), re.M):
        base = slug(heading)
        seen[base] = seen.get(base, -1) + 1
        yield base if seen[base] == 0 else f"{base}-{seen[base]}"


def broken_links(page, text):
    """Relative links of ``text`` (the contents of ``page``) to a missing file or heading."""
    text = re.sub(r"`[^`\n]*`", "", prose(text))
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", text):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(target)
        elif anchor and (linked.suffix != ".md" or anchor not in set(anchors(linked))):
            broken.append(target)
    return broken


def missing_paths(text):
    """Repository paths written in backticks (`core/learn/train.py`) that do not exist."""
    missing = []
    for code in re.findall(r"`([^`\n]+)`", prose(text)):
        if not re.fullmatch(r"[\w.\-/*]+", code) or code.split("/")[0] not in SOURCE_ROOTS:
            continue
        if not (glob.glob(code, root_dir=ROOT) if "*" in code else (ROOT / code).exists()):
            missing.append(code)
    return missing


@pytest.mark.parametrize("page", PAGES, ids=name)
def test_every_relative_link_of_a_page_points_to_a_file_and_heading_that_exist(page):
    assert broken_links(page, page.read_text()) == []


@pytest.mark.parametrize("page", PAGES, ids=name)
def test_every_repository_path_a_page_names_exists(page):
    assert missing_paths(page.read_text()) == []


def test_the_link_and_path_checks_find_what_is_broken():
    readme = ROOT / "README.md"
    text = "[a](docs/nowhere.md) [b](#no-such-heading) [c](LICENSE) `core/no_such.py` `main.py`"
    assert broken_links(readme, text) == ["docs/nowhere.md", "#no-such-heading"]
    assert missing_paths(text) == ["core/no_such.py"]
    assert slug("What a `.npz` model file holds") == "what-a-npz-model-file-holds"


def test_the_readme_is_short_links_every_page_and_gives_the_test_command():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    assert "python -m pytest" in text  # CI (.ci/run) runs the README's test command
    for page in PAGES[1:]:
        assert f"(docs/{page.name})" in text, page.name
