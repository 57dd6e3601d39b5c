"""The soak verdict (make soak) on synthetic series: flat passes, a leak or a growing fd count fails."""
from __future__ import annotations

import random

from edge.measure.soak import verdict


def series(rss_per_min=0.0, fd_jump_at=None):
    rng = random.Random(1)
    return [{"t_s": t, "rss_mb": 1000 + 45 * rng.random() + rss_per_min * t / 60,  # capture buffers swing RSS
             "fds": 11 + (10 if fd_jump_at and t > fd_jump_at else 0), "threads": 12, "latency_ms": 500}
            for t in range(0, 1800, 10)]


def test_flat_run_is_stable():
    ok, problems, figures = verdict(series(), 30)
    assert ok and not problems and figures["warmup_s"] == 450


def test_leak_and_fd_growth_are_caught():
    assert "RSS grows" in " ".join(verdict(series(rss_per_min=2.0), 30)[1])
    assert "open fds grew" in " ".join(verdict(series(fd_jump_at=1200), 30)[1])
