"""The python snippets of docs/extending.md's "Adding a solver" section run as they stand.

Each runs in a fresh interpreter (the page promises that), which also keeps the
``my_*`` registrations out of this test session's registries.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = (ROOT / "docs" / "extending.md").read_text(encoding="utf-8")
SECTION = PAGE[PAGE.index("## Adding a solver") : PAGE.index("\n## ", PAGE.index("## Adding a solver") + 1)]
SNIPPETS = re.findall(r"```python\n(.*?)```", SECTION, flags=re.S)


def test_section_has_snippets():
    assert len(SNIPPETS) >= 2


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_solver_snippet_runs(index, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", SNIPPETS[index]], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip()
