"""Training: the loss falls; checkpoints resume; the CLI trains and exports."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training needs PyTorch (the [train] extra)")

from models import data as D  # noqa: E402
from models.network import EnhanceNet  # noqa: E402
from tests.helpers import SAMPLES  # noqa: E402


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


def test_the_training_phones_glass_is_kept_per_sample_type():
    """training_white: the card's input_white from the training inputs, by the pairs' type prefix, and
    from how many slides (Pair.slide, else the name);
    untyped pairs (a new phone's registered pairs) give none."""
    from edge.imageio import read_rgb8
    from models.data import Pair, PatchSampler
    from models.train import training_white
    from tests.helpers import SAMPLES

    names = ["BloodImage_00004", "BloodImage_00090", "BloodImage_00130"]
    pairs = [Pair(f"blood__{n}", read_rgb8(SAMPLES / "phone" / f"{n}.jpg"),
                  read_rgb8(SAMPLES / "reference" / f"{n}.jpg"), 1.0) for n in names]
    pairs.append(Pair(f"blood__{names[0]}_v1", pairs[0].phone, pairs[0].reference, 1.0,
                      slide=f"blood__{names[0]}"))                                    # another phone
    pairs.append(Pair("plain", pairs[0].phone, pairs[0].reference, 1.0))
    got = training_white(PatchSampler(pairs, 32))
    assert set(got) == {"blood"} and got["blood"]["images"] == 4 and got["blood"]["slides"] == 3
    assert all(0.3 < v < 1.0 for v in got["blood"]["median"])


def test_family_training_brings_each_types_glass_to_one_colour_where_enough_slides_show_it():
    """balance_by_type: blood smears through 20 family phones (20 slides, two phones of one count once)
    leave training with one glass colour, and the held-out pairs are balanced to the training
    pairs' target; a type with fewer slides, and pairs without a type, are left as they are."""
    from edge.glass import MIN_SLIDES, glass_white
    from edge.imageio import read_rgb8
    from edge.simulator import degrade, random_phone
    from models.train import balance_by_type

    ref = read_rgb8(SAMPLES / "reference" / "BloodImage_00004.jpg")
    phones = [degrade(ref, random_phone(np.random.default_rng(s), "f"), seed=s)[0] for s in range(MIN_SLIDES + 1)]
    before = np.array([glass_white(p) for p in phones])
    assert np.ptp(np.log(before), axis=0).max() > 0.15, "the family's white balances differ"
    pairs = [D.Pair(f"blood__slide{i}_v{k}", phones[i + k], ref, slide=f"blood__slide{i}")
             for i in range(MIN_SLIDES) for k in (0, 1)]
    pairs += [D.Pair("tissue__one", phones[0], ref), D.Pair("plain", phones[1], ref)]
    out, targets = balance_by_type(pairs)
    assert set(targets) == {"blood"}
    after = np.array([glass_white(p.phone) for p in out[:2 * MIN_SLIDES]])
    assert np.abs(np.log(after / targets["blood"])).max() < 0.02, after
    assert out[-2] is pairs[-2] and out[-1] is pairs[-1]
    held, same = balance_by_type([D.Pair("blood__held", phones[-1], ref)], targets)
    assert same is targets and np.abs(np.log(glass_white(held[0].phone) / targets["blood"])).max() < 0.02
    few, none = balance_by_type(pairs[: 2 * (MIN_SLIDES - 1)])   # 19 slides in 38 pairs: not enough
    assert none == {} and all(a is b for a, b in zip(few, pairs))
    unnamed = [D.Pair(p.name, p.phone, ref) for p in pairs[: 2 * (MIN_SLIDES - 1)]]   # registered pairs:
    assert set(balance_by_type(unnamed)[1]) == {"blood"}                            # each its own field


def test_a_started_models_colour_layer_is_fitted_to_what_its_cnn_leaves():
    """fit_colour_under: a fine-tune's closed-form colour fit holds the started CNN fixed, so its own colour
    correction is not added twice: with a CNN that adds a constant cast, the fitted layer takes the cast off
    and the started model maps inputs onto targets (the plain fit would leave the cast in)."""
    from models.baseline import fit_colour
    from models.network import fit_colour_under

    rng = np.random.default_rng(3)
    inputs = [(rng.random((70, 90, 3)) * 200 + 20).astype(np.uint8) for _ in range(3)]
    true = np.array([[0.9, 0.1, 0.0, 0.05], [0.05, 0.8, 0.1, 0.02], [0.0, 0.15, 0.85, -0.03]], np.float32)
    targets = [np.clip(np.round((x.astype(np.float32) / 255 @ true[:, :3].T + true[:, 3]) * 255), 0, 255)
               .astype(np.uint8) for x in inputs]
    net = EnhanceNet(width=8, blocks=1)
    cast = np.array([0.04, -0.03, 0.02], np.float32)
    with torch.no_grad():
        net.tail.weight.zero_()
        net.tail.bias.copy_(torch.from_numpy(np.repeat(cast, 4)))   # pixel shuffle: 4 sub-pixels per colour
    m = fit_colour_under(net, inputs, targets, crops=6, size=64)
    assert np.allclose(m[:, :3], true[:, :3], atol=0.01) and np.allclose(m[:, 3], true[:, 3] - cast, atol=0.01)
    net.set_colour(m)
    with torch.no_grad():
        out = net(torch.from_numpy(inputs[0].transpose(2, 0, 1)[None].astype(np.float32) / 255))
    assert np.abs(out[0].numpy().transpose(1, 2, 0) * 255 - targets[0]).max() < 3, "the start hits them"
    plain = fit_colour([x.astype(np.float32) / 255 for x in inputs], [t.astype(np.float32) / 255 for t in targets])
    assert np.allclose(plain[:, 3], true[:, 3], atol=0.01), "the plain fit ignores the CNN's cast"


def test_held_colour_goes_to_the_colour_layer_not_the_cnn():
    """training_loss's hold_colour: a colour shift the pairs ask for is learnt by the colour layer (an affine
    map, which carries over to unseen slides) rather than as the CNN's local colour; without it the CNN
    takes its share."""
    from models.network import cnn_colour_change
    from models.train import training_loss

    rng = np.random.default_rng(5)
    x = torch.from_numpy(rng.random((2, 3, 64, 64)).astype(np.float32) * 0.8 + 0.1)
    y = x + torch.tensor([0.06, -0.04, 0.03]).view(1, 3, 1, 1)

    def cnn_colour(hold: float) -> float:
        torch.manual_seed(0)
        net = EnhanceNet(width=8, blocks=1)
        opt = torch.optim.Adam(net.parameters(), 3e-3)
        for _ in range(150):
            loss = training_loss(net, x, y, hold)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            out = net(x)
            assert torch.nn.functional.l1_loss(out, y) < 0.01, "the shift is learnt either way"
            return float(cnn_colour_change(net, x, out))

    free, held = cnn_colour(0.0), cnn_colour(0.1)
    assert held < 0.1 * free, (held, free)
