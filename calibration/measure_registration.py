"""How well `phonescope pairs` registers phones it has never seen: known warps, a randomised phone family.

    python -m calibration.measure_registration --images DIR... [--per-type N] [--seed S] [--json OUT]

Each benchtop image (or a textured field of a large one) is seen through a phone drawn from the family
(edge.simulator.random_phone) under a known warp (sampling 1.3-3.0, +/-5 degrees, elastic up
to 3 px); the registration's mapping is compared with the truth over the area it keeps. Prints, per
sample type and pooled over the accepted pairs: accepted fraction, true misalignment (median, p95) and
how far the registration's own estimate is from the true median.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from edge.workers import process_pool


def true_error(warp, reg, step: int = 6) -> np.ndarray:
    """|T(p_est(x)) - x| in reference pixels over the kept area, p_est = M^-1 (x + flow(x))."""
    y0, y1, x0, x1 = reg.report["crop"]
    ys, xs = np.mgrid[y0:y1:step, x0:x1:step].astype(np.float64)
    f = reg.flow[ys.astype(int), xs.astype(int)]
    qx, qy = xs + f[..., 0], ys + f[..., 1]
    a, t = reg.matrix[:, :2].astype(np.float64), reg.matrix[:, 2].astype(np.float64)
    p = (np.stack([qx - t[0], qy - t[1]], -1)) @ np.linalg.inv(a).T
    tx, ty = warp(p[..., 0], p[..., 1])
    return np.hypot(tx - xs, ty - ys).ravel()


def _one(job) -> dict:
    path, seed, limits = job
    import cv2

    cv2.setNumThreads(1)
    from calibration.register import register
    from calibration.synthetic import FAMILY_ELASTIC, FAMILY_SCALES, random_warp, textured_field
    from edge.simulator import random_phone
    from edge import sampletypes
    from edge.imageio import read_rgb8

    rng = np.random.default_rng(seed)
    phone_optics = random_phone(rng, f"family-{seed}")
    ref = textured_field(read_rgb8(path), rng, 800)
    warp = random_warp(ref.shape[:2], rng, seed, FAMILY_SCALES, FAMILY_ELASTIC)
    phone = warp.phone_from(ref, phone_optics, seed=seed)
    reg = register(phone, ref, *limits)
    row = {"name": Path(path).stem, "type": sampletypes.of_path(Path(path)), "seed": seed,
           "scale": round(warp.scale, 3), "elastic": round(warp.elastic, 2),
           "ca": [phone_optics.chromatic_red, phone_optics.chromatic_blue],
           "blur": [phone_optics.blur_sigma_centre, phone_optics.blur_sigma_corner],
           "accepted": reg.ok, "reason": reg.reason, "fit": reg.report.get("phone_model")}
    if "crop" in reg.report and reg.flow is not None:
        err = true_error(warp, reg)
        row.update(true_median=round(float(np.median(err)), 3), true_p95=round(float(np.percentile(err, 95)), 3))
        est = reg.report.get("residual_px")
        if est:
            row.update(est_median=est["median"], est_p95=est["p95"], limits=reg.report["limits_px"])
        row["_err"] = err
    return row


def summary(rows: list[dict]) -> dict:
    ok = [r for r in rows if r["accepted"]]
    out = {"pairs": len(rows), "accepted": len(ok), "accepted_fraction": round(len(ok) / max(1, len(rows)), 3)}
    if ok:
        pooled = np.concatenate([r["_err"] for r in ok])
        gaps = [abs(r["est_median"] - r["true_median"]) for r in ok if "est_median" in r]
        out.update(true_median=round(float(np.median(pooled)), 3), true_p95=round(float(np.percentile(pooled, 95)), 3),
                   estimate_gap_median=round(float(np.median(gaps)), 3), estimate_gap_max=round(float(max(gaps)), 3))
    return out


def measure(images: list[Path], seed: int = 0, limits=(None, None), workers: int = 0, progress=None) -> dict:
    jobs = [(str(p), seed * 1000 + k, limits) for k, p in enumerate(images)]
    rows = []
    with process_pool(workers or os.cpu_count() or 1) as ex:
        for row in ex.map(_one, jobs):
            rows.append(row)
            if progress:
                progress(row)
    types = sorted({r["type"] or "-" for r in rows})
    result = {"all": summary(rows), "by_type": {t: summary([r for r in rows if (r["type"] or "-") == t])
                                                 for t in types},
              "rows": [{k: v for k, v in r.items() if k != "_err"} for r in rows]}
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m calibration.measure_registration",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", nargs="+", required=True, metavar="DIR")
    ap.add_argument("--per-type", type=int, default=12, help="images per sample type (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-median", type=float, default=None, help="default: as `phonescope pairs`")
    ap.add_argument("--max-p95", type=float, default=None, help="default: as `phonescope pairs`")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    from edge.imageio import list_images

    from calibration.synthetic import pick

    images = pick(list_images(args.images), args.per_type)

    def show(r):
        tail = (f"true {r['true_median']:.2f}/{r['true_p95']:.2f} est {r.get('est_median', float('nan')):.2f}"
                if "true_median" in r else "")
        print(f"{r['type']:8s} {r['name'][:28]:28s} x{r['scale']:.2f} {'ok ' if r['accepted'] else 'REJ'} {tail} "
              f"{r['reason'][:70]} {r.get('fit')}", file=sys.stderr, flush=True)

    result = measure(images, args.seed, (args.max_median, args.max_p95), args.workers, show)
    text = json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=2)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
