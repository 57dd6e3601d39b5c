"""The window preview on a real X server (Xvfb), screenshotted: the daemon's enhanced frame is on screen."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest

from edge.enhancer import Enhancer
from edge.imageio import read_image, to_uint8
from edge.preview import compose
from tests.helpers import SAMPLES, daemon, status, wait_until


@pytest.fixture
def xvfb():
    if not shutil.which("Xvfb"):
        pytest.skip("Xvfb is not installed (deploy/dev-deps.sh installs it)")
    display = f":{100 + os.getpid() % 400}"
    proc = subprocess.Popen(["Xvfb", display, "-screen", "0", "960x750x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    assert proc.poll() is None, "Xvfb did not start"
    yield display
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
    want = compose(raw, enhanced, "enhanced", 960, ["x"])[:720]
    want_raw = compose(raw, None, "raw", 960, ["x"])[:720]
    monkeypatch.setenv("DISPLAY", xvfb)
    proc = daemon(tmp_path / "s", f"replay:{folder}", tiny_model, env={"DISPLAY": xvfb},
                  extra=["--preview", "window"])
    try:
        assert wait_until(lambda: status(tmp_path / "s")["state"] == "running", 90), proc.stderr
        deadline = time.monotonic() + 60  # the window maps and draws on its own schedule (slow on a busy machine)
        with mss.MSS() as m:
            while True:
                got = np.array(m.grab(m.monitors[1]))[..., :3][..., ::-1][:720].astype(int)  # BGRA -> RGB
                d_enh = np.abs(got - want).mean()
                if d_enh < 2.0 or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    d_raw = np.abs(got - want_raw).mean()
    assert d_enh < 2.0 and d_raw > 4 * d_enh, (d_enh, d_raw)
