"""The early-exit section of ``genflow demo``."""

from __future__ import annotations

from genflow.demo_sections import SECTIONS, early_exit


def test_the_section_reports_every_schedule(demo_context):
    assert "early_exit" in SECTIONS
    lines = early_exit.section(demo_context)
    text = "\n".join(lines)
    for label in ("| full |", "| ASE staircase |", "| calibrated @"):
        assert label in text
    rows = [line for line in lines if line.startswith("| dpm_solver_pp")]
    percents = [int(row.split("|")[5].strip().rstrip("%")) for row in rows]
    assert percents[0] == 100 and all(p < 100 for p in percents[1:])
    assert "Real-vs-real floor" in text
