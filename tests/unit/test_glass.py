"""The glass white balance (edge/glass.py): finding the glass, the training range, gains, the pixel paths."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge.colourspace import linear_to_srgb, srgb_to_linear
from edge.glass import MIN_SLIDES, WhiteBalance, glass_white, input_white
from tests.helpers import sample_rgb

BLOOD = ("BloodImage_00004", "BloodImage_00090", "BloodImage_00130")


def cast(rgb: np.ndarray, gains) -> np.ndarray:
    """Another phone's white balance: per-channel gains in linear light."""
    return linear_to_srgb(srgb_to_linear(rgb) * np.asarray(gains, np.float32))


def card(images: int = 132, spread=(0.05, 0.05, 0.05)) -> dict:
    whites = [glass_white(sample_rgb(n)) for n in BLOOD]
    return {"input_white": {"blood": {"median": np.median(whites, axis=0).tolist(), "log_spread": list(spread),
                                      "images": images}}}


def test_the_glass_of_a_blood_smear_follows_a_colour_cast():
    """The glass is found between the cells, and a cast of the camera scales it by the cast's gains."""
    rgb = sample_rgb("BloodImage_00004")
    white = glass_white(rgb)
    assert white is not None and np.all(white > 0.3)
    gains = np.array([1.3, 1.0, 0.7])
    moved = glass_white(cast(rgb, gains))
    assert np.allclose(moved / white, gains, rtol=0.03), moved / white
    # 8-bit and float frames give the same glass
    assert np.allclose(glass_white((rgb * 255).round().astype(np.uint8)), white, rtol=0.01)


def test_no_glass_no_guess():
    """A field full of texture (tissue edge to edge) and a dark frame have no glass to go by."""
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.uniform(0, 1, (300, 400, 3)).astype(np.float32), (0, 0), 3)
    texture = (texture - texture.min()) / (texture.max() - texture.min())
    assert glass_white(texture) is None
    assert glass_white(np.zeros((120, 160, 3), np.uint8)) is None
    wb = WhiteBalance.from_card(card(), "blood")
    assert wb(texture) is texture and wb.last_gain is None


def test_a_cast_outside_the_training_range_is_brought_to_its_edge_and_one_inside_is_kept():
    wb = WhiteBalance.from_card(card(spread=(0.07, 0.07, 0.07)), "blood")   # the shipped card's spread
    rgb = sample_rgb("BloodImage_00090")
    assert np.all(wb.gains(rgb) == 1.0)                    # the training phone's own slide: untouched
    assert wb(rgb) is rgb
    shifted = cast(rgb, (1.5, 1.0, 0.6))
    fixed = wb(shifted)
    dist = np.abs(np.log(wb.target / glass_white(fixed)))
    assert np.all(dist <= wb.spread + 0.03), dist           # at the range's edge, not beyond
    before = np.abs(np.log(wb.target / glass_white(shifted)))
    assert before.max() > 0.3 and dist.max() < 0.1


def test_the_integer_paths_agree_with_the_float_path():
    """uint8 and uint16 frames are balanced through lookup tables: the same colours as in float."""
    wb = WhiteBalance.from_card(card(), "blood")
    rgb = cast(sample_rgb("BloodImage_00130"), (0.7, 1.0, 1.4))
    f = wb(rgb)
    g8 = wb((rgb * 255).round().astype(np.uint8))
    assert g8.dtype == np.uint8
    assert np.abs(g8.astype(np.float32) / 255 - f).max() <= 2.5 / 255
    g16 = wb((rgb * 65535).round().astype(np.uint16))
    assert g16.dtype == np.uint16
    assert np.abs(g16.astype(np.float32) / 65535 - f).max() <= 1e-3


def test_what_the_card_must_say_before_balancing():
    """No type set, a type the card has no range for, or one measured on too few slides: no balance."""
    assert WhiteBalance.from_card(card(), "") is None
    assert WhiteBalance.from_card(card(), "tissue") is None
    assert WhiteBalance.from_card({}, "blood") is None
    assert WhiteBalance.from_card(card(images=MIN_SLIDES - 1), "blood") is None
    wb = WhiteBalance.from_card(card(), "blood")
    assert wb is not None and wb.sample == "blood"


def test_the_training_range_per_sample_type():
    """input_white keeps, per type, the median glass, the spread and how many slides had glass."""
    rng = np.random.default_rng(3)
    slides = [cast(sample_rgb(n), rng.uniform(0.9, 1.1, 3)) for n in BLOOD for _ in range(4)]
    rng2 = np.random.default_rng(1)
    texture = cv2.GaussianBlur(rng2.uniform(0, 1, (200, 200, 3)).astype(np.float32), (0, 0), 3)
    texture = (texture - texture.min()) / (texture.max() - texture.min())
    got = input_white({"blood": slides + [texture], "tissue": [texture]})
    assert set(got) == {"blood"}
    b = got["blood"]
    assert b["images"] == b["slides"] == len(slides)      # without slide labels each input counts as one
    assert np.all(np.asarray(b["log_spread"]) > 0) and np.all(np.asarray(b["log_spread"]) < 0.15)
    whites = np.array([glass_white(s) for s in slides])
    assert np.allclose(b["median"], np.median(whites, axis=0), atol=1e-4)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_a_frame_of_one_colour_is_not_glass_to_balance_to_black(dtype):
    """A uniform frame (a blank slide) is all glass: balanced, never zeroed or overflowed."""
    full = np.iinfo(dtype).max
    frame = np.full((64, 64, 3), (0.9 * full, 0.8 * full, 0.6 * full), dtype)
    wb = WhiteBalance.from_card(card(), "blood")
    out = wb(frame)
    assert out.dtype == dtype and out.min() > 0 and out.max() <= full


def test_why_a_sample_type_is_not_balanced_is_said():
    assert "keeps no glass range for 'tissue'" in WhiteBalance.why_none({"name": "m"}, "tissue")
    why = WhiteBalance.why_none(card(images=2), "blood")
    assert "2 training slides" in why and f"at least {MIN_SLIDES}" in why and "\n" not in why


def test_the_range_counts_slides_not_slides_through_many_phones():
    """A type's range counts the slides its inputs show (one slide through many phones is one slide), as
    training's balance_by_type does: 2 malaria slides through 18 phones each are 36 inputs and no balance.
    A card from before the count was kept falls back on its training fields per type, then its inputs."""
    rng = np.random.default_rng(5)
    inputs = [cast(sample_rgb(n), rng.uniform(0.8, 1.2, 3)) for n in BLOOD[:2] for _ in range(18)]
    slides = [f"malaria__{n}" for n in BLOOD[:2] for _ in range(18)]
    got = input_white({"malaria": inputs}, {"malaria": slides})["malaria"]
    assert got["images"] == 36 and got["slides"] == 2
    assert WhiteBalance.from_card({"input_white": {"malaria": got}}, "malaria") is None
    assert "2 training slides" in WhiteBalance.why_none({"input_white": {"malaria": got}}, "malaria")
    many = dict(got, slides=MIN_SLIDES)
    assert WhiteBalance.from_card({"input_white": {"malaria": many}}, "malaria") is not None
    old = {k: v for k, v in got.items() if k != "slides"}
    fields = {"training": {"origin": {"sample_types": {"malaria": {"train": 2, "heldout": 2}}}}}
    assert WhiteBalance.from_card({"input_white": {"malaria": old}, **fields}, "malaria") is None
    assert WhiteBalance.from_card({"input_white": {"malaria": old}}, "malaria") is not None   # 36 inputs
