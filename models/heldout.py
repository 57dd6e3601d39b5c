"""Held-out pairs of every sample type, through the default phone or phones of the randomised family.

`python -m models.heldout --images ../shared/data --out DIR [--phones family|default] [--variants N]` writes
DIR/phone/ and DIR/reference/ from the fields every training run holds out (models.data.typed_fields: small images
by name, the last quarter of each large one), named `<type>__<stem>` so that `phonescope evaluate
--pairs DIR` reports each sample type. The family's phones are those `train --simulate --family` holds
out with (same seeds), so the figures of a model trained there and of the shipped one compare.
"""
from __future__ import annotations

import argparse
import zlib
from pathlib import Path

from edge import sampletypes
from edge.colourchart import calibrated_like_a_kiosk
from edge.simulator import DEFAULT_PHONE, degrade
from models import data as D


def heldout_pairs(images: list[Path], phones: str = "family", workers: int = 2, variants: int = 1,
                  calibrated: bool = False) -> list[D.Pair]:
    """variants > 1: each field through that many phones of the family (the first is the one-phone set's),
    or that many draws of the default phone's noise and JPEG, named `<name>_v<k>`: a type with two
    held-out fields is judged on more than two draws."""
    fields = [f for f in D.typed_fields(D.list_images(images)) if f.heldout]
    if phones == "family":
        return D.simulate_family_pairs(fields, variants, salt=1, workers=workers, calibrated=calibrated)

    def draw(f: D.Field, k: int) -> D.Pair:
        seed = zlib.crc32(f.name.encode() if k == 0 else f"{f.name}:{k}".encode())
        phone = degrade(f.image, DEFAULT_PHONE, seed=seed)[0]
        if calibrated:
            phone = calibrated_like_a_kiosk(phone, DEFAULT_PHONE)
        return D.Pair(f.name if variants == 1 else f"{f.name}_v{k}", phone, f.image, 1.0)
    return [draw(f, k) for f in fields for k in range(variants)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.heldout", description=__doc__.splitlines()[0])
    ap.add_argument("--images", nargs="+", required=True, metavar="DIR",
                    help="benchtop images, in folders named by sample type (%s)" % ", ".join(sampletypes.FOLDERS))
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--phones", choices=("family", "default"), default="family")
    ap.add_argument("--variants", type=int, default=1, metavar="N",
                    help="phones (family) or noise draws (default) per held-out field")
    ap.add_argument("--colour-calibrated", action="store_true",
                    help="colour-correct each phone image by its phone's chart profile (a calibrated kiosk)")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    if args.variants < 1:
        ap.error("--variants must be at least 1")
    pairs = heldout_pairs([Path(d) for d in args.images], args.phones, args.workers, args.variants,
                          args.colour_calibrated)
    D.write_pairs(pairs, args.out)
    counts = {}
    for p in pairs:
        t = sampletypes.of_pair(p.name) or "-"
        counts[t] = counts.get(t, 0) + 1
    through = "the default phone" if args.phones == "default" else "family phones"
    through += ", colour-calibrated" if args.colour_calibrated else ""
    print(f"wrote {len(pairs)} held-out pairs to {args.out} ({through}): {counts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
