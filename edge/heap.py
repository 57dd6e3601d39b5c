"""The C heap of a long-running daemon that makes large, short-lived arrays.

glibc's malloc raises its mmap threshold each time a large block is freed
(up to 32 MB), so after the first capture a frame-sized array comes from the
heap, and a heap fragmented by several threads does not give it back: the
daemon's RSS climbed by hundreds of MB over a few 8 MP captures. A fixed
threshold (and so no dynamic one) keeps every array above 128 KB in its own
mapping, returned to the system when freed; two malloc arenas instead of
eight per core bound what the threads keep aside. Measured in the README
("Memory"): 8 MP camera 526 -> 383 MB peak. Elsewhere than glibc nothing
is done.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("phonescope")

M_ARENA_MAX = -8          # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 128 * 1024
ARENA_MAX = 2


def bound_heap() -> bool:
    """Set the fixed mmap threshold and the arena limit; True where glibc took them. Call before the
    daemon's threads start."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):   # not glibc (musl has no mallopt)
        return False
    ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(M_ARENA_MAX, ARENA_MAX) == 1
    if not ok:
        log.warning("malloc settings not taken: memory may grow with fragmentation")
    return ok
