"""What the demo hands every method section: its output folder, mode, seed, trained models."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["DemoContext", "ENSEMBLE_MEMBERS", "QUICK_ENSEMBLE"]

ENSEMBLE_MEMBERS = 4  # the digits protocol's ensemble (genflow.classify.digits_protocol)
QUICK_ENSEMBLE = (3, ["trainer.steps=60", "trainer.validate_every=0"])  # members, overrides under --quick


@dataclass
class DemoContext:
    """The demo's state, shared by its method sections.

    Attributes:
        out_dir: The report folder; a section writes its pictures here (``<section>_*.png``).
        seed: The demo's seed.
        quick: ``genflow demo --quick``: every section uses its tiny settings.
        process: The process of the demo's trained digits DiT.
        model: The demo's trained digits DiT (EMA weights, eval mode).
        run_dir: The DiT's run folder (checkpoints; ``init_from`` for fine-tuning sections).
    """

    out_dir: Path
    seed: int
    quick: bool
    process: Any
    model: Any
    run_dir: Path
    _ensemble: Any = field(default=None, repr=False)

    def ensemble(self) -> Any:
        """The demo's digits ensemble (:class:`genflow.classify.ProtocolResult`), trained on first use.

        The digits protocol (4 ResNet-8 members x 300 steps, about 20 s on two CPU cores) in a full demo;
        3 members x 60 steps under ``--quick``. Members are saved under ``out_dir/ensemble/member-<i>/``.
        """
        if self._ensemble is None:
            from genflow.classify import digits_protocol

            members, overrides = QUICK_ENSEMBLE if self.quick else (ENSEMBLE_MEMBERS, [])
            self._ensemble = digits_protocol(
                self.seed, members=members, out_dir=self.out_dir / "ensemble", overrides=overrides
            )
        return self._ensemble
