"""Exact tiling: tiled inference that equals whole-image inference.

Each tile is an input window with a halo of at least the network's
receptive-field radius; only the window's interior (or the part touching the
image border, where the window's edge *is* the image's edge) is kept. So each
kept output pixel saw exactly the inputs it would have seen in a whole-image
pass: no blending, no seams. All windows have one shape (border windows
shift inward instead of padding), which fixed-shape engines need and which
lets tiles be batched. Window origins are multiples of the network's
alignment (its space-to-depth factor), which exactness also needs.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np


class TilingError(ValueError):
    pass


@dataclass(frozen=True)
class Span:
    """One window along an axis: input [start, start+size), kept output [keep0, keep1)."""

    start: int
    size: int
    keep0: int
    keep1: int


@dataclass(frozen=True)
class Tile:
    y: Span
    x: Span


@dataclass(frozen=True)
class Plan:
    height: int          # padded (aligned) image size the plan covers
    width: int
    tile_h: int          # every window has this shape
    tile_w: int
    tiles: tuple[Tile, ...]
    grid: tuple[int, int]  # windows along y, x

    @property
    def overhead(self) -> float:
        """Pixels computed / pixels output."""
        return len(self.tiles) * self.tile_h * self.tile_w / float(self.height * self.width)


def align_up(v: int, a: int) -> int:
    return -(-v // a) * a


def spans(length: int, tile: int, halo: int, align: int = 1, fixed: bool = False) -> list[Span]:
    """Windows covering [0, length) so each kept pixel has `halo` context or a true border.

    `tile` is the window size for fixed-shape engines (fixed=True); otherwise
    it is the largest window, and the fewest windows of that size are shrunk
    evenly to just cover the axis, which keeps the halo overhead near its
    minimum for any image size.
    """
    if length <= 0:
        raise TilingError("empty image")
    if length % align:
        raise TilingError(f"length {length} is not a multiple of the alignment {align}")
    if tile <= 0 or tile >= length:
        return [Span(0, length, 0, length)]
    tile -= tile % align
    core = tile - 2 * halo
    if core < align:
        raise TilingError(f"tile {tile} is too small for a halo of {halo} px: use at least "
                          f"{align_up(2 * halo + max(align, 16), align)}")
    n = 1 + math.ceil((length - tile) / core)
    largest = tile
    while True:
        if not fixed:   # n windows shrunk evenly to just cover (again if rounding to the alignment adds one)
            tile = min(largest, align_up(-(-(length + 2 * halo * (n - 1)) // n), align))
            core = tile - 2 * halo
        starts = [(k * (length - tile) // (n - 1)) // align * align for k in range(n)]
        starts[-1] = length - tile
        if all(b - a <= core for a, b in zip(starts, starts[1:])):
            break
        n += 1
    cuts = [b + halo + ((a + tile - halo) - (b + halo)) // 2 for a, b in zip(starts, starts[1:])]
    bounds = [0] + cuts + [length]
    return [Span(s, tile, bounds[k], bounds[k + 1]) for k, s in enumerate(starts)]


@functools.lru_cache(maxsize=32)   # per frame size: the preview asks for the same plan every frame
def plan(height: int, width: int, tile: int | tuple[int, int], halo: int, align: int = 1,
         fixed: bool = False) -> Plan:
    """Tile plan for an image already padded to multiples of `align`. tile=0: one window.

    An int tile on an engine that takes any shape bounds a window's area (tile x tile pixels, which is
    what a window's activations hold) and the windows take the shape that computes the fewest pixels
    under it: a 1080p frame at 744 is 2 x 2 windows of 562 x 982 (overhead 1.065) where square 744
    windows would make it 2 x 3. A fixed-shape engine (fixed=True) or a (h, w) tile: windows of that
    shape at most."""
    # a tile near the halo's minimum keeps square windows (spans() says the minimum; no search worth it)
    if isinstance(tile, int) and not fixed and tile >= 4 * halo + align_up(16, align):
        th, tw = ((height, width) if tile * tile >= height * width
                  else _window_shape(height, width, tile * tile, halo, align))
    else:
        th, tw = (tile, tile) if isinstance(tile, int) else tile
    ys = spans(height, th, halo, align, fixed)
    xs = spans(width, tw, halo, align, fixed)
    tiles = tuple(Tile(y, x) for y in ys for x in xs)
    return Plan(height, width, ys[0].size, xs[0].size, tiles, (len(ys), len(xs)))


def _window_shape(height: int, width: int, area: int, halo: int, align: int) -> tuple[int, int]:
    """The window shape (h, w), h x w <= area, whose plan computes the fewest pixels; of plans within
    1 % of that, the one with the smallest windows (memory is worth more than 1 % of speed)."""
    found: list[tuple[int, int, int, int]] = []    # (computed pixels, window area, h, w)
    for ny in range(1, height // align + 1):
        th = height if ny == 1 else align_up(-(-(height + 2 * halo * (ny - 1)) // ny), align)
        if ny > 1 and th - 2 * halo < align:
            break                           # windows too short for their halo
        if found and ny * th * width >= min(found)[0]:
            break                           # the rows alone compute more than the best plan
        tw = (area // th) // align * align
        if tw >= width or tw - 2 * halo >= align:
            ys, xs = spans(height, th, halo, align), spans(width, tw, halo, align)
            h, w = ys[0].size, xs[0].size
            found.append((len(ys) * h * len(xs) * w, h * w, h, w))
    if not found:   # an area too small for the halo: spans() says the minimum
        side = math.isqrt(area)
        return side, side
    least = min(found)[0]
    _, _, h, w = min((f for f in found if f[0] <= least * 1.01), key=lambda f: (f[1], f[0]))
    return h, w


def pad_to_alignment(img: np.ndarray, align: int) -> np.ndarray:
    """Reflect-pad HxWxC bottom/right to multiples of `align` (both paths share it)."""
    h, w = img.shape[:2]
    ph, pw = align_up(h, align) - h, align_up(w, align) - w
    if not ph and not pw:
        return img
    mode = "reflect" if h > ph and w > pw else "edge"
    return np.pad(img, ((0, ph), (0, pw), (0, 0)), mode=mode)


def pad_up_to(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Reflect-pad HxWxC bottom/right up to height x width where it is smaller (as the halo's context
    would continue the image): an image smaller than a fixed-shape engine's tile fills one tile, and
    the top and left edges, where the tile's edge is the image's, stay exact."""
    h, w = img.shape[:2]
    ph, pw = max(0, height - h), max(0, width - w)
    if not ph and not pw:
        return img
    mode = "reflect" if h > 1 and w > 1 else "edge"
    return np.pad(img, ((0, ph), (0, pw), (0, 0)), mode=mode)


def extract(img: np.ndarray, t: Tile) -> np.ndarray:
    """One window of an H x W x C image: a view, not a copy."""
    return img[t.y.start:t.y.start + t.y.size, t.x.start:t.x.start + t.x.size]


def place(out: np.ndarray, result: np.ndarray, t: Tile) -> None:
    """Copy the kept part of one window's output (H x W x C) into the full output. The output may be
    smaller than the padded image the plan covers: padding is never copied out."""
    y0, y1 = t.y.keep0, min(t.y.keep1, out.shape[0])
    x0, x1 = t.x.keep0, min(t.x.keep1, out.shape[1])
    if y1 > y0 and x1 > x0:
        out[y0:y1, x0:x1] = result[y0 - t.y.start:y1 - t.y.start, x0 - t.x.start:x1 - t.x.start]
