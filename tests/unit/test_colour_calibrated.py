"""Colour-calibrated phones (issue 13): a phone of the randomised family is calibrated from the colour chart
photographed through it, as a technician calibrates a kiosk (`phonescope calibrate colour`), so that the
pairs made through it show the model a phone's colour response measured instead of guessed from a tile; a
model's card says which calibration its inputs had, and the kiosk says when its frames differ."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from calibration import colour as C
from edge.colourchart import SIMULATED_METHOD, calibrated_like_a_kiosk, render_chart, sample_patches, simulated_phone_ccm
from edge.imageio import read_rgb8
from edge.profile import Profile, apply_ccm, model_misfit
from edge.simulator import DEFAULT_PHONE, degrade, random_phone
from models import data as D
from models.heldout import heldout_pairs
from models.metrics import ciede2000

SLIDES = Path(__file__).resolve().parents[1] / "slides"
PHONES = [random_phone(np.random.default_rng(s), f"family-{s}") for s in range(6)] + [DEFAULT_PHONE]


@pytest.mark.parametrize("phone", PHONES, ids=lambda p: p.name)
def test_a_phones_chart_profile_takes_most_of_its_colour_error_away(phone):
    """Fitted on one photo of the chart, checked on another (other noise and JPEG draws)."""
    chart, corners = render_chart(patch=120, gap=24)
    shot, _ = degrade(chart, phone.replace(vignetting=0.0), seed=3)
    measured = sample_patches(shot / 255.0, corners * (shot.shape[1] / chart.shape[1]))
    after = C.delta_e(apply_ccm(measured, simulated_phone_ccm(phone, seed=0), SIMULATED_METHOD))
    before = C.delta_e(measured)
    assert after.mean() < 4.0 and after.mean() < 0.5 * before.mean(), (before.mean(), after.mean())


def _field(path: Path, name: str) -> D.Field:
    return D.Field(name=name, image=read_rgb8(path)[:384, :384], sample=name.split("__")[0], heldout=True)


def test_calibrated_family_pairs_are_their_phones_images_colour_corrected():
    """Same phones, same fields and names; each phone image is the uncalibrated one through its phone's
    chart profile, and over the family of phones it is closer in colour to the reference."""
    fields = [_field(SLIDES / "malaria-giemsa" / "MPIDB-Ovale-held.jpg", "malaria__ovale"),
              _field(SLIDES / "ihc" / "kather_Tumor_CD31_HiRes-held.jpg", "ihc__cd31")]
    raw = D.simulate_family_pairs(fields, 3, workers=1)
    cal = D.simulate_family_pairs(fields, 3, workers=1, calibrated=True)
    assert [p.name for p in raw] == [p.name for p in cal] and [p.slide for p in cal] == ["malaria__ovale"] * 3 + ["ihc__cd31"] * 3
    err_raw, err_cal = [], []
    for r, c in zip(raw, cal):
        assert c.phone.shape == r.phone.shape and c.phone.dtype == np.uint8 and not np.array_equal(c.phone, r.phone)
        ref = r.reference / 255.0
        err_raw.append(ciede2000(D.resample_to(r.phone / 255.0, ref.shape[:2]), ref))
        err_cal.append(ciede2000(D.resample_to(c.phone / 255.0, ref.shape[:2]), ref))
    assert np.mean(err_cal) < 0.7 * np.mean(err_raw), (err_raw, err_cal)


def test_heldout_default_phone_pairs_are_calibrated_by_the_default_phones_profile():
    raw = heldout_pairs([SLIDES / "malaria-giemsa"], "default", workers=1)
    cal = heldout_pairs([SLIDES / "malaria-giemsa"], "default", workers=1, calibrated=True)
    assert raw and [p.name for p in cal] == [p.name for p in raw]
    for r, c in zip(raw, cal):
        assert np.array_equal(c.phone, calibrated_like_a_kiosk(r.phone, DEFAULT_PHONE))


class _Card:
    def __init__(self, calibrated_input):
        self.name, self.raw = "m", {"training": {"calibrated_input": calibrated_input}}


def _profile(colour=True, flat=False) -> Profile:
    return Profile(Path("kiosk.json"), 1, {"method": "linear", "matrix": np.eye(3).tolist()} if colour else None,
                   np.ones((4, 4, 3), np.float32) if flat else None, None, {})


def test_the_kiosk_says_when_its_frames_are_not_calibrated_as_the_model_was_trained():
    assert model_misfit(None, _Card([])) is None
    assert model_misfit(_profile(), _Card(["colour"])) is None
    assert "no calibration profile is set" in model_misfit(None, _Card(["colour"]))
    assert "no colour section" in model_misfit(_profile(colour=False, flat=True), _Card(["colour"]))
    said = model_misfit(_profile(colour=True, flat=True), _Card(["colour"]))
    assert "(flat)" in said and "not trained on calibrated images" in said
    assert "(colour)" in model_misfit(_profile(), _Card([]))
    card = _Card(["colour"])
    card.raw["training"]["colour_method"] = "vandermonde"
    assert "--method vandermonde" in model_misfit(_profile(), card)   # the profile's is linear


def test_a_colour_profile_chooses_the_calibrated_model_of_the_type_where_there_is_one(tmp_path, monkeypatch):
    import json

    from edge import config, modelcard
    from edge.profile import has_colour

    prof = tmp_path / "kiosk.json"
    prof.write_text(json.dumps({"format": "phonescope-calibration/1", "version": 1, "colour": None}))
    assert not has_colour(prof) and not has_colour("") and not has_colour(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{")
    assert not has_colour(tmp_path / "bad.json"), "an unreadable profile is reported when it is loaded"
    cfg = config.load(None, {})
    cfg["model"]["sample"], cfg["calibration"]["profile"] = "malaria", str(prof)
    monkeypatch.setattr(modelcard, "CALIBRATED_MODELS", {"malaria": "cal-m"})
    assert modelcard.configured_model(cfg) == modelcard.ZOO / f"{modelcard.SAMPLE_MODELS['malaria']}.onnx"
    prof.write_text(json.dumps({"format": "phonescope-calibration/1", "version": 2,
                                "colour": {"method": "linear", "matrix": np.eye(3).tolist()}}))
    assert has_colour(prof) and modelcard.configured_model(cfg) == modelcard.ZOO / "cal-m.onnx"
    cfg["model"]["sample"] = "ihc"
    assert modelcard.configured_model(cfg) == modelcard.ZOO / f"{modelcard.SAMPLE_MODELS['ihc']}.onnx"
    cfg["model"]["path"] = "/x/mine.onnx"
    assert modelcard.configured_model(cfg) == Path("/x/mine.onnx")
    cfg["model"]["path"], cfg["model"]["sample"] = "", ""
    assert modelcard.configured_model(cfg) == modelcard.DEFAULT_MODEL
