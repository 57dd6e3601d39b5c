"""Copying captures out of the kiosk: `phonescope export-captures --to DIR` (and [export] auto_dir,
edge.auto_export).

The target gets the same readable tree as the state folder's captures/
(YYYY/MM/DD/[sample/]...), each capture's files with the sidecar last. Each
file is copied to a temporary name, fsynced, renamed, its folder fsynced,
then read back from the target (its cached pages dropped first, so a USB
stick's own copy is read where the kernel allows) and its sha256 compared;
only then is the delivery recorded in the catalogue. A file already at the
target with the right hash is skipped, so an interrupted export (a stick
pulled out) resumes where it stopped and never copies a file twice.
"""
from __future__ import annotations

import ctypes
import datetime as _dt
import glob
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from edge.imageio import fsync_dir
from edge.storage import Storage, StorageError, file_sha256

log = logging.getLogger("phonescope")


class ExportError(Exception):
    """The target cannot take the export; one line saying why."""


@dataclass
class ExportReport:
    target: str
    captures: int = 0          # captures now complete at the target
    copied: int = 0            # files copied (and verified) in this run
    skipped: int = 0           # files already at the target with the right hash
    bytes: int = 0
    failed: list = field(default_factory=list)   # "capture #N: why"

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _read_back(path: Path) -> str:
    """The file's sha256 as the target device holds it: cached pages dropped before reading."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    except OSError:
        pass
    finally:
        os.close(fd)
    return file_sha256(path)


def syncfs(folder: Path) -> None:
    """Flush the whole filesystem holding `folder`. A FAT stick's directory blocks sit in the block
    device's cache, where fsync of a file or folder does not always reach: pulled out after fsyncs
    alone, a stick showed a renamed file's temporary entry still there (the rehearsal's usb_export)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if ctypes.CDLL(None, use_errno=True).syncfs(fd) != 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
    finally:
        os.close(fd)


def _copy(src: Path, dst: Path) -> int:
    dst.parent.mkdir(parents=True, exist_ok=True)
    for stale in dst.parent.glob(f".{glob.escape(dst.name)}.*.tmp"):   # a copy cut by a stick pulled out
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as f:
            shutil.copyfileobj(f, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
            n = out.tell()
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(dst.parent)
    return n


def select(rows: list[dict], since: _dt.date | None = None, sample: str | None = None,
           only: set[int] | None = None) -> list[dict]:
    """Captures still on the kiosk, from a day on (UTC), of one sample id, among `only`, oldest first."""
    out = [r for r in rows if r["status"] == "ok" and (only is None or r["seq"] in only)]
    if since is not None:
        out = [r for r in out if r["time_utc"][:10] >= since.isoformat()]
    if sample is not None:
        out = [r for r in out if r["sample_id"] == sample]
    return out


def export(storage: Storage, to: str | os.PathLike, since: _dt.date | None = None,
           sample: str | None = None, only: set[int] | None = None) -> ExportReport:
    """Copy the selected captures to `to`, verified and recorded; ExportError if the target is unusable."""
    dest = Path(to)
    if not dest.is_dir():
        raise ExportError(f"{dest}: no such folder (is the USB stick mounted?)")
    if not os.access(dest, os.W_OK):
        raise ExportError(f"{dest}: not writable")
    target = str(dest.resolve())
    report = ExportReport(target)
    done = storage.delivered("export", target)
    for row in select(storage.rows(), since, sample, only):
        try:
            files = storage.capture_files(row)
        except StorageError as e:
            report.failed.append(str(e))
            continue
        try:
            for rel, digest in files:
                dst = dest / rel
                if dst.is_file() and dst.stat().st_size == (storage.captures / rel).stat().st_size \
                        and file_sha256(dst) == digest:
                    report.skipped += 1
                else:
                    n = _copy(storage.captures / rel, dst)
                    if _read_back(dst) != digest:
                        dst.unlink(missing_ok=True)
                        raise ExportError(f"{dst}: the copy reads back with another sha256 (a failing stick?)")
                    report.copied += 1
                    report.bytes += n
                if done.get((row["seq"], rel)) != digest:
                    storage.record_delivery(row["seq"], "export", target, rel, digest)
        except OSError as e:
            if e.errno in (28, 122):   # ENOSPC, EDQUOT: the stick is full; what was copied stays recorded
                raise ExportError(f"{dest}: full after {report.copied} files ({report.captures} captures); "
                                  f"free space there and run again: copied files are skipped") from None
            raise ExportError(f"{dest}: {e.strerror or e} (after {report.copied} files); run again to "
                              f"resume") from None
        except ExportError as e:
            report.failed.append(f"capture #{row['seq']}: {e}")
            continue
        report.captures += 1
    try:
        syncfs(dest)
    except OSError as e:
        raise ExportError(f"{dest}: cannot flush the stick ({e.strerror or e}); run again before removing it") \
            from None
    log.info("export to %s: %d captures, %d files copied, %d already there, %d failed", target,
             report.captures, report.copied, report.skipped, len(report.failed),
             extra={"EXPORT_TARGET": target, "EXPORT_COPIED": report.copied})
    return report


def cmd_export(args) -> int:
    """phonescope export-captures: one line per problem, a JSON report on stdout."""
    import json
    import sqlite3

    from edge import config
    from edge.errors import UserError

    path = args.config or (str(config.INSTALLED) if config.installed() else None)
    cfg = config.load(path, {"storage": {"state_dir": args.state_dir}})
    state = config.state_dir(cfg)
    if not (state / "catalog.sqlite").is_file():
        raise UserError(f"{state}: no captures here (no catalog.sqlite); --state-dir names the kiosk's state folder")
    since = None
    if args.since:
        try:
            since = _dt.date.fromisoformat(args.since)
        except ValueError:
            raise UserError(f"--since {args.since!r}: a date like 2026-11-30", 2) from None
    try:
        storage = Storage(state, cfg["storage"]["min_free_mb"])
    except (sqlite3.Error, OSError) as e:
        raise UserError(f"{state}: cannot open the catalogue ({e}): run as the phonescope service user or root "
                        f"(sudo phonescope export-captures ...)") from None
    try:
        report = export(storage, args.to, since, args.sample)
    except ExportError as e:
        raise UserError(str(e)) from None
    except sqlite3.OperationalError as e:
        raise UserError(f"{state}/catalog.sqlite: {e}: run as the phonescope service user or root") from None
    finally:
        storage.close()
    print(json.dumps(report.as_dict(), indent=2))
    for f in report.failed:
        print(f"phonescope export-captures: {f}", file=sys.stderr)
    return 1 if report.failed else 0

