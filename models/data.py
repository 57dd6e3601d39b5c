"""Training and evaluation data: image lists, the held-out split, pair sets.

A pairs directory holds `phone/` and `reference/` with the same file stems.
Phone images may be on a coarser grid; they are resampled to the reference
grid (bicubic, as the runtime does) before they meet the network.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge import sampletypes
from edge.colourchart import calibrated_like_a_kiosk
from edge.imageio import ImageError, list_images, read_rgb8, write_image
from edge.simulator import DEFAULT_PHONE, PhoneOptics, degrade, random_phone
from edge.workers import process_pool
from models.reference_light import evened


is_heldout = sampletypes.is_heldout


def split_pairs(pairs: list[Pair]) -> tuple[list[Pair], list[Pair]]:
    """Training and held-out pairs: those named `*-held` where the folder has any (its owner chose them,
    e.g. a part of each slide: calibration.synthetic --fields), else about 1 in 10 by name; at least one."""
    chosen = any(p.name.endswith(sampletypes.HELD) for p in pairs)
    out = [p.name.endswith(sampletypes.HELD) if chosen else is_heldout(Path(p.name)) for p in pairs]
    train, held = [p for p, o in zip(pairs, out) if not o], [p for p, o in zip(pairs, out) if o]
    if not held and len(train) > 1:
        held, train = train[-1:], train[:-1]
    return train, held


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
    weight: float = 1.0     # how often the patch sampler draws from it (relative)
    slide: str = ""         # the field it shows, where several phones show one ("": its name)

    def __post_init__(self):
        self.slide = self.slide or self.name


def simulate_pairs(paths: list[Path], profile: PhoneOptics = DEFAULT_PHONE, variants: int = 1,
                   salt: int = 0, workers: int = 2, progress=None) -> list[Pair]:
    jobs = [(p, k, profile.to_dict(), salt) for p in paths for k in range(variants)]
    out: list[Pair] = []
    with process_pool(workers) as ex:
        for i, ((phone, ref), (p, k, _, _)) in enumerate(zip(ex.map(_simulate_one, jobs, chunksize=4), jobs)):
            out.append(Pair(p.stem if variants == 1 else f"{p.stem}_v{k}", phone, ref, slide=p.stem))
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
        self.names = [p.name for p in pairs]
        self.slides = [p.slide for p in pairs]
        self.patch, self.align = patch, align
        self.rng = np.random.default_rng(seed)
        w = np.array([p.weight for p in pairs], np.float64)
        self.p = w / w.sum()
        small = [t.shape for t in self.targets if min(t.shape[:2]) < patch]
        if small:
            raise ValueError(f"images smaller than the {patch}px training patch: {small[0]}")

    def batch(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        ps, a = self.patch, self.align
        xs = np.empty((n, ps, ps, 3), np.uint8)
        ys = np.empty((n, ps, ps, 3), np.uint8)
        for i in range(n):
            j = int(self.rng.choice(len(self.targets), p=self.p))
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


# -- every sample type, through the randomised family of phones (issue 13) ----------------------------------
LARGE = 768            # an image larger than this on a side gives a held-out part and a training part
MAX_REGION = 1536      # training regions are cut to this (memory; more of one scan teaches little more)


@dataclass
class Field:
    name: str             # <type>__<stem>, the held-out part of a large image <type>__<stem>-held
    sample: str | None
    image: np.ndarray     # RGB uint8
    heldout: bool
    evened: bool = False  # its light was made even from its glass (models.reference_light)


def typed_fields(paths: list[Path]) -> list[Field]:
    """Training and held-out fields of benchtop images (real phone photos left out). A small image is one
    field, held out by name as split() does; a large one gives both: its last quarter (the right, or the
    bottom of a tall one) held out and the rest trained on, so that a type with a few large scans (IHC,
    malaria) is still judged on tissue the model never saw, and two scans of one field hold out the same
    part of it. Each image's own uneven light is taken off first (models.reference_light.evened), or the
    held-out quarter would be the edge its lamp leaves dark."""
    paths = [p for p in paths if not sampletypes.is_phone_photo(p)]
    small, large, even = [], [], set()
    for p in paths:
        raw = read_rgb8(p)
        img = evened(raw)[0]
        if img is not raw:
            even.add(p)
        (large if max(img.shape[:2]) > LARGE else small).append((p, img))
    _, held = split([p for p, _ in small])
    held = set(held)
    out = []
    for p, img in small:
        t = sampletypes.of_path(p)
        out.append(Field(sampletypes.pair_name(t, p.stem), t, img, p in held, p in even))
    for p, img in large:
        t = sampletypes.of_path(p)
        train, test = sampletypes.held_quarter(img, step=2)
        test = test[:MAX_REGION, :MAX_REGION]
        out.append(Field(sampletypes.pair_name(t, p.stem) + sampletypes.HELD, t, np.ascontiguousarray(test), True,
                         p in even))
        out.append(Field(sampletypes.pair_name(t, p.stem), t,
                         np.ascontiguousarray(train[:MAX_REGION, :MAX_REGION]), False, p in even))
    return out


def sharpness(rgb: np.ndarray) -> float:
    """Fine detail of a reference (mean squared Laplacian of its luminance at the native grid)."""
    g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255
    return float(np.mean(cv2.Laplacian(g, cv2.CV_32F) ** 2))


def sampling_weights(fields: list[Field]) -> list[float]:
    """Every sample type equally often (263 blood smears must not drown three IHC scans), within a type
    by area, and sharp references more often than soft ones (up to 2x, down to 0.5x of the type's
    median): what the model sees sharp it learns to restore."""
    by_type: dict = {}
    for f in fields:
        by_type.setdefault(f.sample, []).append(f)
    weights = {}
    for members in by_type.values():
        sharp = np.array([sharpness(f.image) for f in members])
        factor = np.clip(sharp / max(1e-12, float(np.median(sharp))), 0.5, 2.0)
        area = np.array([f.image.shape[0] * f.image.shape[1] for f in members], np.float64)
        w = area * factor
        for f, v in zip(members, w / w.sum() / len(by_type)):
            weights[id(f)] = float(v)
    return [weights[id(f)] for f in fields]


def _simulate_family(args) -> tuple[np.ndarray, dict]:
    image, seed, calibrated = args
    phone = random_phone(np.random.default_rng(seed), f"family-{seed}")
    out, _ = degrade(image, phone, seed=seed)
    if calibrated:   # the phone's chart profile applied, as a calibrated kiosk's preprocessing does
        out = calibrated_like_a_kiosk(out, phone, seed)
    return out, phone.to_dict()


def type_variants(fields: list[Field], variants: int, min_inputs: int) -> dict:
    """Phones per field for each sample type: `variants`, or more for a type with few fields, so that each
    type is seen through at least `min_inputs` field x phone combinations. Three phones per field give the
    263 blood smears 789 colour responses but the two malaria scans 6, too few to tell a phone's colour
    from a slide's (the references of the two differ in their own glass colour)."""
    n: dict = {}
    for f in fields:
        n[f.sample] = n.get(f.sample, 0) + 1
    return {t: max(variants, -(-min_inputs // c)) for t, c in n.items()}


def simulate_family_pairs(fields: list[Field], variants: int | dict = 1, salt: int = 0, workers: int = 2,
                          progress=None, calibrated: bool = False) -> list[Pair]:
    """Each field through `variants` phones drawn from the randomised family (seeded by name, so that a
    field's first k phones are the same whatever the count); `variants` per sample type as a dict
    (type_variants). calibrated: each phone image is colour-corrected by its phone's chart profile
    (edge.colourchart.simulated_phone_ccm), as a kiosk with `phonescope calibrate colour` sees it."""
    per = (lambda f: variants) if isinstance(variants, int) else (lambda f: variants[f.sample])
    single = all(per(f) == 1 for f in fields)
    jobs = [(f, k) for f in fields for k in range(per(f))]
    weights = sampling_weights(fields) if fields else []
    wmap = {id(f): w for f, w in zip(fields, weights)}
    out: list[Pair] = []
    args = [(f.image, zlib.crc32(f"{f.name}:{k}:{salt}".encode()), calibrated) for f, k in jobs]
    with process_pool(workers) as ex:
        for i, ((phone, _), (f, k)) in enumerate(zip(ex.map(_simulate_family, args, chunksize=2), jobs)):
            out.append(Pair(f.name if single else f"{f.name}_v{k}", phone, f.image,
                            wmap[id(f)] / per(f), slide=f.name))
            if progress:
                progress(i + 1, len(jobs))
    return out
