"""[export] auto_dir in the running daemon: a filesystem mounted at the folder (tmpfs playing the USB
stick) gets the captures taken before and after it came, verified; the screen's notice says so."""
from __future__ import annotations

import hashlib
import signal

from tests.helpers import daemon, replay_folder, run_cli, running, status, wait_until
from tests.unit.test_auto_export import mount_tmpfs, umount


def tree(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file()}


def test_the_daemon_copies_captures_to_a_stick_mounted_at_auto_dir(tmp_path, tiny_model):
    stick = tmp_path / "usb"
    stick.mkdir()
    state = tmp_path / "s"
    proc = daemon(state, f"replay:{replay_folder(tmp_path / 'frames')}", tiny_model,
                  config=f'[export]\nauto_dir = "{stick}"\n')
    try:
        running(state, proc)
        assert run_cli("capture", "--state-dir", state, "--sample-id", "U-1", timeout=120).returncode == 0
        assert status(state)["export"]["state"] == "no stick" and list(stick.iterdir()) == []
        mount_tmpfs(stick, "64m")
        assert wait_until(lambda: status(state)["export"]["state"] == "done", 30), status(state)["export"]
        assert run_cli("capture", "--state-dir", state, "--sample-id", "U-2", timeout=120).returncode == 0
        assert wait_until(lambda: status(state)["export"]["captures_on_stick"] == 2, 30), status(state)["export"]
        st = status(state)
        assert "USB export: 2 captures on the stick, safe to remove" in st["warnings"]
        assert tree(stick) == tree(state / "captures")
        umount(stick)
        assert wait_until(lambda: status(state)["export"]["state"] == "no stick", 10)
        assert not any("USB" in w for w in status(state)["warnings"])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        _, err = proc.communicate()
        assert "export to " in err and "USB stick at" in err
    finally:
        if proc.poll() is None:
            proc.kill()
        umount(stick)
