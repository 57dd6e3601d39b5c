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
