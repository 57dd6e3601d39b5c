"""`phonescope bench`: inference speed of a model, as JSON.

Times the same Enhancer path the kiosk's captures take (uint8 frame ->
model grid -> tiles -> engine -> uint8), on a frame made from shipped sample
slides, whole-image (one pass, where the backend takes any shape) and tiled
at the model's tile size, and reports throughput, the halo overhead
and the FLOP rate the FLOPs/pixel of the model card imply. For a capture
(8 MP by default) it reports milliseconds end to end and on the device
alone, achieved TFLOP/s against the device's FP16 peak, and a roofline
(edge/measure/roofline.py) saying whether memory or compute bounds the network.
Timings are medians of `--repeat` runs after a warm-up.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from edge import SAMPLES, tiling
from edge.enhancer import EngineError, Enhancer, ModelError
from edge.errors import UserError
from edge.imageio import atomic_write, read_image, to_uint8
from edge.measure import roofline
from edge.measure.roofline import device_peaks

PHONE_SAMPLES = SAMPLES / "phone"


def bench_frame(width: int, height: int) -> np.ndarray:
    """A realistic camera frame (RGB uint8): sample slides tiled to the requested size."""
    imgs = [to_uint8(read_image(p)[0]) for p in sorted(PHONE_SAMPLES.glob("*.jpg"))]
    h0 = min(i.shape[0] for i in imgs)
    row = np.concatenate([i[:h0, :] for i in imgs], axis=1)
    reps = (int(np.ceil(height / row.shape[0])), int(np.ceil(width / row.shape[1])))
    return np.ascontiguousarray(np.tile(row, (reps[0], reps[1], 1))[:height, :width])


def time_runs(enhancers: list[Enhancer], frame: np.ndarray, repeat: int,
              network: list | None = None) -> list[tuple[float, np.ndarray]]:
    """[(median seconds, output)] of a capture's enhancement (model grid, tiles, engine) by each enhancer,
    after a warm-up, one run of each in turn: a CPU whose speed drifts (a shared VM) moves all alike.
    network: gets the seconds the first one's network itself ran in each run, where the engine measures it."""
    outs = [e.run_network(e.resample(frame)) for e in enhancers]   # warm-up (allocations, kernel selection)
    times: list[list[float]] = [[] for _ in enhancers]
    for _ in range(max(1, repeat)):
        for k, e in enumerate(enhancers):
            t0 = time.perf_counter()
            outs[k] = e.run_network(e.resample(frame))
            times[k].append(time.perf_counter() - t0)
            if k == 0 and network is not None and e.last.network_s:
                network.append(e.last.network_s)
    return [(statistics.median(t), o) for t, o in zip(times, outs)]


def parse_size(s: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in s.lower().split("x"))
        if w < 1 or h < 1:
            raise ValueError
        return w, h
    except ValueError:
        raise UserError(f"--size must be WIDTHxHEIGHT, got {s!r}", 2) from None


def _device_seconds(enh: Enhancer, p: tiling.Plan, repeat: int) -> tuple[float, str]:
    """Engine time for all batches of a plan with the tiles already on the device (the GPU's share)."""
    n_tiles, b = len(p.tiles), enh.batch
    full, rest = divmod(n_tiles, b)
    reps = max(5, 4 * repeat)
    t_full = enh.engine.time_device(b, p.tile_h, p.tile_w, reps) if full else 0.0
    if t_full is not None:
        t_rest = enh.engine.time_device(rest, p.tile_h, p.tile_w, reps) if rest else 0.0
        return full * t_full + t_rest, "device-resident tiles, timed with device events"
    # the host is the device: time infer() on batches of real shape
    rng = np.random.default_rng(0)
    times = []
    for n, count in ((b, full), (rest, 1 if rest else 0)):
        if not count:
            continue
        x = rng.integers(0, 256, (n, p.tile_h, p.tile_w, 3), dtype=np.uint8)
        enh.engine.infer(x)
        t0 = time.perf_counter()
        for _ in range(max(1, repeat)):
            enh.engine.infer(x)
        times.append(count * (time.perf_counter() - t0) / max(1, repeat))
    return sum(times), "infer() on host batches (no separate device)"


