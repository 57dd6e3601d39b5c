"""Training and evaluation data: image lists, the held-out split, pair sets.

A pairs directory holds `phone/` and `reference/` with the same file stems.
Phone images may be on a coarser grid; they are resampled to the reference
grid (bicubic, as the runtime does) before they meet the network.
"""
from __future__ import annotations

import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.imageio import ImageError, list_images, read_rgb8, write_image
from edge.simulator import DEFAULT_PHONE, PhoneOptics, degrade


def is_heldout(path: Path, fraction_in_ten: int = 1) -> bool:
    """Stable held-out membership by file name (adding images never reshuffles)."""
    return zlib.crc32(path.name.encode()) % 10 < fraction_in_ten


def split(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """Training and held-out images; every source folder with 2+ images gives at least one to held-out."""
    held = {p for p in paths if is_heldout(p)}
    folders: dict[Path, list[Path]] = {}
    for p in paths:
        folders.setdefault(p.parent, []).append(p)
    for members in folders.values():
        if len(members) > 1 and not held.intersection(members):
            held.add(sorted(members)[-1])
    return [p for p in paths if p not in held], [p for p in paths if p in held]


def resample_to(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resample an image to (h, w) with bicubic interpolation (no-op if already there)."""
    h, w = shape
    if img.shape[:2] == (h, w):
        return img
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_CUBIC)


def variant_seed(path: Path, k: int, salt: int = 0) -> int:
    return zlib.crc32(f"{path.name}:{k}:{salt}".encode())


def _simulate_one(args) -> tuple[np.ndarray, np.ndarray]:
    path, k, profile_dict, salt = args
    ref = read_rgb8(path)
    profile = PhoneOptics.from_dict(profile_dict)
    phone, _ = degrade(ref, profile, seed=variant_seed(path, k, salt))
    return phone, ref


@dataclass
class Pair:
    name: str
    phone: np.ndarray       # uint8 RGB on the phone grid
    reference: np.ndarray   # uint8 RGB


def simulate_pairs(paths: list[Path], profile: PhoneOptics = DEFAULT_PHONE, variants: int = 1,
                   salt: int = 0, workers: int = 2, progress=None) -> list[Pair]:
    jobs = [(p, k, profile.to_dict(), salt) for p in paths for k in range(variants)]
    out: list[Pair] = []
    with ProcessPoolExecutor(max_workers=workers) as ex:
        for i, ((phone, ref), (p, k, _, _)) in enumerate(zip(ex.map(_simulate_one, jobs, chunksize=4), jobs)):
            out.append(Pair(p.stem if variants == 1 else f"{p.stem}_v{k}", phone, ref))
            if progress:
                progress(i + 1, len(jobs))
    return out


def write_pairs(pairs: list[Pair], out: Path) -> None:
    (out / "phone").mkdir(parents=True, exist_ok=True)
    (out / "reference").mkdir(parents=True, exist_ok=True)
    for p in pairs:
        write_image(out / "phone" / f"{p.name}.png", p.phone)
        write_image(out / "reference" / f"{p.name}.png", p.reference)


def load_pairs(folder: str | Path) -> list[Pair]:
    """Load a pairs directory; raises ValueError with a one-line reason if it is not one."""
    folder = Path(folder)
    pd, rd = folder / "phone", folder / "reference"
    if not pd.is_dir() or not rd.is_dir():
        raise ValueError(f"{folder}: a pairs directory needs phone/ and reference/ subfolders")
    phones = {p.stem: p for p in list_images([pd])}
    refs = {p.stem: p for p in list_images([rd])}
    stems = sorted(set(phones) & set(refs))
    if not stems:
        raise ValueError(f"{folder}: no phone/reference images with matching file stems")
    pairs = []
    for s in stems:
        try:
            pairs.append(Pair(s, read_rgb8(phones[s]), read_rgb8(refs[s])))
        except ImageError as e:
            raise ValueError(str(e)) from None
    return pairs


class PatchSampler:
    """Random aligned patches with flips and 90-degree turns (colour truth is kept)."""

    def __init__(self, pairs: list[Pair], patch: int = 96, align: int = 2, seed: int = 0):
        self.inputs = [resample_to(p.phone, p.reference.shape[:2]) for p in pairs]
        self.targets = [p.reference for p in pairs]
        self.patch, self.align = patch, align
        self.rng = np.random.default_rng(seed)
        small = [t.shape for t in self.targets if min(t.shape[:2]) < patch]
        if small:
            raise ValueError(f"images smaller than the {patch}px training patch: {small[0]}")

    def batch(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        ps, a = self.patch, self.align
        xs = np.empty((n, ps, ps, 3), np.uint8)
        ys = np.empty((n, ps, ps, 3), np.uint8)
        for i in range(n):
            j = self.rng.integers(len(self.targets))
            h, w = self.targets[j].shape[:2]
            y0 = int(self.rng.integers(0, (h - ps) // a + 1)) * a
            x0 = int(self.rng.integers(0, (w - ps) // a + 1)) * a
            x = self.inputs[j][y0:y0 + ps, x0:x0 + ps]
            y = self.targets[j][y0:y0 + ps, x0:x0 + ps]
            k = int(self.rng.integers(4))
            flip = bool(self.rng.integers(2))
            x, y = np.rot90(x, k), np.rot90(y, k)
            if flip:
                x, y = x[:, ::-1], y[:, ::-1]
            xs[i], ys[i] = x, y
        to = lambda v: np.ascontiguousarray(v.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0
        return to(xs), to(ys)
