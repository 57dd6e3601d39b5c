"""`phonescope doctor` names what is wrong and how to fix it."""
from __future__ import annotations

from pathlib import Path

from tests.helpers import SAMPLES, run_cli


def test_doctor_all_ok_on_replay(tmp_path):
    r = run_cli("doctor", "--source", f"replay:{SAMPLES / 'phone'}", "--state-dir", tmp_path, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    for what in ("config", "disk", "model", "backend", "camera"):
        assert any(line.startswith("OK") and what in line for line in r.stdout.splitlines()), what


def test_doctor_says_where_the_preview_goes_when_the_display_does_not_answer(tmp_path):
    """A set but dead $DISPLAY used to abort the daemon while doctor said 0 problems."""
    r = run_cli("doctor", "--source", f"replay:{SAMPLES / 'phone'}", "--state-dir", tmp_path, timeout=120,
                env={"DISPLAY": ":97"})
    line = next(ln for ln in r.stdout.splitlines() if " preview " in ln)
    assert "the X server at DISPLAY=:97 does not answer" in line, line


def test_doctor_names_a_missing_camera_and_a_bad_config(tmp_path):
    r = run_cli("doctor", "--source", "v4l2:/dev/video77", "--state-dir", tmp_path, timeout=120)
    assert r.returncode == 1
    assert "FAIL  device" in r.stdout and "FAIL  camera" in r.stdout and "->" in r.stdout
    assert r.stderr.strip() == "", "no OpenCV chatter"
    bad = tmp_path / "bad.toml"
    bad.write_text("[model]\ntile = 'big'\n")
    r = run_cli("doctor", "--config", bad, timeout=60)
    assert r.returncode == 1 and "FAIL  config" in r.stdout and "tile" in r.stdout


def test_doctor_checks_gstreamer_argus_and_tensorrt(tmp_path):
    """A Jetson CSI camera through pip's OpenCV: no GStreamer and no nvargus-daemon, each said with its fix."""
    import cv2

    cfg = tmp_path / "jetson.toml"
    cfg.write_text('[camera]\nsource = "gst:nvarguscamerasrc sensor-id=0 ! appsink"\n')
    r = run_cli("doctor", "--config", cfg, "--state-dir", tmp_path, timeout=120)
    assert r.returncode == 1, r.stdout
    checks = {ln.split()[1]: ln for ln in r.stdout.splitlines() if len(ln.split()) > 2}
    if "GStreamer:                   YES" in cv2.getBuildInformation():
        assert checks["opencv"].startswith("OK"), r.stdout
    else:
        assert checks["opencv"].startswith("FAIL") and "use-system-opencv.sh" in checks["opencv"], r.stdout
    if not Path("/tmp/argus_socket").exists():
        assert checks["argus"].startswith("FAIL") and "nvargus-daemon" in checks["argus"], r.stdout
    assert "tensorrt" in checks or "gpu" in checks, r.stdout
