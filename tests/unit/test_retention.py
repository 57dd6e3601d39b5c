"""Retention: only captures wholly delivered with the kiosk's own hashes, N days ago, are deleted, oldest
first; rows stay as 'deleted'; a deletion cut by a power cut is finished; a full disk wakes a sweep."""
from __future__ import annotations

import hashlib
import json
import sqlite3
import time

from edge.export import export
from edge.retention import DAY_S, Retention, sweep
from edge.storage import Storage

DAY = 86400


def stored(tmp_path, n=6):
    st = Storage(tmp_path / "state", min_free_mb=0)
    t0 = time.time() - 40 * DAY
    for i in range(n):
        st.store(f"IMG{i}".encode() * 1000, ".png", {"n": i}, raw_bytes=f"RAW{i}".encode() * 500,
                 sample_id=f"S-{i % 2}", now=t0 + i * DAY, raw_format="png")
    return st


def deliver(st, seq, target="https://dav.example/k", kind="upload", skip=(), digest=None):
    row = st.row(seq)
    for rel, d in st.capture_files(row):
        if rel not in skip:
            st.record_delivery(seq, kind, target, rel, digest or d)


def on_disk(st):
    return {p.name for p in st.captures.rglob("*") if p.is_file()}


def test_only_captures_wholly_delivered_with_the_kiosks_hashes_long_enough_ago_are_deleted(tmp_path):
    st = stored(tmp_path)
    deliver(st, 1)                                  # uploaded
    dest = tmp_path / "usb"
    dest.mkdir()
    export(st, dest)                                # every capture exported, verified...
    st.db.execute("DELETE FROM deliveries WHERE kind='export' AND seq IN (3, 4, 5)")   # ...all but 2 and 6
    deliver(st, 3, skip=(st.capture_files(st.row(3))[0][0],))     # one file never arrived
    deliver(st, 4, digest="0" * 64)                 # the server holds other bytes
    keep = {r["seq"]: [p for p in (r["image"], r["raw"], r["sidecar"])] for r in st.rows() if r["seq"] not in (1, 2, 6)}
    before = {p: hashlib.sha256((st.root / p).read_bytes()).hexdigest() for ps in keep.values() for p in ps}

    r = sweep(st, days=7, now=time.time() + 6 * DAY)   # delivered today: not yet 7 days ago
    assert r["deleted"] == [] and len(on_disk(st)) == 18

    sizes = {s: sum((st.root / p).stat().st_size for p in (st.row(s)["image"], st.row(s)["raw"], st.row(s)["sidecar"]))
             for s in (1, 2, 6)}
    r = sweep(st, days=7, now=time.time() + 8 * DAY)
    assert r["deleted"] == [1, 2, 6], "oldest first; 3 (partial), 4 (other hash), 5 (not delivered) kept"
    assert r["freed_bytes"] == sum(sizes.values())
    rows = {x["seq"]: x for x in st.rows()}
    assert [s for s, x in rows.items() if x["status"] == "deleted"] == [1, 2, 6]
    assert all(rows[s]["deleted_utc"] for s in (1, 2, 6)), "the row stays, dated"
    for s in (1, 2, 6):
        assert not any((st.root / p).exists() for p in (rows[s]["image"], rows[s]["raw"], rows[s]["sidecar"]))
    assert {p: hashlib.sha256((st.root / p).read_bytes()).hexdigest() for p in before} == before, \
        "every other capture byte for byte"
    assert len(st.deliveries()) > 0 and {d["seq"] for d in st.deliveries()} >= {1, 2, 6}, "where it went is kept"
    assert sweep(st, days=7, now=time.time() + 8 * DAY)["deleted"] == [], "nothing twice"


