"""The purification demo section runs on the quick demo context and reports both tables and its plot."""

from __future__ import annotations

import pytest

from genflow.demo_sections import SECTIONS


@pytest.mark.slow
def test_purification_section(demo_context):
    from genflow.demo_sections import purification

    assert "purification" in SECTIONS
    lines = purification.section(demo_context)
    text = "\n".join(lines)
    assert "quick mode" in text and "bpda_eot (weak)" in text and text.count("**worst case over attacks**") == 2
    assert (demo_context.out_dir / "purification_robustness.png").is_file()
    assert "(purification_robustness.png)" in text
