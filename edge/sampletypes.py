"""Sample types: what kind of slide an image shows, by the data folder it came from.

One small model may not serve every stain, and figures that pool them hide
where it fails: training data, held-out pairs, model cards, `[model] sample`
and `phonescope evaluate` all use these names. A pair made from a typed image
is named `<type>__<stem>`, so a pairs folder keeps the grouping. Which pairs
are held out is said here too: those named `-held`, else 1 in 10 by name, and
of a large scan its last quarter.
"""
from __future__ import annotations

import zlib
from pathlib import Path

# data folder (../shared/data/<folder>) -> sample type
FOLDERS = {"blood-smear": "blood", "he-tissue": "tissue", "ihc": "ihc", "malaria-giemsa": "malaria"}
TYPES = tuple(FOLDERS.values())
SEP = "__"
HELD = "-held"   # a pair its owner holds out: `malaria__slide-3-held` (models.data.split_pairs)


def of_path(path: Path) -> str | None:
    """The sample type of an image by its folder (any ancestor named like a data folder), else None."""
    for part in reversed(Path(path).parent.parts):
        if part in FOLDERS:
            return FOLDERS[part]
        if part in TYPES:
            return part
    return None


def is_phone_photo(path: Path) -> bool:
    """Real phone photos among the benchtop images (no reference: to look at, never to train on)."""
    return Path(path).stem.lower().endswith("-phone")


def is_heldout(path: Path, fraction_in_ten: int = 1) -> bool:
    """Stable held-out membership by file name (adding images never reshuffles)."""
    return zlib.crc32(Path(path).name.encode()) % 10 < fraction_in_ten


def held_quarter(img, step: int = 1):
    """(trained part, held-out part) of a large scan: the held-out part is its last quarter, the right or
    the bottom of a tall one, cut at a multiple of step px; a type with few large scans is then still
    judged on tissue of its own slides that training never saw."""
    h, w = img.shape[:2]
    if w >= h:
        cut = w * 3 // 4 // step * step
        return img[:, :cut], img[:, cut:]
    cut = h * 3 // 4 // step * step
    return img[:cut], img[cut:]


def pair_name(sample: str | None, stem: str) -> str:
    return f"{sample}{SEP}{stem}" if sample else stem


def of_pair(name: str) -> str | None:
    """The sample type a pair's name carries (`tissue__liver-3` -> tissue), else None."""
    head, sep, _ = name.partition(SEP)
    return head if sep and head in TYPES else None
