"""file: the preview as a JPEG, rewritten atomically, for a browser or another process."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

from edge.sinks.base import Sink


class FileSink(Sink):
    """Rename keeps readers from seeing half a file."""

    kind = "file"

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        for stale in self.path.parent.glob(f".{self.path.stem}.*.tmp"):  # left by a crash or power cut
            stale.unlink(missing_ok=True)

    def show(self, rgb: np.ndarray) -> list[str]:
        ok, buf = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 85])
        if ok:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=".tmp", dir=self.path.parent)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(buf.tobytes())
                os.replace(tmp, self.path)
            except BaseException:  # a full disk: leave no half-written temporary behind
                try:
                    os.unlink(tmp)
                except FileNotFoundError:
                    pass
                raise
        return []
