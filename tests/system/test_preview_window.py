"""The window preview on a real X server (Xvfb), screenshotted: the daemon's enhanced frame is on screen, in the
picture area of the kiosk screen's layout, at the X screen's size."""
from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest

from edge.enhancer import Enhancer
from edge.imageio import read_image, to_uint8
from edge.overlay import View, layout, render
from tests.helpers import SAMPLES, daemon, status, stop, wait_until


@pytest.fixture
def xvfb():
    """A real X server on a free display, handed over once it accepts connections (-displayfd)."""
    if not shutil.which("Xvfb"):
        pytest.skip("Xvfb is not installed (deploy/dev-deps.sh installs it)")
    r, w = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(w), "-screen", "0", "960x750x24", "-nolisten", "tcp"],
                            pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(w)
    with os.fdopen(r) as ready:
        number = ready.readline().strip() if select.select([ready], [], [], 30)[0] else ""
    assert number and proc.poll() is None, "Xvfb did not start within 30 s"
    yield f":{number}"
    proc.send_signal(signal.SIGTERM)
    proc.wait(10)


def test_window_preview_shows_the_enhanced_frame(tmp_path, tiny_model, xvfb, monkeypatch):
    mss = pytest.importorskip("mss", reason="screenshots need mss (the [dev] extra)")
    folder = tmp_path / "one"
    folder.mkdir()
    shutil.copy(SAMPLES / "phone" / "BloodImage_00090.jpg", folder)
    raw = to_uint8(read_image(folder / "BloodImage_00090.jpg")[0])
    enh, _ = Enhancer.open(tiny_model, "onnxruntime", tile=512)
    enhanced = to_uint8(enh.enhance(raw.astype(np.float32) / 255))
    x, y, w, h = layout(960, 750)["picture"]
    want = render(raw, enhanced, "enhanced", (960, 750), View())[y:y + h, x:x + w]
    want_raw = render(raw, None, "raw", (960, 750), View())[y:y + h, x:x + w]
    monkeypatch.setenv("DISPLAY", xvfb)
    proc = daemon(tmp_path / "s", f"replay:{folder}", tiny_model, env={"DISPLAY": xvfb},
                  extra=["--preview", "window"])
    warnings = None
    try:
        assert wait_until(lambda: status(tmp_path / "s")["state"] == "running", 90), proc.stderr
        deadline = time.monotonic() + 60  # the window maps and draws on its own schedule (slow on a busy machine)
        with mss.MSS(display=xvfb) as m:
            while True:
                got = np.array(m.grab(m.monitors[1]))[..., :3][..., ::-1][y:y + h, x:x + w].astype(int)  # BGRA -> RGB
                d_enh = np.abs(got - want).mean()
                if d_enh < 2.0 or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        st = status(tmp_path / "s")
        warnings = (st["warnings"], st["preview"])
    finally:
        log = stop(proc)
    assert proc.returncode == 0, log
    d_raw = np.abs(got - want_raw).mean()
    assert d_enh < 2.0 and d_raw > 4 * d_enh, (d_enh, d_raw, warnings, log[-1500:])


def _find(screen: np.ndarray, patch: np.ndarray) -> float:
    """Best normalised match of the overlay's own rendering of a text in a screenshot (grey levels)."""
    import cv2

    s = cv2.cvtColor(screen.astype(np.uint8), cv2.COLOR_RGB2GRAY)
    p = cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY)
    return float(cv2.matchTemplate(s, p, cv2.TM_CCOEFF_NORMED).max())


def xdotool(display: str, *args: str) -> None:
    subprocess.run(["xdotool", *args], env={**os.environ, "DISPLAY": display}, check=True, timeout=30)


def test_the_operator_at_the_window_scans_a_sample_id_and_captures(tmp_path, tiny_model, xvfb, monkeypatch):
    """Real key events (xdotool) into the preview window on Xvfb: typed id + Enter sets the sample id, Space
    captures with it (catalogue row with that sample id, a session and a focus score); the screen shows the id
    and the notice, found by matching the overlay's own text rendering; Esc clears the id."""
    import sqlite3

    from edge.overlay import AMBER, scale_for, text_patch

    mss = pytest.importorskip("mss", reason="screenshots need mss (the [dev] extra)")
    if not shutil.which("xdotool"):
        pytest.skip("xdotool is not installed (deploy/dev-deps.sh installs it)")
    monkeypatch.setenv("DISPLAY", xvfb)
    folder = tmp_path / "slides"
    folder.mkdir()
    shutil.copy(SAMPLES / "phone" / "BloodImage_00090.jpg", folder)
    state = tmp_path / "s"
    proc = daemon(state, f"replay:{folder}", tiny_model, env={"DISPLAY": xvfb}, extra=["--preview", "window"],
                  config='[preview]\nnotice = "AI-enhanced image, research use only"\nmax_fps = 5\n')
    try:
        assert wait_until(lambda: status(state)["preview"]["shown"] > 2, 90), proc.stderr
        xdotool(xvfb, "search", "--sync", "--name", "^phonescope$", "windowfocus", "--sync")
        # typed at a person's pace (HighGUI keeps one key between two polls of the window; a scanner's fast
        # typing goes through evdev, tests/unit/test_keys.py): Shift held for the capital, then Enter
        for step in (["keydown", "shift"], ["key", "s"], ["keyup", "shift"], ["key", "minus"], ["key", "7"],
                     ["key", "7"], ["key", "Return"]):
            xdotool(xvfb, *step)
            time.sleep(0.25)
        assert wait_until(lambda: status(state)["operator"]["sample_id"] == "S-77", 20), status(state)["operator"]
        xdotool(xvfb, "key", "space")
        assert wait_until(lambda: status(state)["captures"] == 1, 60)
        sc = scale_for(750)
        want_id, want_notice = text_patch("S-77", 1.6 * sc, 3), text_patch("AI-enhanced image, research use only",
                                                                           0.9 * sc, 2, AMBER)
        with mss.MSS(display=xvfb) as m:
            deadline, best = time.monotonic() + 30, (0.0, 0.0)
            while time.monotonic() < deadline and min(best) < 0.9:
                shot = np.array(m.grab(m.monitors[1]))[..., :3][..., ::-1]
                best = (_find(shot, want_id), _find(shot, want_notice))
                time.sleep(0.3)
        assert min(best) >= 0.9, f"sample id / notice on screen: match {best}"
        xdotool(xvfb, "key", "Escape")
        assert wait_until(lambda: status(state)["operator"]["sample_id"] is None, 20)
    finally:
        log = stop(proc)
    assert proc.returncode == 0, log
    db = sqlite3.connect(state / "catalog.sqlite")
    (row,) = db.execute("SELECT sample_id, session_id, focus_score, operator_id FROM captures").fetchall()
    assert row[0] == "S-77" and row[1] and row[2] is not None and row[2] > 0, row
