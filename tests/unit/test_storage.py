"""Capture storage: durable files, catalogue rows, recovery, watermark, safe names."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat

import pytest

from edge.storage import MIGRATIONS, Storage, StorageError, StorageFull, check_sample_id


def test_store_writes_files_sidecar_and_row(tmp_path):
    st = Storage(tmp_path, min_free_mb=0)
    s = st.store(b"PNGDATA", ".png", {"model": {"name": "m", "version": "1"}, "backend": "onnxruntime"},
                 raw_bytes=b"JPEG", sample_id="slide-7", now=1_700_000_000)
    assert s.image.read_bytes() == b"PNGDATA" and s.raw.read_bytes() == b"JPEG"
    assert s.image.parent.name == "slide-7" and "_000001_slide-7" in s.image.name
    meta = json.loads(s.sidecar.read_text())
    assert meta["image_sha256"] == hashlib.sha256(b"PNGDATA").hexdigest() and meta["seq"] == 1
    assert meta["clock"] == "rtc"
    (row,) = st.rows()
    assert row["sha256"] == meta["image_sha256"] and row["sample_id"] == "slide-7"
    assert stat.S_IMODE(os.stat(s.image).st_mode) & 0o007 == 0, "captures must not be world-readable"
    s2 = st.store(b"X", ".png", {}, now=0)
    assert s2.seq == 2 and "1970" in str(s2.image) and json.loads(s2.sidecar.read_text())["clock"] != "rtc"
    assert not [p for p in tmp_path.rglob("*.tmp")]


@pytest.mark.parametrize("bad", ["../etc", "a/b", "..", ".hidden", "x" * 65, "a b", "é", "a\nb"])
def test_sample_id_cannot_escape(bad):
    with pytest.raises(StorageError):
        check_sample_id(bad)


def test_watermark_refuses(tmp_path):
    st = Storage(tmp_path, min_free_mb=10 ** 9)
    with pytest.raises(StorageFull, match="watermark"):
        st.store(b"x", ".png", {})
    assert st.rows() == [] and not list((tmp_path / "captures").rglob("*.*"))


def test_recovery_after_interrupted_writes(tmp_path):
    st = Storage(tmp_path, min_free_mb=0)
    done = st.store(b"A", ".png", {}, now=1_700_000_000)
    folder = done.image.parent
    (folder / ".20231114T221320_000002.png.abc.tmp").write_bytes(b"half")   # died mid-write
    (folder / "20231114T221320_000003.png").write_bytes(b"B")              # died before its sidecar
    (folder / "20231114T221320_000003.raw.jpg").write_bytes(b"R")
    lost = st.store(b"C", ".png", {}, now=1_700_000_000)                     # died before its row
    st.db.execute("DELETE FROM captures WHERE seq=?", (lost.seq,))
    st.close()
    st = Storage(tmp_path, min_free_mb=0)
    rep = st.recover()
    assert rep["temporaries_removed"] == 1 and rep["incomplete_removed"] == 2 and rep["rows_added"] == 1
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [done.image.name, done.sidecar.name, lost.image.name, lost.sidecar.name])
    assert [r["seq"] for r in st.rows()] == [done.seq, lost.seq]
    assert st.recover() == {"temporaries_removed": 0, "incomplete_removed": 0, "rows_added": 0, "rows_missing": 0}


def test_sample_id_with_a_dot_survives_recovery(tmp_path):
    """Recovery once took the stem up to the first dot and deleted acknowledged captures of such samples."""
    st = Storage(tmp_path, min_free_mb=0)
    s = st.store(b"IMG", ".png", {}, raw_bytes=b"RAW", sample_id="slide.7", now=1_700_000_000)
    st.close()
    st = Storage(tmp_path, min_free_mb=0)
    rep = st.recover()
    assert rep["incomplete_removed"] == 0 and s.image.read_bytes() == b"IMG" and s.raw.is_file()
    assert [r["seq"] for r in st.rows()] == [1]


def test_files_catalogue_and_folders_are_not_world_readable(tmp_path):
    os.umask(0o022)  # the laxest usual umask: the modes must not depend on it
    st = Storage(tmp_path / "state", min_free_mb=0)
    s = st.store(b"IMG", ".png", {}, raw_bytes=b"RAW", sample_id="p1", now=1_700_000_000)
    for p in (s.image, s.raw, s.sidecar, *(tmp_path / "state").glob("catalog.sqlite*")):
        assert stat.S_IMODE(os.stat(p).st_mode) & 0o007 == 0, p
    for d in (s.image.parent, s.image.parent.parent, tmp_path / "state" / "captures"):
        assert stat.S_IMODE(os.stat(d).st_mode) & 0o007 == 0, d
    assert len(list((tmp_path / "state").glob("catalog.sqlite-wal"))) == 1


def test_the_service_group_can_read_captures_under_the_units_umask(tmp_path):
    """UMask=0077 in the unit: operators in the phonescope group must still reach the captures (0750/0640)."""
    old = os.umask(0o077)
    try:
        st = Storage(tmp_path / "state", min_free_mb=0)
        s = st.store(b"IMG", ".png", {}, raw_bytes=b"RAW", sample_id="p1", now=1_700_000_000)
    finally:
        os.umask(old)
    for d in (s.image.parent, s.image.parent.parent, tmp_path / "state" / "captures"):
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o750, (d, oct(os.stat(d).st_mode))
    for p in (s.image, s.raw, s.sidecar):
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o640, p


PAGE = 4096
ROOM = {"nothing": 0, "raw": 15 * PAGE, "raw+image": (15 + 74) * PAGE, "files, not the catalogue": (15 + 74 + 1) * PAGE}


@pytest.mark.parametrize("leave", list(ROOM))
def test_enospc_in_the_middle_of_a_capture_leaves_nothing(tmp_path, leave):
    """A real ENOSPC from a real tmpfs after the watermark check passed (the disk filled meanwhile)."""
    from tests.helpers import check_consistent, fill, mount_tmpfs

    image, raw = os.urandom(300_000), os.urandom(60_000)   # incompressible, so sizes are what they say
    with mount_tmpfs(tmp_path / "state", "4m") as state:
        st = Storage(state, min_free_mb=0.5)
        first = st.store(image, ".png", {}, raw_bytes=raw, now=1_700_000_000)
        room = ROOM[leave]   # tmpfs allocates whole pages: raw = 15 pages, image = 74, sidecar = 1
        check = st.check_space

        def check_then_fill(needed_bytes=0):
            check(needed_bytes)      # the watermark still sees room ...
            fill(state, room)        # ... and then the disk fills up under the writer
            assert shutil.disk_usage(state).free == room
        st.check_space = check_then_fill
        where = "cataloguing" if leave.endswith("catalogue") else "writing"
        with pytest.raises(StorageFull, match=f"disk full while {where} .*nothing saved"):
            st.store(image, ".png", {}, raw_bytes=raw, now=1_700_000_000)
        st.check_space = check
        (state / "ballast.bin").unlink()
        assert [r["seq"] for r in st.rows()] == [first.seq]
        assert sorted(p.name for p in first.image.parent.iterdir()) == sorted(
            [first.image.name, first.raw.name, first.sidecar.name]), "no partial or temporary file left"
        again = st.store(image, ".png", {}, raw_bytes=raw, now=1_700_000_000)   # space freed: works again
        assert again.seq == 2
        st.close()
        check_consistent(state)


def test_an_older_catalogue_is_migrated_and_keeps_its_rows(tmp_path):
    """A catalogue written before focus scores, sessions and review flags (schema 1) gets their columns."""
    import sqlite3

    old = sqlite3.connect(tmp_path / "catalog.sqlite")
    old.executescript("""CREATE TABLE captures (seq INTEGER PRIMARY KEY, time_utc TEXT NOT NULL, clock TEXT NOT NULL,
        sample_id TEXT, image TEXT NOT NULL UNIQUE, raw TEXT, sidecar TEXT NOT NULL, sha256 TEXT NOT NULL,
        bytes INTEGER NOT NULL, model TEXT, backend TEXT, status TEXT NOT NULL DEFAULT 'ok');
        INSERT INTO captures VALUES (1, 't', 'rtc', 'old', 'a.png', NULL, 'a.json', 'x', 3, 'm 1', 'onnxruntime', 'ok');""")
    old.commit()
    old.close()
    s = Storage(tmp_path)
    (version,) = s.db.execute("PRAGMA user_version").fetchone()
    (row,) = s.rows()
    assert version == max(MIGRATIONS) and row["sample_id"] == "old" and row["review"] is None \
        and row["focus_score"] is None
    assert s.delivered("export", "/media/usb") == {}, "the deliveries table exists"
    s.flag(1, "retake")
    assert s.rows()[0]["review"] == "retake"
    s.flag(1, None)
    with pytest.raises(StorageError, match="unknown review flag"):
        s.flag(1, "delete")
    with pytest.raises(StorageError, match="no capture #7"):
        s.flag(7, "retake")
    s.close()
    s = Storage(tmp_path)   # opening again migrates nothing
    assert s.db.execute("PRAGMA user_version").fetchone() == (max(MIGRATIONS),) and len(s.rows()) == 1
    s.close()


def test_a_capture_records_its_session_operator_and_focus(tmp_path):
    s = Storage(tmp_path)
    stored = s.store(b"png", ".png", {"session": {"id": "ab12", "operator": "tech-7"}, "focus_score": 12.5},
                     sample_id="S1")
    (row,) = s.rows()
    assert (row["session_id"], row["operator_id"], row["focus_score"], row["sample_id"]) == ("ab12", "tech-7", 12.5,
                                                                                               "S1")
    assert json.loads(stored.sidecar.read_text())["session"] == {"id": "ab12", "operator": "tech-7"}
    s.close()
