"""`phonescope train` as a command: checkpoints, resume, export; a bad source in one line."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="training needs PyTorch (the [train] extra)")

from models.train import load_checkpoint  # noqa: E402
from tests.helpers import SAMPLES, run_cli  # noqa: E402


@pytest.mark.slow
def test_train_cli_checkpoints_and_resumes(tmp_path):
    out = tmp_path / "run"
    args = ["train", "--simulate", SAMPLES / "reference", "--out", out, "--width", "8", "--blocks", "1",
            "--patch", "32", "--batch", "4", "--variants", "1", "--workers", "1", "--log-every", "1"]
    r = run_cli(*args, "--steps", "6")
    assert r.returncode == 0, r.stderr
    assert "step 1 |" in r.stderr and "val PSNR" in r.stderr
    ck = load_checkpoint(out / "checkpoint.pt")
    assert ck["step"] == 6 and (out / "heldout" / "phone").is_dir()
    assert ck["origin"]["heldout_images"] and not set(ck["origin"]["heldout_images"]) & set(ck["origin"]["train_images"])
    r = run_cli(*args, "--steps", "9")
    assert r.returncode == 0 and "resuming" in r.stderr
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 9
    r = run_cli("export", out / "checkpoint.pt", "--out", tmp_path / "m.onnx")
    assert r.returncode == 0, r.stderr
    assert "model" in r.stdout and (tmp_path / "m.json").is_file()


def test_train_cli_bad_source_is_one_line(tmp_path):
    r = run_cli("train", "--simulate", tmp_path / "nowhere", "--out", tmp_path / "o")
    assert r.returncode != 0 and "Traceback" not in r.stderr and "nowhere" in r.stderr
    for flag in (["--colour-calibrated"], ["--type-inputs", "36"]):   # family-only options are refused, not ignored
        r = run_cli("train", "--pairs", tmp_path, *flag, "--out", tmp_path / "o")
        assert r.returncode != 0 and "Traceback" not in r.stderr and "--family" in r.stderr and flag[0] in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_train_family_on_typed_folders_balances_the_glass_of_a_type_with_enough_slides(tmp_path):
    """`train --simulate DIR --family`: fields through family phones, held out by type; blood (24 slides,
    crops of the shipped smears) gets one glass colour, so the card's blood range is narrow and the runtime
    balance brings any phone to it; the one H&E field keeps its phones' glass."""
    import numpy as np

    from edge.imageio import read_rgb8, write_image

    data = tmp_path / "data"
    for folder in ("blood-smear", "he-tissue"):
        (data / folder).mkdir(parents=True)
    for n, p in enumerate(sorted((SAMPLES / "reference").glob("BloodImage_*.jpg"))):
        img = read_rgb8(p)
        for k in range(8):
            y, x = (k // 4) * 120, (k % 4) * 100
            write_image(data / "blood-smear" / f"smear{n}-{k}.png", img[y:y + 240, x:x + 240].astype(np.float32) / 255)
    write_image(data / "he-tissue" / "he.png", read_rgb8(SAMPLES / "reference" / "torchstain_target.jpg")
                .astype(np.float32) / 255)
    out = tmp_path / "run"
    r = run_cli("train", "--simulate", data, "--family", "--out", out, "--width", "8", "--blocks", "1",
                "--patch", "32", "--batch", "4", "--variants", "1", "--workers", "1", "--steps", "2")
    assert r.returncode == 0, r.stderr
    ck = load_checkpoint(out / "checkpoint.pt")
    assert set(ck["origin"]["glass_balanced"]) == {"blood"}, ck["origin"]
    from models.data import list_images, typed_fields
    evened = sorted({f.name.removesuffix("-held") for f in typed_fields(list_images([data])) if f.evened})
    assert ck["origin"]["references_evened"] == evened     # the record of models/reference_light's work
    white = ck["input_white"]["blood"]
    assert white["images"] >= 20 and max(white["log_spread"]) < 0.03, white
    held = sorted(p.name for p in (out / "heldout" / "phone").iterdir())
    assert held and all(n.startswith(("blood__", "tissue__")) for n in held), held


def test_train_pairs_holds_out_the_pairs_named_held(tmp_path):
    """A pairs folder whose owner named a part of each slide `-held`: exactly those are held out (the
    pairs of calibration.synthetic --fields), not 1 in 10 by name, which would judge on other fields of the
    slides trained on."""
    from edge.imageio import read_rgb8, write_image

    pairs = tmp_path / "pairs"
    (pairs / "reference").mkdir(parents=True), (pairs / "phone").mkdir()
    names = []
    for k, src in enumerate(sorted((SAMPLES / "reference").glob("*.jpg"))[:2]):
        img = read_rgb8(src)
        for part, field in (("-1", img[:, :200]), ("-2", img[:, 200:400]), ("-held", img[:, 400:])):
            name = f"blood__slide{k}{part}"
            names.append(name)
            write_image(pairs / "reference" / f"{name}.png", field)
            write_image(pairs / "phone" / f"{name}.png", field[::2, ::2])
    r = run_cli("train", "--pairs", pairs, "--out", tmp_path / "run", "--scratch", "--width", "8", "--blocks", "1",
                "--patch", "32", "--batch", "2", "--steps", "2", "--log-every", "1")
    assert r.returncode == 0, r.stderr
    origin = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["origin"]
    assert sorted(origin["heldout_images"]) == [n for n in names if n.endswith("-held")]
    assert sorted(origin["train_images"]) == sorted(n for n in names if not n.endswith("-held"))
    assert sorted(p.stem for p in (tmp_path / "run" / "heldout" / "phone").iterdir()) == origin["heldout_images"]
    assert "4 training pairs, 2 held out (named -held)" in r.stderr
