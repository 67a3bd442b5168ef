"""Every Python code block of the README runs as written, as a script in another folder."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_the_readme_has_python_blocks():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_a_readme_block_runs_as_a_script_outside_the_repository(code, tmp_path):
    script = tmp_path / "snippet.py"
    script.write_text(code)
    # As the README says: the repository on the path, files named relative to its root.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    cwd = ROOT if "best_params.npz" in code else tmp_path
    done = subprocess.run(
        [sys.executable, str(script)], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    for expected in re.findall(r"print\(.*\)\s+# (\[.*\])", code):
        assert expected in done.stdout, (expected, done.stdout)
