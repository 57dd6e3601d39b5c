"""StatusBoard: what the daemon says about itself, read from its parts.

The same facts go to `phonescope status` (JSON over the control socket), the
preview's status bar and systemd's STATUS= line, so they never disagree.
"""
from __future__ import annotations

import os
import threading
import time

from edge.camera import CameraSupervisor
from edge.capture import CaptureQueue, CaptureWriter
from edge.inference import InferenceLoop
from edge.notices import Notices
from edge.overlay import View
from edge.preview import PreviewLoop
from edge.storage import Storage

WARNING_WIDTH = 110        # characters of a warning on the preview's status bar


def process_memory() -> dict:
    """This process's resident memory now and at its peak (the kernel's high-water mark), in MB."""
    try:
        lines = open("/proc/self/status").read().splitlines()
    except OSError:
        return {}
    kb = {ln.split(":")[0]: int(ln.split()[1]) for ln in lines if ln.startswith(("VmRSS:", "VmHWM:"))}
    return {"rss_mb": round(kb.get("VmRSS", 0) / 1024, 1), "peak_rss_mb": round(kb.get("VmHWM", 0) / 1024, 1)}


class StatusBoard:
    def __init__(self, camera: CameraSupervisor, inference: InferenceLoop, captures: CaptureQueue,
                 writer: CaptureWriter, storage: Storage, notices: Notices, model: tuple[str, str], backend: str,
                 stopping: threading.Event, engine_memory=lambda: None, notice: str = ""):
        """model: (name, version) from the model card; backend: the engine's name; engine_memory: what the
        engine holds outside RSS (Engine.memory)."""
        self.preview: PreviewLoop | None = None     # attached once built (it shows this board's lines)
        self.uploader = None                         # edge.upload.Uploader where [upload] url is set
        self.retention = None                        # edge.retention.Retention where it is on
        self.auto_export = None                      # edge.auto_export.AutoExport where [export] auto_dir is set
        self.camera, self.inference, self.captures, self.writer = camera, inference, captures, writer
        self.storage, self.notices, self.backend, self.stopping = storage, notices, backend, stopping
        self.model_name, self.model_version = model
        self.engine_memory = engine_memory
        self.notice = notice       # the screen's persistent notice ([preview] notice)
        self.started = time.time()

    def state(self) -> str:
        if self.stopping.is_set():
            return "stopping"
        return "running" if self.inference.first_frame.is_set() else "starting"

    def status(self) -> dict:
        inf = self.inference
        return {"state": self.state(), "pid": os.getpid(), "uptime_s": round(time.time() - self.started, 1),
                "fps": round(inf.fps, 2), "frames": inf.frames,
                "camera": {**self.camera.status(), "settings": inf.camera_settings},
                "latency_ms": round(inf.latency_s * 1000, 1), "model": f"{self.model_name} {self.model_version}",
                "backend": self.backend,
                "captures": self.writer.captures_done,
                "pending_captures": self.captures.qsize() + self.writer.qsize(),
                "last_capture": self.writer.last_capture, "free_mb": round(self.storage.free_mb(), 1),
                "preview": {"sink": self.preview.sink.kind, "why": self.preview.sink.why,
                            "shown": self.preview.shown} if self.preview else None,
                "focus": {"score": round(inf.focus.score, 2), "level": round(inf.focus.level, 3),
                          "adjust": inf.focus.adjust_focus},
                "operator": self.preview.operator.describe() if self.preview else None,
                "memory": {**process_memory(), "engine": self.engine_memory()},
                "upload": self.uploader.status() if self.uploader else None,
                "retention": self.retention.status() if self.retention else None,
                "export": self.auto_export.status() if self.auto_export else None,
                "warnings": self.notices.messages()}

    def lines(self) -> list[str]:
        """The preview's status bar."""
        last = self.writer.last_capture["path"].rsplit("/", 1)[-1] if self.writer.last_capture else "none"
        up = self.uploader.backlog() if self.uploader else None
        return [f"{self.inference.fps:4.1f} fps | {self.backend} | {self.model_name} | "
                f"captures {self.writer.captures_done} | last {last}" + (f" | upload backlog {up}" if up else "")]

    def view(self) -> View:
        """What the kiosk screen shows besides the picture (edge/overlay.py)."""
        inf, pv = self.inference, self.preview
        warnings = ([f"camera lost: {self.camera.error}"] if self.camera.error else []) + self.notices.messages()
        op = pv.operator if pv else None
        last = self.writer.last_capture
        pending = self.captures.qsize() + self.writer.qsize() + (1 if inf.current is not None else 0)
        reviewing = op.reviewed if op else None
        return View(status=self.lines()[0], notice=self.notice, warnings=warnings,
                    sample_id=op.sample_id if op else None, typed=op.typed if op else "",
                    operator_id=op.operator_id if op else None, message=op.message if op else None,
                    focus_level=inf.focus.level, adjust_focus=inf.focus.adjust_focus, saving=pending > 0,
                    saved_seq=last["seq"] if last else None, thumbnail=pv.thumbnail() if pv else None,
                    reviewing=reviewing, review_flag=pv.flagged.get(reviewing) if pv and reviewing else None)

    def warning(self) -> str | None:
        """The one warning the preview shows: a lost camera first, else the first notice."""
        if self.camera.error:
            return f"camera lost: {self.camera.error}"[:WARNING_WIDTH]
        messages = self.notices.messages()
        return messages[0][:WARNING_WIDTH] if messages else None

    def systemd(self) -> str:
        warning = self.warning()
        return f"{self.inference.fps:.1f} fps, {self.writer.captures_done} captures" + \
            (f", WARNING {warning}" if warning else "")
