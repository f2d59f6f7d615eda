"""Every python snippet in docs/early_exit.md runs as it stands, each in a fresh namespace."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from genflow.exit import EXIT_POLICIES

DOC = Path(__file__).resolve().parents[2] / "docs" / "early_exit.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_doc_has_snippets():
    assert len(SNIPPETS) >= 5


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_snippet_runs(index, capsys, monkeypatch):
    monkeypatch.setattr(EXIT_POLICIES, "_entries", dict(EXIT_POLICIES._entries))  # a snippet may register one
    exec(compile(SNIPPETS[index], f"{DOC.name}[{index}]", "exec"), {"__name__": "__docs__"})
    assert capsys.readouterr().out, f"snippet {index} printed nothing"
