"""Benchtop images as slide scanners write them, sample types, and the randomised phone family."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from edge.simulator import random_phone
from edge import sampletypes
from edge.imageio import ImageError, read_image, read_rgb8
from edge.simulator import degrade


def test_a_tiled_jpeg_tiff_opencv_cannot_read_is_read_through_tifffile(tmp_path):
    pytest.importorskip("imagecodecs")
    rng = np.random.default_rng(0)
    img = (rng.random((300, 260, 3)) * 255).astype(np.uint8)
    img[:, :, 0] = 200                      # a channel to tell RGB from BGR by
    path = tmp_path / "scan.ome.tif"
    # what a slide scanner's OME-TIFF looks like: JPEG-compressed tiles with 2x2 chroma subsampling
    tifffile.imwrite(path, img, tile=(128, 128), compression="jpeg", photometric="rgb")
    out = read_rgb8(path)
    assert out.shape == img.shape
    assert abs(float(out[..., 0].mean()) - 200) < 3, "channels in RGB order"
    assert np.abs(out.astype(int) - img).mean() < 40          # JPEG of noise: close, not equal


def test_an_aperio_style_svs_is_read_without_libtiff_noise(tmp_path, capfd):
    """Aperio SVS tiles: JPEG with 2x2 chroma subsampling under a Photometric of RGB. OpenCV's libtiff
    refuses them and says so on stderr ("Improper JPEG sampling factors"); tifffile reads them, and an
    adapter running `pairs` or `train` should not see libtiff's complaints."""
    pytest.importorskip("imagecodecs")
    img = np.zeros((300, 260, 3), np.uint8)
    img[..., 0] = 200
    path = tmp_path / "scan.svs"
    tifffile.imwrite(path, img, tile=(128, 128), compression="jpeg", photometric="ycbcr", subsampling=(2, 2))
    with tifffile.TiffFile(path) as t:
        at = t.pages[0].tags["PhotometricInterpretation"].valueoffset
    data = bytearray(path.read_bytes())
    data[at:at + 2] = (2).to_bytes(2, "little")        # Photometric RGB, as Aperio writes it
    path.write_bytes(bytes(data))
    capfd.readouterr()
    out = read_rgb8(path)
    assert out.shape == img.shape
    err = capfd.readouterr().err
    assert "TIFF" not in err and "imdecode" not in err, err


def test_a_damaged_tiff_is_one_clear_error(tmp_path):
    path = tmp_path / "bad.svs"
    path.write_bytes(b"II*\x00" + b"\x00" * 64)
    with pytest.raises(ImageError, match="bad.svs"):
        read_image(path)


def test_sample_types_come_from_the_data_folders_and_pair_names():
    assert sampletypes.of_path(Path("/data/blood-smear/BloodImage_00001.jpg")) == "blood"
    assert sampletypes.of_path(Path("shared/data/he-tissue/x.png")) == "tissue"
    assert sampletypes.of_path(Path("/tmp/other/x.png")) is None
    assert sampletypes.is_phone_photo(Path("malaria-giemsa/NIH-Pf-phone.jpg"))
    name = sampletypes.pair_name("ihc", "kather")
    assert sampletypes.of_pair(name) == "ihc" and sampletypes.of_pair("kather") is None


def test_the_phone_family_spans_the_ranges_it_promises():
    rng = np.random.default_rng(3)
    phones = [random_phone(rng) for _ in range(200)]
    assert all(1.0 <= p.blur_sigma_centre <= p.blur_sigma_corner <= 3.0 for p in phones)
    assert max(abs(p.chromatic_red) for p in phones) > 0.006 and all(abs(p.chromatic_red) <= 0.008 for p in phones)
    assert all(50 <= p.jpeg_quality[0] <= p.jpeg_quality[1] <= 90 for p in phones)
    assert all(np.allclose(np.sum(p.crosstalk, axis=1), 1.0, atol=1e-3) for p in phones)
    assert len({p.tone_contrast for p in phones}) > 150 and min(p.tone_contrast for p in phones) < 0 < max(p.tone_contrast for p in phones)
    img = (np.random.default_rng(1).random((64, 80, 3)) * 255).astype(np.uint8)
    out, _ = degrade(img, phones[0], seed=1)
    assert out.shape == img.shape and out.dtype == np.uint8


def test_a_type_with_few_fields_is_seen_through_more_phones_with_the_same_first_phones():
    """type_variants: two malaria scans through 3 phones are 6 colour responses; at least 12 inputs per
    type gives them 6 phones each, while 5 blood smears keep 3. The weights stay equal per type, and a
    field's first phones are those of a run with fewer (seeded by name and index)."""
    from models import data as D
    rng = np.random.default_rng(0)
    img = lambda: (rng.random((48, 64, 3)) * 255).astype(np.uint8)
    fields = [D.Field(f"blood__b{i}", "blood", img(), False) for i in range(5)] + \
             [D.Field(f"malaria__m{i}", "malaria", img(), False) for i in range(2)]
    variants = D.type_variants(fields, 3, 12)
    assert variants == {"blood": 3, "malaria": 6}
    pairs = D.simulate_family_pairs(fields, variants, workers=1)
    by_type = {t: [p for p in pairs if p.name.startswith(t + "__")] for t in variants}
    assert len(by_type["blood"]) == 15 and len(by_type["malaria"]) == 12
    assert abs(sum(p.weight for p in by_type["blood"]) - sum(p.weight for p in by_type["malaria"])) < 1e-9
    fewer = {p.name: p.phone for p in D.simulate_family_pairs(fields[5:], 3, workers=1)}
    assert len(fewer) == 6 and set(fewer) <= {p.name for p in by_type["malaria"]}
    assert all(np.array_equal(fewer[p.name], p.phone) for p in by_type["malaria"] if p.name in fewer)
    assert {p.slide for p in pairs} == {f.name for f in fields}
    assert [p.name for p in D.simulate_family_pairs(fields[5:], {"malaria": 1}, workers=1)] == \
        ["malaria__m0", "malaria__m1"]                # one phone each: no _v0
