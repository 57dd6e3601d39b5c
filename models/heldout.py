"""Held-out pairs of every sample type, through the default phone or phones of the randomised family.

`python -m models.heldout --images ../shared/data --out DIR [--phones family|default]` writes DIR/phone/
and DIR/reference/ from the fields every training run holds out (models.data.typed_fields: small images
by name, the last quarter of each large one), named `<type>__<stem>` so that `phonescope evaluate
--pairs DIR` reports each sample type. The family's phones are those `train --simulate --family` holds
out with (same seeds), so the figures of a model trained there and of the shipped one compare.
"""
from __future__ import annotations

import argparse
import zlib
from pathlib import Path

from edge import sampletypes
from edge.simulator import DEFAULT_PHONE, degrade
from models import data as D


def heldout_pairs(images: list[Path], phones: str = "family", workers: int = 2) -> list[D.Pair]:
    fields = [f for f in D.typed_fields(D.list_images(images)) if f.heldout]
    if phones == "family":
        return D.simulate_family_pairs(fields, 1, salt=1, workers=workers)
    return [D.Pair(f.name, degrade(f.image, DEFAULT_PHONE, seed=zlib.crc32(f.name.encode()))[0], f.image, 1.0)
            for f in fields]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.heldout", description=__doc__.splitlines()[0])
    ap.add_argument("--images", nargs="+", required=True, metavar="DIR",
                    help="benchtop images, in folders named by sample type (%s)" % ", ".join(sampletypes.FOLDERS))
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--phones", choices=("family", "default"), default="family")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    pairs = heldout_pairs([Path(d) for d in args.images], args.phones, args.workers)
    D.write_pairs(pairs, args.out)
    counts = {}
    for p in pairs:
        t = sampletypes.of_pair(p.name) or "-"
        counts[t] = counts.get(t, 0) + 1
    through = "the default phone" if args.phones == "default" else "family phones"
    print(f"wrote {len(pairs)} held-out pairs to {args.out} ({through}): {counts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
