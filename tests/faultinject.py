"""Run the real daemon with one injected fault: `python -m tests.faultinject FAULT FLAG -- run ARGS...`.

Only the faulty part is replaced, and only while the file FLAG exists, so a
test switches the fault on and off from outside while everything else (the
real model in ONNX Runtime, real sources, sockets, files, SQLite) runs as in
production:

- hang:  the engine's infer() blocks (a stalled GPU or driver);
- nan:   the engine returns NaN (a broken model or a numeric fault);
- stall: the camera's read() blocks (a camera that stops delivering).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from edge.engines.base import Engine


class FaultyEngine(Engine):
    def __init__(self, inner: Engine, fault: str, flag: Path):
        self.inner, self.fault, self.flag = inner, fault, flag
        self.name, self.spec = inner.name, inner.spec

    def infer(self, batch: np.ndarray) -> np.ndarray:
        if self.flag.exists():
            if self.fault == "hang":
                while self.flag.exists():
                    time.sleep(0.05)
            elif self.fault == "nan":
                return np.full_like(self.inner.infer(batch), np.nan)
        return self.inner.infer(batch)

    def close(self) -> None:
        self.inner.close()


class StallingSource:
    def __init__(self, inner, flag: Path):
        self.inner, self.flag = inner, flag

    def read(self):
        while self.flag.exists():
            time.sleep(0.05)
        return self.inner.read()

    def __getattr__(self, name):
        return getattr(self.inner, name)


def install(fault: str, flag: Path) -> None:
    from edge import daemon

    if fault in ("hang", "nan"):
        original = daemon.Enhancer.open.__func__

        def open_faulty(cls, *a, **kw):
            enh, why = original(cls, *a, **kw)
            enh.engine = FaultyEngine(enh.engine, fault, flag)
            return enh, why

        daemon.Enhancer.open = classmethod(open_faulty)
    elif fault == "stall":
        original_source = daemon.open_source
        daemon.open_source = lambda *a, **kw: StallingSource(original_source(*a, **kw), flag)
    else:
        raise SystemExit(f"unknown fault {fault!r}")


if __name__ == "__main__":
    fault, flag, sep, *rest = sys.argv[1:]
    assert sep == "--"
    install(fault, Path(flag))
    from edge.cli import main

    sys.exit(main(rest))


# -- helpers for the reliability tests -------------------------------------------------------------

def mount_tmpfs(path: Path, size: str):
    """Mount a real tmpfs of `size` at path (a context manager); skips the test where mount is not allowed."""
    import contextlib
    import os
    import subprocess

    import pytest

    @contextlib.contextmanager
    def cm():
        path.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            pytest.skip("mounting a small tmpfs for the disk-full test needs root")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0750", "tmpfs", str(path)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"mount -t tmpfs is not permitted here: {r.stderr.strip()}")
        try:
            yield path
        finally:
            for _ in range(20):
                if subprocess.run(["umount", str(path)], capture_output=True).returncode == 0:
                    break
                time.sleep(0.25)
            else:
                subprocess.run(["umount", "-l", str(path)], capture_output=True)

    return cm()


def fill(path: Path, leave_bytes: int = 0) -> Path:
    """Fill the file system under path with a ballast file, leaving about leave_bytes free."""
    import errno
    import os

    ballast = path / "ballast.bin"
    chunk = b"\0" * (1 << 16)
    with open(ballast, "wb") as f:
        try:
            while True:
                f.write(chunk)
                f.flush()
        except OSError as e:
            assert e.errno == errno.ENOSPC
        size = f.tell()
    try:
        os.truncate(ballast, max(0, os.path.getsize(ballast) - leave_bytes))
    except OSError:
        pass
    del size
    return ballast


def check_consistent(state: Path) -> dict:
    """The recovery contract: only complete captures, sha256 = sidecar = catalogue row, no temporaries."""
    import hashlib
    import json
    import sqlite3

    from edge.storage import capture_stem

    leftovers = [p for p in state.rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers, f"temporaries left: {leftovers}"
    db = sqlite3.connect(state / "catalog.sqlite")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    rows = {r[0]: r for r in db.execute("SELECT sidecar, image, raw, sha256, bytes, status, seq FROM captures")}
    db.close()
    files = [p for p in (state / "captures").rglob("*") if p.is_file()]
    sidecars = [p for p in files if p.name.endswith(".json")]
    owned = set()
    for sc in sidecars:
        meta = json.loads(sc.read_text())
        image = sc.parent / meta["image"]
        data = image.read_bytes()
        assert hashlib.sha256(data).hexdigest() == meta["image_sha256"], f"{image}: sha256 differs from sidecar"
        assert len(data) == meta["image_bytes"]
        owned |= {sc, image}
        if meta.get("raw"):
            raw = sc.parent / meta["raw"]
            assert hashlib.sha256(raw.read_bytes()).hexdigest() == meta["raw_sha256"]
            owned.add(raw)
        row = rows.get(str(sc.relative_to(state)))
        assert row is not None, f"{sc}: no catalogue row"
        assert row[1] == str(image.relative_to(state)) and row[3] == meta["image_sha256"] and row[6] == meta["seq"]
        assert capture_stem(image.name) == capture_stem(sc.name)
    orphans = set(files) - owned
    assert not orphans, f"files without a complete capture: {sorted(map(str, orphans))}"
    for sidecar, image, *_ , status, _seq in rows.values():
        assert status == "ok" and (state / sidecar).is_file() and (state / image).is_file(), sidecar
    return {"captures": len(sidecars), "rows": len(rows)}
