"""`phonescope bench`: capture figures and the roofline, on the real shipped model (ONNX Runtime, CPU)."""
from __future__ import annotations

import json

import pytest

from edge import roofline
from edge.modelcard import DEFAULT_MODEL, load_card
from tests.conftest import run_cli


def test_roofline_layers_add_up_to_the_model_card():
    card = load_card(DEFAULT_MODEL)
    layers = roofline.layers(card.raw["architecture"], card.flops_per_pixel)
    assert sum(layer["flops"] for layer in layers) == pytest.approx(card.flops_per_pixel)
    fused = sum(layer["fused_bytes"] for layer in layers)
    unfused = sum(layer["unfused_bytes"] for layer in layers)
    # 64 channels on a 2x space-to-depth grid: 16 FP16 values = 32 bytes per output pixel per activation
    assert [layer["fused_bytes"] for layer in layers if "conv1" in layer["layer"]] == [64.0] * 4
    assert 500 < fused < unfused
    with pytest.raises(ValueError, match="model card says"):
        roofline.layers(card.raw["architecture"], card.flops_per_pixel * 2)


def test_roofline_bound():
    h100 = roofline.device_peaks("NVIDIA H100 80GB HBM3")
    assert h100["fp16_tflops"] == pytest.approx(989.4) and h100["bandwidth_tb_s"] == pytest.approx(3.35)
    assert roofline.device_peaks("NVIDIA H100 PCIe")["bandwidth_tb_s"] == 2.0
    assert roofline.device_peaks("some CPU") is None
    r = roofline.roofline(154386.0, 746.0, h100)
    assert r["bound"] == "memory" and r["attainable_tflops"] < h100["fp16_tflops"]
    assert roofline.roofline(1e6, 100.0, h100)["bound"] == "compute"
    a = roofline.achieved(1000.0, 10.0, 1e9, 1.0, {"fp16_tflops": 10.0, "bandwidth_tb_s": 0.1, "source": "t"})
    assert a["tflops"] == 1.0 and a["pct_of_fp16_peak"] == 10.0 and a["pct_of_bandwidth"] == 10.0


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


def test_bench_backend_choices():
    r = run_cli("bench", "--backend", "cuda", timeout=60)
    assert r.returncode == 2 and "invalid choice" in r.stderr
