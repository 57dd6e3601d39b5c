"""`phonescope bench`: capture figures and the roofline, on the real shipped model (ONNX Runtime, CPU)."""
from __future__ import annotations

import pytest

from edge.measure import roofline
from edge.modelcard import DEFAULT_MODEL, load_card


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
