"""`phonescope engine` and `make engine` without TensorRT: one line, nothing built; the stamp rule in make."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from edge.engines import meta as M
from tests.helpers import ROOT, run_cli
from tests.unit.test_engine_meta import ORIN, SETTINGS, SHA


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_makefile_rebuilds_only_when_the_stamp_changes(tmp_path):
    """The real Makefile's engine rule: up to date after a build, still up to date when the stamp is
    rewritten with the same content, out of date when its content (model, settings, TensorRT, GPU) changes,
    and out of date when a build died after writing the plan but before its metadata (make's target)."""
    engine, stamp = tmp_path / "m.engine", tmp_path / "m.engine.stamp"

    def up_to_date() -> bool:
        r = subprocess.run(["make", "-q", "-f", str(ROOT / "Makefile"), f"ENGINE_FILE={engine}",
                            f"ENGINE_STAMP={stamp}", f"{engine}.json"], cwd=ROOT, capture_output=True, text=True)
        assert r.returncode in (0, 1), r.stderr
        return r.returncode == 0

    M.write_stamp(stamp, M.stamp_text(SHA, ORIN, SETTINGS))
    os.utime(stamp, (1_000_000, 1_000_000))
    assert not up_to_date()                 # no engine yet
    engine.write_bytes(b"plan")             # a build that died before writing the metadata
    assert not up_to_date()
    M.meta_path(engine).write_text("{}")    # as `engine build` leaves it: metadata last, newer than the stamp
    assert up_to_date()
    M.write_stamp(stamp, M.stamp_text(SHA, ORIN, SETTINGS))   # same machine, same model: nothing to do
    assert up_to_date()
    M.write_stamp(stamp, M.stamp_text(SHA, M.Machine("10.4.0", "Orin", "8.7"), SETTINGS))  # JetPack upgrade
    assert not up_to_date()


def test_make_engine_without_tensorrt_stops_with_one_line(tmp_path):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    r = subprocess.run([sys.executable, "-m", "edge.cli", "engine", "stamp", str(tmp_path / "s")], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and not (tmp_path / "s").exists()
    assert r.stderr.count("\n") == 1 and "TensorRT is not installed" in r.stderr, r.stderr
    if shutil.which("make"):
        r = subprocess.run(["make", "--no-print-directory", "-f", str(ROOT / "Makefile"), "engine",
                            "-o", ".venv/.installed", f"PHONESCOPE={sys.executable} -m edge.cli",
                            f"ENGINE_STAMP={tmp_path / 's'}", f"ENGINE_FILE={tmp_path / 'e.engine'}"],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert r.returncode != 0 and "TensorRT is not installed" in r.stderr
        assert not (tmp_path / "e.engine").exists()


def test_engine_cli_without_tensorrt():
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    r = run_cli("engine", "build", "--force", timeout=120)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "cannot build a TensorRT engine here" in r.stderr
    r = run_cli("engine", "check", timeout=120, env={"PHONESCOPE_ENGINE_DIR": "/nonexistent"})
    assert r.returncode == 1 and "missing" in r.stdout and "make engine" in r.stderr


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_engine_builds_where_the_service_looks(tmp_path):
    def engine_file(env: dict) -> str:
        e = {k: v for k, v in os.environ.items() if k != "PHONESCOPE_ENGINE_DIR"}
        r = subprocess.run(["make", "-s", "-f", str(ROOT / "Makefile"), "--eval",
                            "show-engine-file: ; @echo $(ENGINE_FILE)", "show-engine-file",
                            "ENGINE_MODEL=models/zoo/phonescope-default.onnx"],
                           cwd=ROOT, capture_output=True, text=True, env={**e, **env})
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    assert engine_file({"PHONESCOPE_ENGINE_DIR": str(tmp_path)}) == f"{tmp_path}/phonescope-default.engine"
    if not M.KIOSK_ENGINE_DIR.is_dir():     # a development machine: beside the model
        assert engine_file({}) == "models/zoo/phonescope-default.engine"


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_engine_builds_the_model_the_config_runs(tmp_path):
    """`make engine` once built the default model's engine whatever [model] path or sample said, so a kiosk
    for IHC slides found no engine for its model. Dry run (with a stamp already there): the stamp and the
    build name the IHC model and its engine; a config that names no usable model stops with one line."""
    config = tmp_path / "k.toml"

    def dry_run(text: str) -> subprocess.CompletedProcess:
        config.write_text(text)
        return subprocess.run(["make", "-n", "--no-print-directory", "-f", str(ROOT / "Makefile"), "engine",
                               "-o", ".venv/.installed", f"PY={sys.executable}", "PHONESCOPE=phonescope",
                               f"ENGINE_CONFIG={config}", f"ENGINE_DIR={tmp_path}"],
                              cwd=ROOT, capture_output=True, text=True, timeout=120)

    (tmp_path / "phonescope-ihc.engine.stamp").write_text("")
    r = dry_run('[model]\nsample = "ihc"\n')
    assert r.returncode == 0, r.stderr
    args = f"--model models/zoo/phonescope-ihc.onnx --config {config}"
    assert f"phonescope engine stamp {tmp_path}/phonescope-ihc.engine.stamp {args}\n" in r.stdout, r.stdout
    assert f"phonescope engine build --force --out {tmp_path}/phonescope-ihc.engine {args}\n" in r.stdout, r.stdout
    for bad, said in (('sample = "platelets"', "[model] sample: must be one of"), ('path = " "', "no such model")):
        r = dry_run(f"[model]\n{bad}\n")
        assert r.returncode != 0 and r.stderr.startswith("phonescope: ") and said in r.stderr, r
        assert "engine stamp" not in r.stdout
