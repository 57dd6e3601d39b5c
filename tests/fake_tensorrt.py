"""Stand-ins for the `tensorrt` and `pycuda.driver` modules, for the TensorRT backend's logic on machines
without a GPU (TensorRT cannot be installed here).

They implement just the API edge/engines/tensorrt.py uses, as the TensorRT 10 and pycuda documentation
describe it: a runtime that deserializes a "plan" into an engine whose I/O tensors are found by
get_tensor_mode, a profile's max shape, an execution context whose execute_async_v3 runs the network,
device buffers and async copies on a stream. The "plan" is an ONNX model's path; the network runs in
ONNX Runtime wrapped for pixel I/O as `make engine` wraps it (UINT8 pixels in and out, a float
non-finite flag), so what the backend computes can be checked against ONNX Runtime itself.
install(monkeypatch, ...) puts both modules in sys.modules for one test.
"""
from __future__ import annotations

import sys
import types

import numpy as np


class Calls:
    """What the backend did with the CUDA context, for the tests to check."""

    def __init__(self):
        self.push = self.pop = self.detach = 0


def make_pycuda(calls: Calls, gpu=("Orin (nvgpu)", (8, 7))) -> types.ModuleType:
    cuda = types.ModuleType("pycuda.driver")

    class Error(Exception):
        pass

    class Context:
        @staticmethod
        def pop():
            calls.pop += 1

    class PrimaryContext:
        def push(self):
            calls.push += 1

        def detach(self):
            calls.detach += 1

    class Device:
        def __init__(self, i):
            if i != 0:
                raise Error("invalid device ordinal")

        @staticmethod
        def count():
            return 1

        def retain_primary_context(self):
            return PrimaryContext()

        def name(self):
            return gpu[0]

        def compute_capability(self):
            return gpu[1]

    class DeviceAllocation:
        def __init__(self, nbytes):
            self.buf = np.zeros(nbytes, np.uint8)
            self.freed = False

        def __int__(self):
            return self.buf.ctypes.data

        def free(self):
            self.freed = True

    class Stream:
        handle = 0

    class Event:
        def record(self, stream=None):
            pass

        def synchronize(self):
            pass

        def time_till(self, other):
            return 1.0

    def memcpy_htod_async(dev, host, stream=None):
        dev.buf[:host.nbytes] = host.reshape(-1).view(np.uint8)

    def memcpy_dtoh_async(host, dev, stream=None):
        host.reshape(-1).view(np.uint8)[:] = dev.buf[:host.nbytes]

    cuda.Error, cuda.Context, cuda.Device, cuda.Stream, cuda.Event = Error, Context, Device, Stream, Event
    cuda.init = lambda: None
    cuda.pagelocked_empty = lambda shape, dtype: np.empty(shape, dtype)
    cuda.mem_alloc = DeviceAllocation
    cuda.memcpy_htod_async, cuda.memcpy_dtoh_async = memcpy_htod_async, memcpy_dtoh_async
    return cuda


