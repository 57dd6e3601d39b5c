"""Captures on disk: atomic files, a JSON sidecar and an SQLite catalogue.

Layout: <state>/captures/YYYY/MM/DD/<time>_<seq>[_<sample>].<ext> (enhanced),
....raw.png|.raw.tiff|.raw.jpg (camera frame, optional), ....json (sidecar), and
<state>/catalog.sqlite (table `captures`). Each file is written to a
temporary name, fsynced, renamed and its folder fsynced; the sidecar is
written last (it is the capture's commit mark) and the catalogue row after
it. So after a power cut a capture is either complete (and recovered into
the catalogue at start-up) or has no sidecar (and is removed: it was never
acknowledged). Nothing acknowledged is ever deleted, except by retention
(edge.retention, off by default) once it reached a reader.

SQLite runs in WAL mode with synchronous=FULL: WAL lets the status command
read while the writer commits, and FULL makes each commit durable at the
moment it returns (NORMAL in WAL mode may lose the last commits on power
loss), which is what "acknowledged only once durable" needs. WAL with FULL
also survives a crash in the middle of a commit: an incomplete WAL frame is
ignored when the database is next opened, so the catalogue is always the
last committed state (PRAGMA integrity_check stays "ok").

A full disk is refused before writing (the free-space watermark) and, if the
disk fills between the check and the write (ENOSPC), whatever part of the
capture was written is removed again, files and catalogue row alike, so a
refused capture leaves nothing behind.
"""
from __future__ import annotations

import datetime as _dt
import errno
import hashlib
import json
import os
import re
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from edge.imageio import atomic_write, fsync_dir

SAMPLE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
FILE_MODE = 0o640     # patient material: not world-readable
DIR_MODE = 0o750
EXTS = {"png": ".png", "tiff": ".tiff", "jpeg": ".jpg"}
RAW_SUFFIXES = {fmt: ".raw" + ext for fmt, ext in EXTS.items()}      # the camera frame kept beside it
IMAGE_SUFFIXES = (*RAW_SUFFIXES.values(), *EXTS.values(), ".json")   # raw first: .raw.jpg ends in .jpg too


def capture_stem(name: str) -> str:
    """The capture a file belongs to: its name without the known suffix (sample ids may contain dots)."""
    for suffix in IMAGE_SUFFIXES:
        if name.endswith(suffix):
            return name[:-len(suffix)]
    return name.rsplit(".", 1)[0]


class StorageError(Exception):
    """A capture that cannot be stored; one line saying why."""


class StorageFull(StorageError):
    pass


def check_sample_id(sample_id: str | None) -> str | None:
    if sample_id in (None, ""):
        return None
    if not isinstance(sample_id, str) or not SAMPLE_ID.match(sample_id) or ".." in sample_id:
        raise StorageError("sample id must be 1-64 letters, digits, '.', '_' or '-', "
                           "starting with a letter or digit")
    return sample_id


