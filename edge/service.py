"""The systemd side: notify protocol and journald logging (systemd-python).

Outside systemd (no NOTIFY_SOCKET, no journal stream) both fall back to doing
nothing and to plain stderr, so the daemon runs the same on a laptop.
"""
from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger("phonescope")


def under_journald() -> bool:
    """True when stderr is systemd's journal stream ($JOURNAL_STREAM names its device:inode)."""
    js = os.environ.get("JOURNAL_STREAM")
    if not js:
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return js == f"{st.st_dev}:{st.st_ino}"


def setup_logging(level: int = logging.INFO) -> str:
    """journald with structured fields under systemd, else stderr. Returns which."""
    root = logging.getLogger("phonescope")
    root.handlers.clear()
    root.setLevel(level)
    root.propagate = False
    if under_journald():
        try:
            from systemd.journal import JournalHandler

            root.addHandler(JournalHandler(SYSLOG_IDENTIFIER="phonescope"))
            return "journald"
        except ImportError:
            pass
    h = logging.StreamHandler(sys.stderr)
    h.setFormatter(logging.Formatter("%(asctime)s phonescope %(levelname)s %(message)s", "%H:%M:%S"))
    root.addHandler(h)
    return "stderr"


class Notifier:
    """sd_notify through systemd-python; a no-op when not started by systemd with Type=notify."""

    def __init__(self):
        self.enabled = bool(os.environ.get("NOTIFY_SOCKET"))
        self._notify = None
        if self.enabled:
            try:
                from systemd import daemon

                self._notify = daemon.notify
            except ImportError:
                log.error("NOTIFY_SOCKET is set but systemd-python is missing: systemd will not see READY "
                          "(install python3-systemd or pip install systemd-python)")
                self.enabled = False
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        self.watchdog_s = int(usec) / 1e6 if usec and (not pid or int(pid) == os.getpid()) else 0.0

    def send(self, *fields: str) -> None:
        if self.enabled and self._notify is not None:
            self._notify("\n".join(fields))

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping")

    def extend_timeout(self, seconds: float) -> None:
        self.send(f"EXTEND_TIMEOUT_USEC={int(seconds * 1e6)}")
