"""Phone/benchtop image sets with a known geometry, made from real benchtop images.

Real paired photographs are what a clinic registers; to test and measure the
registration and the whole new-phone workflow we need pairs whose true
alignment is known. A `KnownWarp` maps phone pixels to benchtop coordinates
(a similarity with a non-integer sampling factor plus a smooth elastic
field); the phone image samples the benchtop image through it and then goes
through the phone-optics simulator.

    python -m calibration.synthetic --images DIR... --out DIR [--profile JSON] [--count N]
    python -m calibration.synthetic --images DIR... --out DIR --family N [--per-type N] [--seed S] [--fields N]

writes DIR/phone/<stem>.jpg (what the phone saw) and DIR/reference/<stem>.png
(the benchtop image), unregistered, as `phonescope pairs` expects them, and
DIR/truth.json with each pair's warp.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from edge import sampletypes
from edge.imageio import atomic_write, list_images, read_rgb8, write_image
from edge.simulator import PhoneOptics, degrade, random_phone

# A phone unlike the one the shipped model was trained for (edge.simulator.DEFAULT_PHONE):
# other colour cross-talk and white balance, more vignetting and blur, stronger ISP sharpening.
OTHER_PHONE = PhoneOptics(
    name="other-phone", blur_sigma_centre=1.1, blur_sigma_corner=2.4, chromatic_red=0.004,
    chromatic_blue=-0.002, vignetting=0.40,
    crosstalk=((0.78, 0.17, 0.05), (0.12, 0.76, 0.12), (0.02, 0.20, 0.78)),
    white_balance=(0.93, 1.0, 1.12), exposure=0.95, gamma=1.12, sharpen=0.8, jpeg_quality=(50, 85))


class KnownWarp:
    """Phone pixel p -> benchtop coordinate T(p): similarity + a smooth elastic field."""

    def __init__(self, ref_shape, scale, angle_deg, shift, elastic, seed=0, coverage=0.8):
        h, w = ref_shape
        self.scale, self.angle_deg, self.shift, self.elastic = scale, angle_deg, tuple(shift), elastic
        self.hp, self.wp = int(h / scale * coverage), int(w / scale * coverage)
        a = np.radians(angle_deg)
        self.r = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        self.cp = np.array([(self.wp - 1) / 2, (self.hp - 1) / 2])
        self.cr = np.array([(w - 1) / 2 + shift[0], (h - 1) / 2 + shift[1]])
        self.phase = np.random.default_rng(seed).random(2) * 6.28

    def __call__(self, px, py):
        d = np.stack([px - self.cp[0], py - self.cp[1]], -1) @ self.r.T
        ex = self.elastic * np.sin(2 * np.pi * py / self.hp + self.phase[0])
        ey = self.elastic * np.cos(2 * np.pi * px / self.wp + self.phase[1])
        return d[..., 0] + self.cr[0] + ex, d[..., 1] + self.cr[1] + ey

    def phone_from(self, ref: np.ndarray, profile: PhoneOptics, seed=0) -> np.ndarray:
        """What the phone records of `ref` (RGB uint8): optics blur, coarse sampling, then the simulator."""
        yy, xx = np.mgrid[0:self.hp, 0:self.wp].astype(np.float32)
        mx, my = self(xx, yy)
        soft = cv2.GaussianBlur(ref, (0, 0), 0.45 * self.scale)  # the sensor pixel's footprint
        sampled = cv2.remap(soft, mx.astype(np.float32), my.astype(np.float32), cv2.INTER_CUBIC)
        return degrade(sampled, profile, seed=seed)[0]

    def to_dict(self) -> dict:
        return {"scale": round(self.scale, 4), "angle_deg": round(self.angle_deg, 3),
                "shift": [round(float(v), 3) for v in self.shift], "elastic_px": round(self.elastic, 3)}


def random_warp(ref_shape, rng: np.random.Generator, seed: int, scales=(1.3, 2.2), elastic=(0.5, 2.0)) -> KnownWarp:
    return KnownWarp(ref_shape, float(rng.uniform(*scales)), float(rng.uniform(-5, 5)),
                     tuple(rng.uniform(-8, 8, 2)), float(rng.uniform(*elastic)), seed=seed)


# The randomised family of phones and its warps (issue 13): registration is measured on phones drawn from
# it (edge.simulator.random_phone), never on one phone we know; warps: sampling 1.3-3.0, +/-5 degrees,
# elastic up to 3 px.
FAMILY_SCALES = (1.3, 3.0)
FAMILY_ELASTIC = (0.5, 3.0)


def detail(crop: np.ndarray) -> float:
    """Fine detail of a crop: mean squared Laplacian of its lightly smoothed grey."""
    g = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(np.mean(cv2.Laplacian(cv2.GaussianBlur(g, (0, 0), 1.5), cv2.CV_32F) ** 2))


def textured_field(img: np.ndarray, rng: np.random.Generator, side: int, tries: int = 4) -> np.ndarray:
    """A field of at most side x side from a large benchtop image: of a few random ones, the one with the
    most detail (a person photographs the sample, not the empty glass)."""
    h, w = img.shape[:2]
    fh, fw = min(h, side), min(w, side)
    if (fh, fw) == (h, w):
        return img
    best, score = img[:fh, :fw], -1.0
    for _ in range(tries):
        y, x = int(rng.integers(0, h - fh + 1)), int(rng.integers(0, w - fw + 1))
        crop = img[y:y + fh, x:x + fw]
        e = detail(crop)
        if e > score:
            best, score = crop, e
    return np.ascontiguousarray(best)


def scan_fields(img: np.ndarray, name: str, rng: np.random.Generator, side: int, fields: int,
                min_detail: float = 0.2) -> list[tuple[str, np.ndarray]]:
    """(name, field) pairs from one benchtop image, as a user photographs several fields of a slide.
    A scan at least 1.5 sides long gives its last quarter (edge.sampletypes.held_quarter) as one
    held-out field (`-held`, see models.data.split_pairs) and up to fields - 1 fields of the rest, tiled
    without overlap (`-1`, `-2`, ...), the most detailed first, none with under min_detail of the best
    one's detail (bare glass): each sample type is then judged on tissue of its own slides that training
    never saw. A smaller image is one field, held out by name as `train --pairs` would hold it out."""
    if max(img.shape[:2]) < 1.5 * side:
        field = textured_field(img, rng, side)
        return [(name + sampletypes.HELD if sampletypes.is_heldout(Path(name)) else name, field)]
    rest, held = sampletypes.held_quarter(img)
    out = [(name + sampletypes.HELD, textured_field(held, rng, side))]
    rh, rw = rest.shape[:2]
    fh, fw = min(rh, side), min(rw, side)
    tiles = [rest[y:y + fh, x:x + fw] for y in np.linspace(0, rh - fh, max(1, rh // fh)).astype(int)
             for x in np.linspace(0, rw - fw, max(1, rw // fw)).astype(int)]
    scored = sorted(((detail(t), k) for k, t in enumerate(tiles)), reverse=True)
    kept = [tiles[k] for e, k in scored[:fields - 1] if e >= min_detail * scored[0][0]]
    return out + [(f"{name}-{k + 1}", np.ascontiguousarray(t)) for k, t in enumerate(kept)]


def make_family_set(images: list[Path], out: Path, seed: int = 0, phones: int = 0, side: int = 800,
                    fields: int = 1) -> dict:
    """Like make_set, through a phone drawn from the family for each image (or `phones` of them in turn),
    with the family's warps; large images give one field of at most side x side, or with fields > 1
    several (scan_fields). Pair names carry the sample type (edge.sampletypes)."""
    rng = np.random.default_rng(seed)
    (out / "phone").mkdir(parents=True, exist_ok=True)
    (out / "reference").mkdir(parents=True, exist_ok=True)
    pool = [random_phone(rng, f"family-{seed}-{k}") for k in range(phones)]
    truth: dict = {"family": {"scales": FAMILY_SCALES, "elastic": FAMILY_ELASTIC, "seed": seed}, "pairs": {}}
    j = 0
    for k, path in enumerate(images):
        profile = pool[k % len(pool)] if pool else random_phone(rng, f"family-{seed}-{k}")
        name = sampletypes.pair_name(sampletypes.of_path(path), path.stem)
        img = read_rgb8(path)
        cut = scan_fields(img, name, rng, side, fields) if fields > 1 else [(name, textured_field(img, rng, side))]
        for field_name, ref in cut:
            warp = random_warp(ref.shape[:2], rng, seed * 100003 + j, FAMILY_SCALES, FAMILY_ELASTIC)
            phone = warp.phone_from(ref, profile, seed=seed * 100003 + j)
            write_image(out / "reference" / f"{field_name}.png", ref)
            _, buf = cv2.imencode(".jpg", phone[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
            atomic_write(out / "phone" / f"{field_name}.jpg", buf.tobytes())
            truth["pairs"][field_name] = {**warp.to_dict(), "seed": seed * 100003 + j, "phone": profile.to_dict()}
            j += 1
    atomic_write(out / "truth.json", json.dumps(truth, indent=2).encode())
    return truth


def make_set(images: list[Path], out: Path, profile: PhoneOptics = OTHER_PHONE, seed: int = 0,
             scales=(1.3, 2.2)) -> dict:
    """Write phone/ and reference/ folders (unregistered) and truth.json; returns the truth."""
    rng = np.random.default_rng(seed)
    (out / "phone").mkdir(parents=True, exist_ok=True)
    (out / "reference").mkdir(parents=True, exist_ok=True)
    truth = {"profile": profile.to_dict(), "pairs": {}}
    for k, path in enumerate(images):
        ref = read_rgb8(path)
        warp = random_warp(ref.shape[:2], rng, seed * 100003 + k, scales)
        phone = warp.phone_from(ref, profile, seed=seed * 100003 + k)
        write_image(out / "reference" / f"{path.stem}.png", ref)
        _, buf = cv2.imencode(".jpg", phone[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
        atomic_write(out / "phone" / f"{path.stem}.jpg", buf.tobytes())
        truth["pairs"][path.stem] = warp.to_dict()
    atomic_write(out / "truth.json", json.dumps(truth, indent=2).encode())
    return truth


def pick(images: list[Path], per_type: int) -> list[Path]:
    """Up to per_type images of each sample type (0: all), spread evenly; real phone photos left out."""
    groups: dict[str, list[Path]] = {}
    for p in images:
        if not sampletypes.is_phone_photo(p):
            groups.setdefault(sampletypes.of_path(p) or "-", []).append(p)
    out = []
    for t, ps in sorted(groups.items()):
        n = min(per_type, len(ps)) if per_type else len(ps)
        out += [ps[i] for i in np.linspace(0, len(ps) - 1, n).astype(int)]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m calibration.synthetic", description=__doc__.split("\n\n")[0])
    p.add_argument("--images", nargs="+", required=True, metavar="DIR")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--profile", metavar="JSON", help="simulator configuration (default: OTHER_PHONE)")
    p.add_argument("--count", type=int, default=0, help="use at most this many images (evenly spread)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--family", type=int, default=0, metavar="N",
                   help="instead of --profile: N phones drawn from the randomised family, in turn (1: one unseen "
                        "phone, as a new user has); pairs named by sample type, large images cut to one field")
    p.add_argument("--per-type", type=int, default=0, help="with --family: at most this many images of each type")
    p.add_argument("--fields", type=int, default=1, metavar="N",
                   help="with --family: a large scan gives its last quarter as a held-out field (-held) and up "
                        "to N-1 fields of the rest; smaller images are held out by name (-held)")
    args = p.parse_args(argv)
    try:
        images = list_images(args.images)
        profile = PhoneOptics.from_dict(json.loads(Path(args.profile).read_text())) if args.profile else OTHER_PHONE
    except (FileNotFoundError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.family:
        images = pick(images, args.per_type)
        truth = make_family_set(images, args.out, args.seed, phones=args.family, fields=max(1, args.fields))
        print(f"wrote {len(truth['pairs'])} phone/benchtop pairs to {args.out} ({args.family} family phone(s), seed "
              f"{args.seed})")
        return 0
    if args.count and len(images) > args.count:
        images = [images[i] for i in np.linspace(0, len(images) - 1, args.count).astype(int)]
    make_set(images, args.out, profile, args.seed)
    print(f"wrote {len(images)} phone/benchtop pairs to {args.out} ({profile.name})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
