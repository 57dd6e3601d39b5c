"""`phonescope evaluate` as a command, on the shipped samples."""
from __future__ import annotations

import json

from tests.helpers import SAMPLES, run_cli


def test_evaluate_shipped_model_on_held_out_samples(tmp_path):
    out = tmp_path / "e.json"
    r = run_cli("evaluate", "--pairs", SAMPLES, "--json", out)
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert res["count"] == 4 and {"input", "baseline", "oracle_baseline", "model"} == set(res["mean"])
    inp, model = res["mean"]["input"], res["mean"]["model"]
    assert model["ssim"] > inp["ssim"] and model["psnr"] > inp["psnr"] + 3
    assert model["ciede2000"] < inp["ciede2000"] - 2
    assert "CIEDE2000" in r.stdout


def test_evaluate_refuses_a_folder_that_is_not_pairs(tmp_path):
    r = run_cli("evaluate", "--pairs", tmp_path)
    assert r.returncode == 1 and "phone/ and reference/" in r.stderr and "Traceback" not in r.stderr
