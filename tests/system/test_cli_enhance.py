"""`phonescope enhance`: formats in, PNGs out, bad files refused one line each."""
from __future__ import annotations

import cv2
import numpy as np

from edge.imageio import read_image
from tests.helpers import SAMPLES, run_cli

PHONE = SAMPLES / "phone" / "BloodImage_00004.jpg"


def test_enhance_sample_with_shipped_model(tmp_path):
    r = run_cli("enhance", PHONE, "--out", tmp_path)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "BloodImage_00004.png"
    img = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert img.shape == (480, 640, 3) and img.dtype == np.uint8
    assert "phonescope-default" in r.stderr and "onnxruntime" in r.stderr


def test_whole_image_and_tiled_outputs_match(tmp_path, tiny_model):
    a = run_cli("enhance", PHONE, "--out", tmp_path / "a", "--model", tiny_model, "--tile", "0")
    b = run_cli("enhance", PHONE, "--out", tmp_path / "b", "--model", tiny_model, "--tile", "96")
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    ia = cv2.imread(str(tmp_path / "a" / "BloodImage_00004.png")).astype(int)
    ib = cv2.imread(str(tmp_path / "b" / "BloodImage_00004.png")).astype(int)
    assert np.abs(ia - ib).max() <= 1 and (ia != ib).mean() < 1e-3


def test_formats_are_converted_and_said_so(tmp_path, tiny_model):
    bgr = cv2.imread(str(PHONE))[:120, :160]
    cv2.imwrite(str(tmp_path / "gray.png"), cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(tmp_path / "deep.png"), bgr.astype(np.uint16) * 257)
    cv2.imwrite(str(tmp_path / "alpha.png"), cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA))
    cv2.imwrite(str(tmp_path / "deepgray.tif"), (bgr.astype(np.uint16) * 257)[..., :1].copy())
    names = ["gray.png", "deep.png", "alpha.png", "deepgray.tif"]
    r = run_cli("enhance", *[tmp_path / n for n in names], "--out", tmp_path / "o", "--model", tiny_model)
    assert r.returncode == 0, r.stderr
    assert "converted grayscale to RGB" in r.stdout and "dropped the alpha channel" in r.stdout
    assert "16-bit input" in r.stdout
    deep = cv2.imread(str(tmp_path / "o" / "deep.png"), cv2.IMREAD_UNCHANGED)
    assert deep.dtype == np.uint16 and deep.shape == (120, 160, 3)
    assert cv2.imread(str(tmp_path / "o" / "gray.png"), cv2.IMREAD_UNCHANGED).shape == (120, 160, 3)


def test_bad_inputs_are_refused_and_the_rest_is_done(tmp_path, tiny_model):
    data = PHONE.read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "notes.jpg").write_text("this is not an image\n")
    (tmp_path / "empty.png").write_bytes(b"")
    png = cv2.imencode(".png", cv2.imread(str(PHONE)))[1].tobytes()
    (tmp_path / "cut.png").write_bytes(png[: len(png) - 100])
    bad = ["truncated.jpg", "notes.jpg", "empty.png", "cut.png", "missing.jpg"]
    r = run_cli("enhance", *[tmp_path / b for b in bad], PHONE, "--out", tmp_path / "o", "--model", tiny_model)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    for b in bad:
        lines = [ln for ln in r.stderr.splitlines() if b in ln]
        assert len(lines) == 1, (b, r.stderr)
    assert "truncated JPEG" in r.stderr and "no such file" in r.stderr and "empty file" in r.stderr
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["BloodImage_00004.png"]
    assert "5 of 6 file(s) failed" in r.stderr


def test_bad_model_and_bad_arguments(tmp_path):
    fake = tmp_path / "fake.onnx"
    fake.write_bytes(b"\x08\x01garbage")
    r = run_cli("enhance", PHONE, "--out", tmp_path / "o", "--model", fake)
    assert r.returncode == 1 and "no model card" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("enhance", PHONE, "--out", tmp_path / "o", "--tile", "-3")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    r = run_cli("enhance", PHONE, "--out", tmp_path / "o", "--tile", "20")
    assert r.returncode == 1 and "at least" in r.stderr


