"""Flat-field and dark frame: vignetting and offset measured from frames are taken off."""
from __future__ import annotations

import numpy as np
import pytest

from calibration import flat as F
from calibration.profile import update
from edge.colourspace import linear_to_srgb, srgb_to_linear
from edge.imageio import write_image
from edge.profile import ProfileError, correct_flat, load
from edge.simulator import radius_map


def frames(tmp_path, name, lin_mean, n=16, seed=0):
    rng = np.random.default_rng(seed)
    d = tmp_path / name
    d.mkdir()
    for i in range(n):
        noisy = np.clip(lin_mean + rng.normal(0, 0.005, lin_mean.shape), 0, 1)
        write_image(d / f"{i:02d}.png", linear_to_srgb(noisy.astype(np.float32)), bits=16)
    return d


def test_flat_and_dark_undo_vignetting_and_offset(tmp_path):
    h, w = 120, 160
    gain = (1 - 0.4 * radius_map(h, w) ** 2)[..., None].repeat(3, 2).astype(np.float32)
    offset = np.full((h, w, 3), 0.02, np.float32)
    dark = F.average(F.frames_in(frames(tmp_path, "dark", offset)))
    flat = F.make_flat(F.frames_in(frames(tmp_path, "flat", 0.7 * gain + offset)), dark, smooth_sigma=2)
    scene = np.random.default_rng(5).random((h, w, 3)).astype(np.float32) * 0.5 + 0.4
    seen = linear_to_srgb(srgb_to_linear(scene) * gain + offset)
    fixed = correct_flat(seen, flat, dark)
    ratio = srgb_to_linear(fixed) / srgb_to_linear(scene)
    assert np.percentile(np.abs(ratio / ratio.mean() - 1), 99) < 0.05, "the field is even again (up to one overall gain)"
    assert np.abs(srgb_to_linear(seen) / srgb_to_linear(scene) - 1).max() > 0.3


def test_profile_round_trip_and_tamper_detection(tmp_path):
    p = tmp_path / "kiosk.json"
    flat = np.ones((8, 8, 3), np.float32)
    assert update(p, "flat", {"frames": 3}, flat) == 1
    assert update(p, "colour", {"method": "linear", "matrix": np.eye(3).tolist()}) == 2
    prof = load(p)
    assert prof.version == 2 and prof.flat.shape == (8, 8, 3) and prof.colour["method"] == "linear"
    (tmp_path / "kiosk.flat.tiff").write_bytes(b"tampered")
    with pytest.raises(ProfileError, match="does not match"):
        load(p)


def test_frames_of_another_size_are_refused():
    with pytest.raises(ValueError, match="recalibrate"):
        correct_flat(np.zeros((10, 10, 3), np.float32), np.ones((8, 8, 3), np.float32), None)


def test_the_profile_records_the_camera_settings_and_the_daemon_says_when_they_differ(tmp_path):
    """calibrate records [camera]'s locked settings; a daemon whose camera runs others says so on screen."""
    from edge import config
    from edge.profile import load
    from edge.wiring import calibration_misfit
    from tests.helpers import run_cli

    frames = tmp_path / "frames"
    frames.mkdir()
    import cv2

    for k in range(2):
        cv2.imwrite(str(frames / f"f{k}.png"), np.full((48, 64, 3), 200 + k, np.uint8))
    cfg = tmp_path / "kiosk.toml"
    cfg.write_text('[camera]\nexposure_us = 20000\ngain = 2.0\nwhite_balance = "1.8,1.5"\n')
    r = run_cli("calibrate", "flat", frames, "--profile", tmp_path / "p.json", "--config", cfg)
    assert r.returncode == 0, r.stderr
    profile = load(tmp_path / "p.json")
    want = {"exposure": "20000 us", "gain": 2.0, "white_balance": "1.8,1.5"}
    assert profile.raw["camera"] == want and profile.raw["flat"]["camera"] == want
    same = config.load(cfg, {})
    assert calibration_misfit(profile, same) is None
    auto = config.defaults()
    msg = calibration_misfit(profile, auto)
    assert msg.startswith("calibration was made with other camera settings (exposure 20000 us -> auto, gain 2.0 "
                          "-> auto, white_balance 1.8,1.5 -> auto)")