def make_tensorrt(tile=(128, 128), max_batch=4, fail_with: BaseException | None = None,
                  version="10.3.0") -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version

    class Logger:
        WARNING = 2

        def __init__(self, level):
            self.level = level

    class TensorIOMode:
        INPUT, OUTPUT = "INPUT", "OUTPUT"

    class Context:
        def __init__(self, engine):
            self.engine, self.shape, self.addresses = engine, None, {}

        def set_input_shape(self, name, shape):
            n, h, w, c = shape
            ok = 1 <= n <= max_batch and (h, w) == tile and c == 3
            self.shape = tuple(shape) if ok else self.shape
            return ok

        def get_tensor_shape(self, name):
            return self.shape if name != "nonfinite" else self.shape[:1]

        def set_tensor_address(self, name, address):
            self.addresses[name] = address
            return True

        def execute_async_v3(self, stream):
            n = self.shape[0]
            x = _array(self.addresses["pixels"], self.shape, np.uint8).copy()
            y, flag = self.engine.session.run(None, {"pixels": x})
            _array(self.addresses["enhanced"], y.shape, np.uint8)[:] = y
            _array(self.addresses["nonfinite"], flag.shape, np.float32)[:] = flag
            return n > 0

    class Engine:
        names = ("pixels", "enhanced", "nonfinite")
        num_io_tensors = 3
        # the context's scratch for the profile's largest batch (a stand-in figure: 24 FP16 channels a pixel)
        device_memory_size_v2 = max_batch * tile[0] * tile[1] * 24 * 2

        def __init__(self, onnx_path):
            import onnx
            import onnxruntime as ort

            from edge.engines.pixels import wrap
            wrapped = wrap(onnx.load(onnx_path), "uint8").SerializeToString()
            self.session = ort.InferenceSession(wrapped, providers=["CPUExecutionProvider"])

        def get_tensor_name(self, i):
            return self.names[i]

        def get_tensor_mode(self, name):
            return TensorIOMode.INPUT if name == "pixels" else TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name):
            return np.float32 if name == "nonfinite" else np.uint8

        def get_tensor_shape(self, name):
            return (-1,) if name == "nonfinite" else (-1, *tile, 3)

        def get_tensor_profile_shape(self, name, profile):
            return (1, *tile, 3), (max_batch, *tile, 3), (max_batch, *tile, 3)

        def create_execution_context(self):
            return Context(self)

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, plan: bytes):
            if fail_with is not None:
                raise fail_with
            if not plan.startswith(b"onnx:"):
                return None            # what TensorRT returns for a plan it cannot read
            return Engine(plan[5:].decode())

    trt.Logger, trt.TensorIOMode, trt.Runtime = Logger, TensorIOMode, Runtime
    trt.nptype = lambda dtype: dtype
    return trt


def _array(address: int, shape, dtype) -> np.ndarray:
    """The device buffer at `address` (host memory here) as an array."""
    import ctypes
    ctype = {np.uint8: ctypes.c_uint8, np.float32: ctypes.c_float}[dtype]
    return np.ctypeslib.as_array(ctypes.cast(address, ctypes.POINTER(ctype)), shape)


class FakeDriver:
    """The five libcuda calls edge.engines.gpu makes, answering for one GPU, with ctypes out-parameters
    filled as the real driver fills them."""

    def __init__(self, name: str, cc: str, sm_count: int, memory_bytes: int):
        self.name, self.cc, self.sms, self.memory = name, cc, sm_count, memory_bytes

    def cuInit(self, flags):
        return 0

    def cuDeviceGet(self, dev, index):
        if index != 0:
            return 101                                   # CUDA_ERROR_INVALID_DEVICE
        dev._obj.value = 0
        return 0

    def cuDeviceGetAttribute(self, value, attr, dev):
        major, minor = self.cc.split(".")
        value._obj.value = {16: self.sms, 75: int(major), 76: int(minor)}[attr]
        return 0

    def cuDeviceGetName(self, buf, size, dev):
        buf.value = self.name.encode()[:size - 1]
        return 0

    def cuDeviceTotalMem_v2(self, value, dev):
        value._obj.value = self.memory
        return 0


# A Jetson Orin NX 16 GB as deviceQuery reported it (github.com/atinfinity/l4t-base-docker, README):
# Device 0: "Orin", capability 8.7, (008) Multiprocessors, 16136011776 bytes of global memory.
ORIN_NX_16GB = FakeDriver("Orin", "8.7", 8, 16136011776)


def install(monkeypatch, trt: types.ModuleType, cuda: types.ModuleType, driver: FakeDriver = ORIN_NX_16GB) -> None:
    from edge.engines import gpu

    pycuda = types.ModuleType("pycuda")
    pycuda.driver = cuda
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "pycuda", pycuda)
    monkeypatch.setitem(sys.modules, "pycuda.driver", cuda)
    monkeypatch.setattr(gpu, "load_driver", lambda: driver)
