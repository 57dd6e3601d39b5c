"""PyTorch backend: the shipped weights on a workstation GPU without TensorRT (or on a CPU).

On CUDA it runs the tiled path in FP16, channels-last, under
`torch.inference_mode`, with a CUDA graph per batch shape (the tile batch
has one fixed shape, so each graph is replayed for every batch of a frame),
and it tiles on the device: the frame is uploaded once, tiles are cut and
placed on the GPU, the output is downloaded once. On a CPU it runs FP32, so
the backend contract suite runs it anywhere. The weights are the `.pt` named
by the model card (written by `phonescope export` beside the ONNX) and are
checked against the ONNX model when loaded. torch is imported only here.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from edge.engines.base import Engine, EngineError, InputSpec, nonfinite
from edge.modelcard import ModelError, load_card

MAX_GRAPHS = 4
VERIFY_TOL = 1e-3


def _fused_forward(torch, net):
    """EnhanceNet's forward with conv+bias+ReLU as one cuDNN call (head and each block's conv1),
    which saves a read and a write of a 64-channel activation per fused layer."""
    conv_relu = torch.cudnn_convolution_relu
    one, pad = [1, 1], [1, 1]

    def forward(x):
        y = conv_relu(net.unshuffle(x - 0.5), net.head.weight, net.head.bias, one, pad, one, 1)
        for b in net.body:
            y = y + b.conv2(conv_relu(y, b.conv1.weight, b.conv1.bias, one, pad, one, 1))
        return net.colour(x) + net.shuffle(net.tail(y))

    return forward


class TorchEngine(Engine):
    name = "torch"

    def __init__(self, model_path: str | Path, alignment: int = 1, threads: int | None = None,
                 device: str | None = None, cuda_graphs: bool = True, verify: bool = True):
        try:
            import torch
        except ImportError:
            raise EngineError("torch backend: PyTorch is not installed (pip install 'phonescope[train]')") from None
        self.torch = torch
        model_path = Path(model_path)
        try:
            card = load_card(model_path)
        except ModelError as e:
            raise EngineError(str(e)) from None
        weights = model_path.with_name(card.raw.get("weights") or model_path.stem + ".pt")
        if not weights.is_file():
            raise EngineError(f"torch backend: no weights {weights.name} beside {model_path.name} "
                              f"(export the model with `phonescope export`)")
        try:
            ck = torch.load(weights, map_location="cpu", weights_only=True)
            from models.network import build

            net = build(ck["net_config"])
            net.load_state_dict(ck["model"])
        except Exception as e:  # torch raises many types for a bad file
            raise EngineError(f"torch backend: {weights}: not usable weights ({type(e).__name__}: "
                              f"{str(e).strip().splitlines()[0][:200] if str(e).strip() else ''})") from None
        net.eval()
        if threads:
            torch.set_num_threads(threads)
        if verify:
            self._verify(net, model_path)
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        if self.cuda and not torch.cuda.is_available():
            raise EngineError("torch backend: CUDA requested but torch sees no CUDA GPU")
        self.dtype = torch.float16 if self.cuda else torch.float32
        self.net = net.to(self.device, dtype=self.dtype, memory_format=torch.channels_last)
        self.forward = self.net
        self.fused = False
        if self.cuda and os.environ.get("PHONESCOPE_TORCH_FUSE", "1") != "0":
            self._try_fused()
        self.compiled = ""
        mode = os.environ.get("PHONESCOPE_TORCH_COMPILE", "")
        if self.cuda and mode:
            self.forward = torch.compile(self.forward, mode=None if mode == "default" else mode, dynamic=False)
            self.compiled = mode
        if self.cuda:
            torch.backends.cudnn.benchmark = True
        self.use_graphs = cuda_graphs and self.cuda and os.environ.get("PHONESCOPE_TORCH_GRAPHS", "1") != "0"
        self.graphs: dict[tuple[int, int, int], tuple] = {}
        self.spec = InputSpec(channels=3, alignment=alignment)
        self.device_name = torch.cuda.get_device_name(self.device) if self.cuda else None
        self.provider = (f"CUDA {torch.cuda.get_device_name(self.device)}, FP16, channels-last"
                         + (", cuDNN conv+ReLU fusion" if self.fused else "")
                         + (", CUDA graphs" if self.use_graphs else "") + (f", torch.compile {mode}" if mode else "")
                         if self.cuda else f"CPU, FP32, {torch.get_num_threads()} threads")

    def _verify(self, net, model_path: Path) -> None:
        """The .pt must be the network the ONNX file holds (a stale .pt beside a new ONNX is refused)."""
        import onnxruntime as ort

        x = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
        with self.torch.inference_mode():
            ref = net(self.torch.from_numpy(x)).numpy()
        sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
        (out,) = sess.run(None, {sess.get_inputs()[0].name: x})
        err = float(np.abs(out - ref).max())
        if not err <= VERIFY_TOL:
            raise EngineError(f"torch backend: the weights beside {model_path.name} do not match the ONNX model "
                              f"(max difference {err:.2e}); export them together with `phonescope export`")

    def _try_fused(self) -> None:
        """Use the fused forward where this PyTorch/cuDNN has it and it gives the same output."""
        torch = self.torch
        fused = _fused_forward(torch, self.net)
        x = torch.rand((1, 3, 96, 128), device=self.device).to(self.dtype).contiguous(memory_format=torch.channels_last)
        try:
            with torch.inference_mode():
                err = float((fused(x).float() - self.net(x).float()).abs().max())
        except (RuntimeError, AttributeError):
            return
        if err <= 2e-3:
            self.forward, self.fused = fused, True

    # -- device-side batches -----------------------------------------------------------------
    def _graph(self, n: int, h: int, w: int):
        """(static input, static output, graph) for one batch shape, captured on first use."""
        torch = self.torch
        key = (n, h, w)
        if key in self.graphs:
            return self.graphs[key]
        if len(self.graphs) >= MAX_GRAPHS:
            self.graphs.pop(next(iter(self.graphs)))
        static_in = torch.zeros((n, 3, h, w), device=self.device, dtype=self.dtype).contiguous(
            memory_format=torch.channels_last)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side), torch.inference_mode():
            for _ in range(2):  # warm-up: cuDNN algorithm choice, lazy allocations
                self.forward(static_in)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(graph):
            static_out = self.forward(static_in)
        self.graphs[key] = (static_in, static_out, graph)
        return self.graphs[key]

    def _run_device(self, x):
        """N x 3 x H x W tensor on the device (any layout, engine dtype) -> output tensor on the device."""
        torch = self.torch
        with torch.inference_mode():
            if self.use_graphs:
                static_in, static_out, graph = self._graph(*x.shape[:1], *x.shape[2:])
                static_in.copy_(x)
                graph.replay()
                return static_out
            return self.forward(x.contiguous(memory_format=torch.channels_last))

    def _to_net(self, px):
        """Pixels (N x H x W x 3 or H x W x 3 tensor, uint8 or float16) -> the network's input layout
        (channels first), dtype and range [0, 1]."""
        torch = self.torch
        x = px.movedim(-1, -3).to(self.dtype)
        return x / 255.0 if px.dtype == torch.uint8 else x

    def _to_pixels(self, y, dtype):
        """The network's output (channels first) -> host pixels of numpy dtype `dtype`, channels last."""
        torch = self.torch
        if not bool(torch.isfinite(y).all()):
            raise nonfinite(self.name)
        y = y.movedim(-3, -1).float().clamp_(0.0, 1.0)
        y = y.mul_(255.0).round_().to(torch.uint8) if dtype == np.uint8 else y.to(torch.float16)
        return y.contiguous().cpu().numpy()

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self.check(batch)
        torch = self.torch
        try:
            with torch.inference_mode():
                x = self._to_net(torch.from_numpy(np.ascontiguousarray(batch)).to(self.device))
                t0 = time.perf_counter()
                y = self._run_device(x)
                if not self.cuda:   # on CUDA the launch returns at once: bench times the device with events
                    self.run_s += time.perf_counter() - t0
                return self._to_pixels(y, batch.dtype)
        except RuntimeError as e:
            raise EngineError(f"torch: inference failed: {str(e).strip().splitlines()[0][:300]}") from None

    def run_plan(self, hwc: np.ndarray, plan, batch: int) -> np.ndarray:
        """A whole padded H x W x 3 frame of pixels through a tile plan -> enhanced pixels: the frame is
        uploaded once (as pixels), tiles are cut, batched and placed on the device, the output is
        rounded there and downloaded once."""
        torch = self.torch
        h, w = plan.tile_h, plan.tile_w
        if hwc.ndim != 3 or hwc.shape[2] != 3:
            raise EngineError(f"torch: expected an H x W x 3 frame, got {hwc.shape}")
        self.check(hwc[None, :h, :w])
        try:
            with torch.inference_mode():
                x = self._to_net(torch.from_numpy(np.ascontiguousarray(hwc)).to(self.device))
                out = torch.empty(x.shape, device=self.device, dtype=self.dtype)
                tiles = plan.tiles
                for i in range(0, len(tiles), batch):
                    group = tiles[i:i + batch]
                    b = torch.stack([x[:, t.y.start:t.y.start + h, t.x.start:t.x.start + w] for t in group])
                    t0 = time.perf_counter()
                    y = self._run_device(b)
                    if not self.cuda:
                        self.run_s += time.perf_counter() - t0
                    for t, r in zip(group, y):
                        y0, y1, x0, x1 = t.y.keep0, t.y.keep1, t.x.keep0, t.x.keep1
                        out[:, y0:y1, x0:x1] = r[:, y0 - t.y.start:y1 - t.y.start, x0 - t.x.start:x1 - t.x.start]
                return self._to_pixels(out, hwc.dtype)
        except RuntimeError as e:
            raise EngineError(f"torch: inference failed: {str(e).strip().splitlines()[0][:300]}") from None

    def time_device(self, n: int, h: int, w: int, repeat: int = 20) -> float | None:
        if not self.cuda:
            return None
        torch = self.torch
        x = torch.rand((n, 3, h, w), device=self.device).to(self.dtype)
        for _ in range(3):
            self._run_device(x)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(repeat):
            self._run_device(x)
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / repeat

    def close(self) -> None:
        self.graphs.clear()
        self.net = None
