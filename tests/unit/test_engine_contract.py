"""One contract for every backend: pixels in (uint8, FP16 where taken), the same pixels out, agreement with
the FP32 network clipped and rounded on the host (what the kiosk did before the pixel I/O moved into the
graph), tiled == untiled, batch sizes, NaN refused, bad input -> EngineError. ONNX Runtime and PyTorch
(CPU, FP32; CUDA FP16 where present) always run it; TensorRT runs it where TensorRT, pycuda and a GPU
exist (it builds an engine for the test)."""
from __future__ import annotations

import numpy as np
import pytest

from edge.engines import EngineError, open_engine
from edge.enhancer import Enhancer
from edge.modelcard import DEFAULT_MODEL, load_card
from tests.helpers import float_network, reference_pixels, sample_rgb

TILE = 96
MAX_BATCH = 3
CARD = load_card(DEFAULT_MODEL)


def _tensorrt_engine(tmp_path_factory):
    from edge.engines import meta

    machine, why = meta.probe_machine()
    if machine is None:
        pytest.skip(f"TensorRT backend not available: {why}")
    from edge.engines.tensorrt import TensorRTEngine
    from models.engine_build import build

    out = tmp_path_factory.mktemp("trt") / "contract.engine"
    build(DEFAULT_MODEL, out, CARD.onnx_sha256, meta.settings_from(TILE, MAX_BATCH))
    return TensorRTEngine(out, alignment=CARD.alignment)


@pytest.fixture(scope="module", params=["onnxruntime", "torch", "tensorrt"])
def engine(request, tmp_path_factory):
    if request.param == "torch":
        pytest.importorskip("torch", reason="torch backend needs PyTorch (the [train] extra)")
    if request.param == "tensorrt":
        e = _tensorrt_engine(tmp_path_factory)
    else:
        e, _ = open_engine(DEFAULT_MODEL, request.param, alignment=CARD.alignment, threads=2)
    yield e
    e.close()


def tolerance(engine) -> int:
    """In uint8 steps: FP32 backends agree to a rounding step; FP16 ones (TensorRT, torch on CUDA) to the
    FP16-safety bound."""
    fp16 = engine.name == "tensorrt" or getattr(engine, "cuda", False)
    return 2 if fp16 else 1


def tiles(n: int, seed: int = 0) -> np.ndarray:
    """n uint8 TILE x TILE x 3 crops of a real phone image."""
    img = np.round(sample_rgb() * 255).astype(np.uint8)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        y, x = rng.integers(0, img.shape[0] - TILE), rng.integers(0, img.shape[1] - TILE)
        out.append(img[y:y + TILE, x:x + TILE])
    return np.ascontiguousarray(np.stack(out))


def diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16))


def test_pixels_in_pixels_out_agree_with_the_fp32_network(engine):
    x = tiles(2)
    y = engine.infer(x)
    assert y.shape == x.shape and y.dtype == np.uint8
    d = diff(y, reference_pixels(DEFAULT_MODEL, x))
    assert d.max() <= tolerance(engine), f"{engine.name}: max difference {d.max()} steps from the FP32 network"
    assert (d > 0).mean() < 1e-3 or tolerance(engine) > 1, "only rounding ties may differ"


def test_fp16_pixels_for_frames_with_more_than_8_bits(engine):
    """FP16 [0, 1] pixels in, FP16 out, clipped, agreeing with the FP32 network (engines that take them)."""
    if "float16" not in engine.spec.pixel_types:
        with pytest.raises(EngineError, match="uint8 pixels"):
            engine.infer(tiles(1).astype(np.float16) / 255)
        return
    x = (tiles(2).astype(np.float32) / 255).astype(np.float16)
    y = engine.infer(x)
    assert y.shape == x.shape and y.dtype == np.float16 and 0 <= y.min() and y.max() <= 1
    ref = np.clip(float_network(DEFAULT_MODEL)(x.transpose(0, 3, 1, 2)), 0, 1).transpose(0, 2, 3, 1)
    assert np.abs(y.astype(np.float32) - ref).max() <= 2e-3 + (tolerance(engine) - 1) / 255


