"""A simple roofline for the enhancement network: FLOPs and memory traffic per output pixel.

FLOPs per pixel come from the model card. Memory traffic is counted per
layer as the activations it reads and writes (at FP16, 2 bytes a value),
per output pixel: the body works on a 2x space-to-depth grid, so a
64-channel activation costs 64/4 = 16 values per output pixel. Two
figures: `fused` (an engine that folds bias, ReLU and the residual add into
the convolution, as TensorRT does: the least traffic a layer-by-layer
execution needs) and `unfused` (every elementwise op a separate pass, as
eager PyTorch runs it). Weights (0.6 MB) stay in cache and are not counted.
Whichever of FLOPs/peak and bytes/bandwidth takes longer is the bound.
"""
from __future__ import annotations

# GPU name (substring, first match wins) -> dense FP16 tensor-core TFLOP/s, memory TB/s, source.
PEAKS: list[tuple[str, float, float, str]] = [
    ("H200", 989.4, 4.8, "NVIDIA H200 datasheet: 989 TFLOP/s dense FP16 tensor, 4.8 TB/s HBM3e"),
    ("H100 NVL", 835.5, 3.9, "NVIDIA H100 NVL datasheet (dense)"),
    ("H100 PCIe", 756.5, 2.0, "NVIDIA H100 PCIe datasheet (dense)"),
    ("H100", 989.4, 3.35, "NVIDIA H100 SXM datasheet: 989 TFLOP/s dense FP16 tensor, 3.35 TB/s HBM3"),
    ("A100-SXM4-80GB", 312.0, 2.039, "NVIDIA A100 datasheet (dense)"),
    ("A100 80GB PCIe", 312.0, 1.935, "NVIDIA A100 datasheet (dense)"),
    ("A100", 312.0, 1.555, "NVIDIA A100 40GB datasheet (dense)"),
    ("L40S", 362.05, 0.864, "NVIDIA L40S datasheet (dense)"),
    ("L4", 121.0, 0.3, "NVIDIA L4 datasheet (dense)"),
    ("A10", 125.0, 0.6, "NVIDIA A10 datasheet (dense)"),
    ("T4", 65.0, 0.32, "NVIDIA T4 datasheet"),
]


def device_peaks(name: str | None) -> dict | None:
    if not name:
        return None
    for key, tflops, tbps, source in PEAKS:
        if key.lower() in name.lower():
            return {"fp16_tflops": tflops, "bandwidth_tb_s": tbps, "source": source}
    return None


def layers(arch: dict, flops_per_pixel: float | None = None, bytes_per_value: int = 2) -> list[dict]:
    """Per layer: FLOPs and activation bytes (fused, unfused) per output pixel, for an EnhanceNet card."""
    w, blocks, d = int(arch["width"]), int(arch["blocks"]), int(arch["down"])
    d2 = d * d
    act = w / d2        # values per output pixel of a body activation
    io = 3.0            # RGB values per output pixel
    out: list[dict] = []

    def add(name, flops, reads, writes, extra_unfused=0.0):
        out.append({"layer": name, "flops": flops, "fused_bytes": (reads + writes) * bytes_per_value,
                    "unfused_bytes": (reads + writes + extra_unfused) * bytes_per_value})

    add("colour 1x1 (full res)", 2 * 3 * 3, io, io)
    # x - 0.5 and space-to-depth: one pass each when unfused
    add(f"head 3x3 {3 * d2}->{w} + ReLU", 2 * 9 * 3 * d2 * w / d2, io, act, extra_unfused=4 * io + 2 * act)
    for b in range(blocks):
        add(f"block{b + 1}.conv1 3x3 {w}->{w} + ReLU", 2 * 9 * w * w / d2, act, act, extra_unfused=2 * act)
        add(f"block{b + 1}.conv2 3x3 {w}->{w} + residual", 2 * 9 * w * w / d2, 2 * act, act, extra_unfused=2 * act)
    add(f"tail 3x3 {w}->{3 * d2}", 2 * 9 * w * 3 * d2 / d2, act, io)
    add("depth-to-space + colour add", 0.0, 2 * io, io, extra_unfused=2 * io)
    if flops_per_pixel:  # the card's figure is authoritative; the sum should equal it
        total = sum(layer["flops"] for layer in out)
        if abs(total - flops_per_pixel) > 0.01 * flops_per_pixel:
            raise ValueError(f"roofline layers give {total:.0f} FLOPs/pixel, the model card says {flops_per_pixel:.0f}")
    return out


def roofline(flops_per_pixel: float, bytes_per_pixel: float, peaks: dict | None) -> dict:
    intensity = flops_per_pixel / bytes_per_pixel
    r = {"flops_per_pixel": flops_per_pixel, "bytes_per_pixel": round(bytes_per_pixel, 1),
         "arithmetic_intensity_flop_per_byte": round(intensity, 1)}
    if peaks:
        ridge = peaks["fp16_tflops"] / peaks["bandwidth_tb_s"]
        r.update({"ridge_flop_per_byte": round(ridge, 1),
                  "bound": "memory" if intensity < ridge else "compute",
                  "attainable_tflops": round(min(peaks["fp16_tflops"], intensity * peaks["bandwidth_tb_s"]), 1)})
    return r


def achieved(flops_per_pixel: float, bytes_per_pixel: float, computed_px: float, seconds: float,
             peaks: dict | None) -> dict:
    """Achieved rates for `computed_px` pixels (halos included) in `seconds`, against the peaks."""
    tflops = flops_per_pixel * computed_px / seconds / 1e12
    tbps = bytes_per_pixel * computed_px / seconds / 1e12
    a = {"tflops": round(tflops, 2), "tb_s_min_traffic": round(tbps, 3)}
    if peaks:
        rl = roofline(flops_per_pixel, bytes_per_pixel, peaks)
        pct_peak = 100 * tflops / peaks["fp16_tflops"]
        pct_bw = 100 * tbps / peaks["bandwidth_tb_s"]
        bound = rl["bound"]
        a.update({"pct_of_fp16_peak": round(pct_peak, 1), "pct_of_bandwidth": round(pct_bw, 1),
                  "pct_of_roofline": round(100 * tflops / rl["attainable_tflops"], 1), "bound": bound,
                  "target": "25% of FP16 peak" if bound == "compute" else "60% of memory bandwidth",
                  "target_met": bool(pct_peak >= 25 if bound == "compute" else pct_bw >= 60)})
    return a
