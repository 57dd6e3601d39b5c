"""What every preview sink provides: show a picture, report the operator's keys, close."""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class Sink(ABC):
    kind: str = "sink"
    why: str = ""          # which sink was asked for and why this one was opened (edge.sinks.auto)
    size: tuple[int, int] | None = None   # the screen's (width, height), where the sink has one

    @abstractmethod
    def show(self, rgb: np.ndarray) -> list[str]:
        """Show one RGB uint8 picture; returns the operator's keys pressed in it since the last call, as
        edge.operator takes them (("space",), ("char", "A"), ...)."""

    def wait_keys(self, seconds: float, stopping) -> list[tuple]:
        """Until the next picture is due (or stopping is set): the keys pressed meanwhile. A sink whose keys
        arrive through it (the window) reads them as they come, so a scanner's fast typing is not lost."""
        stopping.wait(max(0.0, seconds))
        return []

    def close(self) -> None:
        pass


class NoneSink(Sink):
    """No preview at all (a headless capture station)."""

    kind = "none"

    def show(self, rgb: np.ndarray) -> list[str]:
        return []
