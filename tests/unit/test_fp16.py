"""The shipped network is FP16-safe: the FP16 model the TensorRT builder parses (pixel I/O: uint8 in and
out), run by ONNX Runtime, stays within 2 (max) and 0.5 (mean) uint8 steps of the FP32 network rounded on
the host, its FP16 network unclipped within 2/255 of FP32 with no inf/NaN, on the sample images and on
black, white and saturated frames."""
from __future__ import annotations

import numpy as np
import pytest

from edge.modelcard import DEFAULT_MODEL
from tests.helpers import SAMPLES, float_network, reference_pixels

pytest.importorskip("onnxconverter_common", reason="the FP16 conversion needs onnxconverter-common ([dev] extra)")


def frames():
    from edge.imageio import read_image

    for p in sorted((SAMPLES / "phone").glob("*.jpg")):
        img = read_image(p)[0]
        yield p.stem, img[: img.shape[0] // 2 * 2, : img.shape[1] // 2 * 2]
    size = (128, 160, 3)
    yield "black", np.zeros(size, np.float32)
    yield "white", np.ones(size, np.float32)
    for name, rgb in (("red", (1, 0, 0)), ("green", (0, 1, 0)), ("blue", (0, 0, 1)), ("cyan", (0, 1, 1)),
                      ("magenta", (1, 0, 1)), ("yellow", (1, 1, 0))):
        yield f"saturated-{name}", np.broadcast_to(np.array(rgb, np.float32), size).copy()
    checker = (np.indices(size[:2]).sum(0) % 2).astype(np.float32)  # worst-case high contrast
    yield "checkerboard", np.repeat(checker[..., None], 3, axis=2)


@pytest.fixture(scope="module")
def sessions():
    import onnxruntime as ort

    from models.engine_build import fp16_network, fp16_onnx

    opts = dict(providers=["CPUExecutionProvider"])
    s16 = ort.InferenceSession(fp16_onnx(DEFAULT_MODEL), **opts)  # exactly what `engine build` hands to TensorRT
    inner = ort.InferenceSession(fp16_network(DEFAULT_MODEL).SerializeToString(), **opts)
    assert s16.get_inputs()[0].type == "tensor(uint8)", "the engine's input is uint8 pixels"
    assert inner.get_inputs()[0].type == "tensor(float)", "the FP16 network keeps float32 I/O inside the wrapper"
    return s16, inner


def test_fp16_model_is_really_fp16():
    import onnx

    from models.engine_build import fp16_onnx

    m = onnx.load_from_string(fp16_onnx(DEFAULT_MODEL))
    weights = {init.data_type for init in m.graph.initializer if not init.name.startswith("pixels/")}
    assert weights == {onnx.TensorProto.FLOAT16}, "every network weight is FP16 (the pixel scaling stays float)"


@pytest.mark.parametrize("name,img", list(frames()), ids=[n for n, _ in frames()])
def test_fp16_matches_fp32(sessions, name, img):
    s16, inner = sessions
    px = np.round(img * 255).astype(np.uint8)[None]
    out, flag = s16.run(None, {"pixels": px})
    assert not flag.any(), f"{name}: FP16 produced inf/NaN"
    d = np.abs(out.astype(np.int16) - reference_pixels(DEFAULT_MODEL, px))   # what the kiosk delivers
    assert d.max() <= 2, f"{name}: max error {d.max()}/255"
    assert d.mean() <= 0.5, f"{name}: mean error {d.mean():.3f}/255"
    # the FP16 network unclipped too: no overflow hiding behind the clip
    x = px.transpose(0, 3, 1, 2).astype(np.float32) / 255
    (b,) = inner.run(None, {"input": x})
    assert np.isfinite(b).all() and np.abs(float_network(DEFAULT_MODEL)(x) - b).max() <= 2 / 255
