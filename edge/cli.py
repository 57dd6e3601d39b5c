"""The one entry point, `phonescope`.

Every command imports its heavy parts lazily, so `enhance` on a kiosk never
loads torch and `--help` is instant. User errors end as one line on stderr
and a non-zero exit code; a traceback is shown only with PHONESCOPE_DEBUG=1.
"""
from __future__ import annotations

import argparse
import os
import sys

from edge.engines import BACKENDS
from edge.errors import OneLineParser, UserError


def _positive_int(s: str) -> int:
    v = int(s)
    if v < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return v


def cmd_enhance(args) -> int:
    from edge.enhance_cmd import run
    return run(args)


def cmd_evaluate(args) -> int:
    from models.evaluate import run
    return run(args)


def cmd_train(args) -> int:
    try:
        from models.train import train
    except ImportError as e:
        raise UserError(f"training needs PyTorch ({e.name} is missing): pip install 'phonescope[train]'") from None
    try:
        return train(args)
    except (ValueError, FileNotFoundError) as e:
        raise UserError(str(e)) from None


def cmd_export(args) -> int:
    try:
        from models.export import run
    except ImportError as e:
        raise UserError(f"export needs PyTorch ({e.name} is missing): pip install 'phonescope[train]'") from None
    return run(args)


def cmd_run(args) -> int:
    from edge.daemon import run
    return run(args)


def cmd_capture(args) -> int:
    from edge.control import cmd_capture as capture
    return capture(args)


def cmd_status(args) -> int:
    from edge.control import cmd_status as status
    return status(args)


def cmd_doctor(args) -> int:
    from edge.doctor import run
    return run(args)


def cmd_bench(args) -> int:
    if args.pipeline:
        from edge.bench_pipeline import run as run_pipeline
        return run_pipeline(args)
    from edge.bench import run
    return run(args)


