"""TensorRT backend (TensorRT 10 API): a plan built on this device by `make engine`.

pycuda owns memory and the stream: pinned host buffers and device buffers
allocated once for the engine's largest batch, one stream, tensors found by
`get_tensor_mode` and bound with `set_tensor_address`, inference enqueued
with `execute_async_v3`. Two buffer slots let the host fill (and empty) one
batch of tiles while the GPU works on the other. TensorRT and pycuda are
imported when an engine is opened, so machines without them run everything
else.
"""
from __future__ import annotations

import os
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from edge.engines.base import Engine, EngineError, InputSpec
from edge.engines.gpu import probe_gpu
from edge.engines.meta import REBUILD_HINT, too_old


def quarantine(path: Path) -> str:
    """Set a plan that failed to load aside as *.bad (so it is rebuilt, and kept for a look); says what
    happened (under ProtectSystem=strict the engine folder may be read-only)."""
    bad = Path(str(path) + ".bad")
    try:
        os.replace(path, bad)
    except OSError as e:
        return f"could not be set aside ({e.strerror})"
    return f"set aside as {bad.name}"


@dataclass
class _Slot:
    host_in: np.ndarray    # pinned
    host_out: np.ndarray   # pinned
    dev_in: object         # pycuda DeviceAllocation
    dev_out: object
    done: object           # pycuda Event


