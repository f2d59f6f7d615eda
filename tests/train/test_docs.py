"""Every python snippet in docs/training.md runs as it stands (the torchrun script in one process)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "training.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_doc_has_snippets():
    assert len(SNIPPETS) >= 8


def test_snippets_run_in_order(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)  # later snippets read the run folders of earlier ones (runs/toy)
    monkeypatch.setattr(sys, "argv", ["ddp_toy.py", "runs/ddp1", "64"])
    for index, snippet in enumerate(SNIPPETS):
        exec(compile(snippet, f"{DOC.name}[{index}]", "exec"), {"__name__": "__docs__"})
        assert capsys.readouterr().out, f"snippet {index} printed nothing"
