"""Retention, off by default ([storage] delete_after_upload_days): free the kiosk's disk of captures
that have reached a reader, and of nothing else.

A capture is due when every one of its files was delivered to one target (an upload URL or an export
folder) with the sha256 the kiosk holds now, at least N days ago; where [upload] url is set, to that
server (a capture only copied to a stick is still to be uploaded). Due captures go oldest first. Below
the free-space watermark captures are still refused: retention never deletes one that has not left
the kiosk. The catalogue row stays, with status 'deleted' (its deliveries too), so what was taken and
where it went is never forgotten. The row is marked before the files go: after a power cut mid-way
the next sweep finishes removing them, and start-up recovery never brings such a capture back.
"""
from __future__ import annotations

import datetime as _dt
import logging
import threading
import time
from pathlib import Path

from edge.imageio import fsync_dir
from edge.storage import Storage, StorageError

log = logging.getLogger("phonescope")

DAY_S = 86400.0
SWEEP_MAX_S = 600.0     # the longest wait between sweeps (a full disk wakes one at once)


def _utc(iso: str) -> float:
    return _dt.datetime.fromisoformat(iso).timestamp()


def due(storage: Storage, days: float, now: float, upload_url: str | None = None) -> list[tuple[dict, str, float]]:
    """(row, target, delivered at) of the captures on the kiosk wholly delivered, verified, to one target
    at least `days` ago, oldest capture first; with upload_url ([upload] url is set), to that server:
    a capture only exported must still be uploaded. Reads the files of those candidates only."""
    at: dict[int, dict[tuple[str, str], dict[str, tuple[str, float]]]] = {}
    for d in storage.deliveries():
        at.setdefault(d["seq"], {}).setdefault((d["kind"], d["target"]), {})[d["file"]] = \
            (d["sha256"], _utc(d["time_utc"]))
    out = []
    for row in storage.rows():
        if row["status"] != "ok" or row["seq"] not in at:
            continue
        names = {str(Path(p).relative_to("captures")) for p in (row["image"], row["raw"], row["sidecar"]) if p}
        old = [(t, max(w for _, w in got.values())) for t, got in at[row["seq"]].items()
               if names <= got.keys() and max(w for _, w in got.values()) <= now - days * DAY_S
               and (upload_url is None or t == ("upload", upload_url))]
        if not old:
            continue
        try:
            held = dict(storage.capture_files(row))   # the files as on the kiosk now, checked against the row
        except StorageError as e:
            log.warning("retention: keeping capture #%d: %s", row["seq"], e)
            continue
        for (kind, target), when in old:
            got = at[row["seq"]][(kind, target)]
            if all(got[f][0] == digest for f, digest in held.items()):
                out.append((row, f"{kind} {target}", when))
                break
    return out


def remove_files(storage: Storage, row: dict, now: float) -> int:
    """Delete a capture's files (sidecar last) and, for a day long past, its emptied folders; bytes freed."""
    freed = 0
    paths = [storage.root / p for p in (row["raw"], row["image"], row["sidecar"]) if p]
    for p in paths:
        try:
            freed += p.stat().st_size
            p.unlink()
        except FileNotFoundError:
            pass
    folder = paths[-1].parent
    if folder.exists():
        fsync_dir(folder)
    if _utc(row["time_utc"]) < now - 2 * DAY_S:     # never today's folders: the writer may be creating them
        while folder != storage.captures:
            try:
                folder.rmdir()
            except OSError:     # not empty
                break
            fsync_dir(folder.parent)
            folder = folder.parent
    return freed


def sweep(storage: Storage, days: float, now: float | None = None, stop: threading.Event | None = None,
          upload_url: str | None = None) -> dict:
    """One pass: finish deletions a power cut interrupted, then delete what is due, oldest first (until
    `stop` is set)."""
    now = time.time() if now is None else now
    report = {"deleted": [], "freed_bytes": 0, "finished": 0}
    for row in storage.rows():
        if row["status"] == "deleted" and (storage.root / row["sidecar"]).exists():
            report["freed_bytes"] += remove_files(storage, row, now)
            report["finished"] += 1
    for row, target, when in due(storage, days, now, upload_url):
        if stop is not None and stop.is_set():
            break
        storage.mark_deleted(row["seq"])
        n = remove_files(storage, row, now)
        report["deleted"].append(row["seq"])
        report["freed_bytes"] += n
        log.info("retention: deleted capture #%d (%.1f MB), delivered to %s on %s", row["seq"], n / 1e6,
                 target, _dt.datetime.fromtimestamp(when, _dt.timezone.utc).isoformat(timespec="seconds"),
                 extra={"CAPTURE_SEQ": row["seq"], "RETENTION_TARGET": target})
    return report


class Retention:
    """The daemon's retention thread: a sweep at start, then at least four times per retention period
    (at most every SWEEP_MAX_S), and at once when the disk is below the watermark (wake())."""

    def __init__(self, storage: Storage, days: float, upload_url: str | None = None):
        self.storage, self.days, self.upload_url = storage, float(days), upload_url
        self.period = min(SWEEP_MAX_S, max(1.0, self.days * DAY_S / 4))
        self.woken, self.stopping = threading.Event(), threading.Event()
        self.thread: threading.Thread | None = None
        self.deleted = 0
        self.freed_bytes = 0
        self.last_sweep_utc: str | None = None
        self.last_error: str | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="retention", daemon=True)
        self.thread.start()

    def wake(self) -> None:
        self.woken.set()

    def stop(self, deadline: float) -> None:
        self.stopping.set()
        self.woken.set()
        if self.thread is not None:
            self.thread.join(max(0.0, deadline - time.monotonic()))

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                r = sweep(self.storage, self.days, stop=self.stopping, upload_url=self.upload_url)
            except Exception as e:   # noqa: BLE001 - the disk, the catalogue: a failed sweep is tried again
                self.last_error = f"{type(e).__name__}: {e}"
                log.warning("retention: sweep failed: %s", self.last_error)
            else:
                self.deleted += len(r["deleted"])
                self.freed_bytes += r["freed_bytes"]
                self.last_error = None
            self.last_sweep_utc = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
            self.woken.wait(self.period)
            self.woken.clear()

    def status(self) -> dict:
        return {"after_days": self.days, "deleted": self.deleted, "freed_mb": round(self.freed_bytes / 1e6, 1),
                "last_sweep_utc": self.last_sweep_utc, "last_error": self.last_error}
