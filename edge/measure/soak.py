"""`make soak` (python -m edge.measure.soak): the daemon with the simulated camera for a long run, watched from outside.

It starts the real daemon (simulated camera, preview to a file, state in a
temporary folder), asks for a capture every --capture-every seconds over the
control socket, and every --sample-every seconds records the daemon's RSS,
open file descriptors and threads (/proc, as `bench --pipeline` does), the
frame latency (camera grab -> enhanced preview, from `status`) and the
capture latency (request -> durable reply). At the end it prints a verdict:
after a warm-up (the first quarter of the run, at least one minute), RSS
must not keep rising (least-squares slope over the rest of the run, and the
second half's median against the first half's), descriptors and threads must
stay within a small margin of their warm-up level, latency must not drift up,
and every acknowledged capture must be intact. It also reports the peak RSS
(VmHWM) and a capture's stage times (as `bench --pipeline` does). Exit status
0 = stable, 1 = a figure grew or a capture was lost.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edge.control import request
from edge.imageio import atomic_write
from edge.measure.pipeline import proc_stats, stage_figures, wait_running

RSS_SLOPE_MB_PER_MIN = 0.5     # sustained growth above this after warm-up is a leak
RSS_HALVES_MB = 5.0            # ... and the second half's peak must then also exceed the first half's by this
RSS_STEP_MB = 25.0             # the second half's low point above the first half's: growth whatever the slope
FD_MARGIN = 4                  # open fds / threads above the warm-up maximum
THREAD_MARGIN = 2
LATENCY_DRIFT = 1.5            # last third's median frame latency vs. the post-warm-up first third's


def slope_per_min(samples: list[dict], key: str) -> float:
    if len(samples) < 3:
        return 0.0
    return float(np.polyfit([s["t_s"] / 60 for s in samples], [s[key] for s in samples], 1)[0])


def verdict(samples: list[dict], minutes: float) -> tuple[bool, list[str], dict]:
    warm_s = max(60.0, minutes * 60 / 4) if minutes >= 2 else minutes * 60 / 4
    warm = [s for s in samples if s["t_s"] < warm_s] or samples[:1]
    post = [s for s in samples if s["t_s"] >= warm_s] or samples
    half = len(post) // 2 or 1
    third = max(1, len(post) // 3)
    figures = {
        "warmup_s": warm_s,
        "rss_mb": {"after_warmup": round(post[0]["rss_mb"], 1), "end": round(samples[-1]["rss_mb"], 1),
                   "max": round(max(s["rss_mb"] for s in samples), 1),
                   "slope_mb_per_min": round(slope_per_min(post, "rss_mb"), 3),
                   # RSS swings by the size of a capture's buffers; compare peaks and lows, not single samples
                   "first_half_min_max": [min(s["rss_mb"] for s in post[:half]), max(s["rss_mb"] for s in post[:half])],
                   "second_half_min_max": [min(s["rss_mb"] for s in post[half:] or post),
                                           max(s["rss_mb"] for s in post[half:] or post)]},
        "fds": {"warmup_max": max(s["fds"] for s in warm), "max_after": max(s["fds"] for s in post),
                "end": samples[-1]["fds"]},
        "threads": {"warmup_max": max(s["threads"] for s in warm), "max_after": max(s["threads"] for s in post),
                    "end": samples[-1]["threads"]},
        "frame_latency_ms": {"first_third_median": statistics.median(s["latency_ms"] for s in post[:third]),
                             "last_third_median": statistics.median(s["latency_ms"] for s in post[-third:]),
                             "max": max(s["latency_ms"] for s in post)},
    }
    problems = []
    r = figures["rss_mb"]
    (lo1, hi1), (lo2, hi2) = r["first_half_min_max"], r["second_half_min_max"]
    if r["slope_mb_per_min"] > RSS_SLOPE_MB_PER_MIN and hi2 - hi1 > RSS_HALVES_MB:
        problems.append(f"RSS grows {r['slope_mb_per_min']} MB/min after warm-up (peak {hi1} -> {hi2} MB)")
    if lo2 - lo1 > RSS_STEP_MB:
        problems.append(f"RSS low point rose from {lo1} to {lo2} MB")
    if figures["fds"]["max_after"] > figures["fds"]["warmup_max"] + FD_MARGIN:
        problems.append(f"open fds grew: {figures['fds']}")
    if figures["threads"]["max_after"] > figures["threads"]["warmup_max"] + THREAD_MARGIN:
        problems.append(f"threads grew: {figures['threads']}")
    lat = figures["frame_latency_ms"]
    if lat["last_third_median"] > LATENCY_DRIFT * lat["first_third_median"] + 50:
        problems.append(f"frame latency drifts up: {lat}")
    return not problems, problems, figures


def run(args) -> int:
    work = Path(tempfile.mkdtemp(prefix="phonescope-soak-"))
    state = work / "state"
    cfg = work / "soak.toml"
    w, h = (int(v) for v in args.size.split("x"))
    cfg.write_text(f"[camera]\nsource = \"simulated\"\nwidth = {w}\nheight = {h}\nfps = {args.fps}\n"
                   f"[preview]\nsink = \"file\"\nmax_fps = 5\n[capture]\nkeep_raw = true\n"
                   f"[storage]\nmin_free_mb = 200\n"
                   + (f"[model]\npath = \"{args.model}\"\n" if args.model else ""))
    env = dict(os.environ)
    for k in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "JOURNAL_STREAM"):
        env.pop(k, None)
    log_path = work / "daemon.log"
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(cfg), "--state-dir",
                             str(state)], env=env, stdout=subprocess.DEVNULL, stderr=log)
    samples: list[dict] = []
    captures: dict[str, str] = {}
    capture_lat: list[float] = []
    timings: list[dict] = []
    failures: list[str] = []
    print(f"soak: {args.minutes:g} min, simulated camera {args.size} @ {args.fps} fps, a capture every "
          f"{args.capture_every:g} s, samples every {args.sample_every:g} s; state in {state}", file=sys.stderr)
    try:
        if not wait_running(state, proc, 300):
            raise SystemExit(f"soak: the daemon did not start: {log_path.read_text()[-800:]}")
        t0 = time.monotonic()
        t_end = t0 + args.minutes * 60
        next_sample = next_capture = t0
        print(f"{'t_s':>7} {'rss_mb':>7} {'fds':>4} {'thr':>4} {'lat_ms':>7} {'fps':>5} {'capt':>5} "
              f"{'capt_s':>6} warnings", file=sys.stderr)
        while time.monotonic() < t_end:
            now = time.monotonic()
            if proc.poll() is not None:
                failures.append(f"the daemon exited with {proc.returncode}")
                break
            if now >= next_capture:
                next_capture = now + args.capture_every
                c0 = time.monotonic()
                try:
                    reply = request(state, {"cmd": "capture"}, 120)
                except Exception as e:
                    reply = {"ok": False, "error": str(e)}
                if reply.get("ok"):
                    captures[reply["path"]] = reply["sha256"]
                    capture_lat.append(time.monotonic() - c0)
                    timings.append(reply.get("timings") or {})
                else:
                    failures.append(f"capture refused at {now - t0:.0f} s: {reply.get('error')}")
            if now >= next_sample:
                next_sample = now + args.sample_every
                st = request(state, {"cmd": "status"}, 10)["status"]
                s = {"t_s": round(now - t0, 1), **proc_stats(proc.pid), "latency_ms": st["latency_ms"],
                     "fps": st["fps"], "frames": st["frames"], "captures": st["captures"],
                     "capture_s": round(capture_lat[-1], 3) if capture_lat else None}
                s["rss_mb"] = round(s["rss_mb"], 1)
                samples.append(s)
                print(f"{s['t_s']:7.0f} {s['rss_mb']:7.1f} {s['fds']:4d} {s['threads']:4d} {s['latency_ms']:7.0f} "
                      f"{s['fps']:5.1f} {s['captures']:5d} {s['capture_s'] or 0:6.2f} "
                      f"{'; '.join(st['warnings'])[:60]}", file=sys.stderr, flush=True)
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                failures.append("the daemon did not stop within 15 s of SIGTERM")
        log.close()
    lost = [p for p, digest in captures.items()
            if not Path(p).is_file() or hashlib.sha256(Path(p).read_bytes()).hexdigest() != digest]
    stable, problems, figures = verdict(samples, args.minutes) if samples else (False, ["no samples"], {})
    problems += failures + ([f"{len(lost)} acknowledged capture(s) missing or changed"] if lost else [])
    if proc.returncode not in (0, None):
        problems.append(f"daemon exit status {proc.returncode}")
    lat = sorted(capture_lat)
    result = {"minutes": args.minutes, "size": args.size, "fps": args.fps, "capture_every_s": args.capture_every,
              "captures_acknowledged": len(captures), "captures_lost": len(lost),
              "capture_latency_s": {"median": round(statistics.median(lat), 3) if lat else None,
                                    "p95": round(lat[min(len(lat) - 1, int(0.95 * len(lat)))], 3) if lat else None,
                                    "max": round(lat[-1], 3) if lat else None},
              "capture_stages_s": stage_figures(timings),
              "peak_rss_mb": max((s["peak_rss_mb"] for s in samples), default=None),
              "disk_used_mb": round(sum(f.stat().st_size for f in state.rglob("*") if f.is_file()) / 1e6, 1),
              **figures, "verdict": "stable" if not problems else "GROWS OR FAILS: " + "; ".join(problems),
              "samples": samples}
    text = json.dumps(result, indent=2)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(Path(args.json), text.encode())
    summary = {k: v for k, v in result.items() if k != "samples"}
    print(json.dumps(summary, indent=2))
    print(f"soak verdict: {result['verdict']}", file=sys.stderr)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"soak: state and daemon log kept in {work}", file=sys.stderr)
    return 0 if not problems else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edge.measure.soak", description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", 30)))
    p.add_argument("--capture-every", type=float, default=5.0, help="seconds between captures")
    p.add_argument("--sample-every", type=float, default=10.0, help="seconds between measurements")
    p.add_argument("--size", default="1920x1080", help="simulated camera WIDTHxHEIGHT")
    p.add_argument("--fps", type=float, default=15)
    p.add_argument("--model", default=None)
    p.add_argument("--json", default=None, help="write every sample and the verdict here")
    p.add_argument("--keep", action="store_true", help="keep the state folder and the daemon's log")
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