def test_with_an_upload_url_a_capture_only_exported_is_kept_until_uploaded(tmp_path):
    st = stored(tmp_path, 3)
    url = "https://dav.example/k"
    deliver(st, 1, url)
    deliver(st, 2, "/media/usb", kind="export")
    deliver(st, 3, "https://other.example/k")
    later = time.time() + 2 * DAY
    assert sweep(st, days=1, now=later, upload_url=url)["deleted"] == [1]
    assert sweep(st, days=1, now=later)["deleted"] == [2, 3], "no upload configured: any verified delivery"


def test_a_capture_changed_on_the_kiosk_since_its_delivery_is_kept(tmp_path):
    st = stored(tmp_path, 2)
    deliver(st, 1)
    deliver(st, 2)
    img = st.root / st.row(2)["image"]
    img.write_bytes(img.read_bytes()[:-1] + b"X")      # not what the server holds any more
    r = sweep(st, days=1, now=time.time() + 2 * DAY)
    assert r["deleted"] == [1] and img.exists()


def test_a_deletion_cut_by_a_power_cut_is_finished_and_never_recovered_as_a_capture(tmp_path):
    st = stored(tmp_path, 3)
    deliver(st, 1)
    row = st.row(1)
    st.mark_deleted(1)                       # the power went here: row marked, files still there
    st.close()
    st = Storage(tmp_path / "state", min_free_mb=0)
    report = st.recover()
    assert report["rows_added"] == 0 and st.row(1)["status"] == "deleted"
    r = sweep(st, days=30)
    assert r["finished"] == 1 and r["deleted"] == []
    assert not (st.root / row["image"]).exists() and not (st.root / row["sidecar"]).exists()
    assert st.recover()["rows_missing"] == 0 and st.row(1)["status"] == "deleted"


def test_emptied_day_folders_go_and_an_old_catalogue_gains_the_column(tmp_path):
    st = stored(tmp_path, 2)
    day1 = (st.root / st.row(1)["image"]).parent
    deliver(st, 1)
    sweep(st, days=1, now=time.time() + 2 * DAY)
    assert not day1.exists() and st.captures.exists(), "the emptied sample/day folders, not captures/"
    (version,) = st.db.execute("PRAGMA user_version").fetchone()
    assert version == 4
    st.close()
    db = sqlite3.connect(tmp_path / "state" / "catalog.sqlite")
    db.execute("ALTER TABLE captures DROP COLUMN deleted_utc")
    db.execute("PRAGMA user_version = 3")
    db.commit()
    db.close()
    st = Storage(tmp_path / "state", min_free_mb=0)
    assert "deleted_utc" in st.row(2)


def backdate(st, seq, days):
    """As if its delivery were `days` old (the clock cannot be moved for the thread)."""
    when = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() - days * DAY))
    with st.lock:
        st.db.execute("UPDATE deliveries SET time_utc=? WHERE seq=?", (when, seq))


def test_the_thread_sweeps_at_start_periodically_and_when_woken(tmp_path):
    st = stored(tmp_path, 4)
    deliver(st, 1)
    backdate(st, 1, 2)
    deliver(st, 2)
    ret = Retention(st, days=1)
    assert ret.period == 600, "at most every 10 min"
    ret.start()
    assert wait(lambda: ret.deleted == 1), ret.status()
    backdate(st, 2, 2)
    ret.wake()                                      # what the daemon does when the disk is below the watermark
    assert wait(lambda: ret.deleted == 2, 5), "woken, not after 600 s"
    ret.stop(time.monotonic() + 5)
    assert not ret.thread.is_alive()
    s = ret.status()
    assert s["last_error"] is None and s["deleted"] == 2 and s["last_sweep_utc"], s
    assert json.dumps(s)
    assert [r["seq"] for r in st.rows() if r["status"] == "ok"] == [3, 4]

    short = Retention(st, days=10 / DAY_S)          # ten seconds: swept every 2.5 s
    assert short.period == 2.5


def wait(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not pred() and time.monotonic() < deadline:
        time.sleep(0.02)
    return pred()
