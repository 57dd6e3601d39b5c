"""The kiosk daemon: camera -> enhance -> storage + preview, under systemd.

Threads and bounded queues (DESIGN.md, "Data flow in the daemon"):
- camera: reads frames, keeps only the latest; reopens a failed camera with
  backoff and says "camera lost" meanwhile. A corrupt frame is skipped and
  reported (the camera is reopened only after many in a row); a change of
  resolution is logged and followed; a camera that stops delivering (a read
  that blocks) is reported as stalled and reopened in a new thread, the
  stuck one being abandoned (at most one at a time).
- inference: the sole owner of the engine. Capture requests first (full
  resolution, on a frame grabbed after the request), else the latest frame
  for the preview at reduced resolution.
- storage: writes captures durably, then acknowledges them; never drops one.
- preview: composes and shows the picture at most max_fps times a second.
- control: the Unix socket that `phonescope capture` and `status` talk to.
The main thread talks to systemd: READY after the first enhanced frame,
STATUS, WATCHDOG only while the pipeline is alive (a hung inference stops the
pings, so systemd restarts the service), STOPPING on SIGTERM.

The control socket is 0660 and the peer's credentials are checked as well
(SO_PEERCRED and SO_PEERGROUPS): root, the service's user, or a member of
its group; requests are one JSON line of at most 4 KiB with known keys only,
read within a few seconds, from at most MAX_CLIENTS clients at a time.
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
from edge.sources.base import CorruptFrame
from edge.storage import Storage, StorageError, StorageFull, check_sample_id

log = logging.getLogger("phonescope")

CAPTURE_QUEUE = 4          # pending capture requests beyond this are answered "busy"
STOP_GRACE_S = 4.0         # SIGTERM: finish pending captures within this, exit well inside 5 s
FRAME_WAIT_S = 10.0        # a capture waits this long for a fresh frame
CAMERA_STALL_S = 5.0       # no frame for this long (or 5 frame periods) after frames flowed: "stalled"
CORRUPT_REOPEN = 30        # this many corrupt frames in a row: reopen the camera
MAX_CLIENTS = 16           # control connections served at once
REQUEST_TIMEOUT_S = 5.0    # a client must send its request line within this
REQUEST_MAX = 4096         # bytes in a request line
SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)
COMMANDS = {"status": {"cmd"}, "capture": {"cmd", "sample_id"}}


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
        self.camera_gen = 0                  # bumped to abandon a camera thread stuck in read()
        self.camera_threads: list[threading.Thread] = []
        self.camera_live = False             # a frame arrived since the current source was opened
        self.camera_frame_t = time.monotonic()
        self.camera_size: tuple[int, int] | None = None
        self.camera_reopen_t = 0.0
        self.corrupt_frames = self.resolution_changes = self.camera_reopens = 0
        self.latency_s = 0.0                 # frame grabbed -> enhanced preview ready (moving average)
        self.clients = threading.BoundedSemaphore(MAX_CLIENTS)
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
        os.umask(os.umask(0) | 0o027)  # patient material: never world-readable (a stricter UMask= stays)
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
        self._self_test()
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

    def _self_test(self) -> None:
        """One small real image through the engine before READY: a model that yields NaN/inf or the
        wrong shape is refused at start (exit 78) rather than found at the first capture."""
        from edge.imageio import read_image

        sample = sorted((Path(__file__).resolve().parent / "samples" / "phone").glob("*.jpg"))[0]
        img = np.ascontiguousarray(read_image(sample)[0][:96, :128])
        try:
            out = self.enhancer.enhance(img)
        except (EngineError, ValueError) as e:
            raise UserError(f"model self-test failed, refusing to start: {e}", EX_CONFIG) from None
        if out.shape[2] != 3:
            raise UserError(f"model self-test failed: output {out.shape} is not RGB", EX_CONFIG)

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
    def _start_camera(self) -> None:
        self.camera_gen += 1
        self.camera_live = False
        self.camera_threads = [t for t in self.camera_threads if t.is_alive()]
        t = threading.Thread(target=self._camera_loop, args=(self.camera_gen,), name=f"camera-{self.camera_gen}",
                             daemon=True)
        t.start()
        self.camera_threads.append(t)

    def _check_frame(self, frame: Frame) -> None:
        img = frame.image
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3 \
                or img.shape[0] < 16 or img.shape[1] < 16:
            shape = getattr(img, "shape", None)
            raise CorruptFrame(f"{self.cfg['camera']['source']}: corrupt frame "
                               f"({type(img).__name__} {shape} {getattr(img, 'dtype', '')})".rstrip())
        size = (img.shape[1], img.shape[0])
        if self.camera_size is not None and size != self.camera_size:
            self.resolution_changes += 1
            log.warning("camera resolution changed from %dx%d to %dx%d", *self.camera_size, *size,
                        extra={"CAMERA_SOURCE": self.cfg["camera"]["source"]})
        self.camera_size = size

    def _camera_loop(self, gen: int) -> None:
        c = self.cfg["camera"]
        backoff = 0.5
        corrupt_run = 0
        src = None

        def lost(msg: str, level=logging.ERROR) -> None:
            if self.camera_error != msg:
                log.log(level, "camera lost: %s", msg, extra={"CAMERA_SOURCE": c["source"]})
            self.camera_error = msg

        while not self.camera_stop.is_set() and gen == self.camera_gen:
            try:
                if src is None:
                    src = open_source(c["source"], c["width"], c["height"], c["fps"])
                    log.info("camera %s opened", c["source"])
                frame = src.read()
                if gen != self.camera_gen:
                    break  # this thread was given up on while read() was stuck
                self._check_frame(frame)
                self.camera_frame_t = time.monotonic()
                self.camera_live = True
                self.latest.put(frame)
                if self.camera_error:
                    log.info("camera %s is back", c["source"])
                self.camera_error = None
                backoff, corrupt_run = 0.5, 0
            except CorruptFrame as e:
                self.corrupt_frames += 1
                corrupt_run += 1
                lost(str(e), logging.WARNING)
                if corrupt_run < CORRUPT_REOPEN:
                    self.camera_stop.wait(0.02)
                    continue
                corrupt_run = 0
                if src is not None:
                    src.close()
                    src = None
                self.camera_stop.wait(backoff)
                backoff = min(backoff * 2, 8.0)
            except Exception as e:  # SourceError, or a driver bug that must not kill the camera thread
                if isinstance(e, SourceError):
                    lost(str(e))
                else:
                    if self.camera_error is None:
                        log.exception("camera failure: %s", e)
                    self.camera_error = f"{c['source']}: {type(e).__name__}: {e}"
                if src is not None:
                    try:
                        src.close()
                    except Exception:
                        pass
                    src = None
                self.camera_live = False
                self.camera_stop.wait(backoff)
                backoff = min(backoff * 2, 8.0)
        if src is not None:
            try:
                src.close()
            except Exception:
                pass

    def _watch_camera(self, now: float) -> None:
        """A camera that stopped delivering (read() blocks): say so, then reopen it in a new thread."""
        c = self.cfg["camera"]
        stall_s = max(CAMERA_STALL_S, 5.0 / c["fps"])
        since = now - self.camera_frame_t
        if not self.camera_live or since < stall_s:
            return
        msg = f"{c['source']}: no frame for {since:.0f} s (camera stalled)"
        if self.camera_error is None or "stalled" in self.camera_error:
            if self.camera_error is None:
                log.error("camera lost: %s", msg, extra={"CAMERA_SOURCE": c["source"]})
            self.camera_error = msg
        if since > 3 * stall_s and now - self.camera_reopen_t > 3 * stall_s \
                and sum(t.is_alive() for t in self.camera_threads) <= 1:
            self.camera_reopen_t = now
            self.camera_reopens += 1
            log.warning("camera %s: reopening in a new thread, abandoning the stuck read", c["source"])
            self._start_camera()

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
            self.warnings.pop("calibration", None)
            with self.preview_lock:
                self.preview_raw, self.preview_enh = img, np.round(enh * 255).astype(np.uint8)
            now = time.monotonic()
            lat = now - frame.t
            self.latency_s = 0.8 * self.latency_s + 0.2 * lat if self.frames_done else lat
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
        last_error = None
        while not self.stopping.is_set():
            t0 = time.monotonic()
            with self.preview_lock:
                raw, enh = self.preview_raw, self.preview_enh
            try:
                events = self.sink.show(pv.compose(raw, enh, p["show"], p["width"], self.status_lines(),
                                                   self.warning_line()))
            except Exception as e:  # e.g. a full disk under the preview file: say it once, keep going
                msg = f"preview {self.sink.kind} failed: {e}"
                if msg != last_error:
                    log.error("%s", msg)
                last_error = msg
                self.warnings["preview"] = msg
                events = []
            else:
                if last_error is not None:
                    log.info("preview %s works again", self.sink.kind)
                    self.warnings.pop("preview", None)
                last_error = None
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
            if not self.clients.acquire(blocking=False):
                conn.settimeout(1.0)
                self._reply(conn, {"ok": False, "error": f"busy: {MAX_CLIENTS} clients already connected"})
                conn.close()
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True, name="control-client").start()

    @staticmethod
    def peer_allowed(conn: socket.socket) -> tuple[bool, int, int]:
        """Root, our own user, or a member of our group (primary or supplementary); (allowed, uid, pid)."""
        pid, uid, gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                            struct.calcsize("3i")))
        if uid in (0, os.getuid()) or gid == os.getgid():
            return True, uid, pid
        try:
            raw = conn.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, 1024)  # Python caps buflen at 1024: 256 groups
            groups = struct.unpack(f"{len(raw) // 4}I", raw[:len(raw) // 4 * 4])
        except OSError:
            groups = ()
        return os.getgid() in groups, uid, pid

    def _serve(self, conn: socket.socket) -> None:
        try:
            with conn:
                self._serve_one(conn)
        finally:
            self.clients.release()

    def _serve_one(self, conn: socket.socket) -> None:
        conn.settimeout(REQUEST_TIMEOUT_S)
        try:
            allowed, uid, pid = self.peer_allowed(conn)
            if not allowed:
                log.warning("control socket: refused uid %d (pid %d): not the service's user or group", uid, pid)
                return self._reply(conn, {"ok": False, "error": "permission denied"})
            line = conn.makefile("rb").readline(REQUEST_MAX + 1)
        except (OSError, struct.error):
            return self._reply(conn, {"ok": False, "error": "bad request: nothing read"})
        if len(line) > REQUEST_MAX:
            return self._reply(conn, {"ok": False, "error": f"bad request: longer than {REQUEST_MAX} bytes"})
        try:
            msg = json.loads(line or b"{}")
        except ValueError:
            return self._reply(conn, {"ok": False, "error": "bad request: not JSON"})
        if not isinstance(msg, dict):
            return self._reply(conn, {"ok": False, "error": "bad request: not a JSON object"})
        cmd = msg.get("cmd")
        if not isinstance(cmd, str) or cmd not in COMMANDS:
            return self._reply(conn, {"ok": False, "error": f"unknown command {str(cmd)[:40]!r}"})
        extra = set(msg) - COMMANDS[cmd]
        if extra:
            return self._reply(conn, {"ok": False, "error": f"bad request: unknown key(s) "
                                                            f"{', '.join(sorted(map(str, extra)))[:80]}"})
        if cmd == "status":
            return self._reply(conn, {"ok": True, "status": self.status()})
        conn.settimeout(FRAME_WAIT_S + 120)
        try:
            req = self.submit(msg.get("sample_id"), "socket")
            stored = req.result.result(timeout=FRAME_WAIT_S + 110)
        except (StorageError, TimeoutError) as e:
            return self._reply(conn, {"ok": False, "error": str(e) or "timed out"})
        return self._reply(conn, {"ok": True, "path": str(stored.image), "seq": stored.seq,
                                  "sha256": stored.sha256, "sidecar": str(stored.sidecar)})

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
        try:
            self.storage.check_space()
        except StorageFull as e:
            self.warnings["storage"] = str(e)
            log.error("capture refused: %s", e, extra={"CAPTURE_ERROR": str(e)})
            raise
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
                           "error": self.camera_error,
                           "size": list(self.camera_size) if self.camera_size else None,
                           "corrupt_frames": self.corrupt_frames, "resolution_changes": self.resolution_changes,
                           "reopens_after_stall": self.camera_reopens},
                "latency_ms": round(self.latency_s * 1000, 1),
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
        self._start_camera()
        for name, fn in (("inference", self._inference_loop), ("storage", self._storage_loop),
                         ("preview", self._preview_loop), ("control", self._control_loop)):
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
            if ready:
                self._watch_camera(now)
                stuck = now - self.alive_t
                if stuck > (watchdog_s / 2 if watchdog_s else 10.0):
                    if "inference" not in self.warnings:
                        log.error("inference stalled: no progress for %.0f s%s", stuck,
                                  ": watchdog pings stopped" if watchdog_s else "")
                    self.warnings["inference"] = f"inference stalled for {stuck:.0f} s"
                else:
                    self.warnings.pop("inference", None)
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
        for camera in self.camera_threads:
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
