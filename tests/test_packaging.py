"""The package metadata builds without setuptools deprecation warnings (SPDX license) and lists its extras."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_uses_the_spdx_license_form_and_declares_the_extras():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "Apache-2.0" and project["project"]["license-files"] == ["LICENSE"]
    assert not [c for c in project["project"]["classifiers"] if c.startswith("License ::")]
    assert "setuptools>=77" in project["build-system"]["requires"]
    extras = project["project"]["optional-dependencies"]
    assert extras["bench"] == ["diffusers>=0.30"] and extras["tensorboard"] == ["tensorboard>=2.10"]


def test_metadata_builds_without_deprecation_warnings(tmp_path):
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "genflow").mkdir()
    (tmp_path / "genflow" / "__init__.py").write_text("")
    code = "from setuptools import build_meta; print(build_meta.prepare_metadata_for_build_wheel('meta'))"
    (tmp_path / "meta").mkdir()
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "deprecat" not in (done.stdout + done.stderr).lower(), done.stderr
    metadata = (tmp_path / "meta" / done.stdout.strip().splitlines()[-1] / "METADATA").read_text()
    assert "License-Expression: Apache-2.0" in metadata and "Provides-Extra: tensorboard" in metadata
