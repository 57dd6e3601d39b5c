"""The shipped network is FP16-safe: the FP16 model the TensorRT builder parses, run by ONNX Runtime,
stays within 2/255 (max) and 0.5/255 (mean) of FP32, with no inf/NaN, on the sample images and on
black, white and saturated frames."""
from __future__ import annotations

import numpy as np
import pytest

from edge.modelcard import DEFAULT_MODEL
from tests.helpers import SAMPLES

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

    from models.engine_build import fp16_onnx

    fp16 = fp16_onnx(DEFAULT_MODEL)  # exactly what `engine build` hands to TensorRT
    opts = dict(providers=["CPUExecutionProvider"])
    s32 = ort.InferenceSession(str(DEFAULT_MODEL), **opts)
    s16 = ort.InferenceSession(fp16, **opts)
    assert s16.get_inputs()[0].type == "tensor(float)", "FP16 model must keep float32 I/O"
    return s32, s16


def test_fp16_model_is_really_fp16():
    import onnx

    from models.engine_build import fp16_onnx

    m = onnx.load_from_string(fp16_onnx(DEFAULT_MODEL))
    dtypes = {init.data_type for init in m.graph.initializer}
    assert onnx.TensorProto.FLOAT16 in dtypes and onnx.TensorProto.FLOAT not in dtypes


@pytest.mark.parametrize("name,img", list(frames()), ids=[n for n, _ in frames()])
def test_fp16_matches_fp32(sessions, name, img):
    s32, s16 = sessions
    x = np.ascontiguousarray(img.transpose(2, 0, 1)[None], np.float32)
    (a,) = s32.run(None, {"input": x})
    (b,) = s16.run(None, {"input": x})
    assert np.isfinite(b).all(), f"{name}: FP16 produced inf/NaN"
    d = np.abs(np.clip(a, 0, 1) - np.clip(b, 0, 1))  # what the runtime delivers (clipped to [0, 1])
    assert d.max() <= 2 / 255, f"{name}: max error {d.max() * 255:.3f}/255"
    assert d.mean() <= 0.5 / 255, f"{name}: mean error {d.mean() * 255:.3f}/255"
    # unclipped too: no overflow hiding behind the clip
    assert np.abs(a - b).max() <= 2 / 255
