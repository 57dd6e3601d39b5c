"""Captures: the request, why one can fail, the queue that admits them, the writer that stores them.

A request is admitted (CaptureQueue.submit) only if the daemon is running,
the sample id is valid, the disk is above its watermark and fewer than
CAPTURE_QUEUE requests wait; otherwise the caller gets a CaptureError at
once. The inference loop enhances a frame grabbed after the request and
hands the result to the CaptureWriter, which encodes it, assembles the
sidecar and calls Storage.store (whose commit protocol makes it durable).
The request's future is resolved only then: acknowledged means durable.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from edge.imageio import encode
from edge.notices import Notices
from edge.sources import Frame
from edge.storage import EXTS, Storage, StorageError, StorageFull, Stored, check_sample_id

log = logging.getLogger("phonescope")

CAPTURE_QUEUE = 4          # pending capture requests beyond this are answered "busy"
RAW_JPEG_QUALITY = 95


class CaptureError(Exception):
    """A capture that was refused or failed, nothing saved; one line saying why."""


class Busy(CaptureError):
    pass


class Stopping(CaptureError):
    pass


class BadSampleId(CaptureError):
    pass


class FrameTimeout(CaptureError):
    """No camera frame came after the request."""


class EngineFailed(CaptureError):
    pass


class DiskFull(CaptureError):
    pass


class StoreFailed(CaptureError):
    pass


def disk_full(e: StorageFull, notices: Notices) -> DiskFull:
    """A capture refused for space, before it was queued or while it was stored: shown, logged, answered."""
    notices.set("storage", str(e))
    log.error("capture refused: %s", e, extra={"CAPTURE_ERROR": str(e)})
    return DiskFull(str(e))


@dataclass
class CaptureRequest:
    sample_id: str | None
    origin: str                      # "socket", "key", "interval"
    session_id: str | None = None    # the operator's session at the kiosk (a sample id scanned there)
    operator_id: str | None = None
    t: float = field(default_factory=time.monotonic)   # frames grabbed after this count
    result: Future = field(default_factory=Future)     # -> Stored, or a CaptureError

    def fail(self, error: CaptureError) -> None:
        """Answer with an error, unless already answered (at shutdown the daemon races its threads)."""
        try:
            self.result.set_exception(error)
        except InvalidStateError:
            pass

    def done(self, stored: Stored) -> None:
        try:
            self.result.set_result(stored)
        except InvalidStateError:
            pass


class CaptureQueue:
    """Admission and a bounded FIFO from the callers (socket, keys, interval) to the inference loop."""

    def __init__(self, check_space: Callable[[], None], notices: Notices, stopping: threading.Event,
                 size: int = CAPTURE_QUEUE, operator_id: str | None = None):
        """operator_id: the kiosk's operator from the config, for captures that name none."""
        self.check_space, self.notices, self.stopping = check_space, notices, stopping
        self.size, self.operator_id = size, operator_id or None
        self.pending: queue.Queue[CaptureRequest] = queue.Queue(maxsize=size)

    def submit(self, sample_id: str | None, origin: str, session_id: str | None = None,
               operator_id: str | None = None) -> CaptureRequest:
        if self.stopping.is_set():
            raise Stopping("daemon is stopping")
        try:
            sample_id = check_sample_id(sample_id)
            self.check_space()
        except StorageFull as e:
            raise disk_full(e, self.notices) from None
        except StorageError as e:
            raise BadSampleId(str(e)) from None
        req = CaptureRequest(sample_id, origin, session_id, operator_id or self.operator_id)
        try:
            self.pending.put_nowait(req)
        except queue.Full:
            raise Busy(f"busy: {self.size} captures are already waiting") from None
        self.notices.clear("busy")
        return req

    def next(self) -> CaptureRequest | None:
        try:
            return self.pending.get_nowait()
        except queue.Empty:
            return None

    def fail_pending(self, why: str) -> None:
        """At shutdown: answer whatever is still waiting."""
        while (req := self.next()) is not None:
            req.fail(Stopping(why))

    def qsize(self) -> int:
        return self.pending.qsize()


class _Once:
    """A callback run at most once (a capture's "encoded", from whichever path gets there first)."""

    def __init__(self, fn: Callable[[], None] | None):
        self.fn = fn

    def __call__(self) -> None:
        fn, self.fn = self.fn, None
        if fn is not None:
            fn()


