"""The per-kiosk calibration profile: one versioned JSON file, images beside it.

{"format": "phonescope-calibration/1", "version": N, "colour": {...} | null,
 "flat": {"file": ..., "sha256": ...} | null, "dark": {...} | null}

Each `calibrate` command updates one part and bumps the version, writing
atomically, so a half-written profile never reaches the daemon. Flat and dark
frames are float32 TIFFs (tifffile) in linear RGB, next to the profile.
Loading validates everything and refuses a profile whose images do not match
their recorded sha256.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from edge.imageio import atomic_write

FORMAT = "phonescope-calibration/1"


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
                "flat": self.flat is not None, "dark": self.dark is not None}


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def read_doc(path: Path) -> dict:
    if not path.exists():
        return {"format": FORMAT, "version": 0, "colour": None, "flat": None, "dark": None}
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ProfileError(f"{path}: unreadable calibration profile ({e})") from None
    if doc.get("format") != FORMAT:
        raise ProfileError(f"{path}: not a phonescope calibration profile")
    return doc


def update(path: str | Path, part: str, value: dict, image: np.ndarray | None = None) -> int:
    """Set one part (colour, flat, dark) of the profile, its image beside it; returns the new version."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = read_doc(path)
    if image is not None:
        img_path = path.with_name(f"{path.stem}.{part}.tiff")
        tmp = img_path.with_name(f".{img_path.name}.tmp")
        tifffile.imwrite(tmp, np.asarray(image, np.float32), photometric="rgb")
        data = tmp.read_bytes()
        tmp.unlink()
        atomic_write(img_path, data)
        value = dict(value, file=img_path.name, sha256=hashlib.sha256(data).hexdigest())
    doc[part] = value
    doc["version"] = int(doc.get("version", 0)) + 1
    doc["updated"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    doc["kiosk"] = socket.gethostname()
    atomic_write(path, json.dumps(doc, indent=2).encode())
    return doc["version"]


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
        if not p.is_file() or _sha(p) != d.get("sha256"):
            raise ProfileError(f"{path}: {part} image {p.name} is missing or does not match the profile")
        arr = tifffile.imread(p).astype(np.float32)
        if arr.ndim != 3 or arr.shape[2] != 3 or not np.isfinite(arr).all():
            raise ProfileError(f"{path}: {part} image {p.name} is not a finite HxWx3 image")
        return arr

    colour = doc.get("colour")
    if colour is not None:
        m = np.asarray(colour.get("matrix"), np.float32)
        if colour.get("method") not in ("linear", "root-polynomial") or m.ndim != 2 or m.shape[0] != 3:
            raise ProfileError(f"{path}: bad colour section")
    flat, dark = image("flat"), image("dark")
    if flat is not None and (flat <= 0).any():
        raise ProfileError(f"{path}: flat-field has zero or negative values")
    return Profile(path, int(doc.get("version", 0)), colour, flat, dark, doc)
