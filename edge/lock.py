"""One daemon per state folder: an flock'd lock file holding the owner's pid."""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

from edge.errors import UserError


class InstanceLock:
    """Held for the process's lifetime; the kernel releases it when the process dies, even on kill -9."""

    def __init__(self, state_dir: Path):
        self.path = state_dir / "phonescope.lock"
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(self.fd)
            raise UserError(f"another phonescope (pid {other}) is running on {state_dir}") from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
