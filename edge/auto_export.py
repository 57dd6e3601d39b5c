"""[export] auto_dir: captures copied by themselves to a USB stick mounted at a known folder.

The daemon watches the folder. Only a filesystem mounted there counts as a stick (the bare folder on
the kiosk's own disk is never written to): when one appears, every capture not yet on it is exported
(edge.export: fsynced, read back, sha256 compared, recorded), then each new capture as it is saved,
while the stick stays in. The screen says "do not remove" while copying and "safe to remove" once
every file is verified on the stick; status has the figures.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from edge.export import ExportError, export
from edge.notices import Notices
from edge.storage import Storage

log = logging.getLogger("phonescope")

POLL_S = 2.0      # how often the folder is looked at for a stick coming or going


class AutoExport:
    def __init__(self, storage: Storage, folder: str | os.PathLike, notices: Notices):
        self.storage, self.folder, self.notices = storage, Path(folder), notices
        self.new: set[int] = set()               # captures saved while a stick is in
        self.lock = threading.Lock()
        self.woken, self.stopping = threading.Event(), threading.Event()
        self.thread: threading.Thread | None = None
        self.stick: int | None = None            # st_dev of the filesystem mounted there, None: no stick
        self.state = "no stick"                  # no stick | copying | done | failed
        self.on_stick = 0                        # captures verified on the stick in this insertion
        self.full = False                        # the last copy failed: the next one checks every capture
        self.free_at_failure: tuple[int, int] | None = None   # the stick's free blocks, inodes then
        self.probe: tuple[str, int] | None = None  # (file, size): the last file verified on the stick
        self.last: dict | None = None
        self.last_error: str | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="auto-export", daemon=True)
        self.thread.start()

    def saved(self, seq: int) -> None:
        """A capture is durable: copy it too if a stick is in (never blocks)."""
        with self.lock:
            self.new.add(seq)
        self.woken.set()

    def stop(self, deadline: float) -> None:
        self.stopping.set()
        self.woken.set()
        if self.thread is not None:
            self.thread.join(max(0.0, deadline - time.monotonic()))

    def _mounted(self) -> int | None:
        try:
            return os.stat(self.folder).st_dev if os.path.ismount(self.folder) else None
        except OSError:
            return None

    def _free(self) -> tuple[int, int] | None:
        try:
            v = os.statvfs(self.folder)
            return v.f_bfree, v.f_ffree
        except OSError:
            return None

    def _same_stick(self, dev: int) -> bool:
        """The stick we copied to is still the one in: device numbers are reused when a stick is swapped
        between two looks, so the last file verified on it must be there too."""
        if dev != self.stick:
            return False
        if self.probe is None:
            return True
        try:
            return (self.folder / self.probe[0]).stat().st_size == self.probe[1]
        except OSError:
            return False

    def _run(self) -> None:
        while not self.stopping.is_set():
            dev = self._mounted()
            if dev is None:
                if self.stick is not None:
                    log.info("USB stick at %s removed", self.folder)
                    self.notices.clear("export")
                self.stick, self.state, self.on_stick, self.probe = None, "no stick", 0, None
            elif not self._same_stick(dev):
                log.info("USB stick mounted at %s: exporting the captures not yet on it", self.folder)
                self.stick, self.on_stick, self.probe = dev, 0, None
                with self.lock:
                    self.new.clear()
                self._export(None)
            elif self.state == "failed" and self._free() != self.free_at_failure:
                self._export(None)              # space freed on it, or another stick: try again
            else:
                with self.lock:
                    seqs, self.new = self.new, set()
                if seqs:
                    self._export(None if self.full else seqs)
            self.woken.wait(POLL_S)
            self.woken.clear()

    def _export(self, only: set[int] | None) -> None:
        self.state, self.full = "copying", True
        self.notices.set("export", f"USB export: copying to {self.folder}, do not remove the stick")
        try:
            r = export(self.storage, self.folder, only=only)
        except ExportError as e:
            self.state, self.last_error, self.free_at_failure = "failed", str(e), self._free()
            self.notices.set("export", f"USB export failed: {e}")
            log.warning("USB export failed: %s", e)
            return
        except Exception as e:   # noqa: BLE001 - a stick pulled mid-copy, a catalogue error: tried again
            self.state, self.last_error, self.free_at_failure = "failed", f"{type(e).__name__}: {e}", self._free()
            self.notices.set("export", f"USB export failed: {self.last_error}")
            log.warning("USB export failed: %s", self.last_error)
            return
        self.last = r.as_dict()
        self.on_stick = r.captures if only is None else self.on_stick + r.captures
        on_it = [f for (_, f) in sorted(self.storage.delivered("export", r.target)) if f.endswith(".json")]
        if on_it and (self.folder / on_it[-1]).is_file():
            self.probe = on_it[-1], (self.folder / on_it[-1]).stat().st_size
        if r.failed:
            self.state, self.last_error, self.free_at_failure = "failed", r.failed[0], self._free()
            self.notices.set("export", f"USB export: {len(r.failed)} capture(s) not copied ({r.failed[0]})")
        else:
            self.state, self.last_error, self.full = "done", None, False
            self.notices.set("export", f"USB export: {self.on_stick} captures on the stick, safe to remove")

    def status(self) -> dict:
        return {"auto_dir": str(self.folder), "state": self.state, "captures_on_stick": self.on_stick,
                "last": self.last, "last_error": self.last_error}
