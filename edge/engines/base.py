"""The engine interface every backend implements.

An engine takes a batch of N x H x W x 3 RGB tiles as pixels, uint8 (or
FP16 in [0, 1] for frames with more than 8 bits), and returns the network's
enhanced tiles as the same pixels: the scaling, clipping and rounding are
part of the engine (edge/engines/pixels.py wraps the network for that), so
no float copy of a frame is made on the host. Tiling, resampling and colour
handling live outside, so every backend is held to one contract.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np

from edge.engines.pixels import PIXEL_TYPES


class EngineError(Exception):
    """An engine that cannot load or cannot run; one line saying why."""


@dataclass(frozen=True)
class InputSpec:
    channels: int = 3
    alignment: int = 1                       # H and W must be multiples of this
    fixed_shape: tuple[int, int] | None = None  # (H, W) for engines built for one tile shape
    max_batch: int | None = None             # None: any batch size
    pixel_types: tuple[str, ...] = PIXEL_TYPES   # what the engine takes: uint8, float16


def nonfinite(name: str) -> EngineError:
    return EngineError(f"{name}: the model produced NaN or infinite values")


class Engine(ABC):
    name: str = "engine"
    spec: InputSpec
    run_s: float = 0.0   # seconds spent running the network, summed (where the host waits for it)

    def check(self, batch: np.ndarray) -> None:
        self.check_shape(batch.shape, batch.dtype)

    def check_shape(self, shape: tuple, dtype) -> None:
        """EngineError unless a batch of this shape and pixel type fits the engine."""
        s = self.spec
        if len(shape) != 4 or shape[3] != s.channels:
            raise EngineError(f"{self.name}: expected N x H x W x {s.channels}, got {tuple(shape)}")
        if np.dtype(dtype).name not in s.pixel_types:
            raise EngineError(f"{self.name}: expected {' or '.join(s.pixel_types)} pixels, got {np.dtype(dtype)}")
        n, h, w, _ = shape
        if n < 1 or h < 1 or w < 1:
            raise EngineError(f"{self.name}: empty batch {tuple(shape)}")
        if h % s.alignment or w % s.alignment:
            raise EngineError(f"{self.name}: H and W must be multiples of {s.alignment}, got {h}x{w}")
        if s.fixed_shape and (h, w) != s.fixed_shape:
            raise EngineError(f"{self.name}: built for {s.fixed_shape[0]}x{s.fixed_shape[1]} tiles, got {h}x{w}")
        if s.max_batch and n > s.max_batch:
            raise EngineError(f"{self.name}: batch {n} exceeds the maximum {s.max_batch}")

    @abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """N x H x W x 3 pixels -> N x H x W x 3 enhanced pixels of the same type; EngineError if the
        network produced NaN or infinite values."""

    def infer_batches(self, batches: Iterable[Sequence[np.ndarray]]) -> Iterator[np.ndarray]:
        """infer() over a sequence of batches, each a list of H x W x 3 tile views (cut from the frame,
        not copied): each backend copies them into its own input buffer. Results in order; a result
        may be a view of the backend's output buffer, valid until the next one is asked for.
        Backends that overlap host and device work (TensorRT's double-buffered tiles) override it."""
        for views in batches:
            yield self.infer(np.stack(views))

    def time_device(self, n: int, h: int, w: int, repeat: int = 20) -> float | None:
        """Seconds per batch of n HxW tiles already on the device (no host copies), where the
        backend can measure that; None where the device is the host (the caller times infer())."""
        return None

    def memory(self) -> dict | None:
        """What the engine holds outside the process's RSS (a GPU's memory), in MB; None where it is
        all host memory (RSS says it)."""
        return None

    def release_memory(self) -> None:
        """Give back memory the engine keeps between runs for the shapes it has run (a CPU arena), where
        it keeps any: the daemon calls it around a capture, whose tiles differ from the preview's. Only
        an economy: it never raises (a backend that cannot release says so in the log and stops trying)."""

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
