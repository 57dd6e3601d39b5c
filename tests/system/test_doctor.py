"""`phonescope doctor` names what is wrong and how to fix it."""
from __future__ import annotations

from tests.helpers import SAMPLES, run_cli


def test_doctor_all_ok_on_replay(tmp_path):
    r = run_cli("doctor", "--source", f"replay:{SAMPLES / 'phone'}", "--state-dir", tmp_path, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    for what in ("config", "disk", "model", "backend", "camera"):
        assert any(line.startswith("OK") and what in line for line in r.stdout.splitlines()), what


def test_doctor_names_a_missing_camera_and_a_bad_config(tmp_path):
    r = run_cli("doctor", "--source", "v4l2:/dev/video77", "--state-dir", tmp_path, timeout=120)
    assert r.returncode == 1
    assert "FAIL  device" in r.stdout and "FAIL  camera" in r.stdout and "->" in r.stdout
    assert r.stderr.strip() == "", "no OpenCV chatter"
    bad = tmp_path / "bad.toml"
    bad.write_text("[model]\ntile = 'big'\n")
    r = run_cli("doctor", "--config", bad, timeout=60)
    assert r.returncode == 1 and "FAIL  config" in r.stdout and "tile" in r.stdout
