"""export-captures: a verified, resumable copy of captures and sidecars, recorded in the catalogue."""
from __future__ import annotations

import datetime as dt
import hashlib
import json

import pytest

from edge.export import ExportError, export
from edge.storage import Storage

DAY = 86400


def stored(tmp_path):
    st = Storage(tmp_path / "state", min_free_mb=0)
    t0 = 1_764_547_200          # 2025-12-01 UTC
    for i, (sample, day) in enumerate([("S-1", 0), ("S-1", 0), ("S-2", 1), (None, 2), ("S-2", 2)]):
        st.store(f"IMG{i}".encode() * 100, ".png", {"n": i}, raw_bytes=f"RAW{i}".encode(), sample_id=sample,
                 now=t0 + day * DAY + i, raw_format="png")
    return st


def tree(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file()}


def test_export_copies_the_captures_tree_verified_and_records_it(tmp_path):
    st = stored(tmp_path)
    dest = tmp_path / "usb"
    dest.mkdir()
    r = export(st, dest)
    assert (r.captures, r.copied, r.skipped, r.failed) == (5, 15, 0, [])
    assert tree(dest) == tree(st.captures), "the same readable tree, byte for byte"
    assert any(k.endswith("S-1/20251201T000000_000001_S-1.json") for k in tree(dest))
    delivered = st.delivered("export", str(dest.resolve()))
    assert len(delivered) == 15 and {s for s, _ in delivered} == {1, 2, 3, 4, 5}
    assert not list(dest.rglob("*.tmp"))
    again = export(st, dest)
    assert (again.captures, again.copied, again.skipped) == (5, 0, 15), "already there: skipped by hash"


def test_an_interrupted_export_resumes_and_replaces_a_damaged_copy(tmp_path):
    st = stored(tmp_path)
    dest = tmp_path / "usb"
    dest.mkdir()
    export(st, dest)
    files = sorted(p for p in dest.rglob("*") if p.is_file())
    files[0].unlink()                                   # never arrived (stick pulled out)
    files[1].write_bytes(files[1].read_bytes()[:-3])    # half written by another tool
    r = export(st, dest)
    assert (r.copied, r.skipped) == (2, 13)
    assert tree(dest) == tree(st.captures)


def test_a_copy_cut_short_leaves_no_temporary_behind_on_the_next_export(tmp_path):
    st = stored(tmp_path)
    dest = tmp_path / "usb"
    dest.mkdir()
    export(st, dest)
    sidecar = next(dest.rglob("*.json"))
    stale = sidecar.parent / f".{sidecar.name}.k3x9a1.tmp"   # the stick was pulled mid-copy
    stale.write_bytes(b"half")
    sidecar.unlink()
    r = export(st, dest)
    assert r.copied == 1 and not stale.exists() and tree(dest) == tree(st.captures)


def test_since_and_sample_select_captures(tmp_path):
    st = stored(tmp_path)
    dest = tmp_path / "usb"
    dest.mkdir()
    r = export(st, dest, since=dt.date(2025, 12, 2), sample="S-2")
    assert r.captures == 2 and r.copied == 6
    assert {json.loads(p.read_text())["seq"] for p in dest.rglob("*.json")} == {3, 5}


def test_a_capture_changed_on_the_kiosk_is_not_exported_and_is_reported(tmp_path):
    st = stored(tmp_path)
    (row,) = [r for r in st.rows() if r["seq"] == 2]
    (st.root / row["image"]).write_bytes(b"tampered")
    dest = tmp_path / "usb"
    dest.mkdir()
    r = export(st, dest)
    assert r.captures == 4 and len(r.failed) == 1 and "capture #2" in r.failed[0] and "differs" in r.failed[0]
    assert not [k for k in tree(dest) if "_000002" in k]


def test_a_missing_target_is_one_clear_error(tmp_path):
    st = stored(tmp_path)
    with pytest.raises(ExportError, match="no such folder .is the USB stick mounted"):
        export(st, tmp_path / "nowhere")
