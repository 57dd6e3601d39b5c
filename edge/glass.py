"""The slide's glass as a white reference: an unseen phone's white balance, taken off before the network.

A brightfield frame shows the lamp through bare glass between cells. Another phone (another sensor, its
auto white balance, another lamp) renders that glass in another colour, and a CNN that sees a tile at a
time cannot tell a colour cast from a stain. So each frame's glass colour (the mean of its bright, flat
pixels, in linear light) is brought into the range of glass colours the model was trained on: the card
keeps, per sample type (`input_white`; each type's references come from other scanners), the median
glass of the training inputs and how far single slides strayed from it (90th percentile, per channel, in
log gain). A frame inside that range is left as it is (slides differ, and the references keep that);
one outside is scaled per channel to the range's edge. A frame without enough glass (a tissue section
edge to edge) is left as it is. One gain per channel for the whole frame, before tiling, so tiles stay
seamless. Only for a sample type the kiosk is set to (`[model] sample`: types' glass differs too much to
pool) and whose range was measured on at least MIN_SLIDES training slides, as training balances them
(models/train.py balance_by_type): from fewer, a held-out slide's own glass falls outside it and balancing
does harm (the shipped model's 13 H&E and 2 malaria inputs: tissue CIEDE2000 5.29 -> 6.74 and malaria
3.62 -> 6.22 on the phone it was trained for). Slides, not inputs: one slide through many phones says
nothing more about how the next slide's glass differs.

Measured (issue 13; `python -m models.heldout --phones family`, then `phonescope evaluate`): the shipped
model on 29 held-out blood smears through phones of the randomised family, CIEDE2000 8.91 -> 4.24, PSNR
24.14 -> 29.28 dB; on the phone it was trained for, 2.69 -> 2.70 (its slides lie inside the range).
"""
from __future__ import annotations

import cv2
import numpy as np

from edge.colourspace import linear_to_srgb, srgb_to_linear

MAX_SIDE = 512          # estimated on a reduced copy: cheap enough for every preview frame
BRIGHT = 0.85           # glass: within this fraction of the 99th percentile of brightness ...
FLAT = 0.16             # ... and a Sobel gradient (of a 2 px blur) under this fraction of that brightness
MIN_GLASS = 0.05        # of the frame; fewer such pixels: no glass to go by
MIN_LEVEL = 0.05        # linear brightness below which a frame is too dark to say (a covered camera)
MAX_GAIN = 3.0          # per channel, either way: a larger cast is not a white balance
MIN_SLIDES = 20         # training slides with glass a type's range needs (slides_of)


def glass_white(rgb: np.ndarray) -> np.ndarray | None:
    """Mean linear RGB of the frame's glass (uint8, uint16 or float [0, 1]); None without enough glass."""
    h, w = rgb.shape[:2]
    f = MAX_SIDE / max(h, w)
    small = cv2.resize(rgb, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA) \
        if f < 1 else rgb
    full = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(small.dtype, 1.0)
    lin = srgb_to_linear(np.clip(small.astype(np.float32) / full, 0, 1))
    lum = lin.mean(axis=2)
    top = float(np.percentile(lum, 99))
    if top < MIN_LEVEL:
        return None
    g = cv2.GaussianBlur(lum, (0, 0), 2.0)
    grad = np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1))
    glass = (lum >= BRIGHT * top) & (grad < FLAT * top)
    if glass.mean() < MIN_GLASS:
        return None
    return lin[glass].mean(axis=0).astype(np.float64)


