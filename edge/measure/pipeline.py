"""`phonescope bench --pipeline`: the daemon's figures, measured on a real daemon process.

- efficiency: enhanced preview frames/s of the running pipeline over
  engine-only frames/s (Enhancer.enhance in a loop) at the same resolution;
- capture latency: trigger (control socket) to durable reply, median and p95;
- memory: RSS (and threads, open files) sampled over the run; the growth
  after warm-up is the figure that must stay flat.
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

from edge import SAMPLES
from edge.control import request
from edge.enhancer import Enhancer
from edge.imageio import atomic_write, read_image

PHONE_SAMPLES = SAMPLES / "phone"


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
    status = Path(f"/proc/{pid}/status").read_text()
    rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    threads = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("Threads:"))
    return {"rss_mb": rss / 1024, "threads": threads, "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def engine_fps(model: str | None, size: tuple[int, int], seconds: float = 20.0) -> float:
    enh, _ = Enhancer.open(model, "auto", tile=512)
    img = np.ascontiguousarray(read_image(sorted(PHONE_SAMPLES.glob("Blood*.jpg"))[0])[0][:size[1], :size[0]])
    enh.enhance(img)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        enh.enhance(img)
        n += 1
    fps = n / (time.perf_counter() - t0)
    enh.close()
    return fps


def run(args) -> int:
    minutes = args.minutes
    work = Path(tempfile.mkdtemp(prefix="phonescope-bench-"))
    frames = work / "frames"
    frames.mkdir()
    for p in sorted(PHONE_SAMPLES.glob("Blood*.jpg")):  # all 640x480
        shutil.copy(p, frames)
    cfg = work / "bench.toml"
    cfg.write_text("[camera]\nfps = 15\n[preview]\nsink = \"none\"\nwidth = 640\n[capture]\nkeep_raw = true\n"
                   + (f"[model]\npath = \"{args.model}\"\n" if args.model else ""))
    print(f"engine-only throughput at 640x480 ({args.engine_seconds:g} s)...", file=sys.stderr)
    e_fps = engine_fps(args.model, (640, 480), args.engine_seconds)
    state = work / "state"
    env = dict(os.environ)
    env.pop("NOTIFY_SOCKET", None)
    proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(cfg), "--source",
                             f"replay:{frames}", "--state-dir", str(state)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    samples, latencies = [], []
    try:
        t_start = time.monotonic()
        if not wait_running(state, proc, 120):
            raise SystemExit(f"daemon did not start: {proc.stderr.read()[-500:]}")
        print(f"pipeline: {minutes:g} min run; captures every 30 s...", file=sys.stderr)
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
                next_capture = time.monotonic() + 30
            time.sleep(0.2)
        # frames/s measured between captures would count capture time against the preview; take
        # the preview rate over a quiet window instead
        st0 = request(state, {"cmd": "status"}, 10)["status"]
        q0 = time.monotonic()
        time.sleep(min(30.0, max(10.0, minutes * 6)))
        st1 = request(state, {"cmd": "status"}, 10)["status"]
        p_fps = (st1["frames"] - st0["frames"]) / (time.monotonic() - q0)
    finally:
        proc.terminate()
        proc.wait(30)
    post = [s for s in samples if s["t_s"] >= 60] or samples
    slope = float(np.polyfit([s["t_s"] / 60 for s in post], [s["rss_mb"] for s in post], 1)[0]) \
        if len(post) >= 3 else None
    lat = sorted(latencies)
    result = {
        "frame": "640x480", "backend": "onnxruntime (auto)",
        "engine_only_fps": round(e_fps, 3), "pipeline_fps": round(p_fps, 3),
        "pipeline_efficiency": round(p_fps / e_fps, 3),
        "capture_latency_s": {"count": len(lat), "median": round(statistics.median(lat), 3) if lat else None,
                              "p95": round(lat[min(len(lat) - 1, int(0.95 * len(lat)))], 3) if lat else None},
        "run_minutes": minutes,
        "rss_mb": {"after_warmup": round(post[0]["rss_mb"], 1), "end": round(samples[-1]["rss_mb"], 1),
                   "max": round(max(s["rss_mb"] for s in samples), 1),
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
