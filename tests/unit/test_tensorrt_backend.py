"""The TensorRT backend's own logic (tensor discovery, fixed tiles, double buffering, context handling,
fallback) on stand-ins for `tensorrt` and `pycuda` whose network runs in ONNX Runtime (tests/fake_tensorrt.py).

What this cannot show - kernels, FP16 numerics, the real driver - is for a Jetson (README, "On a Jetson").
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from edge.engines import EngineError, load_tensorrt, meta, open_engine
from edge.engines.gpu import probe_gpu
from edge.engines.tensorrt import TensorRTEngine
from edge.enhancer import Enhancer
from edge.modelcard import load_card
from tests import fake_tensorrt as fake
from tests.helpers import sample_rgb


@pytest.fixture
def runtime(monkeypatch, tiny_model, tmp_path):
    """install(**tensorrt options) -> (calls, engine file) with a fresh engine for tiny_model, 128 px tiles."""
    monkeypatch.setenv("PHONESCOPE_ENGINE_DIR", str(tmp_path))

    def install(**options):
        calls = fake.Calls()
        trt, cuda = fake.make_tensorrt(**options), fake.make_pycuda(calls)
        fake.install(monkeypatch, trt, cuda)
        plan = meta.engine_path(tiny_model)
        plan.write_bytes(b"onnx:" + str(tiny_model).encode())
        machine = meta.Machine(trt.__version__, *probe_gpu())
        meta.meta_path(plan).write_text(json.dumps(meta.make_meta(
            load_card(tiny_model).onnx_sha256, machine, meta.settings_from(128, 4))))
        return calls, plan

    return install


def test_a_plan_runs_tiles_through_two_buffer_slots(runtime, tiny_model):
    calls, plan = runtime()
    engine = TensorRTEngine(plan)
    assert engine.spec.fixed_shape == (128, 128) and engine.spec.max_batch == 4
    assert engine.provider == "TensorRT 10.3.0, Orin (8 SMs, 15 GiB)"
    card = load_card(tiny_model)
    enh, ref = Enhancer(engine, card, batch=4), Enhancer.open(tiny_model, "onnxruntime", tile=0)[0]
    big = np.ascontiguousarray(sample_rgb()[:301, :419])            # 12 tiles: three batches, both slots
    assert np.abs(enh.enhance(big) - ref.enhance(big)).max() <= 1e-4
    small = np.ascontiguousarray(sample_rgb()[:96, :128])           # the daemon's self-test crop
    r = card.receptive_field
    assert np.abs(enh.enhance(small)[:96 - r] - ref.enhance(small)[:96 - r]).max() <= 1e-4
    mem = engine.memory()   # device memory bounded by the plan's tile and batch: activations + two I/O slots
    io = 2 * (2 * 4 * 128 * 128 * 3 + 4 * 4) / 2 ** 20
    assert mem["tile"] == [128, 128] and mem["batch"] == 4 and mem["pinned_host_mb"] == round(io, 1)
    assert mem["device_mb"] == round(4 * 128 * 128 * 48 / 2 ** 20 + io, 1)
    slots = list(engine.slots)
    engine.close()
    engine.close()
    assert calls.push == calls.pop and calls.detach == 1
    assert all(s.dev_in.freed and s.dev_out.freed and s.dev_flag.freed for s in slots)


@pytest.mark.parametrize("error", [MemoryError("cuMemAlloc failed: out of memory"),
                                   TypeError("deserialize_cuda_engine(): incompatible function arguments")])
def test_any_load_failure_releases_the_context_and_auto_falls_back(runtime, tiny_model, error):
    calls, plan = runtime(fail_with=error)
    with pytest.raises(EngineError, match=f"tensorrt: cannot load {plan.name}: {type(error).__name__}"):
        load_tensorrt(plan)
    assert calls.push == calls.pop and calls.detach == 1, "no retained context left behind"
    engine, why = open_engine(tiny_model, "auto", tile=128, batch=4)
    assert engine.name == "onnxruntime" and type(error).__name__ in why and "TensorRT not used" in why
    with pytest.raises(EngineError, match=type(error).__name__):
        open_engine(tiny_model, "tensorrt", tile=128, batch=4)


def test_an_unreadable_plan_is_set_aside_for_a_rebuild(runtime, tiny_model):
    calls, plan = runtime()
    plan.write_bytes(b"\x00garbage")
    with pytest.raises(EngineError, match="could not be deserialized.*make engine"):
        TensorRTEngine(plan)
    assert not plan.exists() and plan.with_name(plan.name + ".bad").exists()
    assert calls.push == calls.pop and calls.detach == 1


def test_auto_takes_a_fresh_engine(runtime, tiny_model):
    runtime()
    engine, why = open_engine(tiny_model, "auto", tile=128, batch=4)
    assert engine.name == "tensorrt" and why.startswith("auto: a fresh TensorRT engine and a GPU")
    engine.close()
    engine, why = open_engine(tiny_model, "auto", tile=256, batch=4)
    assert engine.name == "onnxruntime" and "stale" in why, "built for other tiles"


def test_tensorrt_older_than_10_is_one_line_not_a_parse_error(runtime, tiny_model):
    """JetPack 6.0's TensorRT 8.6 lacks the API used here; it says so instead of failing in the parser."""
    calls, plan = runtime(version="8.6.2")
    machine, why = meta.probe_machine()
    assert machine is None and why == ("TensorRT 8.6.2 is too old: phonescope needs TensorRT 10 or newer "
                                       "(JetPack 6.1 or newer)")
    with pytest.raises(EngineError, match="too old"):
        TensorRTEngine(plan)
    engine, why = open_engine(tiny_model, "auto", tile=128, batch=4)
    assert engine.name == "onnxruntime" and "too old" in why
    assert calls.push == calls.detach == 0, "nothing touched on the GPU"


