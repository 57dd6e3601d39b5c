"""The phone-optics simulator: each effect does what it says."""
from __future__ import annotations

import cv2
import numpy as np

from edge import simulator as S
from edge.imageio import read_rgb8
from edge.simulator import DEFAULT_PHONE, degrade
from tests.helpers import SAMPLES

CLEAN = DEFAULT_PHONE.replace(noise_shot=(0, 0), noise_read=(0, 0), jpeg_quality=None, jitter=0.0,
                              bayer=False, sharpen=0.0)


def ref_image():
    return read_rgb8(SAMPLES / "reference" / "BloodImage_00004.jpg")


def test_same_seed_same_image_other_seed_other_image():
    ref = ref_image()
    a, da = degrade(ref, seed=5)
    b, db = degrade(ref, seed=5)
    c, _ = degrade(ref, seed=6)
    assert np.array_equal(a, b) and da == db
    assert not np.array_equal(a, c)
    assert a.shape == ref.shape and a.dtype == np.uint8


def test_vignetting_darkens_corners():
    flat = np.full((200, 300, 3), 0.6, np.float32)
    out = S.vignette(flat, 0.3)
    assert abs(out[100, 150, 0] / 0.6 - 1) < 0.01
    assert abs(out[0, 0, 0] / 0.6 - 0.7) < 0.01
    img, _ = degrade(np.full((200, 300, 3), 200, np.uint8), CLEAN.replace(vignetting=0.4), seed=0)
    assert img[:10, :10].mean() < 0.85 * img[95:105, 145:155].mean()


def test_jpeg_quality_changes_file_size():
    img = ref_image()
    _, small = S.jpeg(img, 30)
    _, large = S.jpeg(img, 90)
    assert small < 0.6 * large
    _, d30 = degrade(img, DEFAULT_PHONE.replace(jpeg_quality=(30, 30)), seed=1)
    _, d90 = degrade(img, DEFAULT_PHONE.replace(jpeg_quality=(90, 90)), seed=1)
    assert d30.extras["jpeg_bytes"] < d90.extras["jpeg_bytes"]


def _sharpness(img):
    return float(np.var(cv2.Laplacian(img.astype(np.float32), cv2.CV_32F)))


def test_blur_grows_over_the_field():
    checker = ((np.indices((400, 400)).sum(0) // 4) % 2).astype(np.float32)[..., None].repeat(3, 2)
    out = S.field_blur(checker, 0.5, 3.0)
    centre, corner = out[180:220, 180:220], out[:40, :40]
    assert _sharpness(centre) > 4 * _sharpness(corner)
    assert _sharpness(out) < _sharpness(checker)


def test_lateral_chromatic_aberration_shifts_red_outward_blue_inward():
    img = np.zeros((301, 301, 3), np.float32)
    cv2.circle(img, (260, 150), 3, (1, 1, 1), -1)
    out = S.lateral_chromatic(img, 0.02, -0.02)
    xs = np.arange(301)
    cx = [float((out[..., c].sum(0) * xs).sum() / out[..., c].sum()) for c in range(3)]
    assert cx[0] > cx[1] + 1.5 and cx[2] < cx[1] - 1.5


def test_colour_crosstalk_desaturates_and_white_balance_tints():
    red = np.zeros((64, 64, 3), np.uint8)
    red[..., 0] = 220
    out, _ = degrade(red, CLEAN.replace(vignetting=0.0, white_balance=(1, 1, 1)), seed=0)
    assert out[..., 1].mean() > 20 and out[..., 0].mean() > out[..., 1].mean()
    grey = np.full((64, 64, 3), 180, np.uint8)
    warm, _ = degrade(grey, CLEAN.replace(vignetting=0.0, white_balance=(1.2, 1.0, 0.8)), seed=0)
    assert warm[..., 0].mean() > warm[..., 1].mean() > warm[..., 2].mean()


def test_noise_is_poisson_gaussian():
    rng = np.random.default_rng(0)
    dark = S.add_noise(np.full(200_000, 0.05, np.float32), rng, 0.004, 0.003)
    bright = S.add_noise(np.full(200_000, 0.8, np.float32), rng, 0.004, 0.003)
    assert abs(dark.var() - (0.004 * 0.05 + 0.003 ** 2)) < 0.15 * (0.004 * 0.05 + 0.003 ** 2)
    assert abs(bright.var() - (0.004 * 0.8 + 0.003 ** 2)) < 0.05 * (0.004 * 0.8 + 0.003 ** 2)


def test_bayer_demosaic_makes_colour_fringes_on_edges():
    img = np.zeros((64, 64, 3), np.float32)
    img[:, 32:] = 1.0
    out = S.bayer_roundtrip(img, np.random.default_rng(0), 0, 0)
    assert out.shape == img.shape
    assert np.abs(out[:, 2:30] - img[:, 2:30]).max() < 1e-3  # flat areas survive
    assert np.abs(out[:, 30:34] - img[:, 30:34]).max() > 0.01  # the edge does not


def test_sampling_on_a_coarser_grid():
    ref = ref_image()
    out, _ = degrade(ref, DEFAULT_PHONE.replace(scale=1.6), seed=0)
    assert out.shape == (round(480 / 1.6), round(640 / 1.6), 3)


def test_profile_round_trips_through_json_dict():
    p = DEFAULT_PHONE.replace(name="x", vignetting=0.1)
    assert S.PhoneOptics.from_dict(p.to_dict()) == p
