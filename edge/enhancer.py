"""Image in, enhanced image out: resample, pad, tile, infer, stitch.

This is the one place that turns the network into an image operation, shared
by `enhance`, `evaluate`, the benchmark and the daemon, so every path gives
the same pixels. It works on pixels (uint8, or FP16 for frames with more
than 8 bits: edge/engines/pixels.py): tiles are views of the frame that the
engine copies into its input buffer, and each tile's kept part is written
straight into the output image, so no float copy of a frame is made.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge import tiling
from edge.engines import Engine, EngineError, open_engine
from edge.engines.pixels import quantize, to_float
from edge.glass import WhiteBalance
from edge.modelcard import ModelCard, ModelError, load_card, model_path


@dataclass
class Timing:
    infer_s: float = 0.0      # the whole tiled pass: tile copies, engine, placing
    tiles: int = 0
    computed_px: int = 0
    output_px: int = 0
    network_s: float | None = None   # of which the network itself ran (where the engine measures it)


class Enhancer:
    def __init__(self, engine: Engine, card: ModelCard, tile: int | None = None, batch: int = 4,
                 sample: str = ""):
        """sample: the slide type whose glass range frames are brought into (edge.glass; "": none)."""
        self.engine, self.card = engine, card
        self.balance = WhiteBalance.from_card(card.raw, sample)
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
             batch: int = 4, threads: int | None = None, arena: bool = True,
             sample: str = "", colour_calibrated: bool = False) -> tuple["Enhancer", str]:
        """colour_calibrated: the frames are corrected by a colour profile (chooses the shipped model)."""
        path = model_path(model, sample, colour_calibrated)
        card = load_card(path)
        engine, why = open_engine(path, backend, alignment=card.alignment, threads=threads, tile=tile,
                                  batch=batch, onnx_sha256=card.onnx_sha256, arena=arena)
        return cls(engine, card, tile, batch, sample), why

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        s = self.card.scale
        return max(1, int(round(h * s))), max(1, int(round(w * s)))

    def pixel_type(self, bits: int) -> str:
        """The engine's pixels for an image of this bit depth: FP16 above 8 bits where it takes them."""
        return "float16" if bits > 8 and "float16" in self.engine.spec.pixel_types else "uint8"

    def balanced(self, rgb: np.ndarray) -> np.ndarray:
        """The frame with its glass brought to the model's (edge.glass), in its own type: the first
        step on the camera grid, shared by the tools and the daemon's Preprocess."""
        return self.balance(rgb) if self.balance is not None else rgb

    def resample(self, rgb: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
        """Camera grid -> model grid (the model's scale, or an explicit (h, w)); uint8, uint16 or float32."""
        h, w = size or self.output_size(*rgb.shape[:2])
        if (h, w) == rgb.shape[:2]:
            return rgb
        return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_CUBIC)

    def run_network(self, px: np.ndarray) -> np.ndarray:
        """The network on pixels already on the model grid (H x W x 3 uint8 or float16) -> enhanced
        pixels of the same type and size; EngineError if it produced NaN or infinite values."""
        h, w = px.shape[:2]
        padded = tiling.pad_to_alignment(px, self.align)   # the frame itself when already aligned
        if self.fixed:  # an engine built for one tile shape: an image smaller than a tile fills one
            padded = tiling.pad_up_to(padded, *self.tile)
        p = tiling.plan(padded.shape[0], padded.shape[1], self.tile, self.halo, self.align, self.fixed)
        t0, run0 = time.perf_counter(), self.engine.run_s
        run_plan = getattr(self.engine, "run_plan", None)
        if run_plan is not None:  # the backend tiles on its device (one upload, one download)
            out = run_plan(padded, p, self.batch)
            if out.shape != padded.shape or out.dtype != padded.dtype:
                raise EngineError(f"{self.engine.name}: output {out.shape} {out.dtype} != input "
                                  f"{padded.shape} {padded.dtype}")
            out = out[:h, :w]
        else:
            out = self._run_tiles(padded, p, (h, w))
        n = len(p.tiles)
        ran = self.engine.run_s - run0
        self.last = Timing(time.perf_counter() - t0, n, n * p.tile_h * p.tile_w, h * w, ran if ran > 0 else None)
        return out

    def _run_tiles(self, padded: np.ndarray, p: tiling.Plan, size: tuple[int, int]) -> np.ndarray:
        """Host-side tiling: batches of tile views through engine.infer_batches, kept parts placed
        into the output (size: the image without its padding)."""
        out = np.empty((*size, padded.shape[2]), padded.dtype)
        tiles = list(p.tiles)
        groups = [tiles[i:i + self.batch] for i in range(0, len(tiles), self.batch)]
        views = ([tiling.extract(padded, t) for t in group] for group in groups)
        want = (p.tile_h, p.tile_w, padded.shape[2])
        for group, result in zip(groups, self.engine.infer_batches(views)):
            if result.shape != (len(group),) + want or result.dtype != padded.dtype:
                raise EngineError(f"{self.engine.name}: output {result.shape} {result.dtype} != input "
                                  f"{(len(group),) + want} {padded.dtype}")
            for t, r in zip(group, result):
                tiling.place(out, r, t)
        return out

    def enhance(self, rgb: np.ndarray, size: tuple[int, int] | None = None, bits: int = 8) -> np.ndarray:
        """Float RGB [0,1] on the camera grid -> enhanced float RGB [0,1] on the output grid: the tools'
        entry (enhance, evaluate); the daemon hands run_network its frames' pixels directly. Like the
        daemon's Preprocess it resamples the pixels (8-bit images), so both give the same output."""
        if self.pixel_type(bits) == "uint8":
            px = self.resample(self.balanced(quantize(rgb, "uint8")), size)
        else:   # OpenCV does not resample FP16
            px = quantize(self.resample(self.balanced(rgb.astype(np.float32, copy=False)), size), "float16")
        return to_float(self.run_network(px))

    def close(self) -> None:
        self.engine.close()


__all__ = ["Enhancer", "ModelError", "EngineError"]
