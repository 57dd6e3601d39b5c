"""Pixel I/O inside the graph (edge/engines/pixels.py): what the wrapped model takes and gives, that it
changes no sample's output by more than a rounding step, and that a capture makes no full-frame float copy."""
from __future__ import annotations

import logging
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge.engines import pixels
from edge.engines.onnxruntime import OnnxRuntimeEngine
from edge.enhancer import Enhancer
from edge.imageio import read_image, to_uint8
from edge.modelcard import DEFAULT_MODEL
from edge.sources import Frame
from edge.stages import Postprocess, Preprocess
from tests.helpers import SAMPLES, reference_pixels

REPO = Path(__file__).resolve().parents[2]


def conv_model(opset: int) -> onnx.ModelProto:
    """A 3x3 averaging convolution with a bias (float NCHW in and out), at the given opset."""
    w = numpy_helper.from_array(np.full((3, 3, 3, 3), 1 / 27, np.float32), "w")
    b = numpy_helper.from_array(np.full((3,), 0.1, np.float32), "b")
    g = helper.make_graph([helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1])], "conv",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, "h", "w"])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3, "h", "w"])], [w, b])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("opset", [17, 18])   # ReduceMax's axes: an attribute up to 17, an input from 18
def test_the_wrapped_graph_takes_and_gives_pixels(opset):
    m = conv_model(opset)
    run = lambda model, x: ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]) \
        .run(None, {model.graph.input[0].name: x})
    px = np.random.default_rng(0).integers(0, 256, (2, 8, 10, 3), dtype=np.uint8)
    px[:, :4, :4] = 255                                   # with the bias: above 1, clipped to 255
    (ref,) = run(m, px.transpose(0, 3, 1, 2).astype(np.float32) / 255)
    ref8 = np.round(np.clip(ref, 0, 1) * 255).astype(np.uint8).transpose(0, 2, 3, 1)
    w8 = pixels.wrap(m, "uint8")
    assert [i.name for i in w8.graph.input] == ["pixels"] and [o.name for o in w8.graph.output] == \
        ["enhanced", "nonfinite"]
    assert w8.graph.input[0].type.tensor_type.elem_type == TensorProto.UINT8
    out, flag = run(w8, px)
    assert out.dtype == np.uint8 and out.shape == px.shape and flag.shape == (2,) and not flag.any()
    assert np.abs(out.astype(int) - ref8).max() <= 1, "clip (the bias pushes bright pixels over 1) and round"
    assert out.max() == 255
    out16, flag16 = run(pixels.wrap(m, "float16"), (px / 255).astype(np.float16))
    assert out16.dtype == np.float16 and np.abs(out16 - np.clip(ref, 0, 1).transpose(0, 2, 3, 1)).max() < 1e-3
    assert m.graph.input[0].name == "x", "the model passed in is not changed"


@pytest.mark.parametrize("op,bad", [("Log", "-inf from log(0)"), ("Sqrt", "NaN from sqrt(-0.4)")])
def test_nan_and_inf_are_flagged_per_tile(op, bad):
    """y = op(conv(x) - 0.4): finite for a bright tile, not for a black one; the flag says which."""
    m = conv_model(17)
    m.graph.initializer[1].CopyFrom(numpy_helper.from_array(np.full(3, -0.4, np.float32), "b"))
    m.graph.node[0].output[0] = "z"
    m.graph.node.append(helper.make_node(op, ["z"], ["y"]))
    if op == "Log":   # log(0) for the black tile: a bias of 0 there
        m.graph.initializer[1].CopyFrom(numpy_helper.from_array(np.zeros(3, np.float32), "b"))
    sess = ort.InferenceSession(pixels.wrap(m).SerializeToString(), providers=["CPUExecutionProvider"])
    bright, black = np.full((8, 8, 3), 255, np.uint8), np.zeros((8, 8, 3), np.uint8)   # corners: 4/9 - 0.4
    out, flag = sess.run(None, {"pixels": np.stack([bright, black, bright])})
    assert flag.tolist() == [0, 1, 0], bad
    assert out.dtype == np.uint8


