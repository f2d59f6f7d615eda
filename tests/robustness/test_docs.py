"""Every python snippet in docs/robustness.md runs as it stands (except those marked as needing trained runs)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "robustness.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


@pytest.mark.slow
def test_snippets_run(capsys):
    assert SNIPPETS
    for index, snippet in enumerate(SNIPPETS):
        if snippet.startswith("# requires trained runs"):  # examples/adversarial_purification.py runs this path
            continue
        exec(compile(snippet, f"{DOC.name}[{index}]", "exec"), {"__name__": "__docs__"})
        assert "worst case over attacks" in capsys.readouterr().out, f"snippet {index} printed no report"