class TensorRTEngine(Engine):
    name = "tensorrt"

    def __init__(self, engine_path: str | Path, alignment: int = 1, device: int = 0):
        try:
            import pycuda.driver as cuda
            import tensorrt as trt
        except ImportError as e:
            raise EngineError(f"tensorrt: {e.name} is not installed (the [jetson] extra, or JetPack's "
                              f"python3-libnvinfer and pycuda)") from None
        old = too_old(trt.__version__)
        if old:
            raise EngineError(f"tensorrt: {old}")
        self.trt, self.cuda = trt, cuda
        self.path = Path(engine_path)
        self.device_index = device
        try:
            cuda.init()
            self.ctx = cuda.Device(device).retain_primary_context()
        except Exception as e:  # pycuda.driver.Error: no driver / no device
            raise EngineError(f"tensorrt: no usable CUDA GPU ({str(e).strip()[:200]})") from None
        self.context = self.engine = None
        self.slots: list[_Slot] = []
        try:
            with self._current():
                self._load(alignment)
        except BaseException:
            self._release()  # a failed load must not keep the GPU's memory and the retained context
            raise

    @contextmanager
    def _current(self):
        """Make the engine's CUDA context current in the calling thread (the inference thread owns the GPU)."""
        self.ctx.push()
        try:
            yield
        finally:
            self.cuda.Context.pop()

    def _load(self, alignment: int) -> None:
        trt, cuda = self.trt, self.cuda
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        try:
            plan = self.path.read_bytes()
        except OSError as e:
            raise EngineError(f"tensorrt: cannot read {self.path}: {e.strerror}; {REBUILD_HINT}") from None
        self.engine = self.runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            raise EngineError(f"tensorrt: {self.path.name} could not be deserialized ({quarantine(self.path)}); "
                              f"rebuild it: {REBUILD_HINT}")
        e = self.engine
        names = [e.get_tensor_name(i) for i in range(e.num_io_tensors)]
        inputs = [n for n in names if e.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if e.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise EngineError(f"tensorrt: {self.path.name}: expected one input and one output tensor, "
                              f"found {inputs} -> {outputs}")
        self.input_name, self.output_name = inputs[0], outputs[0]
        for n in names:
            if trt.nptype(e.get_tensor_dtype(n)) != np.float32:
                raise EngineError(f"tensorrt: {self.path.name}: tensor {n} is {e.get_tensor_dtype(n)}, expected "
                                  f"float32 I/O (build with keep_io_types); {REBUILD_HINT}")
        _, _, max_shape = e.get_tensor_profile_shape(self.input_name, 0)
        n_max, c, h, w = (int(v) for v in max_shape)
        if c != 3:
            raise EngineError(f"tensorrt: {self.path.name}: expected 3 input channels, engine has {c}")
        self.spec = InputSpec(channels=3, alignment=alignment, fixed_shape=(h, w), max_batch=n_max)
        self.context = e.create_execution_context()
        self.stream = cuda.Stream()
        self.context.set_input_shape(self.input_name, (n_max, 3, h, w))
        out_shape = tuple(int(v) for v in self.context.get_tensor_shape(self.output_name))
        if min(out_shape) < 1:
            raise EngineError(f"tensorrt: {self.path.name}: unresolved output shape {out_shape}")
        self.out_shape = out_shape[1:]
        for _ in range(2):  # double buffering
            hi = cuda.pagelocked_empty((n_max, 3, h, w), np.float32)
            ho = cuda.pagelocked_empty(out_shape, np.float32)
            self.slots.append(_Slot(hi, ho, cuda.mem_alloc(hi.nbytes), cuda.mem_alloc(ho.nbytes), cuda.Event()))
        self.device_name = (probe_gpu(self.device_index) or (cuda.Device(self.device_index).name(), ""))[0]
        self.provider = f"TensorRT {trt.__version__}, {self.device_name}"

    # -- inference -----------------------------------------------------------------------
    def _enqueue(self, slot: _Slot, batch: np.ndarray) -> int:
        n = batch.shape[0]
        np.copyto(slot.host_in[:n], batch)          # host work, overlapping the GPU's on the other slot
        self.cuda.memcpy_htod_async(slot.dev_in, slot.host_in[:n], self.stream)
        if not self.context.set_input_shape(self.input_name, tuple(batch.shape)):
            raise EngineError(f"tensorrt: the engine does not accept shape {batch.shape}")
        self.context.set_tensor_address(self.input_name, int(slot.dev_in))
        self.context.set_tensor_address(self.output_name, int(slot.dev_out))
        if not self.context.execute_async_v3(self.stream.handle):
            raise EngineError("tensorrt: execute_async_v3 failed (see the TensorRT log above)")
        self.cuda.memcpy_dtoh_async(slot.host_out[:n], slot.dev_out, self.stream)
        slot.done.record(self.stream)
        return n

    def _collect(self, slot: _Slot, n: int) -> np.ndarray:
        slot.done.synchronize()
        return slot.host_out[:n].copy()

    def infer_batches(self, batches: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Results in order; batch k+1 is copied in while the GPU runs batch k."""
        pending: deque[tuple[_Slot, int]] = deque()
        k = 0
        for batch in batches:
            self.check(batch)
            if len(pending) == len(self.slots):
                slot, n = pending.popleft()
                with self._current():
                    out = self._collect(slot, n)
                yield out
            slot = self.slots[k % len(self.slots)]
            k += 1
            with self._current():
                pending.append((slot, self._enqueue(slot, batch)))
        while pending:
            slot, n = pending.popleft()
            with self._current():
                out = self._collect(slot, n)
            yield out

    def infer(self, batch: np.ndarray) -> np.ndarray:
        (out,) = list(self.infer_batches([batch]))
        return out

    def time_device(self, n: int, h: int, w: int, repeat: int = 20) -> float:
        """Seconds per batch of n tiles with the data already on the GPU (no host copies)."""
        if (h, w) != self.spec.fixed_shape or not 1 <= n <= self.spec.max_batch:
            raise EngineError(f"tensorrt: built for up to {self.spec.max_batch} tiles of {self.spec.fixed_shape}")
        slot = self.slots[0]
        with self._current():
            self.context.set_input_shape(self.input_name, (n, 3, h, w))
            self.context.set_tensor_address(self.input_name, int(slot.dev_in))
            self.context.set_tensor_address(self.output_name, int(slot.dev_out))
            for _ in range(3):
                self.context.execute_async_v3(self.stream.handle)
            start, end = self.cuda.Event(), self.cuda.Event()
            start.record(self.stream)
            for _ in range(repeat):
                self.context.execute_async_v3(self.stream.handle)
            end.record(self.stream)
            end.synchronize()
            return start.time_till(end) / 1e3 / repeat

    def close(self) -> None:
        self._release()

    def _release(self) -> None:
        """Free the buffers, drop the engine and let go of the retained primary context (once; also after
        a failed load)."""
        if self.ctx is None:
            return
        try:
            with self._current():
                for s in self.slots:
                    s.dev_in.free()
                    s.dev_out.free()
                self.slots = []
                self.context = self.engine = None
                self.stream = None
        finally:
            self.ctx.detach()
            self.ctx = None
