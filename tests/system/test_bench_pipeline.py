"""`phonescope bench --pipeline` on a real daemon process: a short run gives every figure."""
from __future__ import annotations

import json

import pytest

from tests.helpers import run_cli


@pytest.mark.slow
def test_short_pipeline_bench_reports_efficiency_latency_and_memory(tmp_path, tiny_model):
    out = tmp_path / "pipeline.json"
    r = run_cli("bench", "--pipeline", "--minutes", "0.3", "--engine-seconds", "2", "--model", tiny_model,
                "--camera", "640x480", "--capture-every", "5", "--json", out, timeout=300)
    assert r.returncode == 0, r.stderr
    d = json.loads(out.read_text())
    assert d["engine_only_fps"] > 0 and d["pipeline_fps"] > 0 and d["pipeline_efficiency"] > 0
    assert d["capture_latency_s"]["count"] >= 1 and d["capture_latency_s"]["median"] > 0
    assert d["samples"] and all(s["rss_mb"] > 0 and s["threads"] > 0 and s["fds"] > 0 for s in d["samples"])
    assert d["camera"] == "640x480" and d["rss_mb"]["peak"] >= d["rss_mb"]["max"] > 0
    st = d["capture_stages_s"]   # every stage of a capture, from the daemon's own replies
    for k in ("preprocess_s", "inference_s", "network_s", "postprocess_s", "encode_s", "write_s", "fsync_s"):
        assert st[k] >= 0, k
    assert st["inference_s"] >= st["network_s"] > 0 and st["host_overhead"] >= 0
