"""The shipped family model (models/zoo/phonescope-family): for a phone the default model was not made for,
before that phone has pairs of its own. Trained on every sample type through the randomised phone family."""
from __future__ import annotations

import json

import numpy as np

from edge.glass import WhiteBalance
from edge.imageio import read_rgb8, write_image
from edge.modelcard import ZOO, load_card
from edge.simulator import degrade, random_phone
from tests.helpers import SAMPLES, run_cli

FAMILY = ZOO / "phonescope-family.onnx"
SLIDES = {"blood": ("BloodImage_00004", "BloodImage_00090", "BloodImage_00130"), "tissue": ("torchstain_target",)}


def test_the_family_model_is_shipped_with_its_card_and_a_narrow_glass_range_for_blood():
    card = load_card(FAMILY)
    assert card.name == "phonescope-family" and card.raw["training"]["origin"]["glass_balanced"].keys() == {"blood"}
    assert set(card.raw["metrics"]["by_sample"]) == {"blood", "tissue", "ihc", "malaria"}
    wb = WhiteBalance.from_card(card.raw, "blood")
    assert wb is not None and max(wb.spread) < 0.02, "every phone's glass is brought to the one it trained on"


def test_the_family_model_improves_the_shipped_slides_through_phones_it_never_saw(tmp_path):
    """Each shipped slide through three phones drawn from the family (seeds no training run used), named by
    type so that evaluate balances the blood smears' glass: the model beats its input per type on SSIM and
    PSNR (blood by over 1 dB; this H&E slide, torchstain_target, held out of training and not balanced
    since the balance counts slides: measured 16.82 -> 17.67 dB, asserted over 0.5), and on blood
    smears' colour. Not on this H&E slide's colour (11.14 -> 11.30 CIEDE2000; 13.27 when its glass was
    balanced): a known limit, in the README."""
    for sub in ("phone", "reference"):
        (tmp_path / sub).mkdir()
    for sample, names in SLIDES.items():
        for name in names:
            ref = read_rgb8(SAMPLES / "reference" / f"{name}.jpg")
            for s in range(3):
                phone, _ = degrade(ref, random_phone(np.random.default_rng(900 + s), f"unseen-{s}"), seed=s)
                for sub, img in (("phone", phone), ("reference", ref)):
                    write_image(tmp_path / sub / f"{sample}__{name}-{s}.png", img.astype(np.float32) / 255)
    out = tmp_path / "e.json"
    r = run_cli("evaluate", "--model", FAMILY, "--pairs", tmp_path, "--json", out)
    assert r.returncode == 0, r.stderr
    by = json.loads(out.read_text())["by_sample"]
    assert set(by) == {"blood", "tissue"}
    for sample, g in by.items():
        m = g["mean"]
        print(sample, {k: {q: round(v, 3) for q, v in m[k].items()} for k in ("input", "baseline", "model")})
        margin = 1.0 if sample == "blood" else 0.5
        assert m["model"]["ssim"] > m["input"]["ssim"] and m["model"]["psnr"] > m["input"]["psnr"] + margin, (sample, m)
    blood = by["blood"]["mean"]
    assert blood["model"]["ciede2000"] < blood["input"]["ciede2000"] - 1, blood
