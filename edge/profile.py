"""The per-kiosk calibration profile: loaded, validated and applied to camera frames.

{"format": "phonescope-calibration/1", "version": N, "colour": {...} | null,
 "flat": {"file": ..., "sha256": ...} | null, "dark": {...} | null,
 "scale": {"pixel_size_um": ..., "width": ..., ...} | null}

`phonescope calibrate` (calibration/) writes it; the kiosk only reads it.
Loading validates everything and refuses a profile whose images do not match
their recorded sha256. Applying works in linear light: (x - dark) / flat,
then the colour-correction matrix, then back to sRGB encoding, so the
network sees what a calibrated camera would have delivered.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from edge.colourspace import colour_science, linear_to_srgb, srgb_to_linear

FORMAT = "phonescope-calibration/1"
# colour-science's colour-correction methods, by the names the profile records
CCM_METHODS = {"linear": ("Cheung 2004", {"terms": 3}), "root-polynomial": ("Finlayson 2015", {"degree": 2}),
               "vandermonde": ("Vandermonde", {"degree": 2})}


class ProfileError(Exception):
    """A calibration profile that cannot be used; one line saying why."""


@dataclass
class Profile:
    path: Path
    version: int
    colour: dict | None
    flat: np.ndarray | None       # HxWx3 float32, normalised to mean 1 (linear)
    dark: np.ndarray | None       # HxWx3 float32 (linear)
    raw: dict

    def describe(self) -> dict:
        return {"path": str(self.path), "version": self.version,
                "colour": self.colour["method"] if self.colour else None,
                "pixel_size_um": (self.raw.get("scale") or {}).get("pixel_size_um"),
                "flat": self.flat is not None, "dark": self.dark is not None}

    def pixel_size_um(self, width: int) -> float | None:
        """um per camera pixel for frames `width` pixels wide (the micrometer image may have been taken at
        another camera resolution of the same sensor and optics); None where the profile has no scale."""
        scale = self.raw.get("scale") or {}
        if not scale.get("pixel_size_um"):
            return None
        return float(scale["pixel_size_um"]) * int(scale.get("width") or width) / width

    def check_size(self, shape: tuple) -> None:
        """ValueError for a frame whose size differs from the flat or dark frame's."""
        for name, arr in (("dark", self.dark), ("flat", self.flat)):
            if arr is not None and arr.shape != tuple(shape):
                raise ValueError(f"frame {shape[1]}x{shape[0]} does not match the {name} frame "
                                 f"{arr.shape[1]}x{arr.shape[0]}: recalibrate at this camera size")

    def apply(self, rgb: np.ndarray, rows: slice | None = None) -> np.ndarray:
        """sRGB float [0,1] HxWx3 -> calibrated sRGB float [0,1]. rows: rgb is that strip of rows of
        a frame (the daemon calibrates a strip at a time); ValueError for a frame whose size differs
        from the flat or dark frame's."""
        out = rgb
        if self.flat is not None or self.dark is not None:
            flat, dark = (None if a is None else a if rows is None else a[rows] for a in (self.flat, self.dark))
            out = correct_flat(out, flat, dark)
        if self.colour:
            out = apply_ccm(out, np.asarray(self.colour["matrix"], np.float32), self.colour["method"])
        return np.clip(out, 0.0, 1.0).astype(np.float32)


def model_misfit(profile: Profile | None, card) -> str | None:
    """One line when the frames the model gets are not calibrated as its training inputs were (the card's
    training.calibrated_input: which of colour, flat, dark): a model trained on colour-calibrated phones
    relies on the phone's colour response having been measured, and one trained on raw frames on its not.
    card: the model's ModelCard (its name and raw card)."""
    trained = set((card.raw.get("training") or {}).get("calibrated_input") or [])
    applied = set() if profile is None else \
        {k for k, v in (("colour", profile.colour), ("flat", profile.flat), ("dark", profile.dark)) if v is not None}
    if "colour" in trained and "colour" not in applied:
        where = "no calibration profile is set" if profile is None else f"profile {profile.path} has no colour section"
        return (f"model {card.name} was trained on colour-calibrated images, but {where}: photograph the colour "
                f"chart, run phonescope calibrate colour and set [calibration] profile")
    method = (card.raw.get("training") or {}).get("colour_method")
    if "colour" in trained and method and profile.colour.get("method") != method:
        return (f"profile {profile.path} corrects colour by {profile.colour.get('method')}, but model {card.name} was "
                f"trained on images corrected by {method}: run phonescope calibrate colour --method {method}")
    if applied - trained:
        return (f"calibration profile {profile.path} is applied ({', '.join(sorted(applied - trained))}), but model "
                f"{card.name} was not trained on calibrated images: retrain it on pairs made with this profile")
    return None


