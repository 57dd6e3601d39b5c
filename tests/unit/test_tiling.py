"""Tiling: the plan covers every pixel once with enough context, and tiled == whole-image (the engine's
uint8 output, up to the rounding of a float tie), on a random model whose learned branch matters."""
from __future__ import annotations

import numpy as np
import pytest

from edge import tiling
from edge.enhancer import Enhancer
from edge.imageio import to_uint8
from tests.helpers import float_network, sample_rgb


@pytest.mark.parametrize("fixed", [False, True])
def test_spans_partition_with_halo(fixed):
    rng = np.random.default_rng(1)
    for _ in range(3000):
        align = int(rng.choice([1, 2, 4]))
        halo = int(rng.integers(0, 30))
        length = int(rng.integers(1, 3000)) * align
        tile = int(rng.integers(2 * halo + 16, 2 * halo + 700))
        tile -= tile % align
        if tile < 2 * halo + align:
            continue
        sp = tiling.spans(length, tile, halo, align, fixed)
        assert sp[0].keep0 == 0 and sp[-1].keep1 == length
        assert len({s.size for s in sp}) == 1, "all windows share one shape"
        if fixed and tile < length:
            assert sp[0].size == tile
        for a, b in zip(sp, sp[1:]):
            assert a.keep1 == b.keep0 and a.keep0 < a.keep1
        for s in sp:
            assert s.start % align == 0 and 0 <= s.start and s.start + s.size <= length
            assert s.keep0 >= s.start + halo or s.start == 0
            assert s.keep1 <= s.start + s.size - halo or s.start + s.size == length


def test_small_tile_is_refused_with_the_minimum():
    with pytest.raises(tiling.TilingError, match="at least"):
        tiling.spans(1000, 40, 21, 2)


def test_non_square_grid_and_overhead():
    p = tiling.plan(1080, 1920, 512, 21, 2, fixed=True)
    assert p.grid == (3, 4) and p.tile_h == p.tile_w == 512
    assert 1.0 < p.overhead < 1.6   # fixed windows overlap where the frame is not a multiple of them
    assert tiling.plan(1080, 1920, 0, 21, 2).overhead == 1.0


def test_an_int_tile_bounds_the_window_area_and_the_shape_minimises_the_halo():
    """Any-shape engines: windows of at most tile x tile pixels, shaped to compute no more than square
    windows of that side would (within the 1 % traded for smaller windows); a frame within the area is
    one window. 1080p at 744: 2 x 2 windows of 562 x 982 instead of 2 x 3."""
    rng = np.random.default_rng(3)
    for _ in range(400):
        align = int(rng.choice([1, 2, 4]))
        halo = int(rng.integers(0, 30))
        h, w = (int(rng.integers(1, 1500)) * align for _ in range(2))
        tile = int(rng.integers(2 * halo + 16, 2 * halo + 900))
        tile -= tile % align
        if tile < 2 * halo + align:
            continue
        p = tiling.plan(h, w, tile, halo, align)
        assert p.tile_h * p.tile_w <= max(tile * tile, 0) or p.grid == (1, 1)
        if tile * tile >= h * w:
            assert p.grid == (1, 1)
        square = tiling.plan(h, w, (tile, tile), halo, align)
        assert p.overhead <= square.overhead * 1.01 + 1e-9
        covered = np.zeros((h, w), np.int8)
        for t in p.tiles:
            assert t.y.size == p.tile_h and t.x.size == p.tile_w
            covered[t.y.keep0:t.y.keep1, t.x.keep0:t.x.keep1] += 1
        assert (covered == 1).all()
    p = tiling.plan(1080, 1920, 744, 21, 2)
    assert p.grid == (2, 2) and (p.tile_h, p.tile_w) == (562, 982) and round(p.overhead, 3) == 1.065