def test_card_from_another_model_is_refused(tmp_path, tiny_model):
    other = tmp_path / "other.onnx"
    other.write_bytes(tiny_model.read_bytes() + b"\0")
    (tmp_path / "other.json").write_text(tiny_model.with_suffix(".json").read_text())
    r = run_cli("enhance", PHONE, "--out", tmp_path / "o", "--model", other)
    assert r.returncode == 1 and "does not match its model card" in r.stderr


def test_truncated_png_detection_in_reader(tmp_path):
    png = cv2.imencode(".png", np.zeros((40, 40, 3), np.uint8))[1].tobytes()
    p = tmp_path / "x.png"
    p.write_bytes(png)
    assert read_image(p)[0].shape == (40, 40, 3)



def test_an_input_unlike_the_training_inputs_is_warned_about_once(tmp_path):
    """A card whose training statistics are the shipped phone images: the benchtop H&E image (sharper than
    any of them) is enhanced, with one warning naming it; the phone images get none."""
    import json
    import shutil

    from edge.imageio import read_rgb8
    from edge.modelcard import DEFAULT_MODEL, card_path
    from edge.scope import summarise

    model = tmp_path / "m.onnx"
    shutil.copy(DEFAULT_MODEL, model)
    card = json.loads(card_path(DEFAULT_MODEL).read_text())
    card["input_stats"] = summarise([read_rgb8(p) for p in sorted((SAMPLES / "phone").glob("*.jpg"))])
    card_path(model).write_text(json.dumps(card))
    sharp = [tmp_path / "benchtop-a.jpg", tmp_path / "benchtop-b.jpg"]
    for p in sharp:
        shutil.copy(SAMPLES / "reference" / "torchstain_target.jpg", p)
    phones = sorted((SAMPLES / "phone").glob("*.jpg"))
    r = run_cli("enhance", *phones, *sharp, "--model", model, "--out", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    warnings = [ln for ln in r.stderr.splitlines() if "warning: out of the model's scope" in ln]
    assert warnings and all(w.startswith(str(sharp[0])) for w in warnings), r.stderr   # each kind once
    assert any("already sharp" in w for w in warnings), r.stderr
    assert "2 of 6 file(s) out of the model's scope" in r.stderr
    assert (tmp_path / "out" / "benchtop-b.png").is_file()


def test_a_calibration_profile_is_applied_before_the_model_and_a_missing_one_is_said(tmp_path, tiny_model):
    """`enhance --profile` calibrates each file as the daemon calibrates its frames; a model trained on
    colour-calibrated images (its card's training.calibrated_input) says so when run without one."""
    import json
    import shutil

    from edge.modelcard import card_path
    from tests.helpers import calibrate_colour

    prof, r = calibrate_colour(tmp_path)
    assert r.returncode == 0, r.stderr
    plain = run_cli("enhance", PHONE, "--out", tmp_path / "plain", "--model", tiny_model)
    cal = run_cli("enhance", PHONE, "--out", tmp_path / "cal", "--model", tiny_model, "--profile", prof)
    assert plain.returncode == 0 and cal.returncode == 0, plain.stderr + cal.stderr
    a = cv2.imread(str(tmp_path / "plain" / "BloodImage_00004.png")).astype(int)
    b = cv2.imread(str(tmp_path / "cal" / "BloodImage_00004.png")).astype(int)
    assert np.abs(a - b).mean() > 2, "the profile's colour correction reached the model's input"
    assert "not trained on calibrated images" in cal.stderr and "calibrated" not in plain.stderr

    model = tmp_path / "calibrated.onnx"
    shutil.copy(tiny_model, model)
    card = json.loads(card_path(tiny_model).read_text())
    card["training"]["calibrated_input"] = ["colour"]
    card_path(model).write_text(json.dumps(card))
    r = run_cli("enhance", PHONE, "--out", tmp_path / "o", "--model", model)
    assert r.returncode == 0 and "trained on colour-calibrated images" in r.stderr and "--profile" in r.stderr
    r = run_cli("enhance", PHONE, "--out", tmp_path / "o2", "--model", model, "--profile", prof)
    assert r.returncode == 0 and "calibrated" not in r.stderr, r.stderr
    (tmp_path / "bad.json").write_text("{ not json")
    r = run_cli("enhance", PHONE, "--out", tmp_path / "o3", "--model", model, "--profile", tmp_path / "bad.json")
    assert r.returncode == 1 and "bad.json" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) <= 2
