"""Which GPU this is, from one source: the CUDA driver API (libcuda), as TensorRT itself sees the device.

The engine build, the daemon and `doctor` all ask here, so they agree (pycuda said "Orin" where
nvidia-smi said "Orin (nvgpu)", and an engine looked stale forever). The identity carries the SM count
and the memory size besides the name, because one name covers modules with different GPUs (every Jetson
Orin is "Orin", sm 8.7: AGX Orin has 16 SMs, Orin NX 16 GB 8, Orin Nano 4 GB 4) and a TensorRT engine
is built for one of them.
"""
from __future__ import annotations

import ctypes

CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16
CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75
CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76


def load_driver():
    """libcuda (the driver's library; on a Jetson from nvidia-l4t-cuda), or None where there is none."""
    try:
        return ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None


def identity(name: str, sm_count: int, memory_bytes: int) -> str:
    """'Orin (8 SMs, 15 GiB)': what an engine is specific to, stable from boot to boot."""
    return f"{name} ({sm_count} SMs, {round(memory_bytes / 2 ** 30)} GiB)"


def probe_gpu(index: int = 0, driver=None) -> tuple[str, str] | None:
    """(identity, compute capability "8.7") of GPU `index`, or None without a driver or a device."""
    cu = driver if driver is not None else load_driver()
    if cu is None or cu.cuInit(0) != 0:
        return None
    dev = ctypes.c_int()
    if cu.cuDeviceGet(ctypes.byref(dev), index) != 0:
        return None
    name = ctypes.create_string_buffer(256)
    memory = ctypes.c_size_t()
    values = {}
    for attr in (CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
                 CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR):
        v = ctypes.c_int()
        if cu.cuDeviceGetAttribute(ctypes.byref(v), attr, dev) != 0:
            return None
        values[attr] = v.value
    if cu.cuDeviceGetName(name, len(name), dev) != 0 or cu.cuDeviceTotalMem_v2(ctypes.byref(memory), dev) != 0:
        return None
    sms = values[CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT]
    cc = f"{values[CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR]}.{values[CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR]}"
    return identity(name.value.decode(errors="replace"), sms, memory.value), cc
