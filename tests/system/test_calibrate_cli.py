"""`phonescope calibrate` end to end, and the profile in the daemon's captures."""
from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np

from edge.imageio import write_image
from edge.profile import load
from tests.helpers import SAMPLES, daemon, distorted_chart, run_cli, status, wait_until


def test_calibrate_colour_from_a_chart_photo(tmp_path):
    photo, corners = distorted_chart()
    write_image(tmp_path / "chart.png", photo, bits=16)
    prof = tmp_path / "kiosk.json"
    r = run_cli("calibrate", "colour", tmp_path / "chart.png", "--corners", " ".join(map(str, corners.ravel())),
                "--profile", prof)
    assert r.returncode == 0, r.stderr
    assert len([ln for ln in r.stdout.splitlines() if ln.strip()[:2].strip().isdigit()]) == 24
    p = load(prof)
    assert p.colour["delta_e_after_mean"] <= 2.0 < p.colour["delta_e_before_mean"] and p.version == 1
    r = run_cli("calibrate", "colour", tmp_path / "chart.png", "--corners", "1 2 3", "--profile", prof)
    assert r.returncode == 2 and "8 numbers" in r.stderr


def test_flat_profile_is_applied_and_recorded_by_the_daemon(tmp_path, tiny_model):
    flats = tmp_path / "flats"
    flats.mkdir()
    for i in range(3):
        write_image(flats / f"{i}.png", np.full((480, 640, 3), 0.8, np.float32))
    prof = tmp_path / "kiosk.json"
    r = run_cli("calibrate", "flat", flats, "--profile", prof)
    assert r.returncode == 0, r.stderr
    cfg = tmp_path / "k.toml"
    cfg.write_text(f'[calibration]\nprofile = "{prof}"\n')
    frames = tmp_path / "frames"
    frames.mkdir()
    for p in sorted((SAMPLES / "phone").glob("Blood*.jpg")):
        (frames / p.name).write_bytes(p.read_bytes())
    state = tmp_path / "s"
    proc = daemon(state, f"replay:{frames}", tiny_model, extra=["--config", str(cfg)])
    try:
        assert wait_until(lambda: status(state)["state"] == "running", 90)
        r = run_cli("capture", "--state-dir", state, timeout=120)
        assert r.returncode == 0, r.stderr
        meta = json.loads(Path(r.stdout.strip()).with_suffix(".json").read_text())
        assert meta["calibration_profile"]["flat"] is True and meta["calibration_profile"]["version"] == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    _, err = proc.communicate()
    assert "not trained on calibrated images" in err


def test_broken_profile_stops_the_daemon_with_78(tmp_path, tiny_model):
    prof = tmp_path / "kiosk.json"
    prof.write_text("{ not json")
    cfg = tmp_path / "k.toml"
    cfg.write_text(f'[calibration]\nprofile = "{prof}"\n')
    r = run_cli("run", "--config", cfg, "--model", tiny_model, "--state-dir", tmp_path / "s", "--preview", "none")
    assert r.returncode == 78 and "kiosk.json" in r.stderr and "Traceback" not in r.stderr
