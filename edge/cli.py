"""The one entry point, `phonescope`.

The kiosk's commands are defined here; calibration/ and models/ add theirs
through the `phonescope.commands` entry point group (pyproject.toml), so the
runtime base never imports them. Every command imports its heavy parts
lazily, so `enhance` on a kiosk never loads torch and `--help` is instant.
User errors end as one line on stderr and a non-zero exit code; a traceback
is shown only with PHONESCOPE_DEBUG=1.
"""
from __future__ import annotations

import argparse
import os
import sys
from importlib.metadata import entry_points
from typing import Callable

from edge.backends import BACKENDS
from edge.errors import OneLineParser, UserError, positive_int
from edge.sampletypes import TYPES

COMMAND_GROUP = "phonescope.commands"


def cmd_enhance(args) -> int:
    from edge.enhance_cmd import run
    return run(args)


def cmd_run(args) -> int:
    from edge.wiring import run
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


def cmd_export_captures(args) -> int:
    from edge.export import cmd_export
    return cmd_export(args)


def cmd_bench(args) -> int:
    if args.pipeline:
        from edge.measure.pipeline import run as run_pipeline
        return run_pipeline(args)
    from edge.measure.bench import run
    return run(args)


def add_kiosk_commands(sub) -> None:
    r = sub.add_parser("run", help="the kiosk daemon (embedded defaults without a config)")
    r.add_argument("--config", metavar="PATH", help="TOML config file")
    r.add_argument("--source", metavar="URI", help="simulated | replay:PATH | v4l2:/dev/videoN | "
                   "gst:PIPELINE | picamera2:N")
    r.add_argument("--state-dir", metavar="DIR")
    r.add_argument("--preview", choices=["auto", "window", "kms", "fbdev", "file", "none"])
    r.add_argument("--model", metavar="PATH")
    r.set_defaults(func=cmd_run)

    c = sub.add_parser("capture", help="ask the running daemon for a capture; prints its path")
    c.add_argument("--sample-id", metavar="ID")
    c.add_argument("--state-dir", metavar="DIR")
    c.set_defaults(func=cmd_capture)

    s = sub.add_parser("status", help="the running daemon's status as JSON")
    s.add_argument("--state-dir", metavar="DIR")
    s.set_defaults(func=cmd_status)

    x = sub.add_parser("export-captures", help="copy captures with their sidecars to a folder or USB stick, "
                       "verified by sha256 and resumable")
    x.add_argument("--to", required=True, metavar="DIR")
    x.add_argument("--since", metavar="DATE", help="captures from this day on (UTC), e.g. 2026-11-30")
    x.add_argument("--sample", metavar="ID", help="only this sample id")
    x.add_argument("--config", metavar="PATH", help="the kiosk's config (default: the installed one)")
    x.add_argument("--state-dir", metavar="DIR")
    x.set_defaults(func=cmd_export_captures)

    d = sub.add_parser("doctor", help="check camera, backend, model, disk and permissions")
    d.add_argument("--config", metavar="PATH")
    d.add_argument("--source", metavar="URI")
    d.add_argument("--state-dir", metavar="DIR")
    d.set_defaults(func=cmd_doctor)

    e = sub.add_parser("enhance", help="enhance image files")
    e.add_argument("images", nargs="+", metavar="IMG")
    e.add_argument("--out", required=True, metavar="DIR")
    e.add_argument("--model", metavar="M", help="ONNX model (default: the shipped model, for --sample that type's)")
    e.add_argument("--tile", type=positive_int, default=None, metavar="N",
                   help="windows of up to N x N pixels, 0 = whole image in one pass (default: the model card's)")
    e.add_argument("--backend", choices=BACKENDS, default="auto")
    e.add_argument("--sample", choices=("",) + TYPES, default="", metavar="TYPE",
                   help="the slides' type (%s): without --model, the shipped model for it; an image whose glass "
                        "lies outside the model's range for it is white-balanced into it (edge/glass.py); "
                        "default: none" % " | ".join(TYPES))
    e.add_argument("--profile", metavar="JSON", help="a kiosk's calibration profile (phonescope calibrate), "
                   "applied to each image before the model as the daemon does: for camera frames as taken")
    e.set_defaults(func=cmd_enhance)

    b = sub.add_parser("bench", help="measure inference speed; prints JSON")
    b.add_argument("--model", metavar="M")
    b.add_argument("--backend", choices=BACKENDS, default="auto")
    b.add_argument("--tile", type=positive_int, default=None, help="windows of up to N x N pixels (default: the model card's)")
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
    b.add_argument("--camera", default="1920x1080", help="--pipeline: the replay camera's WIDTHxHEIGHT (its "
                   "captures are this size: 3264x2448 for 8 MP)")
    b.add_argument("--capture-every", type=float, default=30.0, help="--pipeline: seconds between captures")
    b.add_argument("--config-extra", default="", help="--pipeline: TOML appended to the daemon's config "
                   "(e.g. '[model]\\narena = false')")
    b.set_defaults(func=cmd_bench)


KIOSK_COMMANDS = ("run", "capture", "status", "doctor", "enhance", "bench", "export-captures")


def build_parser(plugins: bool = True) -> argparse.ArgumentParser:
    """plugins: also the calibration and model commands (their imports cost seconds on a kiosk's CPU)."""
    p = OneLineParser(prog="phonescope", description="Deep-learning enhanced phone-optics microscope")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_kiosk_commands(sub)
    for ep in sorted(entry_points(group=COMMAND_GROUP), key=lambda e: e.name) if plugins else ():
        try:
            ep.load()(sub)
        except ImportError as e:  # a broken install of one part must not take the kiosk's commands down
            print(f"phonescope: the {ep.name} commands are unavailable ({e})", file=sys.stderr)
    return p


def guarded(command: str, fn: Callable[[], int]) -> int:
    """Run a command: a UserError is one line and its exit code, anything else one line and 70."""
    try:
        return int(fn() or 0)
    except UserError as e:
        print(f"phonescope {command}: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        print(f"phonescope {command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:   # `phonescope status | head`: the reader has gone; say nothing more
        try:
            sys.stdout = open(os.devnull, "w")   # so the interpreter's final flush does not raise again
        except OSError:
            pass
        return 0
    except Exception as e:  # last resort: one line, never a traceback for the user
        if os.environ.get("PHONESCOPE_DEBUG"):
            raise
        print(f"phonescope {command}: internal error: {type(e).__name__}: {e} "
              f"(set PHONESCOPE_DEBUG=1 for details)", file=sys.stderr)
        return 70


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(plugins=command not in KIOSK_COMMANDS).parse_args(argv)
    return guarded(args.command, lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
