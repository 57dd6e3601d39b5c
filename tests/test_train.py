"""Training: the loss falls; checkpoints resume; the CLI trains and exports."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training needs PyTorch (the [train] extra)")

from models import data as D  # noqa: E402
from models.network import EnhanceNet  # noqa: E402
from models.train import load_checkpoint  # noqa: E402
from tests.conftest import SAMPLES, run_cli  # noqa: E402


def test_loss_falls_on_tiny_patches():
    pairs = D.simulate_pairs(sorted((SAMPLES / "reference").glob("*.jpg"))[:2], workers=1)
    sampler = D.PatchSampler(pairs, patch=32, seed=0)
    torch.manual_seed(0)
    net = EnhanceNet(width=16, blocks=2)
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    x, y = (torch.from_numpy(a) for a in sampler.batch(8))
    losses = []
    for _ in range(60):
        loss = torch.nn.functional.l1_loss(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:10])


def test_patch_sampler_keeps_pairs_aligned():
    ref = (np.random.default_rng(0).random((120, 130, 3)) * 255).astype(np.uint8)
    sampler = D.PatchSampler([D.Pair("a", ref.copy(), ref)], patch=48, seed=1)
    for _ in range(5):
        x, y = sampler.batch(4)
        assert np.array_equal(x, y) and x.shape == (4, 3, 48, 48)


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
