"""Output paths checked before any work is done, so a long run never fails at its last write."""

from __future__ import annotations

import tempfile
from pathlib import Path

from genflow.errors import ConfigError

__all__ = ["check_writable_folder", "check_writable_file"]


def check_writable_folder(folder: str | Path, flag: str) -> None:
    """Refuse a folder that is a file or cannot be written (creating it if needed).

    Raises:
        ConfigError: it is a file, or writing there fails.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{flag} {folder} is a file; give a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
            pass
    except OSError as err:
        raise ConfigError(f"{flag}: cannot write to {folder}: {err.strerror or err}") from None


def check_writable_file(path: str | Path, flag: str) -> None:
    """Refuse an output file that is a folder or whose folder cannot be written, before any work is done.

    Raises:
        ConfigError: ``path`` is a folder, its folder is missing, or writing there fails.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{flag} {path} is a folder; give a file name")
    if not path.parent.is_dir():
        raise ConfigError(f"{flag} {path}: the folder {path.parent} does not exist")
    try:
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.write-check-"):
            pass
    except OSError as err:
        raise ConfigError(f"{flag}: cannot write to {path.parent}: {err.strerror or err}") from None
