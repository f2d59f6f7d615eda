"""An exclusive lock on a run folder, so two trainings never write into one ``out_dir``.

The lock is ``fcntl.flock`` on ``out_dir/.lock``: the kernel releases it when
the holding process exits, however it exits, so a lock left by a dead process
is never stale. The holder writes its pid and host into the file so that a
refused run can say who holds it. On systems without ``fcntl`` (Windows) the
lock is not taken.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from types import TracebackType

from genflow.train.errors import RunLockedError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["RunLock"]

LOCK_FILE = ".lock"


class RunLock:
    """Context manager holding the exclusive lock of ``folder`` (created if needed).

    Raises:
        RunLockedError: another live process (or another ``RunLock`` in this one) holds it.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.path = Path(folder) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        if fcntl is None or self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 256).decode("utf-8", "replace").strip() or "unknown holder"
            os.close(fd)
            raise RunLockedError(
                f"{self.path.parent} is in use by another training ({holder}); wait for it to finish, stop it, "
                "or train into another out_dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on host {socket.gethostname()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.release()
