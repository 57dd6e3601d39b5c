"""`phonescope export`: checkpoint -> ONNX (opset 17, dynamic N/H/W) + model card.

The export is checked before it is kept: onnx.checker, and ONNX Runtime
against PyTorch on a random input (max difference <= 1e-4). The card's
metrics are measured with the exported file on held-out pairs.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from edge.errors import UserError
from edge.imageio import atomic_write
from edge.modelcard import CARD_FORMAT, card_path, sha256_file
from models.network import EnhanceNet
from models.train import load_checkpoint, net_from_checkpoint

OPSET = 17
ROUNDTRIP_TOL = 1e-4


def recommended_tile(receptive_field: int, alignment: int, max_overhead: float = 1.07,
                     frame: tuple[int, int] = (1080, 1920)) -> int:
    """Smallest tile (multiple of 8; windows of up to tile x tile pixels) whose halo overhead (pixels
    computed / output) on a kiosk camera's frame is at most `max_overhead`: on a CPU a window's cost per
    pixel does not depend on its size, so tiled throughput is at most whole-frame throughput / overhead
    (1.07: 0.93, which leaves room for the few per cent a window's borders cost). Larger tiles hold
    more memory (README, "Memory and the capture path")."""
    from edge import tiling

    h, w = (tiling.align_up(v, alignment) for v in frame)
    tile = 128
    while tiling.plan(h, w, tile, receptive_field, alignment).overhead > max_overhead and tile < 4096:
        tile += 8
    return tile - tile % alignment


def to_onnx(net: EnhanceNet, path: Path) -> None:
    net = net.eval()
    dummy = torch.rand(1, 3, 64, 96)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (dummy,), str(path), input_names=["input"], output_names=["output"],
                          opset_version=OPSET, dynamo=False,
                          dynamic_axes={"input": {0: "batch", 2: "height", 3: "width"},
                                        "output": {0: "batch", 2: "height", 3: "width"}})
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)


def roundtrip_error(net: EnhanceNet, path: Path, shape=(2, 3, 96, 128), seed: int = 0) -> float:
    import onnxruntime as ort

    x = torch.from_numpy(np.random.default_rng(seed).random(shape, dtype=np.float32))
    with torch.no_grad():
        ref = net.eval()(x).numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = sess.run(None, {"input": x.numpy()})
    return float(np.abs(out - ref).max())


def build_card(net: EnhanceNet, ck: dict, name: str, version: str, onnx_path: Path) -> dict:
    params = sum(p.numel() for p in net.parameters())
    return {
        "format": CARD_FORMAT,
        "name": name,
        "version": version,
        "onnx": onnx_path.name,
        "onnx_sha256": sha256_file(onnx_path),
        "opset": OPSET,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "scale": float(ck.get("scale", 1.0)),
        "scale_note": "output px per camera px: the runtime resamples camera frames by this (bicubic) "
                      "before the network, which works 1:1",
        "receptive_field": net.receptive_field(),
        "alignment": net.alignment,
        "recommended_tile": recommended_tile(net.receptive_field(), net.alignment),
        "flops_per_pixel": net.flops_per_pixel(),
        "parameters": params,
        "architecture": {"type": "EnhanceNet", **net.config()},
        "input": {"name": "input", "layout": "NCHW", "channels": "RGB", "dtype": "float32",
                  "range": [0.0, 1.0], "normalisation": "sRGB-encoded RGB in [0, 1]; no mean/std "
                  "(the network centres internally); height and width multiples of the alignment"},
        "output": {"name": "output", "layout": "NCHW", "channels": "RGB", "range": [0.0, 1.0],
                   "note": "clip to [0, 1]"},
        "training": {"origin": ck.get("origin"), "steps": ck.get("step"),
                     "minutes": round(float(ck.get("elapsed_s", 0)) / 60, 1), "init": ck.get("init"),
                     # what of a kiosk's calibration profile its inputs had (edge.profile.model_misfit checks it)
                     "calibrated_input": ["colour"] if (ck.get("origin") or {}).get("colour_calibrated") else [],
                     "colour_method": (ck.get("origin") or {}).get("colour_method"),
                     "args": {k: v for k, v in (ck.get("args") or {}).items()
                              if k in ("minutes", "batch", "patch", "lr", "variants", "seed", "width", "blocks")},
                     "history_tail": (ck.get("history") or [])[-3:]},
        "baseline": ck.get("baseline"),
        "input_stats": ck.get("input_stats"),
        "input_white": ck.get("input_white"),
    }


def run(args) -> int:
    out = Path(args.out)
    if out.suffix != ".onnx":
        raise UserError(f"--out must name an .onnx file, got {out}")
    if not Path(args.checkpoint).is_file():
        raise UserError(f"{args.checkpoint}: no such checkpoint")
    try:
        ck = load_checkpoint(args.checkpoint)
        net = net_from_checkpoint(ck)
    except (ValueError, RuntimeError, KeyError) as e:
        raise UserError(f"{args.checkpoint}: {str(e).splitlines()[0]}") from None
    if not ck.get("input_stats") and ck.get("heldout_dir") and Path(ck["heldout_dir"]).is_dir():
        # a checkpoint from before the statistics were kept: its held-out inputs are drawn alike
        from edge.scope import summarise
        from models.data import load_pairs, resample_to

        ck["input_stats"] = summarise([resample_to(p.phone, p.reference.shape[:2])
                                       for p in load_pairs(ck["heldout_dir"])])
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=out.parent, prefix=f".{out.stem}.")
    os.close(fd)
    tmp = Path(tmp)
    try:
        to_onnx(net, tmp)
        err = roundtrip_error(net, tmp)
        if err > ROUNDTRIP_TOL:
            raise UserError(f"export check failed: ONNX Runtime differs from PyTorch by {err:.2e}")
        atomic_write(out, tmp.read_bytes())
    finally:
        tmp.unlink(missing_ok=True)
    print(f"wrote {out} (opset {OPSET}; ONNX Runtime vs PyTorch max diff {err:.1e})", file=sys.stderr)

    card = build_card(net, ck, args.name or out.stem, args.version, out)
    weights = out.with_suffix(".pt")
    torch.save({k: ck[k] for k in ("model", "net_config", "scale", "baseline", "origin", "step", "elapsed_s",
                                   "input_stats", "input_white")
                if k in ck} | {"history": [], "complete": True}, weights)
    card["weights"] = weights.name
    atomic_write(card_path(out), json.dumps(card, indent=2).encode())

    pairs_dir = args.pairs or (ck.get("heldout_dir") if ck.get("heldout_dir") and Path(ck["heldout_dir"]).is_dir()
                               else None)
    if pairs_dir and not args.no_metrics:
        from edge.enhancer import Enhancer
        from models.data import load_pairs
        from models.evaluate import evaluate_pairs, table

        enhancer, _ = Enhancer.open(out, "onnxruntime")
        result = evaluate_pairs(enhancer, load_pairs(pairs_dir))
        enhancer.close()
        card["metrics"] = {"pairs": str(pairs_dir), "count": result["count"], "mean": result["mean"],
                           "by_sample": result["by_sample"],
                           "note": "input is the phone image resampled to the reference grid (bicubic); "
                                   "oracle_baseline fits the colour against each image's own reference"}
        atomic_write(card_path(out), json.dumps(card, indent=2).encode())
        print(table(result))
    print(f"wrote {card_path(out)} and {weights}", file=sys.stderr)
    return 0