def test_doctor_reports_tensorrt_the_gpu_and_the_engine(runtime, tiny_model, tmp_path, capsys):
    from argparse import Namespace

    from edge import doctor
    from tests.helpers import SAMPLES

    runtime()
    cfg = tmp_path / "kiosk.toml"
    cfg.write_text(f'[model]\npath = "{tiny_model}"\ntile = 128\nbatch = 4\n')
    doctor.run(Namespace(config=str(cfg), source=f"replay:{SAMPLES / 'phone'}", state_dir=str(tmp_path / "s")))
    lines = capsys.readouterr().out.splitlines()
    assert "OK    gpu          TensorRT 10.3.0 on Orin (8 SMs, 15 GiB) (sm 8.7)" in lines
    assert any(ln.startswith("OK    engine") and ln.endswith(": fresh") for ln in lines), lines
    assert any(ln.startswith("OK    backend      tensorrt: auto: a fresh TensorRT engine") for ln in lines), lines
    cfg.write_text(f'[model]\npath = "{tiny_model}"\ntile = 256\nbatch = 4\n')
    doctor.run(Namespace(config=str(cfg), source=f"replay:{SAMPLES / 'phone'}", state_dir=str(tmp_path / "s")))
    out = capsys.readouterr().out
    assert "WARN  engine" in out and "built for 128x128 tiles, the config asks for 256x256" in out \
        and "-> sudo make engine" in out


def test_gpu_identity_tells_jetson_modules_apart():
    """One name and capability ("Orin", 8.7) for every Orin module; SMs and memory tell which it is."""
    assert probe_gpu(driver=fake.ORIN_NX_16GB) == ("Orin (8 SMs, 15 GiB)", "8.7")
    # the other modules by their data sheets (GPU SMs, memory), not recordings
    modules = {"AGX Orin 64 GB": (16, 64e9), "AGX Orin 32 GB": (14, 32e9), "Orin NX 16 GB": (8, 16.136e9),
               "Orin Nano 4 GB": (4, 4e9)}
    ids = {m: probe_gpu(driver=fake.FakeDriver("Orin", "8.7", sms, int(mem)))[0] for m, (sms, mem) in modules.items()}
    assert len(set(ids.values())) == len(ids), ids
    assert probe_gpu(1, driver=fake.ORIN_NX_16GB) is None, "no second GPU"
