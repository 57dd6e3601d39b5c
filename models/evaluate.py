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
from edge.glass import WhiteBalance
from edge.imageio import atomic_write
from edge import sampletypes
from models.baseline import Baseline, fit_colour
from models.data import Pair, load_pairs, resample_to
from models.metrics import all_metrics

KEYS = ("ssim", "psnr", "ciede2000")


def evaluate_pairs(enhancer: Enhancer, pairs: list[Pair], progress=None, group: str | None = None,
                   balance: bool = True) -> dict:
    """Per-pair, mean and per-sample-type metrics of the input (resampled), the classical baseline (the
    card's: colour fit from the training pairs + unsharp mask), the oracle baseline (a colour fit against
    each pair's own reference, which no kiosk has, + the same unsharp mask) and the model. A pair's sample
    type comes from its name (`tissue__...`, edge.sampletypes) or `group`. balance: the model and the
    classical baseline see the phone image with its glass balanced to the card's colour for that type
    (edge.glass), as a kiosk set to that `[model] sample` does; the input and the oracle see it as it is."""
    base_d = enhancer.card.raw.get("baseline")
    baseline = Baseline.from_dict(base_d) if base_d else None
    kept = enhancer.balance
    rows = []
    try:
        for i, p in enumerate(pairs):
            sample = group or sampletypes.of_pair(p.name) or "-"
            enhancer.balance = WhiteBalance.from_card(enhancer.card.raw, sample) if balance else None
            ref = p.reference.astype(np.float32) / 255.0
            phone = p.phone.astype(np.float32) / 255.0
            inp = np.clip(resample_to(phone, ref.shape[:2]), 0, 1)
            row = {"name": p.name, "sample": sample, "input": all_metrics(inp, ref)}
            if baseline:
                row["baseline"] = all_metrics(baseline(np.clip(resample_to(enhancer.balanced(phone), ref.shape[:2]),
                                                               0, 1)), ref)
                oracle = Baseline(fit_colour([inp], [ref]), baseline.sigma, baseline.amount)
                row["oracle_baseline"] = all_metrics(oracle(inp), ref)
            row["model"] = all_metrics(enhancer.enhance(phone, size=ref.shape[:2]), ref)
            gain = enhancer.balance.last_gain if enhancer.balance is not None else None
            row["glass_gain"] = None if gain is None else np.round(gain, 4).tolist()
            rows.append(row)
            if progress:
                progress(i + 1, len(pairs))
    finally:
        enhancer.balance = kept
    kinds = [k for k in KINDS if k in rows[0]]

    def means(rs):
        return {k: {m: float(np.mean([r[k][m] for r in rs])) for m in KEYS} for k in kinds}
    samples = sorted({r["sample"] for r in rows})
    by_sample = {s: {"count": sum(r["sample"] == s for r in rows), "mean": means([r for r in rows if r["sample"] == s])}
                 for s in samples}
    return {"count": len(rows), "mean": means(rows), "by_sample": by_sample, "pairs": rows}


KINDS = ("input", "baseline", "oracle_baseline", "model")
LABELS = {"input": "input", "baseline": "baseline", "oracle_baseline": "oracle*", "model": "model"}


def table(result: dict) -> str:
    def block(title: str, count: int, mean: dict) -> list[str]:
        out = [f"{title:16s} {'SSIM':>7s} {'PSNR dB':>8s} {'CIEDE2000':>10s}   ({count} pairs)"]
        for k, v in mean.items():
            out.append(f"  {LABELS.get(k, k):14s} {v['ssim']:7.4f} {v['psnr']:8.2f} {v['ciede2000']:10.2f}")
        return out
    lines = block("all", result["count"], result["mean"])
    if len(result.get("by_sample", {})) > 1:
        for s, v in result["by_sample"].items():
            lines += block(s, v["count"], v["mean"])
    if any("oracle_baseline" in v for v in [result["mean"]]):
        lines.append("* oracle: a colour fit against each image's own reference (no kiosk has one) + unsharp mask")
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
    if "colour" in ((enhancer.card.raw.get("training") or {}).get("calibrated_input") or []):
        print(f"note: model {enhancer.card.name} was trained on colour-calibrated images: its pairs' phone images "
              f"should be too (python -m models.heldout --colour-calibrated, or registered from frames a colour "
              f"profile corrected)", file=sys.stderr)
    try:
        result = evaluate_pairs(enhancer, pairs, group=args.group, balance=not args.no_balance)
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
