"""The objective section of docs/extending.md runs as it stands (in a fresh folder)."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "extending.md"
SECTION = DOC.read_text(encoding="utf-8").split("## Adding an objective", 1)[1].split("\n## ", 1)[0]
SNIPPETS = re.findall(r"```python\n(.*?)```", SECTION, flags=re.S)


def test_the_distillation_example_runs(monkeypatch, tmp_path, capsys):
    assert len(SNIPPETS) == 1
    monkeypatch.chdir(tmp_path)
    exec(compile(SNIPPETS[0], f"{DOC.name}[objective]", "exec"), {"__name__": "__docs__"})
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("optimised tensors") and out[1].split()[2] == out[1].split()[4]
    assert out[-1] == "True"
