"""The daemon's C heap settings (edge/heap.py): taken by glibc, and what they are for, seen in a process."""
from __future__ import annotations

import subprocess
import sys

import pytest

from edge.heap import bound_heap

PROBE = """
import ctypes, numpy as np
from edge.heap import bound_heap
def rss():
    return int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1]) // 1024
took = {flag}
if took:
    assert bound_heap()
# a frame-sized array (< 32 MB) freed raises glibc's dynamic mmap threshold; then smaller-than-32-MB arrays from
# several sizes land in the heap and stay resident after they are freed
big = np.ones(30 << 20, np.uint8); del big
keep = []
for i in range(12):
    a = np.ones((20 << 20) + i * 4096, np.uint8)
    keep.append(np.ones(4096, np.uint8))      # a small block after each large one pins the heap's top
    del a
print(rss())
"""


def rss_after(flag: bool) -> int:
    r = subprocess.run([sys.executable, "-c", PROBE.format(flag=flag)], capture_output=True, text=True, check=True)
    return int(r.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is a Linux matter")
def test_freed_frame_sized_arrays_go_back_to_the_system():
    assert bound_heap() in (True, False)
    default, bounded = rss_after(False), rss_after(True)
    assert bounded < default - 30, f"RSS {default} MB with glibc's defaults, {bounded} MB bounded"
