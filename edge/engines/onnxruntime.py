"""ONNX Runtime backend: CPU everywhere, the CUDA provider where present."""
from __future__ import annotations

import os

import numpy as np

from edge.engines.base import Engine, EngineError, InputSpec


class OnnxRuntimeEngine(Engine):
    name = "onnxruntime"

    def __init__(self, model_path: str, alignment: int = 1, threads: int | None = None,
                 providers: list[str] | None = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or os.cpu_count() or 1
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        available = ort.get_available_providers()
        if providers is None:
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        try:
            self.session = ort.InferenceSession(str(model_path), sess_options=opts, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise EngineError(f"cannot load ONNX model {model_path}: {msg[:300]}") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1 or len(inputs[0].shape) != 4:
            raise EngineError(f"{model_path}: expected one 4-D input and one output")
        channels = inputs[0].shape[1]
        if channels != 3:
            raise EngineError(f"{model_path}: expected 3 input channels, model has {channels}")
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        self.provider = self.session.get_providers()[0]
        # a model exported with fixed dimensions is held to them, as a TensorRT engine's profile is
        n, _, h, w = (d if isinstance(d, int) and d > 0 else None for d in inputs[0].shape)
        self.spec = InputSpec(channels=3, alignment=alignment, fixed_shape=(h, w) if h and w else None,
                              max_batch=n)   # a fixed batch: exactly n tiles a run

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self.check(batch)
        n, fixed = batch.shape[0], self.spec.max_batch
        if fixed and n < fixed:  # a last, short batch of a frame's tiles
            batch = np.concatenate([batch, np.zeros((fixed - n,) + batch.shape[1:], batch.dtype)])
        try:
            (out,) = self.session.run([self.output_name], {self.input_name: np.ascontiguousarray(batch)})
        except Exception as e:
            raise EngineError(f"onnxruntime: inference failed: {str(e).strip().splitlines()[0][:300]}") from None
        return out[:n]

    def close(self) -> None:
        self.session = None