def capture_figures(enh: Enhancer, w: int, h: int, repeat: int, peaks: dict | None) -> dict:
    """End-to-end (host tiling and copies included) and device-only figures for one capture size."""
    card = enh.card
    frame = bench_frame(w, h)
    oh, ow = enh.output_size(h, w)
    network: list[float] = []
    ((t_e2e, _),) = time_runs([enh], frame, repeat, network)
    align = max(card.alignment, enh.engine.spec.alignment)
    p = tiling.plan(tiling.align_up(oh, align), tiling.align_up(ow, align), enh.tile, card.receptive_field, align,
                    enh.fixed)
    t_dev, how = _device_seconds(enh, p, repeat)
    computed = len(p.tiles) * p.tile_h * p.tile_w
    out_px = oh * ow
    fpp = card.flops_per_pixel
    arch = card.raw.get("architecture") or {}
    bpp = sum(layer["fused_bytes"] for layer in roofline.layers(arch, fpp)) if arch.get("type") == "EnhanceNet" \
        else None

    def figures(t: float) -> dict:
        d = {"ms": round(t * 1e3, 2), "megapixels_per_s": round(out_px / t / 1e6, 2),
             "tflops_useful": round(fpp * out_px / t / 1e12, 3)}
        if bpp:
            d.update(roofline.achieved(fpp, bpp, computed, t, peaks))
        return d

    return {"size": f"{w}x{h}", "output_megapixels": round(out_px / 1e6, 3), "tile": [p.tile_h, p.tile_w],
            "batch": enh.batch, "tiles": len(p.tiles), "grid": list(p.grid), "halo_overhead": round(p.overhead, 4),
            "end_to_end": figures(t_e2e) | {"note": "uint8 frame -> model grid, tiles, engine, uint8 output"},
            "device_only": figures(t_dev) | {"note": how},
            "network_in_run_ms": round(statistics.median(network) * 1e3, 2) if network else None,
            "host_overhead": round(t_e2e / statistics.median(network) - 1, 4) if network else None,
            "host_overhead_note": "end to end over the network's own time in the same runs, minus 1 (where the "
                                  "engine measures it: ONNX Runtime, torch on a CPU)",
            "end_to_end_over_device": round(t_e2e / t_dev, 3) if t_dev else None}


def run(args) -> int:
    w, h = parse_size(args.size)
    cw, ch = (0, 0) if str(args.capture_size) == "0" else parse_size(args.capture_size)
    batch = args.batch
    if batch < 1:
        raise UserError("--batch must be >= 1", 2)
    try:
        tiled, why = Enhancer.open(args.model, args.backend, tile=args.tile, batch=batch)
    except (ModelError, EngineError) as e:
        raise UserError(str(e)) from None
    card = tiled.card
    engine = tiled.engine
    whole = None if tiled.fixed else Enhancer(engine, card, 0, batch=1)
    frame = bench_frame(w, h)
    oh, ow = tiled.output_size(h, w)
    mpx = oh * ow / 1e6
    device_name = getattr(engine, "device_name", None)
    peaks = device_peaks(device_name)
    flags = {"fp16_tflops": ("--peak-tflops", args.peak_tflops), "bandwidth_tb_s": ("--peak-bandwidth",
                                                                                  args.peak_bandwidth)}
    given = {k: v for k, (_, v) in flags.items() if v}
    if given and (peaks or len(given) == len(flags)):  # a partial override needs the known device's other peak
        peaks = dict(peaks or {}, **given, source="/".join(flags[k][0] for k in given))
    print(f"benchmarking {card.name} on {w}x{h} ({engine.name}), {args.repeat} runs each...", file=sys.stderr)
    runs = time_runs([tiled] + ([whole] if whole is not None else []), frame, args.repeat)
    t_tiled, out_tiled = runs[0]
    align = max(card.alignment, engine.spec.alignment)
    p = tiling.plan(tiling.align_up(oh, align), tiling.align_up(ow, align), tiled.tile, card.receptive_field, align,
                    tiled.fixed)
    flops = card.flops_per_pixel
    result = {
        "model": f"{card.name} {card.version}",
        "backend": engine.name,
        "provider": getattr(engine, "provider", None),
        "why": why,
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "device": device_name, "peaks": peaks},
        "frame": f"{w}x{h}",
        "output_megapixels": round(mpx, 3),
        "flops_per_pixel": flops,
    }
    if whole is not None:
        t_whole, out_whole = runs[1]
        result["whole_image"] = {"seconds": round(t_whole, 4), "megapixels_per_s": round(mpx / t_whole, 3),
                                 "gflop_per_s": round(flops * oh * ow / t_whole / 1e9, 2)}
    result["tiled"] = {"tile": tiled.tile, "batch": tiled.batch, "halo": card.receptive_field, "grid": list(p.grid),
                       "seconds": round(t_tiled, 4), "megapixels_per_s": round(mpx / t_tiled, 3),
                       "gflop_per_s_useful": round(flops * oh * ow / t_tiled / 1e9, 2),
                       "gflop_per_s_computed": round(flops * p.overhead * oh * ow / t_tiled / 1e9, 2)}
    result["halo_overhead"] = round(p.overhead, 4)
    if whole is not None:
        result["tiled_over_whole_throughput"] = round(t_whole / t_tiled, 4)
        result["tiled_vs_whole_max_abs_diff"] = float(np.abs(out_whole.astype(np.int16) - out_tiled).max()) / 255
    if cw:
        print(f"benchmarking a {cw}x{ch} capture...", file=sys.stderr)
        result["capture"] = capture_figures(tiled, cw, ch, args.repeat, peaks)
    arch = card.raw.get("architecture") or {}
    if arch.get("type") == "EnhanceNet":
        per_layer = roofline.layers(arch, flops)
        fused = sum(layer["fused_bytes"] for layer in per_layer)
        result["roofline"] = roofline.roofline(flops, fused, peaks) | {
            "bytes_per_pixel_unfused": round(sum(layer["unfused_bytes"] for layer in per_layer), 1),
            "layers": [{k: (round(v, 1) if isinstance(v, float) else v) for k, v in layer.items()}
                       for layer in per_layer],
            "note": "FP16 activation bytes read+written per output pixel; fused = bias/ReLU/residual in the conv"}
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        atomic_write(Path(args.json), text.encode())
    tiled.close()
    return 0
