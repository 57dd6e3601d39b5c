"""The whole new-phone workflow, end to end, on real images through a phone unlike the default one:
raw phone/benchtop photos -> pairs -> train (short budget) -> export -> enhance -> evaluate."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from calibration.synthetic import OTHER_PHONE, make_set
from edge.imageio import write_image
from edge.simulator import DEFAULT_PHONE
from tests.helpers import SAMPLES, run_cli

pytest.importorskip("torch", reason="training needs PyTorch (the [train] extra)")


@pytest.mark.slow
def test_new_phone_workflow_improves_on_the_input(tmp_path):
    assert OTHER_PHONE.crosstalk != DEFAULT_PHONE.crosstalk and OTHER_PHONE.white_balance != DEFAULT_PHONE.white_balance
    # Fields of the shipped slides: the left part of each slide for training (photographed three
    # times: other warps, other noise), the right part, never seen in training, held out.
    from edge.imageio import read_rgb8

    fields, held = tmp_path / "fields", tmp_path / "held-fields"
    fields.mkdir(), held.mkdir()
    for src in sorted((SAMPLES / "reference").glob("*.jpg")):
        img = read_rgb8(src)
        cut = int(img.shape[1] * 0.55)
        for k in range(3):
            write_image(fields / f"{src.stem}_{k}.png", img[:, :cut])
        write_image(held / f"{src.stem}_right.png", img[:, cut:])
    truth = make_set(sorted(fields.iterdir()), tmp_path / "raw", OTHER_PHONE, seed=1, scales=(1.3, 1.7))
    make_set(sorted(held.iterdir()), tmp_path / "held-raw", OTHER_PHONE, seed=2, scales=(1.3, 1.7))

    r = run_cli("pairs", "--phone", tmp_path / "raw" / "phone", "--reference", tmp_path / "raw" / "reference",
                "--out", tmp_path / "pairs")
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "pairs" / "report.json").read_text())
    accepted = [s for s, e in report["pairs"].items() if e["accepted"]]
    assert len(accepted) >= 8, r.stderr
    for stem in accepted:  # the registered scale is the true sampling factor
        assert abs(report["pairs"][stem]["scale"] - truth["pairs"][stem]["scale"]) < 0.05 * truth["pairs"][stem]["scale"]
    r = run_cli("pairs", "--phone", tmp_path / "held-raw" / "phone", "--reference",
                tmp_path / "held-raw" / "reference", "--out", tmp_path / "held-pairs")
    assert r.returncode == 0 and len(list((tmp_path / "held-pairs" / "phone").iterdir())) >= 2, r.stderr

    r = run_cli("train", "--pairs", tmp_path / "pairs", "--out", tmp_path / "run", "--minutes", "1.5",
                "--log-every", "20", timeout=900)
    assert r.returncode == 0, r.stderr
    assert "fine-tuning from" in r.stderr  # the shipped model is the starting point
    from models.train import HOLD_COLOUR, load_checkpoint

    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["hold_colour"] == HOLD_COLOUR > 0, "colour held"
    r = run_cli("export", tmp_path / "run" / "checkpoint.pt", "--out", tmp_path / "new-phone.onnx")
    assert r.returncode == 0, r.stderr
    card = json.loads((tmp_path / "new-phone.json").read_text())
    assert card["training"]["origin"]["kind"] == "registered pairs"
    assert abs(card["scale"] - report["scale_median"]) < 1e-3 and card["scale"] > 1.2

    # enhance a raw phone frame: the runtime resamples it by the model's scale
    raw_phone = next((tmp_path / "held-raw" / "phone").iterdir())
    r = run_cli("enhance", raw_phone, "--out", tmp_path / "enhanced", "--model", tmp_path / "new-phone.onnx")
    assert r.returncode == 0, r.stderr
    h, w = cv2.imread(str(raw_phone)).shape[:2]
    oh, ow = cv2.imread(str(tmp_path / "enhanced" / f"{raw_phone.stem}.png")).shape[:2]
    assert (oh, ow) == (round(h * card["scale"]), round(w * card["scale"]))

    r = run_cli("evaluate", "--model", tmp_path / "new-phone.onnx", "--pairs", tmp_path / "held-pairs",
                "--json", tmp_path / "eval.json")
    assert r.returncode == 0, r.stderr
    mean = json.loads((tmp_path / "eval.json").read_text())["mean"]
    print(r.stdout)
    assert mean["model"]["ssim"] > mean["input"]["ssim"]
    assert mean["model"]["psnr"] > mean["input"]["psnr"] + 1.0
    assert mean["model"]["ciede2000"] < mean["input"]["ciede2000"] - 1.0
    assert np.isfinite([v for k in mean.values() for v in k.values()]).all()
