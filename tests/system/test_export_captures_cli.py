"""`phonescope export-captures` against a running daemon's state folder (WAL: both write the catalogue)."""
from __future__ import annotations

import hashlib
import json
import signal
import sqlite3

from tests.helpers import daemon, replay_folder, run_cli, running


def test_export_while_the_daemon_runs_then_resume_and_errors(tmp_path, tiny_model):
    frames = replay_folder(tmp_path / "frames")
    state, usb = tmp_path / "s", tmp_path / "usb"
    usb.mkdir()
    proc = daemon(state, f"replay:{frames}", tiny_model)
    try:
        running(state, proc)
        for sid in ("A-1", "A-2", "A-1"):
            assert run_cli("capture", "--state-dir", state, "--sample-id", sid, timeout=120).returncode == 0
        r = run_cli("export-captures", "--to", usb, "--state-dir", state, "--sample", "A-1")
        assert r.returncode == 0, r.stderr
        rep = json.loads(r.stdout)
        assert rep["captures"] == 2 and rep["copied"] == 6 and rep["failed"] == []
        assert run_cli("capture", "--state-dir", state, timeout=120).returncode == 0   # the daemon still writes
        r = run_cli("export-captures", "--to", usb, "--state-dir", state)
        rep = json.loads(r.stdout)
        assert r.returncode == 0 and (rep["captures"], rep["copied"], rep["skipped"]) == (4, 6, 6)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    for p in (state / "captures").rglob("*"):
        if p.is_file():
            copy = usb / p.relative_to(state / "captures")
            assert hashlib.sha256(copy.read_bytes()).digest() == hashlib.sha256(p.read_bytes()).digest()
    db = sqlite3.connect(state / "catalog.sqlite")
    assert db.execute("SELECT COUNT(*), COUNT(DISTINCT seq) FROM deliveries WHERE kind='export'").fetchone() == (12, 4)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)

    r = run_cli("export-captures", "--to", tmp_path / "no-stick", "--state-dir", state)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "is the USB stick mounted" in r.stderr
    r = run_cli("export-captures", "--to", usb, "--state-dir", state, "--since", "yesterday")
    assert r.returncode == 2 and "a date like" in r.stderr
    r = run_cli("export-captures", "--to", usb, "--state-dir", tmp_path / "empty")
    assert r.returncode == 1 and "no captures here" in r.stderr
