"""`phonescope evaluate`: the input, the classical baseline and the model against references.

Runs the ONNX model through the same Enhancer as the kiosk, so the figures
are those of what is deployed. No torch needed.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from edge.errors import UserError
from edge.enhancer import Enhancer, EngineError, ModelError
from edge.imageio import atomic_write
from models.baseline import Baseline
from models.data import Pair, load_pairs, resample_to
from models.metrics import all_metrics

KEYS = ("ssim", "psnr", "ciede2000")


def evaluate_pairs(enhancer: Enhancer, pairs: list[Pair], progress=None) -> dict:
    """Per-pair and mean metrics of input (resampled), baseline (if the card has one) and model."""
    base_d = enhancer.card.raw.get("baseline")
    baseline = Baseline.from_dict(base_d) if base_d else None
    rows = []
    for i, p in enumerate(pairs):
        ref = p.reference.astype(np.float32) / 255.0
        phone = p.phone.astype(np.float32) / 255.0
        inp = np.clip(resample_to(phone, ref.shape[:2]), 0, 1)
        row = {"name": p.name, "input": all_metrics(inp, ref)}
        if baseline:
            row["baseline"] = all_metrics(baseline(inp), ref)
        row["model"] = all_metrics(enhancer.enhance(phone, size=ref.shape[:2]), ref)
        rows.append(row)
        if progress:
            progress(i + 1, len(pairs))
    kinds = [k for k in ("input", "baseline", "model") if k in rows[0]]
    mean = {k: {m: float(np.mean([r[k][m] for r in rows])) for m in KEYS} for k in kinds}
    return {"count": len(rows), "mean": mean, "pairs": rows}


def table(result: dict) -> str:
    lines = [f"{'':10s} {'SSIM':>7s} {'PSNR dB':>8s} {'CIEDE2000':>10s}   ({result['count']} pairs)"]
    for k, v in result["mean"].items():
        lines.append(f"{k:10s} {v['ssim']:7.4f} {v['psnr']:8.2f} {v['ciede2000']:10.2f}")
    return "\n".join(lines)


def run(args) -> int:
    try:
        pairs = load_pairs(args.pairs)
    except ValueError as e:
        raise UserError(str(e)) from None
    try:
        enhancer, why = Enhancer.open(args.model, args.backend, args.tile)
    except (ModelError, EngineError) as e:
        raise UserError(str(e)) from None
    try:
        result = evaluate_pairs(enhancer, pairs)
    except EngineError as e:
        raise UserError(str(e)) from None
    result["model_name"] = enhancer.card.name
    result["model_version"] = enhancer.card.version
    result["backend"] = enhancer.engine.name
    print(table(result))
    if args.json:
        atomic_write(Path(args.json), json.dumps(result, indent=2).encode())
        print(f"wrote {args.json}", file=sys.stderr)
    return 0
