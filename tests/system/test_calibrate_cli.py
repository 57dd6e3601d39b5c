"""`phonescope calibrate` end to end, and the profile in the daemon's captures."""
from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np

from edge.imageio import write_image
from edge.profile import load
from tests.helpers import SAMPLES, calibrate_colour, daemon, replay_folder, run_cli, status, wait_until


def test_calibrate_colour_from_a_chart_photo(tmp_path):
    prof, r = calibrate_colour(tmp_path)
    assert r.returncode == 0, r.stderr
    assert len([ln for ln in r.stdout.splitlines() if ln.strip()[:2].strip().isdigit()]) == 24
    p = load(prof)
    assert p.colour["delta_e_after_mean"] <= 2.0 < p.colour["delta_e_before_mean"] and p.version == 1
    r = run_cli("calibrate", "colour", tmp_path / "chart.png", "--corners", "1 2 3", "--profile", prof)
    assert r.returncode == 2 and "8 numbers" in r.stderr


def capture_once(tmp_path: Path, frames: Path, model: Path, config: str) -> tuple[Path, dict, str]:
    """A daemon on a replay folder with this config: one capture -> (image, its sidecar, the daemon's stderr)."""
    cfg = tmp_path / "k.toml"
    cfg.write_text(config)
    state = tmp_path / "s"
    proc = daemon(state, f"replay:{frames}", model, extra=["--config", str(cfg)])
    try:
        assert wait_until(lambda: status(state)["state"] == "running", 90)
        r = run_cli("capture", "--state-dir", state, timeout=120)
        assert r.returncode == 0, r.stderr
        image = Path(r.stdout.strip())
        meta = json.loads(image.with_suffix(".json").read_text())
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    return image, meta, proc.communicate()[1]


def test_flat_profile_is_applied_and_recorded_by_the_daemon(tmp_path, tiny_model):
    flats = tmp_path / "flats"
    flats.mkdir()
    for i in range(3):
        write_image(flats / f"{i}.png", np.full((480, 640, 3), 0.8, np.float32))
    prof = tmp_path / "kiosk.json"
    r = run_cli("calibrate", "flat", flats, "--profile", prof)
    assert r.returncode == 0, r.stderr
    _, meta, err = capture_once(tmp_path, replay_folder(tmp_path / "frames"), tiny_model,
                                f'[calibration]\nprofile = "{prof}"\n')
    assert meta["calibration_profile"]["flat"] is True and meta["calibration_profile"]["version"] == 1
    assert "not trained on calibrated images" in err


def test_broken_profile_stops_the_daemon_with_78(tmp_path, tiny_model):
    prof = tmp_path / "kiosk.json"
    prof.write_text("{ not json")
    cfg = tmp_path / "k.toml"
    cfg.write_text(f'[calibration]\nprofile = "{prof}"\n')
    r = run_cli("run", "--config", cfg, "--model", tiny_model, "--state-dir", tmp_path / "s", "--preview", "none")
    assert r.returncode == 78 and "kiosk.json" in r.stderr and "Traceback" not in r.stderr


def test_scale_from_a_micrometer_gives_captures_fiji_measures_in_micrometres(tmp_path, tiny_model):
    """calibrate scale on a generated ruling (10 um lines, 20.8 px apart: 0.4808 um/px) -> the daemon's
    TIFF capture declares the enhanced grid's pixel size, the raw frame is kept losslessly (PNG, its pHYs
    in pixels per metre) and the sidecar records both sizes."""
    import cv2

    from edge.imageio import decode
    from tests.helpers import tiff_pixel_size_um
    from tests.unit.test_scale import micrometer

    img = micrometer(480, 640, 20.8, 2.0)
    write_image(tmp_path / "ruling.png", img)
    prof = tmp_path / "kiosk.json"
    r = run_cli("calibrate", "scale", tmp_path / "ruling.png", "--um", "10", "--profile", prof)
    assert r.returncode == 0, r.stderr
    um = load(prof).pixel_size_um(640)
    assert abs(um - 10 / 20.8) < 10 / 20.8 * 1e-3
    assert "um per camera pixel" in r.stderr
    r = run_cli("calibrate", "scale", SAMPLES / "phone" / "BloodImage_00004.jpg", "--um", "10", "--profile", prof)
    assert r.returncode == 1 and "no periodic ruling" in r.stderr and r.stderr.count("\n") == 1

    src = SAMPLES / "phone" / "BloodImage_00004.jpg"
    config = f'[calibration]\nprofile = "{prof}"\n[capture]\nformat = "tiff"\nraw_format = "png"\n'
    image, meta, _ = capture_once(tmp_path, replay_folder(tmp_path / "frames", src.name), tiny_model, config)
    frame = cv2.imdecode(np.frombuffer(src.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    cam_um = um * 640 / frame.shape[1]
    assert meta["camera"]["pixel_size_um"] == round(cam_um, 6)
    out_um = cam_um * frame.shape[1] / meta["output"]["width"]
    assert meta["output"]["pixel_size_um"] == round(out_um, 6)
    assert abs(tiff_pixel_size_um(image.read_bytes()) - out_um) < 1e-9
    raw = image.parent / meta["raw"]
    assert raw.name.endswith(".raw.png") and meta["raw_format"] == "png"
    assert np.array_equal(decode(raw.read_bytes()), frame)          # lossless: the very frame
    data = raw.read_bytes()
    i = data.index(b"pHYs")
    ppm = int.from_bytes(data[i + 4:i + 8], "big")
    assert abs(ppm - 1e6 / cam_um) <= 0.5 and data[i + 12] == 1