class WhiteBalance:
    """Per-frame gains that bring the frame's glass to the card's; `None` from from_card when the card
    keeps no glass colour (a model exported before issue 13) or it is off."""

    def __init__(self, target: np.ndarray, sample: str, spread: np.ndarray | None = None):
        self.target = np.asarray(target, np.float64)
        self.spread = np.zeros(3) if spread is None else np.asarray(spread, np.float64)
        self.sample = sample
        self.last_gain: np.ndarray | None = None    # the last frame's (None: it had no glass to go by)

    @classmethod
    def from_card(cls, raw: dict, sample: str = "") -> "WhiteBalance | None":
        """The balance for `sample` (a type of edge.sampletypes; "": none), None where the card keeps no
        range for it or one from under MIN_SLIDES slides (a model trained on other slides, or exported
        before issue 13)."""
        w = (raw.get("input_white") or {}).get(sample) if sample else None
        if not isinstance(w, dict) or slides_of(raw, sample) < MIN_SLIDES:
            return None
        return cls(w["median"], sample, w["log_spread"])

    @staticmethod
    def why_none(raw: dict, sample: str) -> str:
        """Why from_card gives no balance for a sample type that was asked for (one line)."""
        w = (raw.get("input_white") or {}).get(sample)
        if not isinstance(w, dict):
            return f"model {raw.get('name', '?')} keeps no glass range for {sample!r} slides: not white-balanced"
        return (f"model {raw.get('name', '?')}'s glass range for {sample!r} comes from {slides_of(raw, sample)} "
                f"training slides (at least {MIN_SLIDES} needed): not white-balanced")

    def gains(self, rgb: np.ndarray) -> np.ndarray | None:
        """Per-channel gains of this frame (1 inside the training range), None without glass."""
        white = glass_white(rgb)
        if white is None:
            return None
        g = np.log(self.target / np.maximum(white, 1e-6))
        g = np.sign(g) * np.maximum(np.abs(g) - self.spread, 0.0)
        return np.clip(np.exp(g), 1 / MAX_GAIN, MAX_GAIN)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """The frame with its glass brought into the card's range, in its own type (uint8 and uint16
        through a lookup table per channel, float [0, 1] directly); the frame itself where it has no glass
        or its glass is in range."""
        gain = self.last_gain = self.gains(rgb)
        if gain is None or np.all(gain == 1.0):
            return rgb
        if rgb.dtype in (np.uint8, np.uint16):
            full = 255 if rgb.dtype == np.uint8 else 65535
            levels = srgb_to_linear(np.arange(full + 1, dtype=np.float32) / full)
            out = np.empty_like(rgb)
            for c in range(3):
                lut = np.round(linear_to_srgb(levels * np.float32(gain[c])) * full).astype(rgb.dtype)
                out[..., c] = lut[rgb[..., c]]
            return out
        lin = srgb_to_linear(np.clip(rgb, 0, 1)) * gain.astype(np.float32)
        return linear_to_srgb(lin)


def slides_of(raw: dict, sample: str) -> int:
    """How many training slides a card's glass range for `sample` comes from: the range's own count; on a
    card from before it kept one, the type's training fields (`training.origin.sample_types`), else its
    inputs (`images`: slides x phones, which then counted)."""
    def at(d, *keys):
        for k in keys:
            d = d.get(k) if isinstance(d, dict) else None
        return d
    for count in (at(raw, "input_white", sample, "slides"),
                  at(raw, "training", "origin", "sample_types", sample, "train"),
                  at(raw, "input_white", sample, "images")):
        if isinstance(count, (int, float)):
            return int(count)
    return 0


SPREAD_PCT = 90         # of the training inputs' distance from their type's median glass


def _range_of(whites: list[np.ndarray], slides: int) -> dict:
    med = np.median(whites, axis=0)
    spread = np.percentile(np.abs(np.log(np.asarray(whites) / med)), SPREAD_PCT, axis=0)
    return {"median": med.round(5).tolist(), "log_spread": spread.round(4).tolist(), "images": len(whites),
            "slides": slides}


def input_white(samples: dict[str, list[np.ndarray]], slides: dict[str, list[str]] | None = None) -> dict:
    """The card's `input_white`: per sample type the range of glass colours of its training inputs (those
    with glass: median, spread, how many, and from how many slides: `slides`, the slide each input shows;
    without them each input counts as a slide); types without glass are left out."""
    out = {}
    for t, images in samples.items():
        labels = (slides or {}).get(t) or [str(i) for i in range(len(images))]
        found = [(w, lab) for w, lab in zip((glass_white(im) for im in images), labels) if w is not None]
        if found:
            out[t] = _range_of([w for w, _ in found], len({lab for _, lab in found}))
    return out
