"""Is an input what the model was trained for? Out of scope is said, not hidden.

A network trained on phone images of stained slides will still return *something* for an image that is
already sharp (a benchtop image, a phone with a better lens) or for colours it never saw (another stain,
an uncalibrated camera, the room instead of a slide), and that something can look convincing. The
model card keeps two statistics of the training inputs; `enhance` and the daemon compare each input
with them and warn once. They never refuse: the operator decides.

- fine detail: mean squared Laplacian of the luminance at the network's grid; an input with more than
  SHARP_FACTOR times the 99th percentile of the training inputs is "already sharp";
- colour: the image's mean CIE Lab (OpenCV's D65 conversion); a Mahalanobis distance from the
  training inputs' means above COLOUR_DISTANCE is "colours unlike the training set". Measured per sample
  type where the card keeps them (`by_type`) and the nearest type counts: one Gaussian over the shipped
  model's 263 blood smears and 1 H&E field sits on the blood smears and called 7 of 9 held-out H&E
  fields through its own phone out of scope; per type, 4 of 9.
"""
from __future__ import annotations

import cv2
import numpy as np

SHARP_FACTOR = 2.0
COLOUR_DISTANCE = 4.0
MAX_SIDE = 512          # statistics of a reduced copy: cheap enough for every preview frame


def input_stats(rgb: np.ndarray) -> tuple[float, np.ndarray]:
    """(fine detail, mean Lab) of an RGB image, float [0, 1] or uint8, at the grid it is given on."""
    x = rgb.astype(np.float32) / 255.0 if rgb.dtype == np.uint8 else np.clip(rgb, 0, 1).astype(np.float32)
    h, w = x.shape[:2]
    step = max(1, int(np.ceil(max(h, w) / MAX_SIDE)))
    lab = cv2.cvtColor(np.ascontiguousarray(x[::step, ::step]), cv2.COLOR_RGB2Lab)
    # detail on a full-resolution window (a reduced copy would lose exactly what is measured)
    y0, x0 = max(0, (h - MAX_SIDE) // 2), max(0, (w - MAX_SIDE) // 2)
    win = np.ascontiguousarray(x[y0:y0 + MAX_SIDE, x0:x0 + MAX_SIDE])
    luma = cv2.cvtColor(win, cv2.COLOR_RGB2GRAY)
    detail = float(np.mean(cv2.Laplacian(luma, cv2.CV_32F) ** 2))
    return detail, lab.reshape(-1, 3).mean(axis=0)


def _colour(lab: np.ndarray) -> dict:
    return {"lab_mean": lab.mean(axis=0).round(4).tolist(),
            "lab_cov": np.cov(lab.T).round(5).tolist() if len(lab) > 2 else np.eye(3).tolist(),
            "images": len(lab)}


def summarise(images: list[np.ndarray], types: list[str | None] | None = None) -> dict:
    """The card's `input_stats` from training inputs (on the network's grid); with each input's sample type
    (edge.sampletypes; None: untyped), the colour of each type as well (`by_type`)."""
    stats = [input_stats(im) for im in images]
    detail = np.array([s[0] for s in stats])
    lab = np.array([s[1] for s in stats], np.float64)
    out = {"detail_p50": float(np.percentile(detail, 50)), "detail_p99": float(np.percentile(detail, 99)),
           **_colour(lab)}
    if types is not None:
        kinds = sorted({t for t in types if t})
        if kinds:
            out["by_type"] = {k: _colour(lab[[t == k for t in types]]) for k in kinds}
    return out


class Scope:
    def __init__(self, stats: dict):
        self.p99 = float(stats["detail_p99"])
        # a floor of 2 Lab units per axis: a training set of one stain must not make every shade "far"
        self.colours = [(np.asarray(g["lab_mean"], np.float64),
                         np.linalg.inv(np.asarray(g["lab_cov"], np.float64) + np.eye(3) * 4.0))
                        for g in (stats.get("by_type") or {"": stats}).values()]
        self.warned: set[str] = set()

    @classmethod
    def from_card(cls, raw: dict) -> "Scope | None":
        stats = raw.get("input_stats")
        try:
            return cls(stats) if stats else None
        except (KeyError, TypeError, ValueError, np.linalg.LinAlgError):
            return None

    def check(self, rgb: np.ndarray, detail: bool = True) -> list[str]:
        """Why this input is out of scope (empty: it looks like the training inputs). detail=False: colour
        only (for a picture not on the network's grid, whose fine detail says nothing)."""
        fine, lab = input_stats(rgb)
        why = []
        if detail and fine > SHARP_FACTOR * self.p99:
            why.append(f"already sharp (fine detail {fine / self.p99:.1f}x the sharpest training input): it "
                       f"looks like a benchtop image, not a phone's; the model may over-sharpen it")
        dist = min(float(np.sqrt((lab - m) @ icov @ (lab - m))) for m, icov in self.colours)
        if dist > COLOUR_DISTANCE:
            why.append(f"colours unlike the training set (mean Lab {lab[0]:.0f}/{lab[1]:.0f}/{lab[2]:.0f}, "
                       f"distance {dist:.1f}): another stain, an uncalibrated camera, or not a slide?")
        return why

    def first_time(self, why: list[str]) -> list[str]:
        """The reasons not yet warned about (each kind once)."""
        new = [w for w in why if w.split(" (")[0] not in self.warned]
        self.warned.update(w.split(" (")[0] for w in new)
        return new