class CaptureWriter:
    """The storage thread: encode, sidecar, Storage.store, then acknowledge. Never drops a capture."""

    def __init__(self, storage: Storage, cfg_capture: dict, camera_meta: dict, static_meta: dict,
                 notices: Notices, notice: str = "", pixel_size: Callable[[int], float | None] | None = None):
        """notice: the kiosk's notice ([preview] notice), also written into every enhanced file;
        pixel_size: um per camera pixel for a frame of a given width (None: not calibrated)."""
        self.storage, self.cfg, self.notices = storage, cfg_capture, notices
        self.pixel_size = pixel_size
        self.camera_meta, self.static_meta = camera_meta, static_meta
        self.jobs: queue.Queue = queue.Queue()
        self.current: CaptureRequest | None = None      # the capture being saved
        self.captures_done = 0
        self.last_capture: dict | None = None
        self.on_saved: list[Callable[[Stored, np.ndarray], None]] = []   # (stored, enhanced image) once durable
        model = static_meta.get("model") or {}
        # in the enhanced file's own metadata: what it is, whatever copies it or strips the sidecar
        self.file_text = {"Description": f"AI-enhanced image: phonescope model {model.get('name')} "
                                         f"{model.get('version')} (sha256 {str(model.get('sha256'))[:16]})",
                          "Software": f"phonescope {static_meta.get('phonescope', '')}".strip(),
                          "Disclaimer": notice or "AI-enhanced image"}

    def put(self, req: CaptureRequest, frame: Frame, image: np.ndarray, timings: dict,
            focus_score: float | None = None, encoded: Callable[[], None] | None = None,
            glass_gain: list[float] | None = None) -> None:
        """An enhanced capture (RGB uint8/uint16 on the output grid) to store, with its frame's focus score
        and the white balance its glass got (edge.glass; None: none). encoded: called once its files are
        encoded (or it failed before), whatever follows: the camera's rest ends there (edge/inference.py)."""
        encoded = _Once(encoded)
        if self.current is not None or self.jobs.qsize():
            encoded()   # behind another capture's store: the camera need not wait for that one too
        self.jobs.put((req, frame, image, timings, focus_score, encoded, glass_gain))

    def finish(self) -> None:
        """Store what is queued, then end run()."""
        self.jobs.put(None)

    def qsize(self) -> int:
        return self.jobs.qsize()

    def abandon(self, why: str) -> None:
        """At shutdown, when this thread did not finish in time: answer the capture it is saving and those
        still waiting for it (a process that exits now would close their connections without a word)."""
        if (req := self.current) is not None:
            req.fail(Stopping(why))
        while True:
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job[5]()
                job[0].fail(Stopping(why))
        self.jobs.put(None)       # run() still ends once it is out of the capture it is in

    def run(self) -> None:
        while (job := self.jobs.get()) is not None:
            req = self.current = job[0]
            try:
                req.done(self._store(*job))
            except CaptureError as e:
                req.fail(e)
            except Exception as e:
                log.exception("capture failed")
                req.fail(StoreFailed(f"capture failed: {type(e).__name__}: {e}"))
            finally:
                job[5]()
                # the job's frame and image are not held until the next capture comes: 48 MB at 8 MP
                self.current = job = None

    def _store(self, req: CaptureRequest, frame: Frame, image: np.ndarray, timings: dict,
               focus_score: float | None, encoded: Callable[[], None], glass_gain: list[float] | None = None) -> Stored:
        t0 = time.monotonic()
        fmt, bits = self.cfg["format"], 16 if image.dtype == np.uint16 else 8
        frame_w = frame.image.shape[1]
        raw_um = self.pixel_size(frame_w) if self.pixel_size else None
        # the enhanced image covers the frame's field on its own grid (the model's scale)
        out_um = raw_um * frame_w / image.shape[1] if raw_um else None
        data = encode(image, EXTS[fmt], bits, self.cfg["jpeg_quality"], self.file_text, out_um, in_place=True)
        raw, raw_fmt = None, self.cfg["raw_format"]
        if self.cfg["keep_raw"]:
            # lossless in the camera's own bits (png, tiff), or JPEG where space matters more
            frame_px = frame.as_uint8() if raw_fmt == "jpeg" else frame.image
            raw = encode(frame_px, EXTS[raw_fmt], 16 if frame_px.dtype == np.uint16 else 8, RAW_JPEG_QUALITY,
                         pixel_size_um=raw_um)
        timings["encode_s"] = round(time.monotonic() - t0, 4)
        encoded()
        camera = {**self.camera_meta, **frame.settings, "frame_seq": frame.seq,
                  "width": frame.image.shape[1], "height": frame.image.shape[0],
                  "bits": 16 if frame.image.dtype == np.uint16 else 8,
                  "pixel_size_um": None if raw_um is None else round(raw_um, 6)}
        if frame.sensor_t is not None:
            camera["sensor_time_s"] = frame.sensor_t
        meta = {"origin": req.origin, "camera": camera, **self.static_meta,
                "session": {"id": req.session_id, "operator": req.operator_id},
                "focus_score": None if focus_score is None else round(focus_score, 3),
                "white_balance_gain": glass_gain,
                "output": {"width": image.shape[1], "height": image.shape[0], "format": fmt, "bits": bits,
                           "pixel_size_um": None if out_um is None else round(out_um, 6)},
                "raw_format": raw_fmt if raw is not None else None,
                "timings": timings}
        try:
            stored = self.storage.store(data, EXTS[fmt], meta, raw, req.sample_id, raw_format=raw_fmt)
        except StorageFull as e:
            raise disk_full(e, self.notices) from None
        except StorageError as e:
            log.error("capture failed: %s", e, extra={"CAPTURE_ERROR": str(e)})
            raise StoreFailed(str(e)) from None
        stored.times.update(timings, store_s=round(time.monotonic() - t0, 4))   # the stages after it too
        self.captures_done += 1
        self.last_capture = {"path": str(stored.image), "seq": stored.seq, "time": time.time(),
                             "timings": stored.times}
        self.notices.clear("storage")
        for listener in self.on_saved:
            try:
                listener(stored, image)
            except Exception:   # the preview's thumbnail must never fail a capture that is already durable
                log.exception("capture %d: a listener failed", stored.seq)
        log.info("capture %d saved: %s", stored.seq, stored.image,
                 extra={"CAPTURE_SEQ": stored.seq, "CAPTURE_PATH": str(stored.image),
                        "CAPTURE_SHA256": stored.sha256, "SAMPLE_ID": req.sample_id or ""})
        return stored
