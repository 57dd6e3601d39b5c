"""Image in, enhanced image out: resample, pad, tile, infer, stitch.

This is the one place that turns the network into an image operation, shared
by `enhance`, `evaluate`, the benchmark and the daemon, so every path gives
the same pixels.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge import tiling
from edge.engines import Engine, EngineError, open_engine
from edge.modelcard import DEFAULT_MODEL, ModelCard, ModelError, load_card


@dataclass
class Timing:
    infer_s: float = 0.0
    tiles: int = 0
    computed_px: int = 0
    output_px: int = 0


class Enhancer:
    def __init__(self, engine: Engine, card: ModelCard, tile: int | None = None, batch: int = 4):
        self.engine, self.card = engine, card
        self.tile = card.recommended_tile if tile is None else tile
        self.batch = max(1, batch if not engine.spec.max_batch else min(batch, engine.spec.max_batch))
        self.halo = card.receptive_field
        self.align = max(card.alignment, engine.spec.alignment)
        self.fixed = engine.spec.fixed_shape is not None
        if self.fixed:
            self.tile = tuple(engine.spec.fixed_shape)
        self.last = Timing()

    @classmethod
    def open(cls, model: str | Path | None = None, backend: str = "auto", tile: int | None = None,
             batch: int = 4, threads: int | None = None) -> tuple["Enhancer", str]:
        path = Path(model) if model else DEFAULT_MODEL
        card = load_card(path)
        engine, why = open_engine(path, backend, alignment=card.alignment, threads=threads, tile=tile,
                                  batch=batch, onnx_sha256=card.onnx_sha256)
        return cls(engine, card, tile, batch), why

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        s = self.card.scale
        return max(1, int(round(h * s))), max(1, int(round(w * s)))

    def resample(self, rgb: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
        """Camera grid -> model grid (the model's scale, or an explicit (h, w))."""
        h, w = size or self.output_size(*rgb.shape[:2])
        if (h, w) == rgb.shape[:2]:
            return rgb
        return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_CUBIC)

    def run_network(self, rgb: np.ndarray) -> np.ndarray:
        """The network on an image already on the model grid (float32 HxWx3) -> float32 HxWx3, unclipped."""
        h, w = rgb.shape[:2]
        padded = tiling.pad_to_alignment(np.ascontiguousarray(rgb, np.float32), self.align)
        if self.fixed:  # an engine built for one tile shape: an image smaller than a tile fills one
            padded = tiling.pad_up_to(padded, *self.tile)
        p = tiling.plan(padded.shape[0], padded.shape[1], self.tile, self.halo, self.align, self.fixed)
        t0 = time.perf_counter()
        tiles = list(p.tiles)
        run_plan = getattr(self.engine, "run_plan", None)
        if run_plan is not None:  # the backend tiles on its device (one upload, one download)
            out = run_plan(padded, p, self.batch)
            if out.shape != padded.shape:
                raise EngineError(f"{self.engine.name}: output shape {out.shape} != input {padded.shape}")
        else:
            out = self._run_tiles(padded, p)
        self.last = Timing(time.perf_counter() - t0, len(tiles), len(tiles) * p.tile_h * p.tile_w, h * w)
        return out[:h, :w]

    def _run_tiles(self, padded: np.ndarray, p: tiling.Plan) -> np.ndarray:
        """Host-side tiling: batches of tiles through engine.infer_batches, placed back -> H x W x 3."""
        chw = np.ascontiguousarray(padded.transpose(2, 0, 1))
        out = np.empty_like(chw)
        tiles = list(p.tiles)
        groups = [tiles[i:i + self.batch] for i in range(0, len(tiles), self.batch)]
        batches = (np.stack([tiling.extract(chw, t) for t in group]) for group in groups)
        want = chw.shape[:1] + (p.tile_h, p.tile_w)
        for group, result in zip(groups, self.engine.infer_batches(batches)):
            if result.shape != (len(group),) + want:
                raise EngineError(f"{self.engine.name}: output shape {result.shape} != input "
                                  f"{(len(group),) + want}")
            for t, r in zip(group, result):
                tiling.place(out, r, t)
        return out.transpose(1, 2, 0)

    def enhance(self, rgb: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
        """Float RGB [0,1] on the camera grid -> enhanced float RGB [0,1] on the output grid."""
        return self.enhance_on_grid(self.resample(rgb.astype(np.float32, copy=False), size))

    def enhance_on_grid(self, rgb: np.ndarray) -> np.ndarray:
        """Float RGB [0,1] already on the model grid (the daemon's Preprocess resampled it) ->
        enhanced float RGB [0,1]; EngineError if the network yields NaN or infinite values."""
        out = self.run_network(rgb)
        if not np.isfinite(out).all():
            raise EngineError(f"{self.engine.name}: the model produced NaN or infinite values")
        return np.clip(out, 0.0, 1.0)

    def close(self) -> None:
        self.engine.close()


__all__ = ["Enhancer", "ModelError", "EngineError"]
