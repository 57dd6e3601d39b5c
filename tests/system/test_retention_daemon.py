"""Retention in the running daemon: captures uploaded to a real WebDAV server (wsgidav) are deleted from
the kiosk once their delivery is old enough, the undelivered one is kept, and a restart neither uploads
nor recovers the deleted ones again."""
from __future__ import annotations

import hashlib
import json
import signal
import sqlite3

from tests.helpers import daemon, replay_folder, run_cli, running, status, wait_until
from tests.webdav import DavServer


def sha(p):
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_uploaded_captures_are_deleted_after_the_retention_period_and_nothing_else(tmp_path, tiny_model):
    server = DavServer(tmp_path / "served", tmp_path / "dav.log").start()
    frames = replay_folder(tmp_path / "frames")
    state = tmp_path / "s"
    days = 20 / 86400                  # twenty seconds: swept every 5 s
    config = (f'[upload]\nurl = "http://127.0.0.1:{server.port}/dav/k"\nretry_max_s = 1\n'
              f'[storage]\ndelete_after_upload_days = {days}\n')
    procs = []
    try:
        proc = daemon(state, f"replay:{frames}", tiny_model, config=config)
        procs.append(proc)
        running(state, proc)
        for i in range(3):
            assert run_cli("capture", "--state-dir", state, "--sample-id", f"R-{i}", timeout=120).returncode == 0
        assert wait_until(lambda: status(state)["upload"]["backlog"] == 0, 60)
        uploaded = {p.name: sha(p) for p in (tmp_path / "served" / "k").rglob("*") if p.is_file()}
        assert len(uploaded) == 9
        server.stop()                  # the fourth capture cannot leave the kiosk
        assert run_cli("capture", "--state-dir", state, "--sample-id", "R-3", timeout=120).returncode == 0
        assert status(state)["retention"]["deleted"] == 0, "not before the period"
        assert wait_until(lambda: status(state)["retention"]["deleted"] == 3, 60), status(state)["retention"]
        left = [p for p in (state / "captures").rglob("*") if p.is_file()]
        assert sorted(p.name.split("_")[-1].split(".")[0] for p in left) == ["R-3"] * 3, left
        st = status(state)
        assert st["retention"]["last_error"] is None and st["retention"]["freed_mb"] > 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        _, err = proc.communicate()
        assert err.count("retention: deleted capture #") == 3 and "delivered to upload http://127.0.0.1" in err

        server.start()
        proc = daemon(state, f"replay:{frames}", tiny_model, config=config)
        procs.append(proc)
        running(state, proc)
        assert wait_until(lambda: status(state)["upload"]["backlog"] == 0, 60), status(state)["upload"]
        assert status(state)["upload"]["files_sent"] == 3, "only the fourth capture; the deleted are not sent again"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        _, err = proc.communicate()
        assert "start-up recovery" not in err, "the deleted captures are not recovered as captures"
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        server.stop()
    db = sqlite3.connect(state / "catalog.sqlite")
    rows = db.execute("SELECT seq, sample_id, status, deleted_utc FROM captures ORDER BY seq").fetchall()
    assert [(s, st) for s, _, st, _ in rows] == [(1, "deleted"), (2, "deleted"), (3, "deleted"), (4, "ok")]
    assert all(d for *_, d in rows[:3])
    served = {p.name: sha(p) for p in (tmp_path / "served" / "k").rglob("*") if p.is_file()}
    assert {k: served[k] for k in uploaded} == uploaded and len(served) == 12, "the reader has every file"
    print(json.dumps({"captures": 4, "deleted": 3, "kept": 1}))
