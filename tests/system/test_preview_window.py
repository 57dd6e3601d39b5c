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
        with mss.MSS() as m:
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
