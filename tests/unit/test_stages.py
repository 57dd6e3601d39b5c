"""Preprocess and Postprocess: the daemon's frames meet the network exactly as `enhance` files do, as the
engine's pixels (uint8; FP16 for frames with more than 8 bits), with no full-frame float copy."""
from __future__ import annotations

import time

import numpy as np
import pytest

from edge.enhancer import Enhancer
from edge.imageio import to_uint8
from edge.sources import Frame
from edge.stages import Postprocess, Preprocess, to_float
from tests.helpers import sample_rgb


def frame(image: np.ndarray) -> Frame:
    return Frame(image, 1, time.monotonic())


def test_capture_path_equals_the_enhance_command(scaled_model):
    """A capture goes Preprocess -> run_network; `enhance` goes Enhancer.enhance: the same pixels."""
    enh, _ = Enhancer.open(scaled_model, "onnxruntime", tile=64)
    rgb8 = to_uint8(sample_rgb()[:101, :75])
    pre = Preprocess(None, enh.resample, preview_width=960, pixel_type=enh.pixel_type)
    x = pre.capture(frame(rgb8))
    assert x.shape == (152, 112, 3) and x.dtype == np.uint8, "resampled onto the model grid (scale 1.5)"
    out = enh.run_network(x)
    assert out.dtype == np.uint8 and np.array_equal(to_float(out), enh.enhance(rgb8.astype(np.float32) / 255))


def test_the_glass_balance_is_the_same_on_both_paths(scaled_model):
    """With `[model] sample` set, a frame of another phone's white balance is balanced on the camera grid
    before resampling, on the capture path as in `enhance`: the same pixels, other than without it."""
    from edge.glass import WhiteBalance
    from tests.unit.test_glass import card, cast

    enh, _ = Enhancer.open(scaled_model, "onnxruntime", tile=64)
    enh.balance = WhiteBalance.from_card(card(), "blood")
    rgb8 = to_uint8(cast(sample_rgb(), (1.4, 1.0, 0.7)))
    pre = Preprocess(None, enh.resample, 960, enh.pixel_type, enh.balanced)
    out = enh.run_network(pre.capture(frame(rgb8)))
    assert enh.balance.last_gain is not None and abs(np.log(enh.balance.last_gain)).max() > 0.2
    assert np.array_equal(to_float(out), enh.enhance(rgb8.astype(np.float32) / 255))
    plain = Preprocess(None, enh.resample, 960, enh.pixel_type).capture(frame(rgb8))
    assert not np.array_equal(pre.capture(frame(rgb8)), plain)
    x, _ = pre.preview(frame(rgb8))
    assert x.shape == plain.shape and np.abs(x.astype(int) - pre.capture(frame(rgb8))).mean() < 1.0


def test_preview_is_reduced_to_the_preview_width_then_put_on_the_model_grid(scaled_model):
    enh, _ = Enhancer.open(scaled_model, "onnxruntime", tile=64)
    pre = Preprocess(None, enh.resample, preview_width=320)
    x, raw = pre.preview(frame(to_uint8(sample_rgb())))          # 640x480
    assert raw.shape == (240, 320, 3) and raw.dtype == np.uint8
    assert x.shape == (360, 480, 3) and x.dtype == np.uint8
    small = frame(np.zeros((100, 200, 3), np.uint8))
    x, raw = pre.preview(small)
    assert raw.shape == (100, 200, 3) and x.shape == (150, 300, 3), "smaller frames are not enlarged first"


def test_sixteen_bit_frames():
    """A 16-bit frame goes to an engine that takes FP16 as FP16 [0, 1], to one that does not (TensorRT) as
    uint8; FP16 output becomes uint16 where the format holds it."""
    img16 = (np.arange(48 * 64 * 3, dtype=np.uint32).reshape(48, 64, 3) * 37 % 65536).astype(np.uint16)
    f = frame(img16)
    assert to_float(img16).max() <= 1.0 and np.allclose(to_float(img16) * 65535, img16, atol=0.01)
    px = Preprocess(None, lambda x: x, 960, pixel_type=lambda bits: "float16").capture(f)
    assert px.dtype == np.float16 and np.abs(px.astype(np.float32) - to_float(img16)).max() <= 2 ** -11
    px8 = Preprocess(None, lambda x: x, 960).capture(f)
    assert np.array_equal(px8, f.as_uint8()) and np.array_equal(f.as_uint8(), (img16 >> 8).astype(np.uint8))
    out16 = Postprocess("png").capture(px)
    assert out16.dtype == np.uint16 and np.abs(out16.astype(np.int32) - img16).max() <= 65535 * 2 ** -11
    assert Postprocess("tiff").capture(px).dtype == np.uint16
    assert Postprocess("jpeg").capture(px).dtype == np.uint8, "JPEG holds 8 bits"
    assert Postprocess("png").capture(px8) is px8, "uint8 pixels are the capture as they are"
    assert Postprocess.preview(px).dtype == np.uint8


def test_calibration_is_applied_at_camera_resolution(tmp_path):
    from calibration.profile import update
    from edge.profile import load

    flat = np.full((48, 64, 3), 1.0, np.float32)
    flat[:, :32] = 0.5                                   # the left half gets half the light
    update(tmp_path / "p.json", "flat", {"frames": 1}, flat)
    pre = Preprocess(load(tmp_path / "p.json"), lambda x: x, preview_width=32)
    grey = frame(np.full((48, 64, 3), 100, np.uint8))
    x = pre.capture(grey)
    assert x.dtype == np.uint8 and x[:, :32].mean() > x[:, 32:].mean() + 25, "the dim half is brightened"
    whole = load(tmp_path / "p.json").apply(to_float(grey.image))
    assert np.abs(x.astype(np.float32) / 255 - whole).max() <= 0.5 / 255 + 1e-6, "strips = the whole frame at once"
    xp, raw = pre.preview(grey)
    assert xp.shape == (24, 32, 3) and raw.shape == (24, 32, 3)
    with pytest.raises(ValueError, match="recalibrate at this camera size"):
        pre.capture(frame(np.zeros((96, 128, 3), np.uint8)))
