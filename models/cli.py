"""The model commands of `phonescope`: evaluate, train, export, engine.

Registered with the one entry point through the `phonescope.commands` entry
point group (pyproject.toml), so edge/ never imports models/. Each command
imports its heavy parts (torch, TensorRT) only when it runs.
"""
from __future__ import annotations

from edge.engines import BACKENDS
from edge.errors import UserError, positive_int


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


def cmd_engine(args) -> int:
    from models.engine_build import run
    return run(args)


def add_commands(sub) -> None:
    v = sub.add_parser("evaluate", help="SSIM, PSNR and CIEDE2000 of a model on a pairs directory")
    v.add_argument("--model", metavar="M", help="ONNX model (default: the shipped model)")
    v.add_argument("--pairs", required=True, metavar="DIR")
    v.add_argument("--json", metavar="OUT", help="also write the figures as JSON")
    v.add_argument("--group", metavar="TYPE", help="the sample type of every pair (default: from the pair names' "
                   "prefix, e.g. tissue__field-3)")
    v.add_argument("--no-balance", action="store_true", help="the phone images as they are, without balancing "
                   "their glass to the model card's colour for their sample type (edge/glass.py)")
    v.add_argument("--tile", type=positive_int, default=None, metavar="N")
    v.add_argument("--backend", choices=BACKENDS, default="auto")
    v.set_defaults(func=cmd_evaluate)

    t = sub.add_parser("train", help="train the enhancement network")
    src = t.add_mutually_exclusive_group(required=True)
    src.add_argument("--simulate", nargs="+", metavar="DIR", help="reference images to simulate phone images from")
    src.add_argument("--pairs", metavar="DIR",
                     help="registered phone/reference pairs (those named *-held are held out, else 1 in 10 by name)")
    t.add_argument("--out", required=True, metavar="DIR")
    t.add_argument("--minutes", type=float, default=30.0, help="training budget in wall-clock minutes")
    t.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: budget only)")
    t.add_argument("--init", metavar="CHECKPOINT",
                   help="fine-tune from this checkpoint (with --pairs: the shipped model unless --scratch)")
    t.add_argument("--scratch", action="store_true", help="with --pairs: train from scratch, not the shipped model")
    t.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint in --out")
    t.add_argument("--hold-colour", type=float, metavar="WEIGHT",
                   help="weight of the CNN's colour change over 16-px blocks in the loss, leaving colour to the "
                        "colour layer (default: 0.1 with --pairs, else 0)")
    t.add_argument("--profile", metavar="JSON", help="simulator configuration (a PhoneOptics JSON)")
    t.add_argument("--family", action="store_true",
                   help="with --simulate: every image through phones drawn from the randomised family, sample types "
                        "(by data folder) weighted equally, large images split into training and held-out parts")
    t.add_argument("--width", type=int, default=64)
    t.add_argument("--blocks", type=int, default=4)
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--patch", type=int, default=96)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--variants", type=int, default=3, help="simulated variants per training image")
    t.add_argument("--type-inputs", type=int, default=0, metavar="N",
                   help="with --family: each sample type through at least N field x phone combinations "
                        "(a type with few fields gets more phones per field; 0: --variants for every type)")
    t.add_argument("--colour-calibrated", action="store_true",
                   help="with --family: each phone image colour-corrected by its phone's chart profile, for a "
                        "kiosk whose calibration profile has a colour section (phonescope calibrate colour)")
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

    g = sub.add_parser("engine", help="build or check the TensorRT engine for this device")
    gsub = g.add_subparsers(dest="engine_command", metavar="build|check|stamp", required=True)
    for name, helptext in (("build", "build the FP16 TensorRT engine from the ONNX model (minutes on a Jetson)"),
                           ("check", "say whether the engine is fresh, stale (and why) or missing"),
                           ("stamp", "write what a rebuild depends on to FILE, only if it changed (make engine)")):
        q = gsub.add_parser(name, help=helptext)
        if name == "stamp":
            q.add_argument("file", metavar="FILE")
        q.add_argument("--model", metavar="M", help="ONNX model (default: [model] path, else the shipped model for "
                       "[model] sample)")
        q.add_argument("--config", metavar="PATH", help="TOML config whose [model] path or sample, tile and batch the "
                       "engine is for")
        q.add_argument("--tile", type=positive_int, default=None, help="override [model] tile")
        q.add_argument("--batch", type=int, default=None, help="override [model] batch")
        if name == "build":
            q.add_argument("--force", action="store_true", help="rebuild even if the engine is fresh")
            q.add_argument("--out", metavar="ENGINE", help="engine file (default: beside the model, or "
                           "$PHONESCOPE_ENGINE_DIR)")
    g.set_defaults(func=cmd_engine)
