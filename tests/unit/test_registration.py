"""Registration refuses what it cannot vouch for (the known-warp accuracy run is in tests/system)."""
from __future__ import annotations

from calibration.register import register
from edge.imageio import read_rgb8
from tests.helpers import SAMPLES


def test_unrelated_images_are_rejected():
    a = read_rgb8(SAMPLES / "reference" / "BloodImage_00004.jpg")
    b = read_rgb8(SAMPLES / "reference" / "torchstain_target.jpg")
    reg = register(b, a)
    assert not reg.ok and reg.reason
