"""`phonescope enhance` fed bad image files (issue 6): no crash, no hang, no output for a bad file."""
from __future__ import annotations

import random
import struct
import time
import zlib
from pathlib import Path

import cv2
import numpy as np

from tests.helpers import SAMPLES, run_cli


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def huge_png(w: int, h: int) -> bytes:
    """A well-formed PNG (valid CRCs, IEND) whose header claims w x h pixels."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + png_chunk(b"IEND", b""))


def huge_jpeg(good: bytes, w: int, h: int) -> bytes:
    """A real JPEG with its frame header (SOF0) rewritten to claim w x h pixels."""
    i = good.index(b"\xff\xc0")
    return good[:i + 5] + struct.pack(">HH", h, w) + good[i + 9:]


def huge_bmp(w: int, h: int) -> bytes:
    header = b"BM" + struct.pack("<IHHI", 54 + 64, 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, 64, 2835, 2835, 0, 0)
    return header + info + b"\0" * 64


def bad_files(folder: Path, rng: random.Random) -> list[Path]:
    jpeg = (SAMPLES / "phone" / "BloodImage_00004.jpg").read_bytes()
    png = cv2.imencode(".png", cv2.imread(str(SAMPLES / "phone" / "BloodImage_00090.jpg"))[:120, :160])[1].tobytes()
    tiff = cv2.imencode(".tiff", np.zeros((32, 32, 3), np.uint8))[1].tobytes()
    cases: dict[str, bytes] = {"empty.png": b"", "empty.jpg": b"", "text.png": b"not an image at all\n",
                               "huge.png": huge_png(60000, 60000), "wide.png": huge_png(2 ** 31 - 1, 1),
                               "zero.png": huge_png(0, 0), "huge.jpg": huge_jpeg(jpeg, 65000, 65000),
                               "huge.bmp": huge_bmp(40000, 40000), "magic-only.png": png[:8],
                               "magic-only.jpg": jpeg[:3], "tiff-truncated.tiff": tiff[:40],
                               "html.jpg": b"<html><body>404</body></html>"}
    for k in range(12):
        cases[f"trunc-{k}.jpg"] = jpeg[:rng.randrange(1, len(jpeg) - 2)]
        cases[f"trunc-{k}.png"] = png[:rng.randrange(1, len(png) - 12)]
        cases[f"random-{k}.png"] = rng.randbytes(rng.randrange(1, 20000))
        cases[f"random-magic-{k}.jpg"] = b"\xff\xd8\xff" + rng.randbytes(rng.randrange(1, 5000)) + b"\xff\xd9"
        body = bytearray(png)                             # a flipped bit in the compressed pixels: CRC error
        body[rng.randrange(41, len(png) - 16)] ^= 1 << rng.randrange(8)
        cases[f"bitflip-{k}.png"] = bytes(body)
    paths = []
    for name, data in cases.items():
        (folder / name).write_bytes(data)
        paths.append(folder / name)
    (folder / "a-folder.png").mkdir()
    paths += [folder / "a-folder.png", folder / "missing.png"]
    return paths


def test_fuzzed_inputs_never_crash_hang_or_write_output(tmp_path, tiny_model):
    rng = random.Random(6)
    bad = bad_files(tmp_path, rng)
    good_png = tmp_path / "good.png"
    cv2.imwrite(str(good_png), cv2.imread(str(SAMPLES / "phone" / "BloodImage_00130.jpg"))[:96, :128])
    wrong_ext = tmp_path / "really-a-png.jpg"            # the content decides, not the name
    wrong_ext.write_bytes(good_png.read_bytes())
    out = tmp_path / "out"
    t0 = time.monotonic()
    r = run_cli("enhance", *bad, good_png, wrong_ext, "--out", out, "--model", tiny_model, timeout=180)
    dt = time.monotonic() - t0
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["good.png", "really-a-png.png"], "output only for good files"
    for p in bad:
        assert str(p) in r.stderr, f"{p.name} is named in the refusal"
    assert f"{len(bad)} of {len(bad) + 2} file(s) failed" in r.stderr
    assert not list(out.glob(".*")), "no temporaries"
    assert dt < 120, f"bounded time: {dt:.0f} s for {len(bad)} bad files"
    for name in ("huge.png", "huge.jpg", "huge.bmp"):
        line = next(x for x in r.stderr.splitlines() if name in x)
        assert "larger than" in line, line
