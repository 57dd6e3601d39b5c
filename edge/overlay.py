"""The kiosk screen: the live picture and what the operator needs to read from a metre away.

Drawn at the screen's own size (a 1080p HDMI screen; text scales with its height), so nothing is
letterboxed in grey: the picture fills the area left of a side panel, black where its aspect differs.
The side panel shows the current sample id in large type (and what is being typed), the operator, a
focus bar (the raw frame's sharpness against the best seen lately, "adjust focus" below the meter's
threshold), an exposure warning when highlights clip, the daemon's warnings, wrapped, never cut, the
capture state ("saving..." at once, then "saved #seq" with a thumbnail of the enhanced image in the
room left), and the capture under review and its flag. A strip along the bottom carries the persistent notice
("AI-enhanced image, research use only" by default) and the status line. In split view the raw and
enhanced pictures are labelled.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX
WHITE, GREY, AMBER, RED, GREEN = (240, 240, 240), (150, 150, 150), (255, 190, 40), (255, 80, 60), (90, 220, 110)
PANEL = 0.24               # of the screen's width
CLIP_LEVEL = 250           # a raw pixel this bright or brighter is clipped
CLIP_WARN = 0.02           # ... and this fraction of them clipping earns a warning


@dataclass
class View:
    """Everything on the screen besides the picture."""

    status: str = ""
    notice: str = ""
    warnings: list[str] = field(default_factory=list)
    sample_id: str | None = None
    typed: str = ""
    operator_id: str | None = None
    message: str | None = None
    focus_level: float = 0.0
    adjust_focus: bool = False
    clipped: float = 0.0                 # fraction of raw pixels at the top of the range
    saving: bool = False
    saved_seq: int | None = None
    thumbnail: np.ndarray | None = None  # the capture under review, else the last one, enhanced, RGB uint8
    reviewing: int | None = None         # seq of the capture under review
    review_flag: str | None = None


def clipped_fraction(raw: np.ndarray | None) -> float:
    """Fraction of pixels with a channel at the top of the range (overexposed)."""
    if raw is None:
        return 0.0
    small = raw[::4, ::4]
    return float((small.max(axis=2) >= CLIP_LEVEL).mean())


def scale_for(height: int) -> float:
    """Text scale: Hershey's simplex at 1.0 is ~22 px high; 1080p gets 1.0 for body text."""
    return max(0.45, height / 1080)


def wrap(text: str, width_px: int, size: float, thickness: int = 1) -> list[str]:
    """Words of `text` in lines no wider than width_px at this text size (a long word is split)."""
    lines: list[str] = []
    for para in text.splitlines() or [""]:
        line = ""
        for word in para.split(" "):
            while cv2.getTextSize(word, FONT, size, thickness)[0][0] > width_px and len(word) > 1:
                cut = max(1, int(len(word) * width_px / cv2.getTextSize(word, FONT, size, thickness)[0][0]) - 1)
                if line:
                    lines.append(line)
                    line = ""
                lines.append(word[:cut])
                word = word[cut:]
            trial = f"{line} {word}" if line else word
            if cv2.getTextSize(trial, FONT, size, thickness)[0][0] <= width_px:
                line = trial
            else:
                lines.append(line)
                line = word
        lines.append(line)
    return [ln for ln in lines if ln] or [""]


def text_patch(text: str, size: float, thickness: int, colour=WHITE) -> np.ndarray:
    """`text` drawn as the overlay draws it, on black, cropped to its box (tests find it on the screen)."""
    (w, h), base = cv2.getTextSize(text, FONT, size, thickness)
    patch = np.zeros((h + base + 2 * thickness, w + 2 * thickness, 3), np.uint8)
    cv2.putText(patch, text, (thickness, h + thickness), FONT, size, colour, thickness, cv2.LINE_AA)
    return patch


def layout(width: int, height: int) -> dict[str, tuple[int, int, int, int]]:
    """The screen's areas as (x, y, w, h): picture, panel, strip."""
    panel_w = int(width * PANEL)
    strip_h = max(24, int(height * 0.075))
    return {"picture": (0, 0, width - panel_w, height - strip_h), "panel": (width - panel_w, 0, panel_w,
            height - strip_h), "strip": (0, height - strip_h, width, strip_h)}


def _fit(pic: np.ndarray, w: int, h: int) -> tuple[np.ndarray, int, int]:
    """The picture scaled to fit w x h, aspect kept, and its offset there."""
    s = min(w / pic.shape[1], h / pic.shape[0])
    nw, nh = max(1, round(pic.shape[1] * s)), max(1, round(pic.shape[0] * s))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    return cv2.resize(pic, (nw, nh), interpolation=interp), (w - nw) // 2, (h - nh) // 2


