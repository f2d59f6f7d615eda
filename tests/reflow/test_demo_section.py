"""The reflow section of ``genflow demo``: runs in quick mode, reports a table and a picture."""

from __future__ import annotations

import pytest

from genflow.demo_sections import SECTIONS
from genflow.demo_sections import reflow as reflow_section


@pytest.mark.slow  # trains three small MLPs (seconds)
def test_the_reflow_section_reports_a_table_and_a_picture(demo_context):
    assert "reflow" in SECTIONS
    lines = reflow_section.section(demo_context)
    text = "\n".join(lines)
    assert "| model | NFE 1 | NFE 2 | NFE 4 | NFE 8 |" in text and "quick settings" in text
    rows = [line for line in lines if line.startswith(("| 1-RF", "| 2-RF", "| SeqRF"))]
    assert len(rows) == 3 and rows[2].split("|")[2].strip() == "n/a"  # SeqRF K=4 needs NFE >= 4
    values = [float(cell) for row in rows for cell in row.split("|")[2:-1] if cell.strip() != "n/a"]
    assert len(values) == 10 and all(v > 0 for v in values)
    assert (demo_context.out_dir / "reflow_samples.png").stat().st_size > 0 and "(reflow_samples.png)" in text
