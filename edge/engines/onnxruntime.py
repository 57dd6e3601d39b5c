"""ONNX Runtime backend: CPU everywhere, the CUDA provider where present.

The network runs wrapped for pixel I/O (edge/engines/pixels.py): one session
per pixel type, the FP16 one made only when a frame with more than 8 bits
comes. Tiles are copied from the frame straight into one reused input
buffer. On the CPU a batch's tiles run one at a time: batching buys a CPU
nothing, and one tile's activations instead of a batch's bound the memory
(README, "Memory"). `arena` is ONNX Runtime's CPU memory arena: on, it keeps
the activations allocated between runs; off, they are freed after each run
([model] arena, measured both ways in the README).
"""
from __future__ import annotations

import logging
import os
import time
from typing import Iterable, Iterator, Sequence

import numpy as np

from edge.engines import pixels
from edge.engines.base import Engine, EngineError, InputSpec, nonfinite

log = logging.getLogger("phonescope")


class OnnxRuntimeEngine(Engine):
    name = "onnxruntime"

    def __init__(self, model_path: str, alignment: int = 1, threads: int | None = None,
                 providers: list[str] | None = None, arena: bool = True):
        import onnx
        import onnxruntime as ort

        self.ort, self.path = ort, model_path
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or os.cpu_count() or 1
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        opts.enable_cpu_mem_arena = arena
        # a memory pattern is planned and kept per input shape (preview tiles, capture tiles, a frame's
        # last tiles): off, the arena reuses one set of blocks for all (8 MP capture: 578 -> 362 MB peak)
        opts.enable_mem_pattern = False
        self.opts, self.arena = opts, arena
        available = ort.get_available_providers()
        if providers is None:
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        self.providers = providers
        try:
            self.model = onnx.load(str(model_path))
        except Exception as e:  # protobuf's DecodeError, OSError
            raise EngineError(f"cannot load ONNX model {model_path}: {_first_line(e)}") from None
        g = self.model.graph
        inits = {i.name for i in g.initializer}
        inputs = [i for i in g.input if i.name not in inits]
        if len(inputs) != 1 or len(g.output) != 1 or len(inputs[0].type.tensor_type.shape.dim) != 4:
            raise EngineError(f"{model_path}: expected one 4-D input and one output")
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                for d in inputs[0].type.tensor_type.shape.dim]
        if dims[1] != 3:
            raise EngineError(f"{model_path}: expected 3 input channels, model has {dims[1]}")
        self.sessions: dict[str, object] = {}
        self.buffer: np.ndarray | None = None
        self._session("uint8")   # loads and checks the model now, not at the first frame
        self.provider = self.sessions["uint8"].get_providers()[0]
        # a model exported with fixed dimensions is held to them, as a TensorRT engine's profile is
        n, _, h, w = dims
        self.one_tile_a_run = self.provider == "CPUExecutionProvider" and n is None
        self.spec = InputSpec(channels=3, alignment=alignment, fixed_shape=(h, w) if h and w else None,
                              max_batch=n)   # a fixed batch: exactly n tiles a run
        # release_memory() shrinks a CPU arena that runs shapes of any size; off for good once a release fails
        self.releasing = arena and self.provider == "CPUExecutionProvider" and not (h and w) and n is None

    def _session(self, pixel: str):
        s = self.sessions.get(pixel)
        if s is None:
            try:
                wrapped = pixels.wrap(self.model, pixel).SerializeToString()
                s = self.ort.InferenceSession(wrapped, sess_options=self.opts, providers=self.providers)
            except Exception as e:  # onnx's ValidationError, onnxruntime's own exception types
                raise EngineError(f"cannot load ONNX model {self.path}: {_first_line(e)}") from None
            self.sessions[pixel] = s
        return s

    def _buffer(self, n: int, tile: tuple[int, int], dtype) -> np.ndarray:
        """The reused input buffer for batches of up to n tiles of this shape and type (one kept)."""
        buf = self.buffer
        if buf is None or buf.shape[0] < n or buf.shape[1:3] != tuple(tile) or buf.dtype != dtype:
            buf = self.buffer = np.zeros((n, *tile, 3), dtype)
        return buf

    def _run(self, batch: np.ndarray, n: int) -> np.ndarray:
        session = self._session(batch.dtype.name)
        t0 = time.perf_counter()
        try:
            if self.one_tile_a_run and n > 1:
                runs = [session.run(None, {pixels.INPUT: batch[i:i + 1]}) for i in range(n)]
                out, bad = (np.concatenate(parts) for parts in zip(*runs))
            else:
                out, bad = session.run(None, {pixels.INPUT: batch})
        except Exception as e:
            raise EngineError(f"onnxruntime: inference failed: {_first_line(e)}") from None
        finally:
            self.run_s += time.perf_counter() - t0
        if bad[:n].any():
            raise nonfinite(self.name)
        return out[:n]

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self.check(batch)
        n, fixed = batch.shape[0], self.spec.max_batch
        if fixed and n < fixed:  # a last, short batch of a frame's tiles
            buf = self._buffer(fixed, batch.shape[1:3], batch.dtype)[:fixed]
            buf[:n] = batch
            batch = buf
        return self._run(np.ascontiguousarray(batch), n)

    def infer_batches(self, batches: Iterable[Sequence[np.ndarray]]) -> Iterator[np.ndarray]:
        """Each batch's tiles copied from the frame into one reused input buffer (no other copy)."""
        for views in batches:
            n, first = len(views), views[0]
            buf = self._buffer(self.spec.max_batch or n, first.shape[:2], first.dtype)
            np.stack(views, out=buf[:n])
            batch = buf[:self.spec.max_batch or n]
            self.check(batch)
            yield self._run(batch, n)

    def release_memory(self) -> None:
        """Shrink the CPU arena to what a run holds: a run on a tiny input, with ONNX Runtime's arena
        shrinkage, returns every free region. Without it the arena keeps the preview's blocks through a
        capture, whose larger tiles need blocks of their own, and the capture's blocks after it."""
        if not self.releasing:
            return
        ro = self.ort.RunOptions()
        ro.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        a = max(1, self.spec.alignment)
        a *= -(-8 // a)          # 8 px or the next multiple of the alignment: valid for any space-to-depth
        for pixel, session in self.sessions.items():
            x = np.zeros((1, a, a, 3), np.float16 if pixel == "float16" else np.uint8)
            try:
                session.run(None, {pixels.INPUT: x}, ro)
            except Exception as e:   # a model that refuses so small an input: keep its arena, say so once
                self.releasing = False
                log.warning("onnxruntime: the arena is kept between captures: a %dx%d run to release it "
                            "failed (%s)", a, a, _first_line(e))
                return

    def close(self) -> None:
        self.sessions.clear()
        self.buffer = None


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:300]
