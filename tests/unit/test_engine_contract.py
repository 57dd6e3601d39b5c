"""One contract for every backend: shape, dtype, agreement with the FP32 reference, tiled == untiled,
batch sizes, bad input -> EngineError. ONNX Runtime and PyTorch (CPU, FP32; CUDA FP16 where present)
always run it; TensorRT runs it where TensorRT, pycuda and a GPU exist (it builds an engine for the test)."""
from __future__ import annotations

import numpy as np
import pytest

from edge.engines import EngineError, open_engine
from edge.enhancer import Enhancer
from edge.modelcard import DEFAULT_MODEL, load_card
from tests.helpers import sample_rgb

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


@pytest.fixture(scope="module")
def reference():
    e, _ = open_engine(DEFAULT_MODEL, "onnxruntime", alignment=CARD.alignment, threads=2)
    yield e
    e.close()


def tolerance(engine) -> float:
    """FP32 backends agree to rounding; FP16 ones (TensorRT, torch on CUDA) to the FP16-safety bound."""
    fp16 = engine.name == "tensorrt" or getattr(engine, "cuda", False)
    return 2 / 255 if fp16 else 1e-4


def tiles(n: int, seed: int = 0) -> np.ndarray:
    img = sample_rgb()
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        y, x = rng.integers(0, img.shape[0] - TILE), rng.integers(0, img.shape[1] - TILE)
        out.append(img[y:y + TILE, x:x + TILE].transpose(2, 0, 1))
    return np.ascontiguousarray(np.stack(out), np.float32)


def test_shape_dtype_and_agreement(engine, reference):
    x = tiles(2)
    y = engine.infer(x)
    assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
    d = np.abs(y - reference.infer(x))
    assert d.max() <= tolerance(engine), f"{engine.name}: max difference {d.max():.2e} from ONNX Runtime FP32"


@pytest.mark.parametrize("n", [1, 2, MAX_BATCH])
def test_batch_sizes_are_independent(engine, n):
    """Every batch size up to the maximum gives each tile the output it gets alone."""
    x = tiles(n, seed=n)
    y = engine.infer(x)
    assert y.shape == x.shape
    for i in range(n):
        assert np.abs(y[i] - engine.infer(x[i:i + 1])[0]).max() <= 1e-5 + tolerance(engine) / 8


def test_batches_in_sequence(engine):
    """infer_batches (TensorRT: double-buffered) returns each batch's result, in order."""
    batches = [tiles(MAX_BATCH, seed=s) for s in range(5)] + [tiles(1, seed=9)]
    outs = list(engine.infer_batches(iter(batches)))
    assert len(outs) == len(batches)
    for b, o in zip(batches, outs):
        assert o.shape == b.shape and np.abs(o - engine.infer(b)).max() <= 1e-6


def test_tiled_equals_untiled(engine, reference):
    img = sample_rgb()[:250, :330]   # odd sizes: padding, non-square grid, border tiles shifted inward
    tiled = Enhancer(engine, CARD, tile=TILE, batch=MAX_BATCH)
    out = tiled.run_network(img)
    assert out.shape == img.shape and out.dtype == np.float32
    if engine.spec.fixed_shape is None:
        whole = Enhancer(engine, CARD, tile=0).run_network(img)
        exact = 1e-5 if tolerance(engine) < 1e-3 else tolerance(engine)  # FP16 kernels differ per shape
        assert np.abs(out - whole).max() <= exact, "tiled output differs from whole-image output"
    else:  # a fixed-shape engine cannot run the whole image: compare with the FP32 whole-image reference
        assert tiled.last.tiles > 1
    whole_ref = Enhancer(reference, CARD, tile=0).run_network(img)
    assert np.abs(out - whole_ref).max() <= tolerance(engine)


def bad_inputs(engine):
    good = tiles(1)
    yield "float64", good.astype(np.float64)
    yield "3-D", good[0]
    yield "4 channels", np.concatenate([good, good[:, :1]], axis=1)
    yield "empty batch", good[:0]
    yield "odd size", np.ascontiguousarray(good[:, :, :TILE - 1, :TILE - 1])
    if engine.spec.fixed_shape:
        yield "other tile shape", np.zeros((1, 3, TILE + 2, TILE), np.float32)
    if engine.spec.max_batch:
        yield "batch too large", np.zeros((engine.spec.max_batch + 1, 3, TILE, TILE), np.float32)


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
