"""replay:PATH: a folder of images, looped in name order, or a video file, looped."""
from __future__ import annotations

import time
from pathlib import Path

import cv2

from edge.imageio import IMAGE_EXTS, ImageError, decode
from edge.sources.base import CorruptFrame, Frame, Pacer, Source, SourceError, as_rgb8


def open_replay(path: str, fps: float) -> Source:
    p = Path(path)
    if p.is_dir():
        return FolderSource(p, fps)
    if p.is_file():
        return VideoSource(p, fps)
    raise SourceError(f"replay:{path}: no such file or folder")


class FolderSource(Source):
    def __init__(self, folder: Path, fps: float):
        self.uri = f"replay:{folder}"
        self.files = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_EXTS)
        if not self.files:
            raise SourceError(f"{self.uri}: no images in the folder")
        self.i = self.seq = 0
        self.pacer = Pacer(fps)

    def read(self) -> Frame:
        self.pacer.wait()
        f = self.files[self.i % len(self.files)]
        self.i += 1
        try:
            data = f.read_bytes()
        except OSError as e:
            raise SourceError(f"{self.uri}: cannot read {f.name} ({e.strerror})") from None
        try:
            img = decode(data, str(f))
        except ImageError as e:
            raise CorruptFrame(f"{self.uri}: {e}") from None
        self.seq += 1
        return Frame(as_rgb8(img), self.seq, time.monotonic(), {"file": f.name})


class VideoSource(Source):
    def __init__(self, path: Path, fps: float):
        self.uri = f"replay:{path}"
        self.path = path
        self.cap = cv2.VideoCapture(str(path))
        if not self.cap.isOpened():
            raise SourceError(f"{self.uri}: OpenCV cannot open this video")
        native = self.cap.get(cv2.CAP_PROP_FPS) or 0
        self.pacer = Pacer(fps or native or 15)
        self.seq = 0

    def read(self) -> Frame:
        self.pacer.wait()
        ok, img = self.cap.read()
        if not ok:  # end of the video: loop
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, img = self.cap.read()
            if not ok:
                raise SourceError(f"{self.uri}: no frame could be decoded")
        self.seq += 1
        pos = int(self.cap.get(cv2.CAP_PROP_POS_FRAMES))
        return Frame(as_rgb8(img), self.seq, time.monotonic(), {"file": self.path.name, "video_frame": pos})

    def close(self) -> None:
        self.cap.release()
