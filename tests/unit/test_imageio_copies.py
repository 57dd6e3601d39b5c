"""Channel order in place: a capture's PNG and a camera's frame without a frame-sized copy."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge.imageio import decode, encode, swap_rb
from edge.sources.base import as_rgb8


@pytest.fixture
def rgb():
    return np.random.default_rng(7).integers(0, 256, (301, 207, 3), dtype=np.uint8)   # rows not a strip multiple


def test_swap_rb_is_its_own_inverse_in_the_array_itself(rgb):
    a = rgb.copy()
    assert swap_rb(a)
    np.testing.assert_array_equal(a, rgb[..., ::-1])
    assert swap_rb(a)
    np.testing.assert_array_equal(a, rgb)
    view = rgb[:, ::2]                       # not contiguous: refused, untouched
    assert not swap_rb(view) and not swap_rb(rgb[..., 0])
    ro = rgb.copy()
    ro.flags.writeable = False
    assert not swap_rb(ro)


@pytest.mark.parametrize("ext, bits", [(".png", 8), (".png", 16), (".jpg", 8)])
def test_encoding_in_place_gives_the_same_file_and_leaves_the_image_as_it_was(rgb, ext, bits):
    img = rgb.astype(np.uint16) * 257 if bits == 16 else rgb
    text = {"Software": "phonescope", "Description": "AI-enhanced image"}
    copy_path = encode(img, ext, bits, 90, text, 0.25)
    work = img.copy()
    in_place = encode(work, ext, bits, 90, text, 0.25, in_place=True)
    assert in_place == copy_path
    np.testing.assert_array_equal(work, img)
    back = decode(in_place)
    if ext == ".png":
        np.testing.assert_array_equal(back[..., ::-1], img)


def test_a_cameras_bgr_frame_becomes_rgb_in_its_own_buffer(rgb):
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    out = as_rgb8(bgr)
    assert np.shares_memory(out, bgr)
    np.testing.assert_array_equal(out, rgb)
    strided = np.ascontiguousarray(rgb[..., ::-1])[:, ::2]      # a view the source does not own whole
    np.testing.assert_array_equal(as_rgb8(strided), rgb[:, ::2])
    np.testing.assert_array_equal(as_rgb8(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA)), rgb)
