"""Atomic writes leave either the complete file or the previous one, never a partial file."""

from __future__ import annotations

import pytest

from genflow.io import atomic_path, write_text_atomic


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "sub" / "report.md"
    write_text_atomic(target, "first")
    write_text_atomic(target, "second")
    assert target.read_text() == "second"
    assert [p.name for p in target.parent.iterdir()] == ["report.md"]


def test_failure_keeps_previous_file_and_no_temporaries(tmp_path):
    target = tmp_path / "data.txt"
    write_text_atomic(target, "complete")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash while writing")
    assert target.read_text() == "complete"
    assert [p.name for p in tmp_path.iterdir()] == ["data.txt"]
