"""The glass white balance as the commands use it: blood smears through phones of the randomised family,
the shipped model with and without `--sample blood`."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edge.imageio import read_rgb8, write_image
from edge.modelcard import DEFAULT_MODEL
from edge.simulator import degrade, random_phone
from models.metrics import all_metrics
from tests.helpers import SAMPLES, run_cli

BLOOD = ("BloodImage_00004", "BloodImage_00090", "BloodImage_00130")


def family_pairs(folder, seeds=range(4)):
    """Each shipped blood smear through phones drawn from the family (not the one the model knows)."""
    refs = {}
    for sub in ("phone", "reference"):
        (folder / sub).mkdir(parents=True)
    for name in BLOOD:
        ref = read_rgb8(SAMPLES / "reference" / f"{name}.jpg")
        for s in seeds:
            stem = f"blood__{name}-{s}"
            phone, _ = degrade(ref, random_phone(np.random.default_rng(100 + s), f"family-{s}"), seed=s)
            write_image(folder / "phone" / f"{stem}.png", phone.astype(np.float32) / 255)
            write_image(folder / "reference" / f"{stem}.png", ref.astype(np.float32) / 255)
            refs[stem] = ref.astype(np.float32) / 255
    return refs


def test_enhance_with_the_sample_type_takes_an_unseen_phones_cast_off(tmp_path):
    refs = family_pairs(tmp_path / "pairs")
    phones = sorted((tmp_path / "pairs" / "phone").glob("*.png"))
    scores = {}
    for label, extra in (("plain", ()), ("blood", ("--sample", "blood"))):   # one model: the balance alone
        r = run_cli("enhance", *phones, "--out", tmp_path / label, "--model", DEFAULT_MODEL, *extra)
        assert r.returncode == 0, r.stderr
        scores[label] = [all_metrics(read_rgb8(tmp_path / label / p.name).astype(np.float32) / 255,
                                     refs[p.stem])["ciede2000"] for p in phones]
    plain, blood = np.mean(scores["plain"]), np.mean(scores["blood"])
    print(f"CIEDE2000 over {len(phones)} family-phone blood smears: {plain:.2f} -> {blood:.2f}")
    assert blood < plain - 1.0, scores
    r = run_cli("enhance", phones[0], "--out", tmp_path / "x", "--sample", "fish")
    assert r.returncode == 2 and "Traceback" not in r.stderr and "--sample" in r.stderr


def test_evaluate_balances_by_the_pairs_type_and_says_so(tmp_path):
    family_pairs(tmp_path / "pairs", seeds=range(2))
    out, off = tmp_path / "e.json", tmp_path / "off.json"
    assert run_cli("evaluate", "--pairs", tmp_path / "pairs", "--json", out).returncode == 0
    assert run_cli("evaluate", "--pairs", tmp_path / "pairs", "--json", off, "--no-balance").returncode == 0
    on, plain = json.loads(out.read_text()), json.loads(off.read_text())
    assert all(r["sample"] == "blood" for r in on["pairs"])
    assert any(r["glass_gain"] and max(abs(np.log(r["glass_gain"]))) > 0.05 for r in on["pairs"])
    assert all(r["glass_gain"] is None for r in plain["pairs"])
    assert on["mean"]["input"] == plain["mean"]["input"]   # the input is the phone image as it is
    assert on["mean"]["model"]["ciede2000"] < plain["mean"]["model"]["ciede2000"]


def test_the_daemon_balances_to_its_sample_type_and_records_it(tmp_path):
    """`[model] sample = "blood"`: a camera with another white balance is balanced before the network,
    and the capture's metadata says to what and by how much."""
    from edge.colourspace import linear_to_srgb, srgb_to_linear
    from tests.helpers import capture, daemon, running

    frames = tmp_path / "frames"
    frames.mkdir()
    for name in BLOOD:
        rgb = read_rgb8(SAMPLES / "phone" / f"{name}.jpg").astype(np.float32) / 255
        write_image(frames / f"{name}.png", linear_to_srgb(srgb_to_linear(rgb) * np.float32([1.4, 1.0, 0.7])))
    state = tmp_path / "state"
    proc = daemon(state, f"replay:{frames}", DEFAULT_MODEL, config="[model]\nsample = 'blood'\n")
    try:
        running(state, proc, 120)
        r = capture(state)
        assert r.returncode == 0, r.stderr
        meta = json.loads(Path(r.stdout.strip()).with_suffix(".json").read_text())
        assert meta["model"]["sample"] == "blood" and meta["model"]["white_balance"]["sample"] == "blood"
        gain = np.array(meta["white_balance_gain"])
        assert gain.shape == (3,) and gain[0] < 0.85 and gain[2] > 1.2, gain   # the cast, taken back
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0


def test_heldout_pairs_of_every_type(tmp_path):
    """`python -m models.heldout`: a large image gives a held-out part, named by its type, through the
    default phone and through a family phone (other pixels, the same reference)."""
    import subprocess
    import sys

    from tests.helpers import ROOT

    big = np.tile(read_rgb8(SAMPLES / "reference" / "torchstain_target.jpg"), (2, 2, 1))   # 882 x 1174
    (tmp_path / "he-tissue").mkdir()
    write_image(tmp_path / "he-tissue" / "slide.png", big.astype(np.float32) / 255)
    refs = {}
    for phones in ("default", "family"):
        out = tmp_path / phones
        r = subprocess.run([sys.executable, "-m", "models.heldout", "--images", str(tmp_path / "he-tissue"),
                            "--out", str(out), "--phones", phones, "--workers", "1"],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        assert "wrote 1 held-out pairs" in r.stdout and "'tissue': 1" in r.stdout
        assert [p.name for p in (out / "phone").iterdir()] == ["tissue__slide-held.png"]
        refs[phones] = (read_rgb8(out / "reference" / "tissue__slide-held.png"),
                        read_rgb8(out / "phone" / "tissue__slide-held.png"))
    assert np.array_equal(refs["default"][0], refs["family"][0])
    assert refs["default"][0].shape == (882, 1174 - 1174 * 3 // 4 // 2 * 2, 3)
    assert not np.array_equal(refs["default"][1], refs["family"][1])


def test_heldout_pairs_through_several_phones_keep_the_first(tmp_path):
    """`--variants 3`: each held-out field through 3 phones (family) or 3 draws of the default phone's
    noise and JPEG, named _v0.._v2; the first is the one-phone set's pair, the others differ."""
    from models.heldout import heldout_pairs

    big = np.tile(read_rgb8(SAMPLES / "reference" / "torchstain_target.jpg"), (2, 2, 1))
    (tmp_path / "he-tissue").mkdir()
    write_image(tmp_path / "he-tissue" / "slide.png", big.astype(np.float32) / 255)
    for phones in ("default", "family"):
        one = heldout_pairs([tmp_path / "he-tissue"], phones, workers=1)
        three = heldout_pairs([tmp_path / "he-tissue"], phones, workers=1, variants=3)
        assert [p.name for p in one] == ["tissue__slide-held"]
        assert [p.name for p in three] == [f"tissue__slide-held_v{k}" for k in range(3)]
        assert np.array_equal(three[0].phone, one[0].phone)
        assert not np.array_equal(three[1].phone, three[0].phone)
        assert not np.array_equal(three[2].phone, three[1].phone)
        assert all(np.array_equal(p.reference, one[0].reference) for p in three)