class Pen:
    """Writes lines down an area of the screen."""

    def __init__(self, canvas: np.ndarray, x: int, y: int, width: int, scale: float):
        self.canvas, self.x, self.y, self.width, self.scale = canvas, x, y, width, scale

    def text(self, text: str, size: float = 1.0, colour=WHITE, thickness: int = 2, wrapped: bool = True) -> None:
        s = size * self.scale
        for line in wrap(text, self.width, s, thickness) if wrapped else [text]:
            (_, h), base = cv2.getTextSize(line, FONT, s, thickness)
            self.y += h + base
            cv2.putText(self.canvas, line, (self.x, self.y), FONT, s, colour, thickness, cv2.LINE_AA)
            self.y += int(8 * self.scale)

    def gap(self, px: float = 14) -> None:
        self.y += int(px * self.scale)


def render(raw: np.ndarray | None, enhanced: np.ndarray | None, show: str, size: tuple[int, int],
           view: View) -> np.ndarray:
    """The whole screen (RGB uint8, width x height)."""
    width, height = size
    canvas = np.zeros((height, width, 3), np.uint8)
    areas = layout(width, height)
    sc = scale_for(height)
    x, y, w, h = areas["picture"]
    if show == "split" and raw is not None and enhanced is not None:
        for k, (pic, label) in enumerate(((raw, "raw"), (enhanced, "enhanced"))):
            fitted, ox, oy = _fit(pic, w // 2, h)
            canvas[y + oy:y + oy + fitted.shape[0], x + k * (w // 2) + ox:x + k * (w // 2) + ox + fitted.shape[1]] = fitted
            cv2.putText(canvas, label, (x + k * (w // 2) + ox + int(12 * sc), y + oy + int(40 * sc)), FONT, sc,
                        WHITE, 2, cv2.LINE_AA)
    else:
        pic = raw if show == "raw" or enhanced is None else enhanced
        if pic is not None:
            fitted, ox, oy = _fit(pic, w, h)
            canvas[y + oy:y + oy + fitted.shape[0], x + ox:x + ox + fitted.shape[1]] = fitted
    _panel(canvas, areas["panel"], sc, view)
    sx, sy, sw, sh = areas["strip"]
    canvas[sy:sy + sh, sx:sx + sw] = (24, 24, 24)
    pen = Pen(canvas, sx + int(16 * sc), sy, sw - int(32 * sc), sc)
    pen.y += int(4 * sc)
    pen.text(view.notice, 0.9, AMBER, 2, wrapped=False)
    status_s = 0.6 * sc
    tw = cv2.getTextSize(view.status, FONT, status_s, 1)[0][0]
    cv2.putText(canvas, view.status, (sx + sw - tw - int(16 * sc), sy + sh - int(12 * sc)), FONT, status_s, GREY, 1,
                cv2.LINE_AA)
    return canvas


def _panel(canvas: np.ndarray, area: tuple[int, int, int, int], sc: float, v: View) -> None:
    x, y, w, h = area
    pad = int(20 * sc)
    pen = Pen(canvas, x + pad, y + pad // 2, w - 2 * pad, sc)
    pen.text("SAMPLE", 0.7, GREY, 1)
    pen.text(v.sample_id or "none", 1.6 if v.sample_id else 1.0, WHITE if v.sample_id else GREY, 3)
    if v.typed:
        pen.text(f"> {v.typed}_", 1.0, AMBER, 2)
    if v.operator_id:
        pen.text(f"operator {v.operator_id}", 0.7, GREY, 1)
    pen.gap()
    pen.text("FOCUS", 0.7, GREY, 1)
    bar_h = int(26 * sc)
    pen.y += int(6 * sc)
    cv2.rectangle(canvas, (pen.x, pen.y), (pen.x + pen.width, pen.y + bar_h), GREY, 2)
    level = min(1.0, max(0.0, v.focus_level))
    colour = AMBER if v.adjust_focus else GREEN
    cv2.rectangle(canvas, (pen.x + 3, pen.y + 3), (pen.x + 3 + int((pen.width - 6) * level), pen.y + bar_h - 3),
                  colour, -1)
    pen.y += bar_h
    pen.gap(6)
    if v.adjust_focus:
        pen.text("adjust focus", 0.9, AMBER, 2)
    if v.clipped >= CLIP_WARN:
        pen.text(f"overexposed: {v.clipped:.0%} clipped", 0.8, RED, 2)
    if v.message:
        pen.text(v.message, 0.7, AMBER, 2)
    for warning in v.warnings:
        pen.text(warning, 0.7, RED, 2)
    pen.gap()
    if v.saving:
        pen.text("saving...", 1.2, AMBER, 3)
    elif v.saved_seq is not None:
        pen.text(f"saved #{v.saved_seq}", 1.2, GREEN, 3)
    if v.reviewing is not None:
        pen.text(f"review #{v.reviewing}" + (f": {v.review_flag.upper()}" if v.review_flag else ""), 0.9,
                 RED if v.review_flag else WHITE, 2)
        pen.text("Del: retake  Esc: live", 0.6, GREY, 1)
    room = y + h - pad - pen.y - int(6 * sc)
    if v.thumbnail is not None and room > 16:
        thumb, _, _ = _fit(v.thumbnail, pen.width, min(room, int(pen.width * 0.75)))
        pen.y += int(6 * sc)
        canvas[pen.y:pen.y + thumb.shape[0], pen.x:pen.x + thumb.shape[1]] = thumb
