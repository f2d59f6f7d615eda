"""The bridge section of the demo report runs in quick mode and reports its table and pictures."""

from __future__ import annotations

import pytest

from genflow.demo_sections import SECTIONS


@pytest.mark.slow
def test_bridge_demo_section(demo_context):
    from genflow.demo_sections import bridge

    assert "bridge" in SECTIONS
    lines = bridge.section(demo_context)
    text = "\n".join(lines)
    assert "| DBN, 1 step (distilled) |" in text and "--quick" in text
    for name in ("bridge_reliability_raw.png", "bridge_reliability_calibrated.png"):
        assert (demo_context.out_dir / name).is_file() and f"]({name})" in text
