"""The metric log of a run: ``metrics.jsonl`` and, optionally, TensorBoard scalars.

``metrics.jsonl`` holds one JSON object per line, each with a ``step``. It is
always valid JSON: a non-finite number is written as ``null`` (``json`` would
write a bare ``NaN``). A crash while a line is appended can leave the last line
torn; resuming drops it (and every record past the resumed step) and rewrites
the file atomically.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from genflow.errors import ConfigError
from genflow.io import write_text_atomic
from genflow.train.checkpoint import CheckpointError

__all__ = ["MetricLog", "json_safe"]

LOG_FILE, TENSORBOARD_DIR = "metrics.jsonl", "tensorboard"
TENSORBOARD_TAGS = {"loss": "train/loss", "lr": "train/lr", "grad_norm": "train/grad_norm"}


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (valid JSON), recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def require_tensorboard() -> type:
    """torch's ``SummaryWriter``.

    Raises:
        ConfigError: the ``tensorboard`` package is not installed (it is an optional extra).
    """
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise ConfigError(
            f"tensorboard=True needs the tensorboard package ({err}); install it (pip install tensorboard) "
            "or train with tensorboard=False"
        ) from None
    return SummaryWriter


class MetricLog:
    """Appends records to ``out_dir/metrics.jsonl`` and mirrors numeric ones to TensorBoard.

    Args:
        out_dir: The run folder (None: nothing is written).
        tensorboard: Also write TensorBoard scalars under ``out_dir/tensorboard``: ``train/loss``,
            ``train/lr``, ``train/grad_norm`` and ``val/<name>`` for each ``val_<name>``.
    """

    def __init__(self, out_dir: Path | None, *, tensorboard: bool = False) -> None:
        self.path = out_dir / LOG_FILE if out_dir is not None else None
        self.tensorboard = tensorboard
        self._writer: Any = None

    def open(self, step: int) -> None:
        """Drop records past ``step`` (and a torn last line); start TensorBoard from ``step``."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._truncate(step)
        self.path.touch()
        if self.tensorboard:
            writer_class = require_tensorboard()
            # events of an earlier attempt after `step` are hidden from readers (resumed runs rewrite them)
            self._writer = writer_class(str(self.path.parent / TENSORBOARD_DIR), purge_step=step + 1 if step else None)

    def _truncate(self, step: int) -> None:
        if not self.path.exists():
            return
        lines = self.path.read_text(encoding="utf-8").splitlines()
        kept = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                if number == len(lines):  # a line torn by a crash mid-append: the record was never complete
                    break
                raise CheckpointError(f"{self.path}, line {number} is not JSON ({err}); repair or delete it") from None
            if record.get("step", 0) <= step:
                kept.append(line)
        write_text_atomic(self.path, "".join(line + "\n" for line in kept))

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` (non-finite numbers as null) and mirror its numbers to TensorBoard."""
        if self.path is None:
            return
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(json_safe(record), allow_nan=False) + "\n")
        if self._writer is not None:
            for key, value in record.items():
                tag = TENSORBOARD_TAGS.get(key) or (f"val/{key[4:]}" if key.startswith("val_") else None)
                if tag is not None and isinstance(value, (int, float)) and math.isfinite(value):
                    self._writer.add_scalar(tag, value, record["step"])

    def close(self) -> None:
        """Flush and close TensorBoard (the JSON lines are written unbuffered)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
