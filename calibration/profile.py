"""Writing the per-kiosk calibration profile (the kiosk reads it with edge.profile).

Each `calibrate` command updates one part (colour, flat, dark) and bumps the
version, writing atomically, so a half-written profile never reaches the
daemon. Flat and dark frames are float32 TIFFs (tifffile) in linear RGB,
next to the profile.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import socket
from pathlib import Path

import numpy as np
import tifffile

from edge.imageio import atomic_write
from edge.profile import read_doc


def update(path: str | Path, part: str, value: dict, image: np.ndarray | None = None,
           camera: dict | None = None) -> int:
    """Set one part (colour, flat, dark) of the profile, its image beside it; returns the new version.
    camera: the camera settings it was made with (edge.sources.Controls.describe()), recorded with the part
    and as the profile's own, so the daemon can say when the camera no longer runs with them."""
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
    if camera is not None:
        value = dict(value, camera=camera)
        doc["camera"] = camera
    doc[part] = value
    doc["version"] = int(doc.get("version", 0)) + 1
    doc["updated"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    doc["kiosk"] = socket.gethostname()
    atomic_write(path, json.dumps(doc, indent=2).encode())
    return doc["version"]
