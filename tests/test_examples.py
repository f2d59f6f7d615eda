"""Every script in examples/ runs end to end in its quick mode (``--quick``), as CI runs it.

A script that has no ``--quick`` option yet is run with the smoke arguments listed in
``SMOKE_ARGS`` (from its own docstring); a script with neither fails this test, so every
new example must offer a quick mode.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "examples").glob("*.py"))

SMOKE_ARGS: dict[str, list[str]] = {
    "sample_gaussian_mixture.py": ["--n", "500"],
    "train_digits_dit.py": ["--steps", "30", "--n", "32"],
}
"""Scripts without ``--quick``: the arguments of a smoke run (``--out`` is added when the script takes one)."""


def _arguments(script: Path, out: Path) -> list[str]:
    source = script.read_text(encoding="utf-8")
    if '"--quick"' in source:
        args = ["--quick"]
    elif script.name in SMOKE_ARGS:
        args = list(SMOKE_ARGS[script.name])
    else:
        pytest.fail(f"examples/{script.name} has no --quick mode (and no SMOKE_ARGS entry in {Path(__file__).name})")
    return args + (["--out", str(out)] if '"--out"' in source else [])


def test_there_are_examples():
    assert {"deep_ensemble.py"} <= {p.name for p in EXAMPLES}


@pytest.mark.slow
@pytest.mark.parametrize("script", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs_in_quick_mode(script, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(script), *_arguments(script, tmp_path / "out")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, f"{script.name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert proc.stdout.strip(), f"{script.name} printed nothing"