def test_every_shipped_sample_is_within_one_step_of_the_float_path():
    """The uint8 capture path against the FP32 network clipped and rounded on the host (the kiosk's output
    before the pixel I/O moved into the graph): whole images, the shipped model and its tiling."""
    enh, _ = Enhancer.open(None, "onnxruntime", tile=512, batch=4)
    pre, post = Preprocess(None, enh.resample, 960, enh.pixel_type), Postprocess("png")
    for p in sorted((SAMPLES / "phone").glob("*.jpg")):
        rgb8 = to_uint8(read_image(p)[0])
        rgb8 = np.ascontiguousarray(rgb8[: rgb8.shape[0] // 2 * 2, : rgb8.shape[1] // 2 * 2])
        out = post.capture(enh.run_network(pre.capture(Frame(rgb8, 1, time.monotonic()))))
        d = np.abs(out.astype(int) - reference_pixels(DEFAULT_MODEL, rgb8[None])[0])
        assert d.max() <= 1 and (d > 0).mean() < 1e-3, f"{p.name}: max {d.max()}, {(d > 0).mean():.1e}"


def test_a_capture_makes_no_full_frame_float_copy(tiny_model, tmp_path):
    """Preprocess -> tiles -> engine -> Postprocess of a 1920x1080 frame, with and without a calibration
    profile: Python-side allocations (numpy's are traced) peak below 3/4 of one float32 copy of the frame:
    the calibrated frame and the output (uint8, 1/4 each), and a strip of rows in float."""
    from calibration.profile import update
    from edge.profile import load

    h, w = 1080, 1920
    frame = Frame(np.random.default_rng(1).integers(0, 256, (h, w, 3), dtype=np.uint8), 1, time.monotonic())
    flat = np.ones((h, w, 3), np.float32)
    update(tmp_path / "p.json", "flat", {"frames": 1}, flat)
    enh, _ = Enhancer.open(tiny_model, "onnxruntime", tile=512, batch=4)
    float_frame = h * w * 3 * 4
    for profile in (None, load(tmp_path / "p.json")):
        pre, post = Preprocess(profile, enh.resample, 960, enh.pixel_type), Postprocess("png")
        post.capture(enh.run_network(pre.capture(frame)))          # warm-up: sessions, buffers
        tracemalloc.start()
        out = post.capture(enh.run_network(pre.capture(frame)))
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert out.dtype == np.uint8 and out.shape == frame.image.shape
        assert peak < 0.75 * float_frame, f"peak {peak / 1e6:.1f} MB with profile {profile is not None}: " \
                                       f"a float32 frame is {float_frame / 1e6:.1f} MB"



RELEASE_SCRIPT = """
import numpy as np
from edge import heap
from edge.enhancer import Enhancer
heap.bound_heap()   # as the daemon runs

def rss():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024

enh, _ = Enhancer.open(None, "onnxruntime", tile=768, batch=1)
x = np.random.default_rng(3).integers(0, 256, (1, 768, 768, 3), dtype=np.uint8)
before = rss()
first = enh.engine.infer(x).copy()
grown = rss() - before
enh.engine.release_memory()
kept = rss() - before
assert enh.engine.releasing
assert np.array_equal(enh.engine.infer(x), first), "the same pixels after the release"
print(f"{grown:.1f} {kept:.1f}")
"""


def test_onnxruntime_gives_its_arena_back_and_runs_the_same_after():
    """release_memory() (called around every capture): the CPU arena a 768 x 768 tile grew (~130 MB with
    the default model) goes back to the system, and the next run gives the same pixels. In a fresh
    process with the daemon's heap settings, so that what this one ran before does not count."""
    r = subprocess.run([sys.executable, "-c", RELEASE_SCRIPT], capture_output=True, text=True, timeout=120,
                       cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    grown, kept = map(float, r.stdout.split())
    assert grown > 60 and kept < grown / 3, f"arena grew {grown:.0f} MB, {kept:.0f} MB kept after release"


def test_a_model_that_refuses_the_release_run_keeps_its_arena_and_says_so_once(tmp_path, caplog):
    """A backend's release is only an economy: a model that refuses the small release input (this one
    folds its pixels into rows of 128, so an 8 x 8 input has none) still enhances, logs one warning and
    is not asked again."""
    shape = numpy_helper.from_array(np.array([0, 3, 128, -1], np.int64), "rows")
    g = helper.make_graph([helper.make_node("Reshape", ["x", "rows"], ["folded"]),
                           helper.make_node("Shape", ["x"], ["s"]),
                           helper.make_node("Reshape", ["folded", "s"], ["y"])], "rows128",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, "h", "w"])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3, "h", "w"])], [shape])
    path = tmp_path / "rows128.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    engine = OnnxRuntimeEngine(str(path))
    x = np.random.default_rng(5).integers(0, 256, (1, 32, 64, 3), dtype=np.uint8)
    np.testing.assert_array_equal(engine.infer(x), x)
    with caplog.at_level(logging.WARNING, logger="phonescope"):
        engine.release_memory()
        engine.release_memory()
    assert not engine.releasing
    said = [r.getMessage() for r in caplog.records if "arena is kept" in r.getMessage()]
    assert len(said) == 1 and "8x8 run to release it failed" in said[0]
    np.testing.assert_array_equal(engine.infer(x), x)
