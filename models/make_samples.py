"""Make the shipped sample pairs in edge/samples/ from held-out real images.

The reference side is the original image (a JPEG copied as is; a PNG
re-encoded as JPEG q95 to keep the project small); the phone side is the simulator's output with the
default phone profile, saved once as JPEG at the drawn quality (as a phone
would). Run: python -m models.make_samples SRC... (held-out images only).
"""
from __future__ import annotations

import shutil
import sys
import zlib
from pathlib import Path

from edge.imageio import read_rgb8, write_image
from edge.simulator import DEFAULT_PHONE, degrade

OUT = Path(__file__).resolve().parent.parent / "edge" / "samples"


def main(paths: list[str]) -> int:
    (OUT / "phone").mkdir(parents=True, exist_ok=True)
    (OUT / "reference").mkdir(parents=True, exist_ok=True)
    for p in map(Path, paths):
        ref = read_rgb8(p)
        seed = zlib.crc32(p.name.encode())
        profile = DEFAULT_PHONE.replace(jpeg_quality=None)
        phone, d = degrade(ref, profile, seed=seed)
        q = int(45 + seed % 40)  # a heavily-to-moderately compressed phone JPEG
        write_image(OUT / "phone" / f"{p.stem}.jpg", phone, jpeg_quality=q)
        if p.suffix.lower() in (".jpg", ".jpeg"):
            shutil.copyfile(p, OUT / "reference" / f"{p.stem}.jpg")  # the original, untouched
        else:
            write_image(OUT / "reference" / f"{p.stem}.jpg", ref, jpeg_quality=95)
        print(f"{p.name}: phone JPEG q{q}, {ref.shape[1]}x{ref.shape[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
