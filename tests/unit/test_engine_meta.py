"""TensorRT engine metadata, freshness, quarantine and the `make engine` stamp: pure Python and make,
no TensorRT needed."""
from __future__ import annotations

import json
import os

import pytest

from edge.engines import meta as M

SHA = "ab" * 32
ORIN = M.Machine("10.3.0", "Orin", "8.7")
SETTINGS = M.Settings((512, 512), 4)


def built(tmp_path, machine=ORIN, settings=SETTINGS, sha=SHA):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"plan")
    M.meta_path(engine).write_text(json.dumps(M.make_meta(sha, machine, settings, onnx="m.onnx")))
    return engine


def test_fresh_when_everything_matches(tmp_path):
    f = M.freshness(built(tmp_path), SHA, ORIN, SETTINGS)
    assert f.fresh and str(f) == "fresh"


def test_metadata_records_what_the_engine_was_built_from(tmp_path):
    d = json.loads(M.meta_path(built(tmp_path)).read_text())
    assert d["onnx_sha256"] == SHA and d["tensorrt_version"] == "10.3.0" and d["gpu_name"] == "Orin"
    assert d["compute_capability"] == "8.7" and d["precision"] == "fp16"
    assert d["tile"] == [512, 512] and d["batch"] == 4


def test_missing(tmp_path):
    f = M.freshness(tmp_path / "none.engine", SHA, ORIN, SETTINGS)
    assert f.state == "missing" and "no engine" in f.reason


@pytest.mark.parametrize("change,why", [
    (dict(sha="cd" * 32), "another ONNX"),
    (dict(machine=M.Machine("10.4.0", "Orin", "8.7")), "TensorRT 10.3.0"),      # a JetPack upgrade
    (dict(machine=M.Machine("10.3.0", "NVIDIA H100", "9.0")), "built for Orin"),
    (dict(settings=M.Settings((1024, 1024), 4)), "512x512 tiles"),
    (dict(settings=M.Settings((512, 512), 8)), "batch 4"),
    (dict(settings=M.Settings((512, 512), 4, "fp32")), "fp16"),
])
def test_stale_says_why(tmp_path, change, why):
    engine = built(tmp_path)
    f = M.freshness(engine, change.get("sha", SHA), change.get("machine", ORIN), change.get("settings", SETTINGS))
    assert f.state == "stale" and why in f.reason, f


def test_stale_without_readable_metadata(tmp_path):
    engine = built(tmp_path)
    M.meta_path(engine).write_text("{not json")
    assert M.freshness(engine, SHA, ORIN, SETTINGS).state == "stale"
    M.meta_path(engine).unlink()
    assert "no readable metadata" in M.freshness(engine, SHA, ORIN, SETTINGS).reason


def test_unknown_machine_and_settings_are_not_compared(tmp_path):
    engine = built(tmp_path)
    assert M.freshness(engine, SHA, None, None).fresh
    assert M.freshness(engine, SHA, M.Machine("11.0", "x", "1.0"), None).state == "stale"


def test_quarantined_engine_is_missing_and_says_so(tmp_path):
    from edge.engines.tensorrt import quarantine  # importable without TensorRT

    engine = built(tmp_path)
    assert quarantine(engine) == "set aside as m.engine.bad"
    assert (tmp_path / "m.engine.bad").read_bytes() == b"plan" and not engine.exists()
    f = M.freshness(engine, SHA, ORIN, SETTINGS)
    assert f.state == "missing" and ".bad" in f.reason
    assert quarantine(engine).startswith("could not be set aside"), "says so when it could not (read-only)"


def test_settings_need_a_tile():
    with pytest.raises(ValueError, match="tile"):
        M.settings_from(0, 4)
    assert M.settings_from(512, 2) == M.Settings((512, 512), 2)


