"""The one place the daemon is assembled: build(cfg) -> Daemon.

Every part is chosen here, from the configuration: the camera source (a real
camera or the simulated one), the engine (TensorRT, ONNX Runtime, torch), the
preview sink, storage, the clock. No part chooses another, so a test or a
fault-injection run hands in its stand-ins (Twins) and gets a real daemon
around them, in-process, without patching anything.

The clock drives the supervision rules (camera stalls, watchdog, intervals);
frame and request times are always the host's time.monotonic().
"""
from __future__ import annotations

import contextlib
import faulthandler
import io
import json
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2

from edge import config, sources
from edge.camera import CameraSupervisor
from edge.camera_reader import CameraReader, LatestFrame
from edge.capture import CaptureQueue, CaptureWriter
from edge.control import socket_path
from edge.control_server import ControlServer
from edge.daemon import Daemon
from edge.engines import Engine, EngineError
from edge.enhancer import Enhancer
from edge.errors import EX_CONFIG, UserError
from edge.glass import WhiteBalance
from edge.inference import InferenceLoop, self_test
from edge.lock import InstanceLock
from edge.modelcard import ModelCard, ModelError, configured_model
from edge.notices import Notices
from edge.operator import OperatorState
from edge.preview import PreviewLoop, PreviewSlot
from edge.profile import Profile, ProfileError, load, model_misfit
from edge.service import Notifier, setup_logging
from edge.sinks import Sink
from edge.sinks.auto import open_preview
from edge.heap import bound_heap
from edge.stages import Postprocess, Preprocess
from edge.auto_export import AutoExport
from edge.retention import Retention
from edge.upload import UploadConfigError, Uploader
from edge.status import StatusBoard
from edge.storage import Storage

log = logging.getLogger("phonescope")


# -- the real parts, chosen from the configuration ------------------------------------------------------

def open_model(cfg: dict) -> tuple[Engine, ModelCard, str]:
    """The model's engine (backend per [model] backend), its card, and why that backend."""
    m = cfg["model"]
    enhancer, why = Enhancer.open(configured_model(cfg), m["backend"], m["tile"], m["batch"], arena=m["arena"])
    return enhancer.engine, enhancer.card, why


def phonescope_version() -> str:
    """This installation's version (recorded with every capture)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("phonescope")
    except PackageNotFoundError:   # run from a source tree that is not installed
        return "unknown"


def open_source(cfg: dict) -> sources.Source:
    c = cfg["camera"]
    return sources.open_source(c["source"], c["width"], c["height"], c["fps"], sources.Controls.from_config(c))


def open_sink(cfg: dict, state: Path) -> Sink:
    """The configured preview, falling back window -> kms -> fbdev -> file (edge.sinks.auto)."""
    return open_preview(cfg["preview"], state)


def open_keys(cfg: dict, sink: Sink):
    """The operator's keyboards, scanners and pedals through evdev. Also under X: HighGUI keeps one key
    between two polls of the window, so a scanner's fast typing loses characters there; while evdev has a
    keyboard, the window's keys are not used (PreviewLoop), else (no access to /dev/input) they are."""
    want = cfg["preview"]["keys"]
    if want == "none" or (want == "auto" and sink.kind == "none"):
        return None
    from edge.keys import EvdevKeys

    keys = EvdevKeys()
    if keys.problem:
        if sink.kind == "window":
            log.info("keys: from the preview window (%s)", keys.problem)
        else:
            log.warning("capture key: %s", keys.problem)
    return keys


def load_profile(cfg: dict) -> Profile | None:
    path = cfg["calibration"]["profile"]
    if not path:
        return None
    profile = load(path)
    log.info("calibration profile %s version %d", path, profile.version)
    return profile


def camera_pixel_size(cfg: dict, profile: Profile | None):
    """um per camera pixel for a frame of a given width: [calibration] pixel_size_um (at [camera] width),
    else the profile's scale, else None (captures then carry no pixel size)."""
    um, width = cfg["calibration"]["pixel_size_um"], cfg["camera"]["width"]
    if um:
        return lambda w: um * width / w
    if profile is not None and profile.pixel_size_um(width) is not None:
        return profile.pixel_size_um
    return None


