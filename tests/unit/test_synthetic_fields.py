"""Several fields per slide (calibration.synthetic --fields) and the held-out pairs they name
(models.data.split_pairs): a large scan's held-out field never overlaps a field trained on."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from calibration.synthetic import make_family_set, scan_fields
from edge import sampletypes
from edge.imageio import write_image
from models.data import Pair, load_pairs, split_pairs


def coded(h: int, w: int) -> np.ndarray:
    """An image whose pixels say where they are: R, G = x, y mod 256, B = their 256-px blocks."""
    y, x = np.mgrid[0:h, 0:w]
    return np.dstack([x % 256, y % 256, (x // 256) * 16 + y // 256]).astype(np.uint8)


def origin(field: np.ndarray) -> tuple[int, int]:
    """(y, x) of a coded() field's top-left pixel in the full image."""
    r, g, b = (int(c) for c in field[0, 0])
    return (b % 16) * 256 + g, (b // 16) * 256 + r


def boxes_overlap(a, b) -> bool:
    (ay, ax, ah, aw), (by, bx, bh, bw) = a, b
    return ay < by + bh and by < ay + ah and ax < bx + bw and bx < ax + aw


def test_a_wide_scan_holds_out_its_right_quarter_and_trains_on_separate_fields_of_the_rest():
    img = coded(1944, 2592)
    fields = scan_fields(img, "malaria__scan", np.random.default_rng(0), 800, 5)
    names = [n for n, _ in fields]
    assert names == ["malaria__scan-held", "malaria__scan-1", "malaria__scan-2", "malaria__scan-3",
                     "malaria__scan-4"]
    boxes = []
    for name, f in fields:
        y, x = origin(f)
        assert np.array_equal(f, img[y:y + f.shape[0], x:x + f.shape[1]]), f"{name} is not a crop of the scan"
        assert max(f.shape[:2]) <= 800
        boxes.append((y, x, *f.shape[:2]))
    cut = 2592 * 3 // 4
    assert boxes[0][1] >= cut, "the held-out field lies in the right quarter"
    assert all(x + w <= cut for _, x, _, w in boxes[1:]), "training fields lie left of the held-out quarter"
    assert not any(boxes_overlap(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


def test_a_tall_scan_holds_out_its_bottom_quarter_and_small_images_are_held_out_by_name():
    img = coded(2400, 1300)
    fields = scan_fields(img, "tissue__tall", np.random.default_rng(1), 800, 3)
    (held, f), *train = fields
    assert held == "tissue__tall-held" and origin(f)[0] >= 1800 and len(train) == 2
    assert all(origin(t)[0] + t.shape[0] <= 1800 for _, t in train)
    small = coded(900, 1000)
    names = {f"blood__field-{k}" for k in range(40)}
    out = {n: scan_fields(small, n, np.random.default_rng(2), 800, 5) for n in names}
    assert all(len(v) == 1 and v[0][1].shape == (800, 800, 3) for v in out.values())
    held = {n for n, v in out.items() if v[0][0] == n + sampletypes.HELD}
    assert held == {n for n in names if sampletypes.is_heldout(Path(n))} and 0 < len(held) < 40


def test_tiles_of_bare_glass_are_not_taken_as_fields():
    img = np.full((2400, 1600, 3), 235, np.uint8)   # tall: the bottom quarter is held out
    img[:800, :800] = coded(800, 800)   # the sample fills one tile of the trained part; the rest is glass
    img[1800:] = coded(600, 1600)
    fields = scan_fields(img, "tissue__cmu", np.random.default_rng(0), 800, 5)
    assert [n for n, _ in fields] == ["tissue__cmu-held", "tissue__cmu-1"]
    assert origin(fields[1][1]) == (0, 0)


def pair(name: str) -> Pair:
    z = np.zeros((4, 4, 3), np.uint8)
    return Pair(name, z, z)


def test_split_pairs_takes_the_named_held_out_pairs_else_one_in_ten_by_name():
    named = [pair(n) for n in ("ihc__a-1", "ihc__a-held", "ihc__b", "malaria__c-2", "malaria__c-held")]
    train, held = split_pairs(named)
    assert [p.name for p in held] == ["ihc__a-held", "malaria__c-held"] and len(train) == 3
    plain = [pair(f"blood__f{k}") for k in range(50)]
    train, held = split_pairs(plain)
    assert {p.name for p in held} == {p.name for p in plain if sampletypes.is_heldout(Path(p.name))}
    assert 0 < len(held) < 15 and len(train) + len(held) == 50
    none = [pair(n) for n in (f"tissue__t{k}" for k in range(30)) if not sampletypes.is_heldout(Path(n))][:3]
    train, held = split_pairs(none)
    assert [p.name for p in held] == [none[-1].name] and len(train) == 2  # none by name: one still is


def test_make_family_set_writes_each_field_as_a_pair_that_the_trainer_splits_by_its_name(tmp_path):
    src = tmp_path / "malaria-giemsa"
    src.mkdir()
    write_image(src / "scan.png", coded(1300, 1300))
    truth = make_family_set([src / "scan.png"], tmp_path / "set", seed=3, phones=1, fields=4)
    assert sorted(truth["pairs"]) == ["malaria__scan-1", "malaria__scan-held"]
    assert len({t["seed"] for t in truth["pairs"].values()}) == 2, "each field has its own warp"
    train, held = split_pairs(load_pairs(tmp_path / "set"))
    assert [p.name for p in held] == ["malaria__scan-held"] and [p.name for p in train] == ["malaria__scan-1"]
