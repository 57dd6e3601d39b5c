"""`phonescope pairs`: register phone images onto benchtop images, matched by file stem.

Writes DIR/phone/<stem>.png (resampled onto the benchtop grid) and
DIR/reference/<stem>.png, pixel for pixel aligned and cropped to the common
valid area; DIR/overlay/<stem>.jpg for a person to check; DIR/report.json
with each pair's transform, residual misalignment and verdict. Pairs run in
parallel on all cores.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from edge.errors import UserError
from edge.workers import process_pool

LIMITS_AUTO = ("per pair: the larger of 0.5 benchtop px and 0.25 phone px (median), of 1.5 benchtop px and "
               "0.75 phone px (p95); each pair's limits_px says what it got")


def _one(job):
    stem, phone_path, ref_path, out, max_median, max_p95 = job
    from calibration.register import overlay, register
    from edge.imageio import ImageError, atomic_write, encode, read_rgb8, write_image

    try:
        phone, ref = read_rgb8(phone_path), read_rgb8(ref_path)
    except ImageError as e:
        return stem, {"accepted": False, "reason": str(e)}
    r = register(phone, ref, max_median, max_p95)
    entry = {"accepted": r.ok, "reason": r.reason or None, "phone": str(phone_path), "reference": str(ref_path),
             "phone_size": [phone.shape[1], phone.shape[0]], "reference_size": [ref.shape[1], ref.shape[0]],
             **r.report}
    if r.ok:
        write_image(Path(out) / "phone" / f"{stem}.png", r.phone)
        write_image(Path(out) / "reference" / f"{stem}.png", r.reference)
        atomic_write(Path(out) / "overlay" / f"{stem}.jpg", encode(overlay(r.phone, r.reference), ".jpg"))
    return stem, entry


def run(args) -> int:
    import numpy as np

    from edge.imageio import atomic_write, list_images

    out = Path(args.out)
    try:
        phones = {p.stem: p for p in list_images([args.phone])}
        refs = {p.stem: p for p in list_images([args.reference])}
    except FileNotFoundError as e:
        raise UserError(str(e)) from None
    stems = sorted(set(phones) & set(refs))
    if not stems:
        raise UserError(f"no file stems in common between {args.phone} and {args.reference}")
    for sub in ("phone", "reference", "overlay"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    report = {"pairs": {}, "unmatched": sorted(set(phones) ^ set(refs)),
              "limits": {"median_px": "auto" if args.max_median is None else args.max_median,
                         "p95_px": "auto" if args.max_p95 is None else args.max_p95, "auto": LIMITS_AUTO}}
    jobs = [(s, phones[s], refs[s], str(out), args.max_median, args.max_p95) for s in stems]
    with process_pool(args.workers or os.cpu_count() or 1) as ex:
        for i, (stem, entry) in enumerate(ex.map(_one, jobs), 1):
            report["pairs"][stem] = entry
            verdict = "ok" if entry["accepted"] else f"REJECTED: {entry['reason']}"
            bar = "#" * int(30 * i / len(jobs))
            print(f"\r[{bar:<30s}] {i}/{len(jobs)} {stem}: {verdict}"[:160], file=sys.stderr,
                  end="\n" if (i == len(jobs) or not entry["accepted"]) else "", flush=True)
    ok = [e for e in report["pairs"].values() if e["accepted"]]
    if ok:
        report["scale_median"] = float(np.median([e["scale"] for e in ok]))
        report["residual_median_px"] = float(np.median([e["residual_px"]["median"] for e in ok]))
    atomic_write(out / "report.json", json.dumps(report, indent=2).encode())
    print(f"{len(ok)} of {len(stems)} pairs registered, {len(stems) - len(ok)} rejected; "
          f"report {out / 'report.json'}")
    return 0 if ok else 1


def add_parser(sub) -> None:
    p = sub.add_parser("pairs", help="register phone images onto benchtop images (training pairs)")
    p.add_argument("--phone", required=True, metavar="DIR")
    p.add_argument("--reference", required=True, metavar="DIR")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--max-median", type=float, default=None,
                   help="reject above this median residual (benchtop px; default: the larger of 0.5 benchtop px "
                        "and 0.25 phone px)")
    p.add_argument("--max-p95", type=float, default=None,
                   help="reject above this 95th-percentile residual (benchtop px; default: the larger of 1.5 "
                        "benchtop px and 0.75 phone px)")
    p.add_argument("--workers", type=int, default=0)
    p.set_defaults(func=lambda a: run(a))