def calibration_misfit(profile: Profile | None, cfg: dict) -> str | None:
    """Why the camera's settings are not those the calibration was made with, or None."""
    if profile is None:
        return None
    diff = sources.Controls.from_config(cfg["camera"]).differs(profile.raw.get("camera"))
    return f"calibration was made with other camera settings ({diff}): recalibrate, or set them in [camera]" \
        if diff else None


@dataclass
class Twins:
    """Stand-ins for real parts (tests, fault injection); None: the real part, chosen from the config."""

    open_model: Callable[[dict], tuple[Engine, ModelCard, str]] | None = None
    open_source: Callable[[dict], sources.Source] | None = None
    open_sink: Callable[[dict, Path], Sink] | None = None
    open_keys: Callable[[dict, Sink], object] | None = None
    notifier: Notifier | None = None
    clock: Callable[[], float] = time.monotonic


# -- assembly -------------------------------------------------------------------------------------------

def build(cfg: dict, state: Path, twins: Twins | None = None) -> Daemon:
    """Lock the state folder, load and self-test the model, recover storage, bind the socket: every
    check that can refuse to start happens here (UserError, exit 78 for configuration faults). What was
    opened before a refusal is closed again."""
    twins = twins or Twins()
    os.umask(os.umask(0) | 0o027)  # patient material: never world-readable (a stricter UMask= stays)
    state.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as undo:
        lock = InstanceLock(state)
        undo.callback(lock.release)
        daemon = _assemble(cfg, state, twins, lock, undo)
        undo.pop_all()          # from here the daemon's shutdown closes them
        return daemon


