"""TensorRT backend (TensorRT 10 API): a plan built on this device by `make engine`.

The plan is the network wrapped for pixel I/O (edge/engines/pixels.py): a
UINT8 N x H x W x 3 input, a UINT8 output of the same shape and a float
per-tile non-finite flag, so tiles go up and come down as bytes, a quarter
of float32's. pycuda owns memory and the stream: pinned host buffers and
device buffers allocated once for the engine's largest batch, one stream,
tensors found by `get_tensor_mode` (and told apart by rank) and bound with
`set_tensor_address`, inference enqueued with `execute_async_v3`. Tiles are
copied from the frame straight into a pinned buffer; two buffer slots let
the host fill (and empty) one batch while the GPU works on the other.
TensorRT and pycuda are imported when an engine is opened, so machines
without them run everything else.
"""
from __future__ import annotations

import os
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from edge.engines.base import Engine, EngineError, InputSpec, nonfinite
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
    host_flag: np.ndarray  # pinned: per-tile non-finite flag
    dev_in: object         # pycuda DeviceAllocation
    dev_out: object
    dev_flag: object
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
        pixels_out = [n for n in outputs if len(e.get_tensor_shape(n)) == 4]
        flags = [n for n in outputs if len(e.get_tensor_shape(n)) == 1]
        if len(inputs) != 1 or len(outputs) != 2 or len(pixels_out) != 1 or len(flags) != 1:
            raise EngineError(f"tensorrt: {self.path.name}: expected one pixel input and two outputs (pixels and "
                              f"the non-finite flag), found {inputs} -> {outputs}; {REBUILD_HINT}")
        self.input_name, self.output_name, self.flag_name = inputs[0], pixels_out[0], flags[0]
        for n, want in ((self.input_name, np.uint8), (self.output_name, np.uint8), (self.flag_name, np.float32)):
            if trt.nptype(e.get_tensor_dtype(n)) != want:
                raise EngineError(f"tensorrt: {self.path.name}: tensor {n} is {e.get_tensor_dtype(n)}, expected "
                                  f"{np.dtype(want).name} (an engine from an older phonescope); {REBUILD_HINT}")
        _, _, max_shape = e.get_tensor_profile_shape(self.input_name, 0)
        n_max, h, w, c = (int(v) for v in max_shape)
        if c != 3:
            raise EngineError(f"tensorrt: {self.path.name}: expected 3 input channels, engine has {c}")
        self.spec = InputSpec(channels=3, alignment=alignment, fixed_shape=(h, w), max_batch=n_max,
                              pixel_types=("uint8",))
        self.context = e.create_execution_context()
        self.stream = cuda.Stream()
        self.context.set_input_shape(self.input_name, (n_max, h, w, 3))
        out_shape = tuple(int(v) for v in self.context.get_tensor_shape(self.output_name))
        if min(out_shape) < 1:
            raise EngineError(f"tensorrt: {self.path.name}: unresolved output shape {out_shape}")
        self.out_shape = out_shape[1:]
        for _ in range(2):  # double buffering
            hi = cuda.pagelocked_empty((n_max, h, w, 3), np.uint8)
            ho = cuda.pagelocked_empty(out_shape, np.uint8)
            hf = cuda.pagelocked_empty((n_max,), np.float32)
            self.slots.append(_Slot(hi, ho, hf, cuda.mem_alloc(hi.nbytes), cuda.mem_alloc(ho.nbytes),
                                    cuda.mem_alloc(hf.nbytes), cuda.Event()))
        self.device_name = (probe_gpu(self.device_index) or (cuda.Device(self.device_index).name(), ""))[0]
        self.provider = f"TensorRT {trt.__version__}, {self.device_name}"
        # activations (the execution context's scratch, sized by the profile's largest batch of tiles)
        self.activation_bytes = int(getattr(e, "device_memory_size_v2", None) or getattr(e, "device_memory_size", 0))

    def memory(self) -> dict:
        """Device memory by the tile and batch the plan was built for: activations and the I/O slots
        (on a Jetson it is the same RAM the CPU uses), and the pinned host buffers."""
        io = sum(s.host_in.nbytes + s.host_out.nbytes + s.host_flag.nbytes for s in self.slots)
        return {"device_mb": round((self.activation_bytes + io) / 2 ** 20, 1),
                "activations_mb": round(self.activation_bytes / 2 ** 20, 1), "pinned_host_mb": round(io / 2 ** 20, 1),
                "tile": list(self.spec.fixed_shape), "batch": self.spec.max_batch}

    # -- inference -----------------------------------------------------------------------
    def _bind(self, slot: _Slot, n: int) -> None:
        if not self.context.set_input_shape(self.input_name, (n, *self.spec.fixed_shape, 3)):
            raise EngineError(f"tensorrt: the engine does not accept a batch of {n}")
        for name, buf in ((self.input_name, slot.dev_in), (self.output_name, slot.dev_out),
                          (self.flag_name, slot.dev_flag)):
            self.context.set_tensor_address(name, int(buf))

    def _enqueue(self, slot: _Slot, views) -> int:
        n = len(views)
        np.stack(views, out=slot.host_in[:n])       # tiles from the frame into pinned memory, no other copy
        self.cuda.memcpy_htod_async(slot.dev_in, slot.host_in[:n], self.stream)
        self._bind(slot, n)
        if not self.context.execute_async_v3(self.stream.handle):
            raise EngineError("tensorrt: execute_async_v3 failed (see the TensorRT log above)")
        self.cuda.memcpy_dtoh_async(slot.host_out[:n], slot.dev_out, self.stream)
        self.cuda.memcpy_dtoh_async(slot.host_flag[:n], slot.dev_flag, self.stream)
        slot.done.record(self.stream)
        return n

    def _collect(self, slot: _Slot, n: int) -> np.ndarray:
        """The slot's result: a view of its pinned output, valid until the slot is filled again."""
        slot.done.synchronize()
        if slot.host_flag[:n].any():
            raise nonfinite(self.name)
        return slot.host_out[:n]

    def infer_batches(self, batches: Iterable[Sequence[np.ndarray]]) -> Iterator[np.ndarray]:
        """Results in order; batch k+1 is copied in while the GPU runs batch k. A slot is refilled only
        after the result read from it was handed out and the next one asked for."""
        pending: deque[tuple[_Slot, int]] = deque()
        k = 0
        for views in batches:
            self.check_shape((len(views), *views[0].shape), views[0].dtype)
            if len(pending) == len(self.slots):
                slot, n = pending.popleft()
                with self._current():
                    out = self._collect(slot, n)
                yield out
            slot = self.slots[k % len(self.slots)]
            k += 1
            with self._current():
                pending.append((slot, self._enqueue(slot, views)))
        while pending:
            slot, n = pending.popleft()
            with self._current():
                out = self._collect(slot, n)
            yield out

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self.check(batch)
        (out,) = list(self.infer_batches([list(batch)]))
        return out.copy()

    def time_device(self, n: int, h: int, w: int, repeat: int = 20) -> float:
        """Seconds per batch of n tiles with the data already on the GPU (no host copies)."""
        if (h, w) != self.spec.fixed_shape or not 1 <= n <= self.spec.max_batch:
            raise EngineError(f"tensorrt: built for up to {self.spec.max_batch} tiles of {self.spec.fixed_shape}")
        slot = self.slots[0]
        with self._current():
            self._bind(slot, n)
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
                    for buf in (s.dev_in, s.dev_out, s.dev_flag):
                        buf.free()
                self.slots = []
                self.context = self.engine = None
                self.stream = None
        finally:
            self.ctx.detach()
            self.ctx = None
