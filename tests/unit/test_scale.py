"""Pixel size from a stage micrometer: generated rulings at known periods, angles, blur, noise and JPEG."""
import cv2
import numpy as np
import pytest

from calibration.scale import NoRuling, measure, pixel_size_um


def micrometer(h, w, period, angle_deg, blur=1.2, noise=0.02, quality=80, line_px=1.5, seed=0):
    """A ruling as a phone sees it: dark lines `period` px apart (every 10th longer, every 5th
    mid-length), across direction angle_deg, blurred, vignetted, noisy, JPEG-compressed."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    a = np.radians(angle_deg)
    t = (xs - w / 2) * np.cos(a) + (ys - h / 2) * np.sin(a) + rng.uniform(0, period)
    u = -(xs - w / 2) * np.sin(a) + (ys - h / 2) * np.cos(a)       # along the lines
    k = np.round(t / period)
    d = np.abs(t - k * period)
    length = np.where(k % 10 == 0, 0.45, np.where(k % 5 == 0, 0.35, 0.25)) * h
    line = (d < line_px / 2) & (np.abs(u) < length)
    img = 0.85 - 0.6 * line
    img = cv2.GaussianBlur(img, (0, 0), blur)
    r2 = ((xs - w / 2) ** 2 + (ys - h / 2) ** 2) / (w * w / 4 + h * h / 4)
    img = img * (1 - 0.3 * r2) + rng.normal(0, noise, img.shape)
    rgb = np.clip(np.stack([img * 0.95, img, img * 0.9], axis=2), 0, 1)
    ok, buf = cv2.imencode(".jpg", (rgb * 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32) / 255


@pytest.mark.parametrize("period,angle,size", [
    (23.37, 0.0, (480, 640)), (9.81, 3.5, (600, 800)), (41.2, 91.0, (720, 960)),
    (5.43, -7.0, (480, 640)), (17.05, 45.0, (1080, 1920)), (12.6, 178.2, (500, 500))])
def test_period_found_to_a_small_fraction_of_a_pixel(period, angle, size):
    r = measure(micrometer(*size, period, angle, seed=int(period * 10)))
    assert abs(r.period_px - period) / period < 1e-3, (r.period_px, period)
    # the direction across the lines, modulo 180 degrees
    assert min(abs(r.angle_deg - angle % 180), 180 - abs(r.angle_deg - angle % 180)) < 0.5


def test_thin_lines_give_the_fundamental_not_a_harmonic():
    img = micrometer(600, 800, 14.2, 2.0, blur=0.6, line_px=1.0, noise=0.01)
    assert abs(measure(img).period_px - 14.2) < 0.02


def test_pixel_size_from_the_spacing():
    um, r = pixel_size_um(micrometer(600, 800, 20.0, 1.0), 10.0)
    assert um == pytest.approx(0.5, rel=1e-3)
    assert r.contrast > 8


def test_no_ruling_is_a_clear_error():
    rng = np.random.default_rng(1)
    noise = cv2.GaussianBlur(rng.random((480, 640)), (0, 0), 3)
    with pytest.raises(NoRuling, match="no periodic ruling"):
        measure(np.repeat(noise[..., None], 3, axis=2))
    with pytest.raises(ValueError, match="positive"):
        pixel_size_um(micrometer(480, 640, 20.0, 0.0), 0)
