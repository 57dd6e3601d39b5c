"""The kiosk daemon: camera -> enhance -> storage + preview, under systemd.

Threads and bounded queues (DESIGN.md, "Data flow in the daemon"):
- camera: reads frames, keeps only the latest; reopens a failed camera with
  backoff and says "camera lost" meanwhile.
- inference: the sole owner of the engine. Capture requests first (full
  resolution, on a frame grabbed after the request), else the latest frame
  for the preview at reduced resolution.
- storage: writes captures durably, then acknowledges them; never drops one.
- preview: composes and shows the picture at most max_fps times a second.
- control: the Unix socket that `phonescope capture` and `status` talk to.
The main thread talks to systemd: READY after the first enhanced frame,
STATUS, WATCHDOG only while the pipeline is alive, STOPPING on SIGTERM.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import queue
import signal
import socket
import struct
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge import preview as pv
from edge.config import state_dir as config_state_dir
from edge.enhancer import Enhancer, EngineError, ModelError
from edge.errors import EX_CONFIG, UserError
from edge.imageio import encode
from edge.modelcard import DEFAULT_MODEL
from edge.service import Notifier, setup_logging
from edge.sources import Frame, SourceError, open_source
from edge.storage import Storage, StorageError, StorageFull, check_sample_id

log = logging.getLogger("phonescope")

CAPTURE_QUEUE = 4          # pending capture requests beyond this are answered "busy"
STOP_GRACE_S = 4.0         # SIGTERM: finish pending captures within this, exit well inside 5 s
FRAME_WAIT_S = 10.0        # a capture waits this long for a fresh frame


@dataclass
class CaptureRequest:
    sample_id: str | None
    origin: str                      # "socket", "key", "interval"
    t: float = field(default_factory=time.monotonic)
    result: Future = field(default_factory=Future)


class LatestFrame:
    """A one-slot mailbox: the camera overwrites, readers wait for something newer."""

    def __init__(self):
        self.cond = threading.Condition()
        self.frame: Frame | None = None
        self.count = 0

    def put(self, f: Frame) -> None:
        with self.cond:
            self.frame = f
            self.count += 1
            self.cond.notify_all()

    def newer(self, count: int, after_t: float = 0.0, timeout: float = 0.5) -> tuple[Frame | None, int]:
        end = time.monotonic() + timeout
        with self.cond:
            while self.frame is None or self.count == count or self.frame.t <= after_t:
                left = end - time.monotonic()
                if left <= 0:
                    return None, count
                self.cond.wait(left)
            return self.frame, self.count


class Daemon:
    def __init__(self, cfg: dict, state_dir: Path, preview_kind: str):
        self.cfg, self.state = cfg, state_dir
        self.preview_kind = preview_kind
        self.stopping = threading.Event()
        self.camera_stop = threading.Event()
        self.latest = LatestFrame()
        self.captures: queue.Queue[CaptureRequest] = queue.Queue(maxsize=CAPTURE_QUEUE)
        self.to_store: queue.Queue = queue.Queue()
        self.preview_lock = threading.Lock()
        self.preview_raw = self.preview_enh = None
        self.camera_error: str | None = None
        self.warnings: dict[str, str] = {}
        self.alive_t = self.frame_t = time.monotonic()
        self.first_frame = threading.Event()
        self.fps = 0.0
        self.frames_done = 0
        self.captures_done = 0
        self.last_capture: dict | None = None
        self.started = time.time()
        self.threads: list[threading.Thread] = []

    # -- start-up -------------------------------------------------------------
    def open(self) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        self.lock_fd = os.open(self.state / "phonescope.lock", os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(self.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(self.lock_fd, 32, 0).decode(errors="replace").strip() or "?"
            raise UserError(f"another phonescope (pid {other}) is running on {self.state}") from None
        os.ftruncate(self.lock_fd, 0)
        os.pwrite(self.lock_fd, f"{os.getpid()}\n".encode(), 0)
        m = self.cfg["model"]
        try:
            self.enhancer, self.backend_why = Enhancer.open(m["path"] or None, m["backend"], m["tile"], m["batch"])
        except (ModelError, EngineError) as e:
            raise UserError(str(e), EX_CONFIG) from None
        self.preview_enhancer = Enhancer(self.enhancer.engine, self.enhancer.card, m["tile"], m["batch"])
        self.model_path = Path(m["path"]) if m["path"] else DEFAULT_MODEL
        log.info("model %s %s on %s: %s", self.enhancer.card.name, self.enhancer.card.version,
                 self.enhancer.engine.name, self.backend_why)
        self.pre = self._preprocessor()
        self.storage = Storage(self.state, self.cfg["storage"]["min_free_mb"])
        rep = self.storage.recover()
        if any(v for v in rep.values()):
            log.warning("start-up recovery: %s", json.dumps(rep))
        try:
            self.sink = pv.open_sink(self.preview_kind, self.state, self.cfg["preview"]["fb_device"])
        except (OSError, cv2.error) as e:
            raise UserError(f"preview {self.preview_kind}: {str(e).strip().splitlines()[-1]}", EX_CONFIG) from None
        self.control = self._bind_control()

    def _preprocessor(self):
        from calibration.preprocess import Preprocessor
        from calibration.profile import ProfileError, load

        path = self.cfg["calibration"]["profile"]
        if not path:
            return Preprocessor(None)
        try:
            profile = load(path)
        except ProfileError as e:
            raise UserError(str(e), EX_CONFIG) from None
        if not (self.enhancer.card.raw.get("training") or {}).get("calibrated_input"):
            log.warning("calibration profile %s is applied, but model %s was not trained on calibrated "
                        "images: retrain it on pairs made with this profile", path, self.enhancer.card.name)
        log.info("calibration profile %s version %d", path, profile.version)
        return Preprocessor(profile)

    def _bind_control(self) -> socket.socket:
        path = self.state / "control.sock"
        path.unlink(missing_ok=True)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o117)  # the socket is created 0660: the service's user and group only
        try:
            s.bind(str(path))
        finally:
            os.umask(old)
        s.listen(8)
        s.settimeout(0.5)
        return s

    # -- threads ----------------------------------------------------------------
    def _camera_loop(self) -> None:
        c = self.cfg["camera"]
        backoff = 0.5
        src = None
        while not self.camera_stop.is_set():
            try:
                if src is None:
                    src = open_source(c["source"], c["width"], c["height"], c["fps"])
                    log.info("camera %s opened", c["source"])
                frame = src.read()
                if frame.image is None or frame.image.ndim != 3 or frame.image.size == 0:
                    raise SourceError(f"{c['source']}: corrupt frame")
                self.latest.put(frame)
                if self.camera_error:
                    log.info("camera %s is back", c["source"])
                self.camera_error = None
                backoff = 0.5
            except SourceError as e:
                if self.camera_error != str(e):
                    log.error("camera lost: %s", e, extra={"CAMERA_SOURCE": c["source"]})
                self.camera_error = str(e)
                if src is not None:
                    src.close()
                    src = None
                self.camera_stop.wait(backoff)
                backoff = min(backoff * 2, 8.0)
            except Exception as e:  # a driver bug must not kill the camera thread
                log.exception("camera failure: %s", e)
                self.camera_error = f"{c['source']}: {type(e).__name__}: {e}"
                if src is not None:
                    src.close()
                    src = None
                self.camera_stop.wait(backoff)
                backoff = min(backoff * 2, 8.0)
        if src is not None:
            src.close()

    def _inference_loop(self) -> None:
        seen = 0
        width = self.cfg["preview"]["width"]
        t_prev = time.monotonic()
        while True:
            self.alive_t = time.monotonic()
            try:
                req = self.captures.get_nowait()
            except queue.Empty:
                req = None
            if req is not None:
                self._capture(req)
                continue
            if self.stopping.is_set():
                return
            frame, seen = self.latest.newer(seen, timeout=0.25)
            if frame is None:
                continue
            img = frame.image
            try:
                x = self.pre(img.astype(np.float32) / 255.0)
                if x.shape[1] > width:
                    x = cv2.resize(x, (width, round(x.shape[0] * width / x.shape[1])), interpolation=cv2.INTER_AREA)
                    img = cv2.resize(img, (x.shape[1], x.shape[0]), interpolation=cv2.INTER_AREA)
                enh = self.preview_enhancer.enhance(x)
            except ValueError as e:  # a frame that does not match the calibration (size)
                self.warnings["calibration"] = str(e)
                continue
            except EngineError as e:
                self.warnings["engine"] = str(e)
                log.error("%s", e)
                continue
            self.warnings.pop("engine", None)
            with self.preview_lock:
                self.preview_raw, self.preview_enh = img, np.round(enh * 255).astype(np.uint8)
            now = time.monotonic()
            self.fps = 0.8 * self.fps + 0.2 / max(1e-6, now - t_prev) if self.frames_done else 1 / max(
                1e-6, now - t_prev)
            t_prev = self.frame_t = now
            self.frames_done += 1
            self.first_frame.set()

    def _capture(self, req: CaptureRequest) -> None:
        """Full-resolution enhancement of a frame grabbed after the request."""
        t0 = time.monotonic()
        frame, _ = self.latest.newer(-1, after_t=req.t, timeout=FRAME_WAIT_S)
        if frame is None:
            req.result.set_exception(StorageError(f"no camera frame within {FRAME_WAIT_S:.0f} s"
                                                  f"{': ' + self.camera_error if self.camera_error else ''}"))
            return
        t1 = time.monotonic()
        try:
            enh = self.enhancer.enhance(self.pre(frame.image.astype(np.float32) / 255.0))
        except (EngineError, ValueError) as e:
            req.result.set_exception(StorageError(f"enhancement failed, nothing saved: {e}"))
            return
        t2 = time.monotonic()
        self.to_store.put((req, frame, enh, {"frame_wait_s": round(t1 - t0, 4), "enhance_s": round(t2 - t1, 4)}))

    def _storage_loop(self) -> None:
        cap = self.cfg["capture"]
        card = self.enhancer.card
        model_meta = {"name": card.name, "version": card.version, "sha256": card.onnx_sha256,
                      "path": str(self.model_path), "scale": card.scale}
        while True:
            item = self.to_store.get()
            if item is None:
                return
            req, frame, enh, timings = item
            t0 = time.monotonic()
            try:
                ext = {"png": ".png", "tiff": ".tiff", "jpeg": ".jpg"}[cap["format"]]
                data = encode(enh, ext, 8, cap["jpeg_quality"])
                raw = encode(frame.image, ".jpg", jpeg_quality=95) if cap["keep_raw"] else None
                meta = {"origin": req.origin, "camera": {**self._source_info(), **frame.settings,
                                                         "frame_seq": frame.seq,
                                                         "width": frame.image.shape[1],
                                                         "height": frame.image.shape[0]},
                        "model": model_meta, "backend": self.enhancer.engine.name,
                        "backend_reason": self.backend_why,
                        "calibration_profile": self.pre.describe(),
                        "output": {"width": enh.shape[1], "height": enh.shape[0], "format": cap["format"]},
                        "timings": timings}
                stored = self.storage.store(data, ext, meta, raw, req.sample_id)
                timings["store_s"] = round(time.monotonic() - t0, 4)
                self.captures_done += 1
                self.last_capture = {"path": str(stored.image), "seq": stored.seq, "time": time.time()}
                self.warnings.pop("storage", None)
                log.info("capture %d saved: %s", stored.seq, stored.image,
                         extra={"CAPTURE_SEQ": stored.seq, "CAPTURE_PATH": str(stored.image),
                                "CAPTURE_SHA256": stored.sha256, "SAMPLE_ID": req.sample_id or ""})
                req.result.set_result(stored)
            except StorageError as e:
                if isinstance(e, StorageFull):
                    self.warnings["storage"] = str(e)
                log.error("capture refused: %s", e, extra={"CAPTURE_ERROR": str(e)})
                req.result.set_exception(e)
            except Exception as e:
                log.exception("capture failed")
                req.result.set_exception(StorageError(f"capture failed: {type(e).__name__}: {e}"))

    def _source_info(self) -> dict:
        c = self.cfg["camera"]
        return {"source": c["source"], "configured_size": [c["width"], c["height"]], "fps": c["fps"]}

    def _preview_loop(self) -> None:
        p = self.cfg["preview"]
        period = 1.0 / p["max_fps"]
        while not self.stopping.is_set():
            t0 = time.monotonic()
            with self.preview_lock:
                raw, enh = self.preview_raw, self.preview_enh
            try:
                events = self.sink.show(pv.compose(raw, enh, p["show"], p["width"], self.status_lines(),
                                                   self.warning_line()))
            except Exception as e:
                log.error("preview %s failed: %s", self.sink.kind, e)
                events = []
            for ev in events:
                if ev == "capture":
                    try:
                        self.submit(None, "key")
                    except StorageError as e:
                        self.warnings["busy"] = str(e)
            self.stopping.wait(max(0.0, period - (time.monotonic() - t0)))
        self.sink.close()

    def _control_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.control.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True, name="control-client").start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(FRAME_WAIT_S + 120)
            try:
                pid, uid, gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                                    struct.calcsize("3i")))
                if uid not in (0, os.getuid()) and gid != os.getgid():
                    return self._reply(conn, {"ok": False, "error": "permission denied"})
                line = conn.makefile("rb").readline(4096)
                msg = json.loads(line or b"{}")
                if not isinstance(msg, dict):
                    raise ValueError("not an object")
            except (OSError, ValueError):
                return self._reply(conn, {"ok": False, "error": "bad request"})
            cmd = msg.get("cmd")
            if cmd == "status":
                return self._reply(conn, {"ok": True, "status": self.status()})
            if cmd == "capture":
                try:
                    req = self.submit(msg.get("sample_id"), "socket")
                    stored = req.result.result(timeout=FRAME_WAIT_S + 110)
                except (StorageError, TimeoutError) as e:
                    return self._reply(conn, {"ok": False, "error": str(e) or "timed out"})
                return self._reply(conn, {"ok": True, "path": str(stored.image), "seq": stored.seq,
                                          "sha256": stored.sha256, "sidecar": str(stored.sidecar)})
            return self._reply(conn, {"ok": False, "error": f"unknown command {cmd!r}"})

    @staticmethod
    def _reply(conn: socket.socket, obj: dict) -> None:
        try:
            conn.sendall(json.dumps(obj).encode() + b"\n")
        except OSError:
            pass

    # -- API used by threads ----------------------------------------------------
    def submit(self, sample_id: str | None, origin: str) -> CaptureRequest:
        if self.stopping.is_set():
            raise StorageError("daemon is stopping")
        sample_id = check_sample_id(sample_id)
        self.storage.check_space()
        req = CaptureRequest(sample_id, origin)
        try:
            self.captures.put_nowait(req)
        except queue.Full:
            raise StorageError(f"busy: {CAPTURE_QUEUE} captures are already waiting") from None
        return req

    def status(self) -> dict:
        card = self.enhancer.card
        return {"state": "stopping" if self.stopping.is_set() else ("running" if self.first_frame.is_set()
                                                                     else "starting"),
                "pid": os.getpid(), "uptime_s": round(time.time() - self.started, 1),
                "fps": round(self.fps, 2), "frames": self.frames_done,
                "camera": {"source": self.cfg["camera"]["source"], "ok": self.camera_error is None,
                           "error": self.camera_error},
                "model": f"{card.name} {card.version}", "backend": self.enhancer.engine.name,
                "captures": self.captures_done, "pending_captures": self.captures.qsize() + self.to_store.qsize(),
                "last_capture": self.last_capture, "free_mb": round(self.storage.free_mb(), 1),
                "warnings": list(self.warnings.values())}

    def status_lines(self) -> list[str]:
        last = self.last_capture["path"].rsplit("/", 1)[-1] if self.last_capture else "none"
        return [f"{self.fps:4.1f} fps | {self.enhancer.engine.name} | {self.enhancer.card.name} | "
                f"captures {self.captures_done} | last {last}"]

    def warning_line(self) -> str | None:
        if self.camera_error:
            return f"camera lost: {self.camera_error}"[:110]
        if self.warnings:
            return next(iter(self.warnings.values()))[:110]
        return None

    # -- main -----------------------------------------------------------------------
    def run(self) -> int:
        notifier = Notifier()
        self.open()
        signal.signal(signal.SIGTERM, lambda *_: self.stopping.set())
        signal.signal(signal.SIGINT, lambda *_: self.stopping.set())
        for name, fn in (("camera", self._camera_loop), ("inference", self._inference_loop),
                         ("storage", self._storage_loop), ("preview", self._preview_loop),
                         ("control", self._control_loop)):
            t = threading.Thread(target=fn, name=name, daemon=True)
            t.start()
            self.threads.append(t)
        watchdog_s = notifier.watchdog_s if self.cfg["service"]["watchdog"] else 0.0
        interval = float(self.cfg["capture"]["interval_s"])
        next_interval = time.monotonic() + interval if interval > 0 else None
        ready = False
        last_status = last_space = 0.0
        while not self.stopping.is_set():
            now = time.monotonic()
            if not ready and self.first_frame.is_set():
                ready = True
                notifier.ready(f"running: {self.enhancer.engine.name}")
                log.info("ready: first enhanced frame through the pipeline")
            if watchdog_s and ready:
                inference_alive = now - self.alive_t < watchdog_s / 2
                flowing = now - self.frame_t < watchdog_s / 2 or self.camera_error is not None
                if inference_alive and flowing:
                    notifier.watchdog()
            if now - last_status >= 2.0:
                last_status = now
                notifier.status(f"{self.fps:.1f} fps, {self.captures_done} captures"
                                + (f", WARNING {self.warning_line()}" if self.warning_line() else ""))
            if now - last_space >= 10.0:
                last_space = now
                try:
                    self.storage.check_space()
                    if "storage" in self.warnings and "disk" in self.warnings["storage"]:
                        self.warnings.pop("storage", None)
                except StorageFull as e:
                    self.warnings["storage"] = str(e)
            if next_interval and now >= next_interval:
                next_interval = now + interval
                try:
                    self.submit(None, "interval")
                except StorageError as e:
                    log.warning("interval capture skipped: %s", e)
            self.stopping.wait(min(0.2, watchdog_s / 4) if watchdog_s else 0.2)
        return self.shutdown(notifier)

    def shutdown(self, notifier: Notifier) -> int:
        """Stop taking frames, finish pending captures, exit 0 within 5 s."""
        notifier.stopping()
        log.info("stopping: finishing %d pending capture(s)", self.captures.qsize() + self.to_store.qsize())
        deadline = time.monotonic() + STOP_GRACE_S
        inference = next(t for t in self.threads if t.name == "inference")
        inference.join(max(0.1, deadline - time.monotonic()))
        self.camera_stop.set()
        self.to_store.put(None)
        storage = next(t for t in self.threads if t.name == "storage")
        storage.join(max(0.1, deadline - time.monotonic()))
        camera = next(t for t in self.threads if t.name == "camera")
        camera.join(max(0.1, deadline + 0.8 - time.monotonic()))
        while True:
            try:
                self.captures.get_nowait().result.set_exception(StorageError("daemon stopped"))
            except queue.Empty:
                break
        try:
            self.control.close()
            (self.state / "control.sock").unlink(missing_ok=True)
        except OSError:
            pass
        self.storage.close()
        log.info("stopped")
        return 0


def run(args) -> int:
    from edge import config

    setup_logging()
    overrides = {"camera": {"source": args.source}, "storage": {"state_dir": args.state_dir},
                 "model": {"path": args.model}}
    cfg = config.load(args.config, overrides)
    if args.preview:
        cfg["preview"]["sink"] = args.preview
    state = config_state_dir(cfg)
    return Daemon(cfg, state, cfg["preview"]["sink"]).run()
