"""`phonescope bench` as a command: capture figures and the roofline on the real shipped model (ONNX Runtime)."""
from __future__ import annotations

import json

from tests.helpers import run_cli


def test_bench_reports_capture_figures_and_roofline(tmp_path):
    out = tmp_path / "bench.json"
    r = run_cli("bench", "--backend", "onnxruntime", "--size", "160x120", "--capture-size", "320x240",
                "--tile", "96", "--batch", "2", "--repeat", "1", "--peak-tflops", "1", "--peak-bandwidth", "0.05",
                "--json", out, timeout=300)
    assert r.returncode == 0, r.stderr
    d = json.loads(out.read_text())
    c = d["capture"]
    assert c["size"] == "320x240" and c["batch"] == 2 and c["tiles"] > 1 and c["halo_overhead"] > 1
    for part in ("end_to_end", "device_only"):
        f = c[part]
        assert f["ms"] > 0 and f["megapixels_per_s"] > 0 and f["tflops"] > 0
        assert f["bound"] == d["roofline"]["bound"] and "pct_of_fp16_peak" in f and "pct_of_bandwidth" in f
    assert d["roofline"]["bytes_per_pixel"] > 0 and len(d["roofline"]["layers"]) == 12
    assert d["machine"]["peaks"]["source"] == "--peak-tflops/--peak-bandwidth"
    assert d["tiled_vs_whole_max_abs_diff"] == 0.0
    # the host's share: end to end over the network's own time in the same runs (ONNX Runtime measures it)
    assert c["network_in_run_ms"] > 0 and c["end_to_end"]["ms"] >= c["network_in_run_ms"]
    assert 0 <= c["host_overhead"] < 1


def test_bench_backend_choices():
    r = run_cli("bench", "--backend", "cuda", timeout=60)
    assert r.returncode == 2 and "invalid choice" in r.stderr
