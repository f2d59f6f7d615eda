"""The method sections of the ``genflow demo`` report.

Each module named in :data:`SECTIONS` defines ``TITLE`` (a short heading) and
``section(ctx: DemoContext) -> list[str]`` (markdown lines; pictures go under
``ctx.out_dir``). A section reuses the demo's trained digits DiT
(``ctx.process``, ``ctx.model``) or the demo's digits ensemble (``ctx.ensemble()``,
trained once on first use and shared by every section), or trains something
tiny of its own, and says which. In ``--quick`` mode a section takes seconds;
in a full demo at most about a minute and a half on two CPU cores.
"""

from __future__ import annotations

from genflow.demo_sections.context import DemoContext

__all__ = ["SECTIONS", "DemoContext"]

# One entry a method, in the order the report shows them.
SECTIONS: tuple[str, ...] = ("early_exit", "reflow", "bridge", "distillation", "purification")
