"""`phonescope bench --pipeline`: the daemon's figures, measured on a real daemon process.

- efficiency: enhanced preview frames/s of the running pipeline over
  engine-only frames/s (the Enhancer on uint8 frames in a loop) at the same resolution;
- capture latency: trigger (control socket) to durable reply, median and p95;
- a capture's stages (read: waiting for a fresh frame, preprocess, inference
  and of it the network, postprocess, encode, write, fsync, catalogue) as
  medians, and the host overhead: the capture's pixel work outside the
  network (preprocess, tiling and copies, postprocess) over the network's;
- memory: RSS (and threads, open files) sampled over the run, and the peak
  (the kernel's high-water mark, VmHWM); the growth after warm-up is the
  figure that must stay flat.

The camera is a replay of frames of --camera size made from the shipped
sample slides, the preview goes to the file sink (composed and encoded as
for a screen).
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edge.control import request
from edge.enhancer import Enhancer
from edge.imageio import atomic_write


def wait_running(state: Path, proc: subprocess.Popen, timeout_s: float) -> bool:
    """Poll the control socket until the daemon says it is running; False if it died or timed out."""
    t_start = time.monotonic()
    while proc.poll() is None and time.monotonic() - t_start < timeout_s:
        try:
            if request(state, {"cmd": "status"}, 5)["status"]["state"] == "running":
                return True
        except Exception:  # not listening yet, or mid-start
            pass
        time.sleep(0.2)
    return False


def proc_stats(pid: int) -> dict:
    """RSS now and its peak so far (VmHWM), threads, open fds of a process."""
    status = Path(f"/proc/{pid}/status").read_text()

    def field(name: str) -> int:
        return next(int(line.split()[1]) for line in status.splitlines() if line.startswith(name + ":"))

    return {"rss_mb": field("VmRSS") / 1024, "peak_rss_mb": round(field("VmHWM") / 1024, 1),
            "threads": field("Threads"), "fds": len(os.listdir(f"/proc/{pid}/fd"))}


STAGES = ("frame_wait_s", "preprocess_s", "inference_s", "network_s", "postprocess_s", "encode_s", "write_s",
          "fsync_s", "catalogue_s")


def stage_figures(timings: list[dict]) -> dict:
    """Median seconds per stage over captures, and the host overhead of the pixel path."""
    out: dict = {}
    for k in STAGES:
        values = [t[k] for t in timings if t.get(k) is not None]
        if values:
            out[k] = round(statistics.median(values), 4)
    if out.get("network_s"):
        host = out.get("preprocess_s", 0) + out["inference_s"] - out["network_s"] + out.get("postprocess_s", 0)
        out["host_overhead"] = round(host / out["network_s"], 4)
        out["host_overhead_note"] = "(preprocess + tiling/copies + postprocess) / network"
    return out


def replay_frames(folder: Path, width: int, height: int, count: int = 4) -> None:
    """`count` camera frames of width x height (JPEG, as a phone camera writes them) from the slides."""
    import cv2

    from edge.measure.bench import bench_frame

    big = bench_frame(width + 64 * count, height)
    for k in range(count):
        cv2.imwrite(str(folder / f"frame{k}.jpg"), big[:, 64 * k:64 * k + width, ::-1],
                    [cv2.IMWRITE_JPEG_QUALITY, 92])


def engine_fps(model: str | None, size: tuple[int, int], seconds: float = 20.0, preview_width: int = 960,
               tile: int | None = None) -> float:
    """Preview frames per second of the engine alone: a frame of `size` reduced to the preview width."""
    import cv2

    from edge.measure.bench import bench_frame

    enh, _ = Enhancer.open(model, "auto", tile=tile)   # the daemon's tile: the efficiency compares like with like
    w, h = size
    img = bench_frame(w, h)
    if w > preview_width:
        img = cv2.resize(img, (preview_width, round(h * preview_width / w)), interpolation=cv2.INTER_AREA)
    enh.run_network(enh.resample(img))
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        enh.run_network(enh.resample(img))
        n += 1
    fps = n / (time.perf_counter() - t0)
    enh.close()
    return fps


def run(args) -> int:
    from edge.measure.bench import parse_size

    minutes = args.minutes
    cw, ch = parse_size(args.camera)
    work = Path(tempfile.mkdtemp(prefix="phonescope-bench-"))
    frames = work / "frames"
    frames.mkdir()
    replay_frames(frames, cw, ch)
    cfg = work / "bench.toml"
    cfg.write_text(f"[camera]\nfps = 15\nwidth = {cw}\nheight = {ch}\n[preview]\nsink = \"file\"\nwidth = 960\n"
                   "[capture]\nkeep_raw = true\n" + (f"[model]\npath = \"{args.model}\"\n" if args.model else "")
                   + (args.config_extra.replace("\\n", "\n") + "\n" if args.config_extra else ""))
    print(f"engine-only preview throughput from {cw}x{ch} ({args.engine_seconds:g} s)...", file=sys.stderr)
    from edge import config
    from edge.modelcard import configured_model

    loaded = config.load(cfg)
    e_fps = engine_fps(configured_model(loaded), (cw, ch), args.engine_seconds, tile=loaded["model"]["tile"])
    state = work / "state"
    env = dict(os.environ)
    env.pop("NOTIFY_SOCKET", None)
    proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(cfg), "--source",
                             f"replay:{frames}", "--state-dir", str(state)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    samples, latencies, timings = [], [], []
    try:
        t_start = time.monotonic()
        if not wait_running(state, proc, 120):
            raise SystemExit(f"daemon did not start: {proc.stderr.read()[-500:]}")
        print(f"pipeline: {minutes:g} min run; captures every {args.capture_every:g} s...", file=sys.stderr)
        warm = time.monotonic() + 30
        t_end = time.monotonic() + minutes * 60
        next_sample = next_capture = time.monotonic()
        f0 = t0 = None
        while time.monotonic() < t_end:
            now = time.monotonic()
            if now >= next_sample:
                st = request(state, {"cmd": "status"}, 10)["status"]
                samples.append({"t_s": round(now - t_start, 1), "frames": st["frames"], **proc_stats(proc.pid)})
                if f0 is None and now >= warm:
                    f0, t0 = st["frames"], now
                next_sample = now + 10
            if now >= next_capture:
                c0 = time.monotonic()
                reply = request(state, {"cmd": "capture"}, 120)
                if reply.get("ok"):
                    latencies.append(time.monotonic() - c0)
                    timings.append(reply.get("timings") or {})
                next_capture = time.monotonic() + args.capture_every
            time.sleep(0.2)
        # frames/s measured between captures would count capture time against the preview; take
        # the preview rate over a quiet window instead
        st0 = request(state, {"cmd": "status"}, 10)["status"]
        q0 = time.monotonic()
        time.sleep(min(30.0, max(10.0, minutes * 6)))
        st1 = request(state, {"cmd": "status"}, 10)["status"]
        p_fps = (st1["frames"] - st0["frames"]) / (time.monotonic() - q0)
        peak = proc_stats(proc.pid)["peak_rss_mb"]
    finally:
        proc.terminate()
        proc.wait(30)
    post = [s for s in samples if s["t_s"] >= 60] or samples
    slope = float(np.polyfit([s["t_s"] / 60 for s in post], [s["rss_mb"] for s in post], 1)[0]) \
        if len(post) >= 3 else None
    lat = sorted(latencies)
    result = {
        "camera": f"{cw}x{ch}", "preview_width": 960, "backend": "onnxruntime (auto)",
        "config_extra": args.config_extra or None,
        "engine_only_fps": round(e_fps, 3), "pipeline_fps": round(p_fps, 3),
        "pipeline_efficiency": round(p_fps / e_fps, 3),
        "capture_latency_s": {"count": len(lat), "median": round(statistics.median(lat), 3) if lat else None,
                              "p95": round(lat[min(len(lat) - 1, int(0.95 * len(lat)))], 3) if lat else None},
        "run_minutes": minutes,
        "capture_stages_s": stage_figures(timings),
        "rss_mb": {"after_warmup": round(post[0]["rss_mb"], 1), "end": round(samples[-1]["rss_mb"], 1),
                   "max": round(max(s["rss_mb"] for s in samples), 1), "peak": peak,
                   "growth_mb_per_min_after_warmup": round(slope, 3) if slope is not None else None},
        "threads": {"min": min(s["threads"] for s in samples), "max": max(s["threads"] for s in samples)},
        "fds": {"min": min(s["fds"] for s in samples), "max": max(s["fds"] for s in samples)},
        "samples": samples,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        atomic_write(Path(args.json), text.encode())
    shutil.rmtree(work, ignore_errors=True)
    return 0
