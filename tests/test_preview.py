"""Preview sinks against real targets: an X server (Xvfb) and a framebuffer-shaped file."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import cv2
import numpy as np
import pytest

from edge.enhancer import Enhancer
from edge.imageio import read_image, to_uint8
from edge.preview import FbdevSink, FileSink, compose
from tests.conftest import SAMPLES
from tests.test_daemon import start_daemon, status, wait_until


def rgb565(img: np.ndarray) -> bytes:
    r, g, b = (img[..., i].astype(np.uint16) for i in range(3))
    return ((r >> 3) << 11 | (g >> 2) << 5 | (b >> 3)).astype("<u2").tobytes()


def fake_fb(tmp_path, w, h, bpp, stride):
    sysfs = tmp_path / "sys"
    sysfs.mkdir()
    (sysfs / "virtual_size").write_text(f"{w},{h}\n")
    (sysfs / "bits_per_pixel").write_text(f"{bpp}\n")
    (sysfs / "stride").write_text(f"{stride}\n")
    dev = tmp_path / "fb0"
    dev.write_bytes(b"\0" * stride * h)
    return dev, sysfs


def test_fbdev_rgb565(tmp_path):
    img = (np.random.default_rng(0).random((60, 80, 3)) * 255).astype(np.uint8)
    dev, sysfs = fake_fb(tmp_path, 80, 60, 16, 160)
    sink = FbdevSink(dev, sysfs)
    sink.show(img)
    sink.close()
    assert dev.read_bytes() == rgb565(img)


def test_fbdev_bgra8888_with_padded_stride_and_letterbox(tmp_path):
    img = (np.random.default_rng(1).random((60, 80, 3)) * 255).astype(np.uint8)
    dev, sysfs = fake_fb(tmp_path, 80, 70, 32, 80 * 4 + 64)
    sink = FbdevSink(dev, sysfs)
    sink.show(img)
    data = np.frombuffer(dev.read_bytes(), np.uint8).reshape(70, 80 * 4 + 64)
    px = data[:, :320].reshape(70, 80, 4)
    assert np.array_equal(px[5:65, :, 0], img[..., 2]) and np.array_equal(px[5:65, :, 2], img[..., 0])
    assert np.array_equal(px[5:65, :, 1], img[..., 1]) and (px[5:65, :, 3] == 255).all()
    assert not px[:5, :, :3].any() and not data[:, 320:].any()


def test_fbdev_without_geometry_is_one_clear_error(tmp_path):
    with pytest.raises(OSError, match="cannot read geometry"):
        FbdevSink(tmp_path / "fb9", tmp_path / "nosys")


def test_file_sink_replaces_atomically(tmp_path):
    sink = FileSink(tmp_path / "preview.jpg")
    for v in (10, 200):
        sink.show(np.full((40, 60, 3), v, np.uint8))
    img = cv2.imread(str(tmp_path / "preview.jpg"))
    assert img.shape == (40, 60, 3) and abs(img.mean() - 200) < 2
    assert [p.name for p in tmp_path.iterdir()] == ["preview.jpg"]


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
    proc = start_daemon(tmp_path / "s", f"replay:{folder}", tiny_model, env={"DISPLAY": xvfb},
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
