"""The kiosk daemon end to end: real process, real sockets, real files, real SQLite."""
from __future__ import annotations

import hashlib
import json
import shutil
import signal
import sqlite3
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.helpers import SAMPLES, daemon, run_cli, running, status, wait_until


def test_end_to_end_notify_captures_and_sigterm(tmp_path, tiny_model, notify):
    state = tmp_path / "state"
    proc = daemon(state, f"replay:{SAMPLES / 'phone'}", tiny_model, notify=notify.path)
    try:
        assert notify.wait_for("READY=1", 90), proc.stderr.read() if proc.poll() is not None else notify.messages
        assert notify.wait_for("WATCHDOG=1", 15, n=3), "watchdog pings while frames flow"
        paths = []
        for sid in ("patient-1", None):
            args = ["capture", "--state-dir", state] + (["--sample-id", sid] if sid else [])
            r = run_cli(*args, timeout=120)
            assert r.returncode == 0, r.stderr
            paths.append(Path(r.stdout.strip()))
        assert "patient-1" in paths[0].name and paths[0].parent.name == "patient-1"
        rows = {r[0]: r for r in sqlite3.connect(state / "catalog.sqlite").execute(
            "SELECT image, sha256, sidecar, raw FROM captures")}
        assert len(rows) == 2
        for p in paths:
            data = p.read_bytes()
            meta = json.loads(p.with_suffix(".json").read_text())
            digest = hashlib.sha256(data).hexdigest()
            assert meta["image_sha256"] == digest == rows[str(p.relative_to(state))][1]
            assert meta["model"]["sha256"] and meta["backend"] == "onnxruntime"
            assert meta["timings"]["inference_s"] >= meta["timings"]["network_s"] > 0
            shape = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape
            assert shape in {(480, 640, 3), (441, 587, 3)} and meta["output"]["width"] == shape[1]
            assert (p.parent / (p.stem + ".raw.png")).is_file()   # raw_format png: lossless
        st = status(state)
        assert st["state"] == "running" and st["captures"] == 2 and st["camera"]["ok"]
        assert (state / "preview.jpg").is_file()
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - t0 < 5.0
        assert notify.wait_for("STOPPING=1", 2)
        assert not list(state.rglob("*.tmp")) and not (state / "control.sock").exists()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_daemon_ended_by_sigabrt_leaves_every_threads_stack(tmp_path, tiny_model):
    """systemd ends a hung daemon with SIGABRT (the watchdog; a stop past TimeoutStopSec with
    TimeoutStopFailureMode=abort): what each thread was doing must reach the journal (stderr)."""
    state = tmp_path / "state"
    proc = daemon(state, f"replay:{SAMPLES / 'phone'}", tiny_model)
    try:
        running(state, proc)
        proc.send_signal(signal.SIGABRT)
        assert proc.wait(timeout=20) == -signal.SIGABRT
        err = proc.stderr.read()
        assert "Fatal Python error: Aborted" in err, err[-2000:]
        assert err.count("Thread 0x") >= 4, err[-2000:]      # main, inference, storage, preview, control...
        assert 'edge/daemon.py", line' in err and "in run" in err, err[-2000:]   # the main thread's loop
    finally:
        if proc.poll() is None:
            proc.kill()


def test_camera_that_vanishes_is_reported_and_comes_back(tmp_path, tiny_model):
    state, folder = tmp_path / "state", tmp_path / "frames"
    shutil.copytree(SAMPLES / "phone", folder)
    proc = daemon(state, f"replay:{folder}", tiny_model)
    try:
        assert wait_until(lambda: status(state)["state"] == "running", 90)
        shutil.move(folder, tmp_path / "unplugged")
        assert wait_until(lambda: not status(state)["camera"]["ok"], 20), "camera loss is reported"
        assert proc.poll() is None, "the daemon does not exit"
        shutil.move(tmp_path / "unplugged", folder)
        assert wait_until(lambda: status(state)["camera"]["ok"], 30), "the camera is reopened"
        frames = status(state)["frames"]
        assert wait_until(lambda: status(state)["frames"] > frames, 30)
        r = run_cli("capture", "--state-dir", state, timeout=120)
        assert r.returncode == 0, r.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_video_file_source(tmp_path, tiny_model):
    video = tmp_path / "slide.avi"
    vw = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    img = cv2.imread(str(SAMPLES / "phone" / "BloodImage_00090.jpg"))
    for i in range(10):
        vw.write(np.ascontiguousarray(img[i * 5:i * 5 + 240, i * 5:i * 5 + 320]))
    vw.release()
    proc = daemon(tmp_path / "s", f"replay:{video}", tiny_model)
    try:
        assert wait_until(lambda: status(tmp_path / "s")["state"] == "running", 90)
        r = run_cli("capture", "--state-dir", tmp_path / "s", timeout=120)
        assert r.returncode == 0, r.stderr
        meta = json.loads(Path(r.stdout.strip()).with_suffix(".json").read_text())
        assert meta["camera"]["file"] == "slide.avi" and meta["output"]["width"] == 320
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_second_instance_and_clients_without_daemon(tmp_path, tiny_model):
    state = tmp_path / "state"
    r = run_cli("capture", "--state-dir", state)
    assert r.returncode == 1 and "no phonescope daemon running" in r.stderr
    proc = daemon(state, f"replay:{SAMPLES / 'phone'}", tiny_model)
    try:
        assert wait_until(lambda: status(state)["state"] == "running", 90)
        second = daemon(state, f"replay:{SAMPLES / 'phone'}", tiny_model)
        _, err = second.communicate(timeout=60)
        assert second.returncode == 1 and "another phonescope" in err and "Traceback" not in err
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


@pytest.mark.parametrize("toml, key", [("[camera]\nfps = 'fast'\n", "fps"), ("[storage]\nstate = '/x'\n", "state")])
def test_bad_config_exits_78_naming_the_key(tmp_path, toml, key):
    cfg = tmp_path / "k.toml"
    cfg.write_text(toml)
    r = run_cli("run", "--config", cfg, "--state-dir", tmp_path / "s")
    assert r.returncode == 78 and key in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_bad_model_exits_78(tmp_path):
    r = run_cli("run", "--model", tmp_path / "none.onnx", "--state-dir", tmp_path / "s", "--preview", "none")
    assert r.returncode == 78 and "none.onnx" in r.stderr and "Traceback" not in r.stderr


def test_simulated_camera_interval_captures_and_clean_exit(tmp_path, tiny_model):
    """The demo's camera, with interval captures; SIGTERM while it renders exits 0 in < 5 s."""
    cfg = tmp_path / "k.toml"
    cfg.write_text("[camera]\nwidth = 320\nheight = 240\nfps = 10\n[capture]\ninterval_s = 1\nkeep_raw = false\n")
    state = tmp_path / "s"
    proc = daemon(state, "simulated", tiny_model, extra=["--config", str(cfg)])
    try:
        assert wait_until(lambda: status(state)["captures"] >= 2, 90), "interval captures"
        rows = sqlite3.connect(state / "catalog.sqlite").execute("SELECT image, raw FROM captures").fetchall()
        assert len(rows) >= 2 and all(raw is None for _, raw in rows)
        meta = json.loads((state / rows[0][0]).with_suffix(".json").read_text())
        assert meta["origin"] == "interval" and meta["camera"]["phone_profile"] == "default-phone"
    finally:
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - t0 < 5.0