def correct_flat(rgb: np.ndarray, flat: np.ndarray | None, dark: np.ndarray | None) -> np.ndarray:
    """(x - dark) / flat in linear light, for sRGB float input; frames of another size are refused."""
    lin = srgb_to_linear(rgb)
    for name, arr in (("dark", dark), ("flat", flat)):
        if arr is not None and arr.shape != lin.shape:
            raise ValueError(f"frame {lin.shape[1]}x{lin.shape[0]} does not match the {name} frame "
                             f"{arr.shape[1]}x{arr.shape[0]}: recalibrate at this camera size")
    if dark is not None:
        lin = lin - dark
    if flat is not None:
        lin = lin / flat
    return linear_to_srgb(lin)


def apply_ccm(rgb: np.ndarray, matrix: np.ndarray, method: str = "root-polynomial") -> np.ndarray:
    """Apply a fitted colour correction to sRGB-encoded float RGB in [0, 1]."""
    name, kw = CCM_METHODS[method]
    lin = srgb_to_linear(np.clip(rgb, 0, 1))
    out = colour_science().characterisation.apply_matrix_colour_correction(lin, matrix, method=name, **kw)
    return linear_to_srgb(np.asarray(out, np.float32))


def has_colour(path: str | Path | None) -> bool:
    """Whether the profile at path has a colour section: it chooses the shipped model (edge.modelcard). False
    where there is no profile or it cannot be read, which loading it then reports."""
    if not path:
        return False
    try:
        return read_doc(Path(path)).get("colour") is not None
    except ProfileError:
        return False


def read_doc(path: Path) -> dict:
    """The profile's JSON (an empty profile where there is no file yet)."""
    if not path.exists():
        return {"format": FORMAT, "version": 0, "colour": None, "flat": None, "dark": None}
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ProfileError(f"{path}: unreadable calibration profile ({e})") from None
    if doc.get("format") != FORMAT:
        raise ProfileError(f"{path}: not a phonescope calibration profile")
    return doc


def load(path: str | Path) -> Profile:
    path = Path(path)
    if not path.is_file():
        raise ProfileError(f"{path}: no such calibration profile")
    doc = read_doc(path)

    def image(part: str) -> np.ndarray | None:
        d = doc.get(part)
        if not d:
            return None
        p = path.with_name(d["file"])
        if not p.is_file() or hashlib.sha256(p.read_bytes()).hexdigest() != d.get("sha256"):
            raise ProfileError(f"{path}: {part} image {p.name} is missing or does not match the profile")
        arr = tifffile.imread(p).astype(np.float32)
        if arr.ndim != 3 or arr.shape[2] != 3 or not np.isfinite(arr).all():
            raise ProfileError(f"{path}: {part} image {p.name} is not a finite HxWx3 image")
        return arr

    colour = doc.get("colour")
    if colour is not None:
        m = np.asarray(colour.get("matrix"), np.float32)
        if colour.get("method") not in CCM_METHODS or m.ndim != 2 or m.shape[0] != 3:
            raise ProfileError(f"{path}: bad colour section")
    scale = doc.get("scale")
    if scale is not None:
        um, width = scale.get("pixel_size_um"), scale.get("width")
        if not isinstance(um, (int, float)) or not 0 < um < 1000 or not isinstance(width, int) or width < 1:
            raise ProfileError(f"{path}: bad scale section (pixel_size_um and width)")
    flat, dark = image("flat"), image("dark")
    if flat is not None and (flat <= 0).any():
        raise ProfileError(f"{path}: flat-field has zero or negative values")
    return Profile(path, int(doc.get("version", 0)), colour, flat, dark, doc)
