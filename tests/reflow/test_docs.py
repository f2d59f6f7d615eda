"""Every python snippet in docs/reflow.md runs as it stands, in order."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "reflow.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_doc_has_snippets():
    assert len(SNIPPETS) >= 6


def test_snippets_run_in_order(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)  # the snippets write their pairs under runs/
    namespace = {"__name__": "__docs__"}
    for index, snippet in enumerate(SNIPPETS):
        exec(compile(snippet, f"{DOC.name}[{index}]", "exec"), namespace)
        assert capsys.readouterr().out, f"snippet {index} printed nothing"
