"""`phonescope bench`: inference speed of a model, as JSON.

Times the same Enhancer the kiosk uses, on a frame made from a shipped
sample slide, whole-image (one pass) and tiled at the model's tile size, and
reports throughput, the halo overhead and the FLOP rate the FLOPs/pixel of
the model card imply. Timings are medians of `--repeat` runs after a warm-up.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from edge import tiling
from edge.errors import UserError
from edge.enhancer import Enhancer, EngineError, ModelError
from edge.imageio import atomic_write, read_image

SAMPLES = Path(__file__).resolve().parent / "samples" / "phone"


def bench_frame(width: int, height: int) -> np.ndarray:
    """A realistic frame: sample slides tiled and resized to the requested size."""
    imgs = [read_image(p)[0] for p in sorted(SAMPLES.glob("*.jpg"))]
    h0 = min(i.shape[0] for i in imgs)
    row = np.concatenate([i[:h0, :] for i in imgs], axis=1)
    reps = (int(np.ceil(height / row.shape[0])), int(np.ceil(width / row.shape[1])))
    big = np.tile(row, (reps[0], reps[1], 1))[:height, :width]
    return np.ascontiguousarray(big, np.float32)


def time_enhance(enh: Enhancer, frame: np.ndarray, repeat: int) -> tuple[float, np.ndarray]:
    out = enh.enhance(frame)  # warm-up (allocations, kernel selection)
    times = []
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        out = enh.enhance(frame)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def parse_size(s: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in s.lower().split("x"))
        if w < 1 or h < 1:
            raise ValueError
        return w, h
    except ValueError:
        raise UserError(f"--size must be WIDTHxHEIGHT, got {s!r}", 2) from None


def run(args) -> int:
    w, h = parse_size(args.size)
    try:
        whole, why = Enhancer.open(args.model, args.backend, tile=0)
        tiled = Enhancer(whole.engine, whole.card, args.tile, batch=4)
    except (ModelError, EngineError) as e:
        raise UserError(str(e)) from None
    card = whole.card
    frame = bench_frame(w, h)
    oh, ow = whole.output_size(h, w)
    mpx = oh * ow / 1e6
    print(f"benchmarking {card.name} on {w}x{h} ({whole.engine.name}), {args.repeat} runs each...", file=sys.stderr)
    t_whole, out_whole = time_enhance(whole, frame, args.repeat)
    t_tiled, out_tiled = time_enhance(tiled, frame, args.repeat)
    align = max(card.alignment, whole.engine.spec.alignment)
    p = tiling.plan(tiling.align_up(oh, align), tiling.align_up(ow, align), tiled.tile, card.receptive_field, align,
                   tiled.fixed)
    flops = card.flops_per_pixel
    result = {
        "model": f"{card.name} {card.version}",
        "backend": whole.engine.name,
        "provider": getattr(whole.engine, "provider", None),
        "why": why,
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "frame": f"{w}x{h}",
        "output_megapixels": round(mpx, 3),
        "flops_per_pixel": flops,
        "whole_image": {"seconds": round(t_whole, 4), "megapixels_per_s": round(mpx / t_whole, 3),
                        "gflop_per_s": round(flops * oh * ow / t_whole / 1e9, 2)},
        "tiled": {"tile": tiled.tile, "halo": card.receptive_field, "grid": list(p.grid),
                  "seconds": round(t_tiled, 4), "megapixels_per_s": round(mpx / t_tiled, 3),
                  "gflop_per_s_useful": round(flops * oh * ow / t_tiled / 1e9, 2),
                  "gflop_per_s_computed": round(flops * p.overhead * oh * ow / t_tiled / 1e9, 2)},
        "halo_overhead": round(p.overhead, 4),
        "tiled_over_whole_throughput": round(t_whole / t_tiled, 4),
        "tiled_vs_whole_max_abs_diff": float(np.abs(out_whole - out_tiled).max()),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        atomic_write(Path(args.json), text.encode())
    whole.close()
    return 0
