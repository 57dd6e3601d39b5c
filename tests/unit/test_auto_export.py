"""[export] auto_dir: a real filesystem (tmpfs) mounted and unmounted at the folder plays the USB stick;
the bare folder is never written to; a full stick is said on screen."""
from __future__ import annotations

import hashlib
import subprocess
import time

import pytest

from edge.auto_export import AutoExport
from edge.notices import Notices
from edge.storage import Storage


def mount_tmpfs(folder, size="16m"):
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0777", "phonescope-test-stick",
                        str(folder)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here to play the USB stick (needs root): {r.stderr.strip()}")


def umount(folder):
    subprocess.run(["umount", str(folder)], check=False, capture_output=True)


def tree(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file()}


def wait(pred, timeout=10.0):
    end = time.monotonic() + timeout
    while not pred() and time.monotonic() < end:
        time.sleep(0.02)
    return pred()


def store(st, i):
    return st.store(f"IMG{i}".encode() * 2000, ".png", {"n": i}, raw_bytes=f"RAW{i}".encode() * 1000,
                    sample_id=f"S-{i}", raw_format="png")


def test_a_stick_mounted_at_the_folder_gets_every_capture_and_then_each_new_one(tmp_path):
    st = Storage(tmp_path / "state", min_free_mb=0)
    for i in range(3):
        store(st, i)
    stick = tmp_path / "usb"
    stick.mkdir()
    notices = Notices()
    auto = AutoExport(st, stick, notices)
    auto.start()
    try:
        time.sleep(2.5)                       # one poll or more with the bare folder
        assert list(stick.iterdir()) == [] and auto.state == "no stick", "the kiosk's own disk is not a stick"
        mount_tmpfs(stick)
        assert wait(lambda: auto.state == "done"), auto.status()
        assert tree(stick) == tree(st.captures)
        assert notices.get("export") == "USB export: 3 captures on the stick, safe to remove"
        assert len(st.delivered("export", str(stick.resolve()))) == 9

        stored = store(st, 3)
        auto.saved(stored.seq)
        assert wait(lambda: auto.on_stick == 4), auto.status()
        assert tree(stick) == tree(st.captures) and auto.last["copied"] == 3, "only the new capture's files"
        assert "4 captures on the stick" in notices.get("export")

        umount(stick)
        assert wait(lambda: auto.state == "no stick") and notices.get("export") is None
        store(st, 4)                           # saved with no stick in: not written to the bare folder
        auto.saved(5)
        time.sleep(2.5)
        assert list(stick.iterdir()) == []

        mount_tmpfs(stick)                     # another (empty) stick: everything again
        assert wait(lambda: auto.state == "done" and auto.on_stick == 5), auto.status()
        assert tree(stick) == tree(st.captures)
    finally:
        auto.stop(time.monotonic() + 5)
        umount(stick)
    assert not auto.thread.is_alive()


def test_a_full_stick_is_said_and_the_next_capture_tries_every_one_again(tmp_path):
    st = Storage(tmp_path / "state", min_free_mb=0)
    big = st.store(b"\0" * 300_000, ".png", {"n": 0}, raw_bytes=b"\1" * 300_000, raw_format="png")
    stick = tmp_path / "usb"
    stick.mkdir()
    notices = Notices()
    auto = AutoExport(st, stick, notices)
    mount_tmpfs(stick, size="400k")
    auto.start()
    try:
        assert wait(lambda: auto.state == "failed"), auto.status()
        assert "USB export failed" in notices.get("export") and "full" in notices.get("export")
        assert len(st.delivered("export", str(stick.resolve()))) < 3, "the capture is not recorded as on it"
        umount(stick)
        mount_tmpfs(stick, size="2m")          # a bigger stick
        assert wait(lambda: auto.state == "done"), auto.status()
        assert tree(stick) == tree(st.captures)
    finally:
        auto.stop(time.monotonic() + 5)
        umount(stick)
