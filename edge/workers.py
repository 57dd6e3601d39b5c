"""Process pools for the offline tools (registration, pair simulation): spawned, never forked.

A fork of a process that holds threads (OpenCV's, ONNX Runtime's, torch's, Qt's) can copy a lock held by
one of them into the child, which then waits for ever: it hung CI inside pytest."""
from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context


def process_pool(max_workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=max_workers, mp_context=get_context("spawn"))
