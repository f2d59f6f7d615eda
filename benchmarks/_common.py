"""Helpers shared by the benchmark scripts: machine description, atomic writes."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import shlex
import sys
from pathlib import Path

import torch

from genflow.io import atomic_path, write_text_atomic

__all__ = ["OUT_DIR", "machine_lines", "save_figure_atomic", "write_text_atomic"]

REPO = Path(__file__).resolve().parents[1]
OUT_DIR = REPO / "docs" / "benchmarks"


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (falls back to platform.processor())."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def command_line() -> str:
    """The command that produced this run, relative to the repository root where possible."""
    exe = sys.executable
    try:
        rel = os.path.relpath(exe, REPO)
        if not rel.startswith(".."):
            exe = rel
    except ValueError:
        pass
    script = sys.argv[0]
    try:
        rel = os.path.relpath(os.path.abspath(script), REPO)
        if not rel.startswith(".."):
            script = rel
    except ValueError:
        pass
    return shlex.join([exe, script, *sys.argv[1:]])


def machine_lines(devices: list[str] | None = None) -> list[str]:
    """Markdown bullet lines describing the machine and software."""
    import torchdiffeq
    import torchsde

    lines = [
        f"- Date (UTC): {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M')}",
        f"- CPU: {cpu_model()} ({os.cpu_count()} logical cores visible; "
        f"torch intra-op threads: {torch.get_num_threads()})",
        f"- Load average when the table was written (1/5/15 min): {', '.join(f'{v:.2f}' for v in os.getloadavg())}",
        f"- Python {platform.python_version()}, torch {torch.__version__}, torchdiffeq {torchdiffeq.__version__}, "
        f"torchsde {torchsde.__version__}",
    ]
    if torch.cuda.is_available():
        lines.append(f"- CUDA device: {torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})")
    else:
        lines.append("- CUDA: not available (CPU only)")
    if devices is not None:
        lines.append(f"- Devices benchmarked: {', '.join(devices)}")
    lines.append(f"- Command: `{command_line()}`")
    return lines


def save_figure_atomic(fig, path: Path, **kwargs) -> None:
    """Save a matplotlib figure to ``path`` atomically (temporary file, then rename)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip("."), **kwargs)
