"""Run the real daemon with one injected fault: `python -m tests.system.faultinject FAULT FLAG -- run ARGS...`.

Only the faulty part is replaced, through the daemon's own wiring (edge.wiring.Twins), and only while
the file FLAG exists, so a test switches the fault on and off from outside while everything else (the
real model in ONNX Runtime, real sources, sockets, files, SQLite) runs as in production:

- hang:  the engine's infer() blocks (a stalled GPU or driver);
- nan:   the network's output is NaN (a broken model or a numeric fault): a second ONNX Runtime engine
         runs the model with its output multiplied by NaN, so the pixel graph's own flag catches it;
- slow:  each infer() first spends seconds inside ONNX Runtime's own C++ (a capture on a slow CPU);
- stall: the camera's read() blocks (a camera that stops delivering).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from edge import wiring
from edge.cli import build_parser, guarded
from edge.engines.base import Engine
from edge.modelcard import model_path


class FaultyEngine(Engine):
    def __init__(self, inner: Engine, fault: str, flag: Path, model: Path):
        self.inner, self.fault, self.flag = inner, fault, flag
        self.name, self.spec = inner.name, inner.spec
        if fault == "slow":
            self.slow = slow_session()
        if fault == "nan":
            self.broken = nan_engine(str(model), flag.with_name("nan-model.onnx"))

    def infer(self, batch: np.ndarray) -> np.ndarray:
        if self.flag.exists():
            if self.fault == "hang":
                while self.flag.exists():
                    time.sleep(0.05)
            elif self.fault == "nan":
                return self.broken.infer(batch)
            elif self.fault == "slow":   # one long native call: the thread is inside the engine, not in Python
                self.slow.run(None, {"x": np.zeros((1, 16, 512, 512), np.float32)})
        return self.inner.infer(batch)

    def release_memory(self) -> None:
        self.inner.release_memory()

    def close(self) -> None:
        self.inner.close()


def nan_engine(model: str, path: Path) -> Engine:
    """The model with NaN * its output, in ONNX Runtime."""
    import onnx
    from onnx import helper, numpy_helper

    from edge.engines.onnxruntime import OnnxRuntimeEngine

    m = onnx.load(model)
    out = m.graph.output[0]
    m.graph.initializer.append(numpy_helper.from_array(np.array(np.nan, np.float32), "nan"))
    m.graph.node.append(helper.make_node("Mul", [out.name + "_pre_nan", "nan"], [out.name]))
    for node in m.graph.node[:-1]:
        node.output[:] = [o + "_pre_nan" if o == out.name else o for o in node.output]
    onnx.save(m, str(path))
    return OnnxRuntimeEngine(str(path))


def slow_session(convs: int = 500):
    """An ONNX Runtime session whose one run() takes seconds (a chain of 3x3 convolutions on a small
    tensor: compute, not memory), so the daemon's stop grace ends while a thread is inside it."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.full((16, 16, 3, 3), 1 / 144, np.float32), "w")
    nodes = [helper.make_node("Conv", ["x" if i == 0 else f"h{i}", "w"], [f"h{i + 1}" if i < convs - 1 else "y"],
                              pads=[1, 1, 1, 1]) for i in range(convs)]
    shape = [1, 16, 512, 512]
    graph = helper.make_graph(nodes, "slow", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


class StallingSource:
    def __init__(self, inner, flag: Path):
        self.inner, self.flag = inner, flag

    def read(self):
        while self.flag.exists():
            time.sleep(0.05)
        return self.inner.read()

    def __getattr__(self, name):
        return getattr(self.inner, name)


def twins(fault: str, flag: Path) -> wiring.Twins:
    if fault in ("hang", "nan", "slow"):
        def open_model(cfg):
            engine, card, why = wiring.open_model(cfg)
            return FaultyEngine(engine, fault, flag, model_path(cfg["model"]["path"], cfg["model"]["sample"])), \
                card, why
        return wiring.Twins(open_model=open_model)
    if fault == "stall":
        return wiring.Twins(open_source=lambda cfg: StallingSource(wiring.open_source(cfg), flag))
    raise SystemExit(f"unknown fault {fault!r}")


if __name__ == "__main__":
    fault, flag, sep, *rest = sys.argv[1:]
    assert sep == "--" and rest[:1] == ["run"], "usage: FAULT FLAG -- run ARGS..."
    args = build_parser().parse_args(rest)
    sys.exit(guarded("run", lambda: wiring.run(args, twins(fault, Path(flag)))))