def cmd_engine(args) -> int:
    from models.engine_build import run
    return run(args)


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="phonescope", description="Deep-learning enhanced phone-optics microscope")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    r = sub.add_parser("run", help="the kiosk daemon (embedded defaults without a config)")
    r.add_argument("--config", metavar="PATH", help="TOML config file")
    r.add_argument("--source", metavar="URI", help="simulated | replay:PATH | v4l2:/dev/videoN | "
                   "gst:PIPELINE | picamera2:N")
    r.add_argument("--state-dir", metavar="DIR")
    r.add_argument("--preview", choices=["auto", "window", "fbdev", "file", "none"])
    r.add_argument("--model", metavar="PATH")
    r.set_defaults(func=cmd_run)

    c = sub.add_parser("capture", help="ask the running daemon for a capture; prints its path")
    c.add_argument("--sample-id", metavar="ID")
    c.add_argument("--state-dir", metavar="DIR")
    c.set_defaults(func=cmd_capture)

    s = sub.add_parser("status", help="the running daemon's status as JSON")
    s.add_argument("--state-dir", metavar="DIR")
    s.set_defaults(func=cmd_status)

    d = sub.add_parser("doctor", help="check camera, backend, model, disk and permissions")
    d.add_argument("--config", metavar="PATH")
    d.add_argument("--source", metavar="URI")
    d.add_argument("--state-dir", metavar="DIR")
    d.set_defaults(func=cmd_doctor)

    from calibration.cli import add_parser as add_calibrate
    from calibration.pairs import add_parser as add_pairs
    add_pairs(sub)
    add_calibrate(sub)

    e = sub.add_parser("enhance", help="enhance image files")
    e.add_argument("images", nargs="+", metavar="IMG")
    e.add_argument("--out", required=True, metavar="DIR")
    e.add_argument("--model", metavar="M", help="ONNX model (default: the shipped model)")
    e.add_argument("--tile", type=_positive_int, default=None, metavar="N",
                   help="tile size in pixels, 0 = whole image in one pass (default: the model card's)")
    e.add_argument("--backend", choices=BACKENDS, default="auto")
    e.set_defaults(func=cmd_enhance)

    v = sub.add_parser("evaluate", help="SSIM, PSNR and CIEDE2000 of a model on a pairs directory")
    v.add_argument("--model", metavar="M", help="ONNX model (default: the shipped model)")
    v.add_argument("--pairs", required=True, metavar="DIR")
    v.add_argument("--json", metavar="OUT", help="also write the figures as JSON")
    v.add_argument("--tile", type=_positive_int, default=None, metavar="N")
    v.add_argument("--backend", choices=BACKENDS, default="auto")
    v.set_defaults(func=cmd_evaluate)

    t = sub.add_parser("train", help="train the enhancement network")
    src = t.add_mutually_exclusive_group(required=True)
    src.add_argument("--simulate", nargs="+", metavar="DIR", help="reference images to simulate phone images from")
    src.add_argument("--pairs", metavar="DIR", help="registered phone/reference pairs")
    t.add_argument("--out", required=True, metavar="DIR")
    t.add_argument("--minutes", type=float, default=30.0, help="training budget in wall-clock minutes")
    t.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: budget only)")
    t.add_argument("--init", metavar="CHECKPOINT",
                   help="fine-tune from this checkpoint (with --pairs: the shipped model unless --scratch)")
    t.add_argument("--scratch", action="store_true", help="with --pairs: train from scratch, not the shipped model")
    t.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint in --out")
    t.add_argument("--profile", metavar="JSON", help="simulator configuration (a PhoneOptics JSON)")
    t.add_argument("--width", type=int, default=64)
    t.add_argument("--blocks", type=int, default=4)
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--patch", type=int, default=96)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--variants", type=int, default=3, help="simulated variants per training image")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=0)
    t.add_argument("--workers", type=int, default=2)
    t.add_argument("--log-every", type=float, default=30.0, help="seconds between progress lines")
    t.add_argument("--save-every", type=float, default=120.0, help="seconds between checkpoints")
    t.set_defaults(func=cmd_train)

    x = sub.add_parser("export", help="export a checkpoint to ONNX with its model card")
    x.add_argument("checkpoint", metavar="CHECKPOINT")
    x.add_argument("--out", required=True, metavar="NAME.onnx")
    x.add_argument("--name", default=None, help="model name for the card (default: file stem)")
    x.add_argument("--version", default="1.0.0")
    x.add_argument("--pairs", metavar="DIR", help="held-out pairs for the card's metrics "
                   "(default: the held-out pairs the training wrote)")
    x.add_argument("--no-metrics", action="store_true", help="skip evaluation on held-out pairs")
    x.set_defaults(func=cmd_export)

    b = sub.add_parser("bench", help="measure inference speed; prints JSON")
    b.add_argument("--model", metavar="M")
    b.add_argument("--backend", choices=BACKENDS, default="auto")
    b.add_argument("--tile", type=_positive_int, default=None, help="tile size (default: the model card's)")
    b.add_argument("--batch", type=int, default=4, help="tiles per batch")
    b.add_argument("--capture-size", default="3264x2448", help="the capture the per-capture figures are for "
                   "(default 8 MP); 0 to skip")
    b.add_argument("--peak-tflops", type=float, default=None, help="the device's FP16 peak (default: known GPUs)")
    b.add_argument("--peak-bandwidth", type=float, default=None, help="the device's memory bandwidth in TB/s")
    b.add_argument("--size", default="1920x1080", help="benchmark frame WIDTHxHEIGHT")
    b.add_argument("--repeat", type=int, default=3)
    b.add_argument("--json", metavar="OUT")
    b.add_argument("--pipeline", action="store_true",
                   help="measure the daemon instead: efficiency, capture latency, memory over time")
    b.add_argument("--minutes", type=float, default=10.0, help="--pipeline: length of the run")
    b.add_argument("--engine-seconds", type=float, default=20.0, help="--pipeline: engine-only timing")
    b.set_defaults(func=cmd_bench)

    g = sub.add_parser("engine", help="build or check the TensorRT engine for this device")
    gsub = g.add_subparsers(dest="engine_command", metavar="build|check|stamp", required=True)
    for name, helptext in (("build", "build the FP16 TensorRT engine from the ONNX model (minutes on a Jetson)"),
                           ("check", "say whether the engine is fresh, stale (and why) or missing"),
                           ("stamp", "write what a rebuild depends on to FILE, only if it changed (make engine)")):
        q = gsub.add_parser(name, help=helptext)
        if name == "stamp":
            q.add_argument("file", metavar="FILE")
        q.add_argument("--model", metavar="M", help="ONNX model (default: [model] path, else the shipped model)")
        q.add_argument("--config", metavar="PATH", help="TOML config whose [model] tile and batch the engine is for")
        q.add_argument("--tile", type=_positive_int, default=None, help="override [model] tile")
        q.add_argument("--batch", type=int, default=None, help="override [model] batch")
        if name == "build":
            q.add_argument("--force", action="store_true", help="rebuild even if the engine is fresh")
            q.add_argument("--out", metavar="ENGINE", help="engine file (default: beside the model, or "
                           "$PHONESCOPE_ENGINE_DIR)")
    g.set_defaults(func=cmd_engine)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"phonescope {args.command}: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        print(f"phonescope {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # last resort: one line, never a traceback for the user
        if os.environ.get("PHONESCOPE_DEBUG"):
            raise
        print(f"phonescope {args.command}: internal error: {type(e).__name__}: {e} "
              f"(set PHONESCOPE_DEBUG=1 for details)", file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