@pytest.mark.parametrize("n", [1, 2, MAX_BATCH])
def test_batch_sizes_are_independent(engine, n):
    """Every batch size up to the maximum gives each tile the output it gets alone."""
    x = tiles(n, seed=n)
    y = engine.infer(x)
    assert y.shape == x.shape
    for i in range(n):
        assert diff(y[i], engine.infer(x[i:i + 1])[0]).max() <= tolerance(engine)


def test_batches_in_sequence(engine):
    """infer_batches of tile views (TensorRT: double-buffered) returns each batch's result, in order; each
    result is read before the next is asked for, as the Enhancer does."""
    batches = [tiles(MAX_BATCH, seed=s) for s in range(5)] + [tiles(1, seed=9)]
    outs = [o.copy() for o in engine.infer_batches(list(b) for b in batches)]
    assert len(outs) == len(batches)
    for b, o in zip(batches, outs):
        assert o.shape == b.shape and np.array_equal(o, engine.infer(b))


def test_tiled_equals_untiled(engine):
    img = np.ascontiguousarray(np.round(sample_rgb()[:250, :330] * 255).astype(np.uint8))  # odd sizes: padding,
    tiled = Enhancer(engine, CARD, tile=TILE, batch=MAX_BATCH)     # non-square grid, border tiles shifted inward
    out = tiled.run_network(img)
    assert out.shape == img.shape and out.dtype == np.uint8
    if engine.spec.fixed_shape is None:
        whole = Enhancer(engine, CARD, tile=0).run_network(img)
        d = diff(out, whole)
        assert d.max() <= tolerance(engine) and (d > 0).mean() < (1e-4 if tolerance(engine) == 1 else 1e-2), \
            "tiled output differs from whole-image output beyond rounding ties"
    else:  # a fixed-shape engine cannot run the whole image: compare with the FP32 whole-image reference
        assert tiled.last.tiles > 1
    d = diff(out, reference_pixels(DEFAULT_MODEL, img[None])[0])
    assert d.max() <= tolerance(engine) and (d > 0).mean() < 1e-3


def test_nan_from_the_network_is_an_engine_error(tmp_path):
    """The pixel graph's non-finite flag (the same graph TensorRT builds): NaN in the network's output is
    refused, not clipped into pixels."""
    from tests.system.faultinject import nan_engine

    broken = nan_engine(str(DEFAULT_MODEL), tmp_path / "nan.onnx")
    with pytest.raises(EngineError, match="NaN or infinite"):
        broken.infer(tiles(1))


def bad_inputs(engine):
    good = tiles(1)
    yield "float32", good.astype(np.float32)
    yield "3-D", good[0]
    yield "4 channels", np.concatenate([good, good[..., :1]], axis=3)
    yield "channels first", np.ascontiguousarray(good.transpose(0, 3, 1, 2))
    yield "empty batch", good[:0]
    yield "odd size", np.ascontiguousarray(good[:, :TILE - 1, :TILE - 1])
    if engine.spec.fixed_shape:
        yield "other tile shape", np.zeros((1, TILE + 2, TILE, 3), np.uint8)
    if engine.spec.max_batch:
        yield "batch too large", np.zeros((engine.spec.max_batch + 1, TILE, TILE, 3), np.uint8)


def test_bad_input_is_an_engine_error(engine):
    for what, x in bad_inputs(engine):
        with pytest.raises(EngineError) as e:
            engine.infer(x)
        assert "\n" not in str(e.value), what


def test_torch_refuses_a_model_without_its_weights(tiny_model):
    pytest.importorskip("torch")
    with pytest.raises(EngineError, match="no weights"):
        open_engine(tiny_model, "torch")


def test_torch_refuses_weights_of_another_model(tmp_path, tiny_model):
    """A .pt that is not the network in the ONNX file is refused, not run."""
    import json
    import shutil

    pytest.importorskip("torch")
    from edge.modelcard import card_path

    onnx = tmp_path / "m.onnx"
    shutil.copy(tiny_model, onnx)
    card = json.loads(card_path(tiny_model).read_text())
    card["weights"] = "default.pt"
    card_path(onnx).write_text(json.dumps(card))
    shutil.copy(DEFAULT_MODEL.with_suffix(".pt"), tmp_path / "default.pt")
    with pytest.raises(EngineError, match="do not match the ONNX model|not usable weights"):
        open_engine(onnx, "torch")