def _assemble(cfg: dict, state: Path, twins: Twins, lock: InstanceLock, undo: contextlib.ExitStack) -> Daemon:
    m, cam = cfg["model"], cfg["camera"]
    try:
        engine, card, why = (twins.open_model or open_model)(cfg)
        undo.callback(engine.close)
        enhancer = Enhancer(engine, card, m["tile"], m["batch"], m["sample"])
        self_test(enhancer)
        profile = load_profile(cfg)
    except (ModelError, EngineError, ProfileError) as e:
        raise UserError(str(e), EX_CONFIG) from None
    log.info("model %s %s on %s: %s", card.name, card.version, engine.name, why)
    uncalibrated = model_misfit(profile, card)
    if uncalibrated:
        log.warning("%s", uncalibrated)
    if m["sample"] and enhancer.balance is None:
        log.warning("%s", WhiteBalance.why_none(card.raw, m["sample"]))
    storage = Storage(state, cfg["storage"]["min_free_mb"])
    undo.callback(storage.close)
    report = storage.recover()
    if any(report.values()):
        log.warning("start-up recovery: %s", json.dumps(report))
    try:
        sink = (twins.open_sink or open_sink)(cfg, state)
    except (OSError, cv2.error) as e:
        raise UserError(f"preview {cfg['preview']['sink']}: {str(e).strip().splitlines()[-1]}", EX_CONFIG) from None
    undo.callback(sink.close)
    keys = (twins.open_keys or open_keys)(cfg, sink)
    if keys is not None:
        undo.callback(keys.close)

    clock, notices, stopping = twins.clock, Notices(), threading.Event()
    misfit = calibration_misfit(profile, cfg)
    if misfit:
        log.warning("%s", misfit)
        notices.set("camera settings", misfit)
    if uncalibrated:
        notices.set("calibration", uncalibrated)
    supervisor = CameraSupervisor(cam["source"], cam["fps"], clock)
    latest, slot = LatestFrame(), PreviewSlot()
    reader = CameraReader(lambda: (twins.open_source or open_source)(cfg), supervisor, latest)
    captures = CaptureQueue(storage.check_space, notices, stopping, operator_id=cfg["operator"]["id"])
    pre = Preprocess(profile, enhancer.resample, cfg["preview"]["width"], enhancer.pixel_type, enhancer.balanced)
    writer = CaptureWriter(
        storage, cfg["capture"],
        camera_meta={"source": cam["source"], "configured_size": [cam["width"], cam["height"]], "fps": cam["fps"]},
        static_meta={"model": {"name": card.name, "version": card.version, "sha256": card.onnx_sha256,
                               "path": str(configured_model(cfg)), "scale": card.scale,
                               "sample": m["sample"] or None,
                               "white_balance": ({"sample": enhancer.balance.sample,
                                                  "target_linear_rgb": enhancer.balance.target.tolist()}
                                                 if enhancer.balance else None)},
                     "backend": engine.name, "backend_reason": why, "calibration_profile": pre.describe(),
                     "phonescope": phonescope_version()},
        notices=notices, notice=cfg["preview"]["notice"], pixel_size=camera_pixel_size(cfg, profile))
    inference = InferenceLoop(enhancer, pre, Postprocess(cfg["capture"]["format"]), latest, captures, writer,
                              slot.put, lambda: supervisor.error, notices, stopping, clock)
    board = StatusBoard(supervisor, inference, captures, writer, storage, notices, (card.name, card.version),
                        engine.name, stopping, engine.memory, cfg["preview"]["notice"])
    op = cfg["operator"]
    operator = OperatorState(operator_prefix=op["badge_prefix"], operator_id=op["id"] or None)
    preview = board.preview = PreviewLoop(sink, slot, cfg["preview"], board.view, captures.submit, notices, stopping,
                                          keys, operator, storage.flag)
    writer.on_saved.append(preview.saved)
    uploader = None
    if cfg["upload"]["url"]:
        try:
            uploader = Uploader(storage, cfg["upload"], notices)
        except UploadConfigError as e:
            raise config.ConfigError(str(e)) from None
        writer.on_saved.append(lambda stored, image: uploader.enqueue(stored.seq))
        board.uploader = uploader
        log.info("uploading captures to %s", uploader.target.url)
    if cfg["export"]["auto_dir"]:
        auto = board.auto_export = AutoExport(storage, cfg["export"]["auto_dir"], notices)
        writer.on_saved.append(lambda stored, image: auto.saved(stored.seq))
        log.info("captures are copied to a USB stick mounted at %s", auto.folder)
    if cfg["storage"]["delete_after_upload_days"] > 0:
        board.retention = Retention(storage, cfg["storage"]["delete_after_upload_days"],
                                    uploader.target.url if uploader else None)
        log.info("retention: captures delivered %g days ago are deleted", board.retention.days)
    control = ControlServer(socket_path(state), board.status, captures.submit)
    undo.callback(control.close)
    return Daemon(lock=lock, storage=storage, supervisor=supervisor, reader=reader, inference=inference,
                  captures=captures, writer=writer, preview=preview, control=control, board=board,
                  notifier=twins.notifier or Notifier(), notices=notices, stopping=stopping,
                  services=tuple(p for p in (uploader, board.auto_export, board.retention) if p),
                  interval_s=cfg["capture"]["interval_s"], watchdog=cfg["service"]["watchdog"], clock=clock)


def run(args, twins: Twins | None = None) -> int:
    """`phonescope run`: the configuration (defaults < file < flags), then the daemon until SIGTERM."""
    setup_logging()
    if not faulthandler.is_enabled():
        # a hang or crash that systemd ends with SIGABRT (the watchdog; a stop past TimeoutStopSec, see the
        # unit's TimeoutStopFailureMode) leaves every thread's Python stack in the journal; with no stderr
        # (RuntimeError) it is done without
        with contextlib.suppress(ValueError, io.UnsupportedOperation, AttributeError, RuntimeError):
            faulthandler.enable(all_threads=True)
    bound_heap()
    overrides = {"camera": {"source": args.source}, "storage": {"state_dir": args.state_dir},
                 "model": {"path": args.model}}
    cfg = config.load(args.config, overrides)
    if args.preview:
        cfg["preview"]["sink"] = args.preview
    daemon = build(cfg, config.state_dir(cfg), twins)
    code = daemon.run()
    stuck = daemon.stuck()
    if stuck:
        # The interpreter's teardown would run the engine's C++ destructors under a thread still inside
        # it: "terminate called without an active exception", SIGABRT, exit 134 instead of 0. Everything
        # durable is closed by now (storage, catalogue, socket, pending answers), so leave without it.
        log.warning("exiting while %s is still busy (its result was answered as refused)", ", ".join(stuck))
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