def _compare(enh_whole, enh_tiled, img):
    px = to_uint8(img)
    a = enh_whole.run_network(px)
    b = enh_tiled.run_network(px)
    assert a.shape == b.shape == img.shape and a.dtype == b.dtype == np.uint8
    d8 = np.abs(a.astype(int) - b.astype(int))
    assert d8.max() <= 1 and (d8 > 0).mean() <= 1e-3, f"max diff {d8.max()}, {(d8 > 0).mean():.2e} of samples"
    # FP16 pixels (11 significant bits) show the same at a finer grain
    a16, b16 = (e.run_network(img.astype(np.float16)).astype(np.float32) for e in (enh_whole, enh_tiled))
    assert np.abs(a16 - b16).max() <= 2 ** -10
    return b


def test_tiled_equals_whole_random_sizes(tiny_model):
    whole, _ = Enhancer.open(tiny_model, "onnxruntime", tile=0)
    rng = np.random.default_rng(7)
    src = sample_rgb()
    for _ in range(8):
        h, w = int(rng.integers(23, 470)), int(rng.integers(17, 630))
        y0, x0 = int(rng.integers(0, 480 - h + 1)), int(rng.integers(0, 640 - w + 1))
        img = np.ascontiguousarray(src[y0:y0 + h, x0:x0 + w])
        tile = int(rng.choice([64, 96, 128, 200, 256, 512]))
        tiled = Enhancer(whole.engine, whole.card, tile=tile, batch=int(rng.integers(1, 5)))
        out = _compare(whole, tiled, img)
        assert np.ptp(out / 255 - img) > 0.05, "the test model must change the image, or the test proves nothing"


def test_tiled_equals_whole_odd_and_tiny_images(tiny_model):
    whole, _ = Enhancer.open(tiny_model, "onnxruntime", tile=0)
    src = sample_rgb("torchstain_target")
    for h, w, tile in [(1, 1, 64), (3, 5, 64), (7, 300, 64), (301, 9, 96), (441, 587, 96), (100, 100, 512)]:
        img = np.ascontiguousarray(src[:h, :w])
        _compare(whole, Enhancer(whole.engine, whole.card, tile=tile), img)


def test_fixed_shape_tiles_equal_whole(tiny_model):
    """Border windows shift inward (fixed-shape engines) and stay exact."""
    whole, _ = Enhancer.open(tiny_model, "onnxruntime", tile=0)
    img = to_uint8(sample_rgb()[:350, :610])
    p = tiling.plan(350, 610, 128, whole.card.receptive_field, 2, fixed=True)
    assert p.tile_h == p.tile_w == 128 and p.grid[0] != p.grid[1]
    out = np.empty_like(img)
    for t in p.tiles:
        r = whole.engine.infer(tiling.extract(img, t)[None])[0]
        tiling.place(out, r, t)
    d = np.abs(out.astype(int) - whole.run_network(img))
    assert d.max() <= 1 and (d > 0).mean() <= 1e-3


def test_shipped_model_tiled_equals_whole():
    whole, _ = Enhancer.open(None, "onnxruntime", tile=0)
    img = sample_rgb("BloodImage_00090")[:, :601]
    for tile in (128, whole.card.recommended_tile):
        _compare(whole, Enhancer(whole.engine, whole.card, tile=tile), img)


def test_scaled_model_resamples_then_tiles(scaled_model):
    enh, _ = Enhancer.open(scaled_model, "onnxruntime", tile=64)
    img = sample_rgb()[:101, :75]
    out = enh.enhance(img)
    assert out.shape == (152, 112, 3)
    assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1


def test_receptive_field_in_the_card_is_right(tiny_model):
    """A changed input pixel changes outputs within R of it and nowhere beyond (the float network itself:
    the halo is its property, not the pixels')."""
    from edge.modelcard import load_card

    net = float_network(tiny_model)
    rng = np.random.default_rng(0)
    img = rng.random((1, 3, 160, 160), dtype=np.float32)
    a = net(img)
    for y, x in [(80, 80), (81, 79)]:
        b_img = img.copy()
        b_img[..., y, x] += 0.5
        ys, xs = np.nonzero(np.abs(net(b_img) - a)[0].max(axis=0) > 0)
        reach = max(abs(ys - y).max(), abs(xs - x).max())
        R = load_card(tiny_model).receptive_field
        assert R - 2 <= reach <= R, (reach, R)