def test_engine_dir_follows_the_environment_then_the_kiosk(tmp_path, monkeypatch):
    monkeypatch.delenv("PHONESCOPE_ENGINE_DIR", raising=False)
    monkeypatch.setattr(M, "KIOSK_ENGINE_DIR", tmp_path / "kiosk")            # not installed here
    assert M.engine_path(tmp_path / "a" / "m.onnx") == (tmp_path / "a" / "m.engine").resolve()
    (tmp_path / "kiosk").mkdir()                                              # an installed kiosk
    assert M.engine_path(tmp_path / "a" / "m.onnx") == tmp_path / "kiosk" / "m.engine"
    monkeypatch.setenv("PHONESCOPE_ENGINE_DIR", str(tmp_path / "engines"))   # the unit's setting
    assert M.engine_path(tmp_path / "a" / "m.onnx") == tmp_path / "engines" / "m.engine"


def test_one_engine_folder_for_make_install_the_unit_and_the_daemon():
    """`make engine`, install.sh and the service once each looked in a different place."""
    from tests.helpers import ROOT

    where = str(M.KIOSK_ENGINE_DIR)
    assert f"Environment=PHONESCOPE_ENGINE_DIR={where}\n" in (ROOT / "deploy" / "phonescope.service").read_text()
    assert f"KIOSK_ENGINE_DIR := {where}\n" in (ROOT / "Makefile").read_text()
    assert f"ENGINES={where}\n" in (ROOT / "deploy" / "install.sh").read_text()


# -- the stamp `make engine` keys on --------------------------------------------------------

def test_stamp_covers_everything_a_rebuild_depends_on():
    base = M.stamp_text(SHA, ORIN, SETTINGS)
    assert base == M.stamp_text(SHA, ORIN, SETTINGS)  # no times: stable
    for other in (M.stamp_text("cd" * 32, ORIN, SETTINGS),
                  M.stamp_text(SHA, M.Machine("10.4.0", "Orin", "8.7"), SETTINGS),
                  M.stamp_text(SHA, M.Machine("10.3.0", "Orin", "8.9"), SETTINGS),
                  M.stamp_text(SHA, ORIN, M.Settings((512, 512), 8))):
        assert other != base
    assert f"recipe={M.BUILD_RECIPE}\n" in base and f"onnxconverter_common={M.converter_version()}\n" in base


def test_an_engine_from_an_older_build_recipe_is_stale(tmp_path):
    engine = built(tmp_path)
    m = json.loads(M.meta_path(engine).read_text())
    m["recipe"] = M.BUILD_RECIPE - 1
    M.meta_path(engine).write_text(json.dumps(m))
    f = M.freshness(engine, SHA, ORIN, SETTINGS)
    assert f.state == "stale" and "recipe" in f.reason


def test_write_stamp_touches_the_file_only_on_change(tmp_path):
    stamp = tmp_path / "m.engine.stamp"
    assert M.write_stamp(stamp, "a=1\n")
    os.utime(stamp, (1_000_000, 1_000_000))
    assert not M.write_stamp(stamp, "a=1\n") and stamp.stat().st_mtime == 1_000_000
    assert M.write_stamp(stamp, "a=2\n") and stamp.stat().st_mtime > 1_000_000 and stamp.read_text() == "a=2\n"


def test_backend_selection_without_tensorrt():
    from edge.engines import EngineError, open_engine
    from edge.modelcard import DEFAULT_MODEL

    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    engine, why = open_engine(DEFAULT_MODEL, "auto", tile=512, batch=4)
    assert engine.name == "onnxruntime" and "TensorRT not used" in why and "not installed" in why
    engine.close()
    with pytest.raises(EngineError, match="tensorrt: TensorRT is not installed"):
        open_engine(DEFAULT_MODEL, "tensorrt", tile=512, batch=4)
    with pytest.raises(EngineError, match="unknown backend"):
        open_engine(DEFAULT_MODEL, "cuda")


def test_a_missing_fp16_converter_is_one_line_not_an_internal_error(monkeypatch, tmp_path):
    import sys

    from edge.errors import UserError
    from models.engine_build import fp16_onnx

    monkeypatch.setitem(sys.modules, "onnxconverter_common", None)   # as if not installed
    with pytest.raises(UserError, match="needs onnxconverter-common"):
        fp16_onnx(tmp_path / "m.onnx")