def sha256_bytes(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class Stored:
    seq: int
    image: Path
    sidecar: Path
    raw: Path | None
    sha256: str
    bytes: int
    times: dict = field(default_factory=dict)   # seconds: write_s, fsync_s, catalogue_s


SCHEMA = """
CREATE TABLE IF NOT EXISTS captures (
    seq INTEGER PRIMARY KEY,
    time_utc TEXT NOT NULL,
    clock TEXT NOT NULL,
    sample_id TEXT,
    image TEXT NOT NULL UNIQUE,
    raw TEXT,
    sidecar TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    model TEXT,
    backend TEXT,
    status TEXT NOT NULL DEFAULT 'ok'
);
CREATE TABLE IF NOT EXISTS deliveries (
    seq INTEGER NOT NULL,              -- the capture
    kind TEXT NOT NULL,                -- 'export' (a folder, a USB stick) | 'upload' (a WebDAV server)
    target TEXT NOT NULL,              -- the folder's path, or the upload URL
    file TEXT NOT NULL,                -- the file, relative to captures/
    sha256 TEXT NOT NULL,              -- verified at the target
    time_utc TEXT NOT NULL,
    PRIMARY KEY (seq, kind, target, file)
);
"""
# catalogue versions (PRAGMA user_version) and what each adds to a catalogue of the one before
MIGRATIONS = {
    2: ["ALTER TABLE captures ADD COLUMN focus_score REAL",
        "ALTER TABLE captures ADD COLUMN session_id TEXT",
        "ALTER TABLE captures ADD COLUMN operator_id TEXT",
        "ALTER TABLE captures ADD COLUMN review TEXT"],       # NULL, or "retake": flagged at the kiosk
    3: [],      # the deliveries table (in SCHEMA: created where missing)
    4: ["ALTER TABLE captures ADD COLUMN deleted_utc TEXT"],  # status 'deleted': freed by retention
}
REVIEW_FLAGS = ("retake",)


class Storage:
    def __init__(self, state_dir: str | os.PathLike, min_free_mb: float = 200.0):
        self.root = Path(state_dir)
        self.captures = self.root / "captures"
        self.min_free_mb = float(min_free_mb)
        self.captures.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        os.chmod(self.captures, DIR_MODE)   # mkdir's mode passes through the umask (the unit's UMask=0077)
        db_path = self.root / "catalog.sqlite"
        # create it 0640 before SQLite does: its -wal and -shm files copy the database file's mode
        os.close(os.open(db_path, os.O_RDWR | os.O_CREAT, FILE_MODE))
        os.chmod(db_path, FILE_MODE)
        self.db = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False, timeout=30)
        self.lock = threading.RLock()    # one transaction at a time from the daemon's threads
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        """Bring an older catalogue up to this version's columns, one version per transaction."""
        (version,) = self.db.execute("PRAGMA user_version").fetchone()
        have = {r[1] for r in self.db.execute("PRAGMA table_info(captures)")}
        for v in sorted(k for k in MIGRATIONS if k > max(version, 1)):
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for stmt in MIGRATIONS[v]:
                    column = stmt.split("ADD COLUMN ")[1].split()[0]
                    if column not in have:
                        self.db.execute(stmt)
                self.db.execute(f"PRAGMA user_version = {v}")
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    def flag(self, seq: int, review: str | None) -> None:
        """Record the operator's review of a capture ("retake", or None to clear it); nothing is deleted.
        StorageError for an unknown capture or flag."""
        if review not in REVIEW_FLAGS + (None,):
            raise StorageError(f"unknown review flag {review!r} (known: {', '.join(REVIEW_FLAGS)})")
        with self.lock:
            changed = self.db.execute("UPDATE captures SET review=? WHERE seq=?", (review, seq)).rowcount
        if changed != 1:
            raise StorageError(f"no capture #{seq} in the catalogue")

    # -- free space -------------------------------------------------------
    def free_mb(self) -> float:
        return shutil.disk_usage(self.root).free / 1e6

    def check_space(self, needed_bytes: int = 0) -> None:
        free = self.free_mb()
        if free - needed_bytes / 1e6 < self.min_free_mb:
            raise StorageFull(f"disk nearly full: {free:.0f} MB free, below the {self.min_free_mb:.0f} MB "
                              f"watermark; free space in {self.root}")

    # -- writing ------------------------------------------------------------
    def next_seq(self) -> int:
        (m,) = self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM captures").fetchone()
        return int(m) + 1

    def store(self, image_bytes: bytes, ext: str, meta: dict, raw_bytes: bytes | None = None,
              sample_id: str | None = None, now: float | None = None, raw_format: str = "jpeg") -> Stored:
        """Write one capture durably; returns once files and catalogue row are on disk. raw_bytes: the
        camera frame, encoded as raw_format (png | tiff | jpeg)."""
        sample_id = check_sample_id(sample_id)
        self.check_space(len(image_bytes) + len(raw_bytes or b"") + 65536)
        now = time.time() if now is None else now
        t = _dt.datetime.fromtimestamp(now, _dt.timezone.utc)
        seq = self.next_seq()
        folder = self.captures / f"{t:%Y}" / f"{t:%m}" / f"{t:%d}"
        if sample_id:
            folder = folder / sample_id
        try:
            self._mkdirs(folder)
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise StorageFull(f"disk full: cannot create {folder.name}; free space in {self.root}") from None
            raise StorageError(f"cannot create capture folder {folder}: {e.strerror}") from None
        stem = f"{t:%Y%m%dT%H%M%S}_{seq:06d}" + (f"_{sample_id}" if sample_id else "")
        image = folder / f"{stem}{ext}"
        raw = folder / f"{stem}{RAW_SUFFIXES[raw_format]}" if raw_bytes is not None else None
        sidecar = folder / f"{stem}.json"
        digest = sha256_bytes(image_bytes)
        clock = "rtc" if t.year >= 2020 else "unsynchronised (before 2020: no real-time clock?)"
        meta = dict(meta, seq=seq, time_utc=t.isoformat(timespec="milliseconds"), clock=clock,
                    sample_id=sample_id, image=image.name, image_sha256=digest, image_bytes=len(image_bytes),
                    raw=raw.name if raw else None, raw_sha256=sha256_bytes(raw_bytes) if raw else None)
        times: dict = {}
        try:
            if raw is not None:
                atomic_write(raw, raw_bytes, FILE_MODE, times)
            atomic_write(image, image_bytes, FILE_MODE, times)
            atomic_write(sidecar, json.dumps(meta, indent=2, sort_keys=True).encode(), FILE_MODE, times)
        except OSError as e:
            self._undo(folder, sidecar, image, raw)
            if e.errno == errno.ENOSPC:
                raise StorageFull(f"disk full while writing {image.name}, nothing saved; free space in "
                                  f"{self.root}") from None
            raise StorageError(f"cannot write capture {image.name}: {e.strerror}") from None
        t0 = time.perf_counter()
        try:
            self._insert(seq, meta, image, raw, sidecar)
        except sqlite3.Error as e:
            # the row did not commit: take the files back too, or the capture would reappear at the
            # next start-up after the client was told it failed
            self._undo(folder, sidecar, image, raw)
            if "full" in str(e):
                raise StorageFull(f"disk full while cataloguing {image.name}, nothing saved; free space in "
                                  f"{self.root}") from None
            raise StorageError(f"cannot catalogue capture {image.name}: {e}") from None
        times["catalogue_s"] = time.perf_counter() - t0
        return Stored(seq, image, sidecar, raw, digest, len(image_bytes),
                      {k: round(v, 4) for k, v in times.items()})

    @staticmethod
    def _undo(folder: Path, sidecar: Path, image: Path, raw: Path | None) -> None:
        """Remove what a failed capture wrote, its commit mark (the sidecar) first."""
        for p in (sidecar, image, raw):
            if p is not None:
                try:
                    p.unlink(missing_ok=True)
                except OSError:
                    pass
        try:
            fsync_dir(folder)
        except OSError:
            pass

    def _mkdirs(self, folder: Path) -> None:
        missing = []
        p = folder
        while not p.exists():
            missing.append(p)
            p = p.parent
        for d in reversed(missing):
            d.mkdir(mode=DIR_MODE)
            os.chmod(d, DIR_MODE)           # the phonescope group (operators) may read captures: not the umask's 0700
            fsync_dir(d.parent)

    def _insert(self, seq: int, meta: dict, image: Path, raw: Path | None, sidecar: Path) -> None:
        rel = lambda p: str(p.relative_to(self.root)) if p else None
        model = meta.get("model") or {}
        session = meta.get("session") or {}
        with self.lock:
            self.db.execute(
                "INSERT INTO captures (seq, time_utc, clock, sample_id, image, raw, sidecar, sha256, bytes, model, "
                "backend, focus_score, session_id, operator_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (seq, meta["time_utc"], meta["clock"], meta.get("sample_id"), rel(image), rel(raw), rel(sidecar),
                 meta["image_sha256"], meta["image_bytes"],
                 f"{model.get('name')} {model.get('version')}" if model else None, meta.get("backend"),
                 meta.get("focus_score"), session.get("id"), session.get("operator")))

    # -- reading / recovery ---------------------------------------------------
    def rows(self) -> list[dict]:
        with self.lock:
            cur = self.db.execute("SELECT * FROM captures ORDER BY seq")
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r)) for r in cur.fetchall()]

    def row(self, seq: int) -> dict | None:
        with self.lock:
            cur = self.db.execute("SELECT * FROM captures WHERE seq=?", (seq,))
            r = cur.fetchone()
            return None if r is None else dict(zip([d[0] for d in cur.description], r))

    def recover(self) -> dict:
        """Start-up: drop temporaries and unacknowledged halves, reconcile catalogue and sidecars."""
        report = {"temporaries_removed": 0, "incomplete_removed": 0, "rows_added": 0, "rows_missing": 0}
        known = {r["sidecar"] for r in self.rows()}
        for dirpath, _, files in os.walk(self.captures):
            d = Path(dirpath)
            for f in files:
                p = d / f
                if f.startswith(".") and f.endswith(".tmp"):
                    p.unlink(missing_ok=True)
                    report["temporaries_removed"] += 1
            for f in files:
                p = d / f
                if not p.exists() or f.endswith(".json") or f.startswith("."):
                    continue
                stem = capture_stem(f)
                if not (d / f"{stem}.json").exists():
                    p.unlink(missing_ok=True)  # never acknowledged: the sidecar is the commit mark
                    report["incomplete_removed"] += 1
            for f in files:
                p = d / f
                if not f.endswith(".json") or not p.exists():
                    continue
                rel = str(p.relative_to(self.root))
                if rel in known:
                    continue
                try:
                    meta = json.loads(p.read_text())
                    image = d / meta["image"]
                    if sha256_bytes(image.read_bytes()) != meta["image_sha256"]:
                        raise ValueError("sha256 mismatch")
                    raw = d / meta["raw"] if meta.get("raw") else None
                    self._insert(int(meta["seq"]), meta, image, raw, p)
                    report["rows_added"] += 1
                except (OSError, ValueError, KeyError, sqlite3.IntegrityError):
                    report.setdefault("unreadable_sidecars", []).append(rel)
        for r in self.rows():
            if r["status"] == "ok" and not (self.root / r["image"]).exists():
                self.db.execute("UPDATE captures SET status='missing' WHERE seq=?", (r["seq"],))
                report["rows_missing"] += 1
        return report

    # -- deliveries (export, upload) ------------------------------------------------
    def capture_files(self, row: dict) -> list[tuple[str, str]]:
        """A catalogued capture's files as (path relative to captures/, sha256), the sidecar last (it is the
        capture's commit mark at a target too). StorageError when a file is missing or differs from what
        was stored (a capture must never leave the kiosk changed)."""
        sidecar = self.root / row["sidecar"]
        try:
            side = sidecar.read_bytes()
            meta = json.loads(side)
        except (OSError, ValueError) as e:
            raise StorageError(f"capture #{row['seq']}: unreadable sidecar {row['sidecar']} ({e})") from None
        files = [(row["raw"], meta.get("raw_sha256"))] if row.get("raw") else []
        files += [(row["image"], row["sha256"]), (row["sidecar"], sha256_bytes(side))]
        out = []
        for rel, digest in files:
            if rel != row["sidecar"]:
                try:
                    if file_sha256(self.root / rel) != digest:
                        raise StorageError(f"capture #{row['seq']}: {rel} differs from the file stored")
                except FileNotFoundError:
                    raise StorageError(f"capture #{row['seq']}: {rel} is missing") from None
            out.append((str(Path(rel).relative_to("captures")), digest))
        return out

    def record_delivery(self, seq: int, kind: str, target: str, file: str, digest: str) -> None:
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")
        with self.lock:
            self.db.execute("INSERT OR REPLACE INTO deliveries (seq, kind, target, file, sha256, time_utc) "
                            "VALUES (?,?,?,?,?,?)", (seq, kind, target, file, digest, now))

    def delivered(self, kind: str, target: str, seq: int | None = None) -> dict[tuple[int, str], str]:
        """{(seq, file): sha256} of what reached this target, verified (of one capture, with seq)."""
        query = "SELECT seq, file, sha256 FROM deliveries WHERE kind=? AND target=?"
        with self.lock:
            rows = self.db.execute(query + (" AND seq=?" if seq is not None else ""),
                                   (kind, target) + ((seq,) if seq is not None else ())).fetchall()
        return {(s, f): h for s, f, h in rows}

    def deliveries(self) -> list[dict]:
        with self.lock:
            cur = self.db.execute("SELECT * FROM deliveries ORDER BY seq")
            return [dict(zip([d[0] for d in cur.description], r)) for r in cur.fetchall()]

    def mark_deleted(self, seq: int) -> None:
        """The row stays (what was taken, where it went); its files are gone or going (edge.retention)."""
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        with self.lock:
            self.db.execute("UPDATE captures SET status='deleted', deleted_utc=? WHERE seq=?", (now, seq))

    def close(self) -> None:
        self.db.close()
