"""Preview sinks against real targets: a framebuffer-shaped file and a real preview file."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge.sinks.fbdev import FbdevSink
from edge.sinks.file import FileSink


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


# -- which sink a kiosk gets (edge.sinks.auto) ----------------------------------------------------------

def preview_cfg(**over):
    from edge import config

    return {**config.defaults()["preview"], **over}


def test_an_unreachable_display_falls_back_with_one_warning(tmp_path, monkeypatch, caplog):
    """A set but dead $DISPLAY used to abort the daemon inside Qt (exit 134): now it is a fallback."""
    from edge.sinks.auto import open_preview

    monkeypatch.setenv("DISPLAY", ":97")          # no X server there
    sink = open_preview(preview_cfg(sink="auto", drm_device=str(tmp_path / "card9"),
                                    fb_device=str(tmp_path / "fb9")), tmp_path)
    assert sink.kind == "file" and (tmp_path / "preview.jpg") == sink.path
    assert "does not answer" in sink.why and sink.why.startswith("auto: file")
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "preview window unavailable" in warnings[0], warnings


def test_auto_without_a_display_is_quiet(tmp_path, monkeypatch, caplog):
    from edge.sinks.auto import open_preview

    monkeypatch.delenv("DISPLAY", raising=False)
    sink = open_preview(preview_cfg(sink="auto", drm_device=str(tmp_path / "card9"),
                                    fb_device=str(tmp_path / "fb9")), tmp_path)
    assert sink.kind == "file" and "$DISPLAY is not set" in sink.why
    assert not [r for r in caplog.records if r.levelname == "WARNING"], "no display is the normal headless case"


def test_a_configured_sink_that_cannot_open_falls_back(tmp_path, caplog):
    from edge.sinks.auto import open_preview

    sink = open_preview(preview_cfg(sink="fbdev", fb_device=str(tmp_path / "fb9")), tmp_path)
    assert sink.kind == "file" and "fbdev: no framebuffer" in sink.why
    assert any("preview fbdev unavailable" in r.getMessage() for r in caplog.records)
    dev, sysfs = fake_fb(tmp_path, 32, 16, 32, 128)
    assert open_preview(preview_cfg(sink="none"), tmp_path).kind == "none"
