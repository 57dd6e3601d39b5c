"""The engine interface every backend implements.

An engine takes a batch of NCHW float32 RGB tiles in [0, 1] and returns the
network's output for them; tiling, resampling and colour handling live
outside, so every backend is held to one contract.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np


class EngineError(Exception):
    """An engine that cannot load or cannot run; one line saying why."""


@dataclass(frozen=True)
class InputSpec:
    channels: int = 3
    alignment: int = 1                       # H and W must be multiples of this
    fixed_shape: tuple[int, int] | None = None  # (H, W) for engines built for one tile shape
    max_batch: int | None = None             # None: any batch size


class Engine(ABC):
    name: str = "engine"
    spec: InputSpec

    def check(self, batch: np.ndarray) -> None:
        s = self.spec
        if batch.ndim != 4 or batch.shape[1] != s.channels:
            raise EngineError(f"{self.name}: expected N x {s.channels} x H x W, got {batch.shape}")
        if batch.dtype != np.float32:
            raise EngineError(f"{self.name}: expected float32 input, got {batch.dtype}")
        n, _, h, w = batch.shape
        if n < 1 or h < 1 or w < 1:
            raise EngineError(f"{self.name}: empty batch {batch.shape}")
        if h % s.alignment or w % s.alignment:
            raise EngineError(f"{self.name}: H and W must be multiples of {s.alignment}, got {h}x{w}")
        if s.fixed_shape and (h, w) != s.fixed_shape:
            raise EngineError(f"{self.name}: built for {s.fixed_shape[0]}x{s.fixed_shape[1]} tiles, got {h}x{w}")
        if s.max_batch and n > s.max_batch:
            raise EngineError(f"{self.name}: batch {n} exceeds the maximum {s.max_batch}")

    @abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """N x 3 x H x W float32 -> N x 3 x (H*s) x (W*s) float32."""

    def infer_batches(self, batches: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """infer() over a sequence of batches, results in order; backends that can overlap
        host work with device work (TensorRT's double-buffered tiles) override it."""
        for batch in batches:
            yield self.infer(batch)

    def time_device(self, n: int, h: int, w: int, repeat: int = 20) -> float | None:
        """Seconds per batch of n HxW tiles already on the device (no host copies), where the
        backend can measure that; None where the device is the host (the caller times infer())."""
        return None

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
