"""The model card: the JSON beside each ONNX model.

The runtime trusts nothing about a model that the card does not say: the
scale to resample by, the receptive field that sets the tiling halo, the
input alignment. The card also records the ONNX file's sha256, so a card
that belongs to another (or an older) model is refused.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

CARD_FORMAT = "phonescope-model-card/1"
ZOO = Path(__file__).resolve().parent.parent / "models" / "zoo"
DEFAULT_MODEL = ZOO / "phonescope-default.onnx"
# [model] sample -> the shipped model for that slide type (when [model] path is empty): the family model,
# made for phones without pairs of their own, except where one type's own model did better through unseen
# phones: IHC (the family model lost to its input there) and malaria (the family model lost to the baseline
# on PSNR and colour; README, "One model per slide type").
SAMPLE_MODELS = {"blood": "phonescope-family", "tissue": "phonescope-family",
                 "ihc": "phonescope-ihc", "malaria": "phonescope-malaria"}


# ... on a kiosk whose calibration profile has a colour section (phonescope calibrate colour): the model
# trained on colour-calibrated family phones, better there than any of the above on every type (README,
# "A colour-calibrated kiosk").
CALIBRATED_MODELS = {t: "phonescope-family-calibrated" for t in ("blood", "tissue", "ihc", "malaria")}


def model_path(path: str | Path | None = None, sample: str = "", colour_calibrated: bool = False) -> Path:
    """The model to run: the one named, else the shipped model for the slide type (the colour-calibrated
    one for a kiosk with a colour profile, where there is one for the type), else the default."""
    if path:
        return Path(path)
    if not sample:
        return DEFAULT_MODEL
    return ZOO / f"{(colour_calibrated and CALIBRATED_MODELS.get(sample)) or SAMPLE_MODELS[sample]}.onnx"


def configured_model(cfg: dict) -> Path:
    """The model a kiosk's configuration runs ([model] path and sample, [calibration] profile)."""
    from edge.profile import has_colour

    m = cfg["model"]
    return model_path(m["path"], m["sample"], has_colour(cfg["calibration"]["profile"]))


class ModelError(Exception):
    """A model or its card that cannot be used; the message says which and why."""


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def card_path(onnx_path: str | Path) -> Path:
    return Path(onnx_path).with_suffix(".json")


@dataclass
class ModelCard:
    name: str
    version: str
    scale: float
    receptive_field: int
    alignment: int
    recommended_tile: int
    flops_per_pixel: float
    onnx_sha256: str
    input_name: str = "input"
    output_name: str = "output"
    raw: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict, where: str = "model card") -> "ModelCard":
        if d.get("format") != CARD_FORMAT:
            raise ModelError(f"{where}: not a phonescope model card (format {d.get('format')!r})")
        try:
            card = cls(name=str(d["name"]), version=str(d["version"]), scale=float(d["scale"]),
                       receptive_field=int(d["receptive_field"]), alignment=int(d["alignment"]),
                       recommended_tile=int(d["recommended_tile"]), flops_per_pixel=float(d["flops_per_pixel"]),
                       onnx_sha256=str(d["onnx_sha256"]), input_name=str(d["input"]["name"]),
                       output_name=str(d["output"]["name"]), raw=d)
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"{where}: missing or bad field {e}") from None
        if not (0.1 <= card.scale <= 10) or card.receptive_field < 0 or card.alignment < 1:
            raise ModelError(f"{where}: impossible scale/receptive_field/alignment")
        return card


def load_card(onnx_path: str | Path, verify: bool = True) -> ModelCard:
    """Read and check the card beside an ONNX model."""
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise ModelError(f"{onnx_path}: no such model file")
    cp = card_path(onnx_path)
    if not cp.is_file():
        raise ModelError(f"{onnx_path}: no model card ({cp.name}) beside it; export the model with "
                         f"`phonescope export`")
    try:
        d = json.loads(cp.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ModelError(f"{cp}: unreadable model card ({e})") from None
    card = ModelCard.from_dict(d, str(cp))
    if verify:
        actual = sha256_file(onnx_path)
        if actual != card.onnx_sha256:
            raise ModelError(f"{onnx_path}: does not match its model card (sha256 {actual[:12]}... vs "
                             f"{card.onnx_sha256[:12]}...): the card is from another or an older export")
    return card


def main(argv: list[str] | None = None) -> int:
    """`python -m edge.modelcard [CONFIG]`: the model a kiosk's config runs, for `make engine`: relative to
    the current folder where it lies below it (make splits words at spaces), refused if it is missing."""
    import os
    import sys

    from edge import config
    from edge.errors import UserError

    args = sys.argv[1:] if argv is None else argv
    try:
        cfg = config.load(args[0] if args else None)
        m = cfg["model"]
        path = configured_model(cfg).resolve()
        if not path.is_file():
            raise UserError(f"{m['path'] or path!r}: no such model file ([model] path)")
    except UserError as e:
        print(f"phonescope: {e}", file=sys.stderr)
        return e.code
    rel = os.path.relpath(path)
    print(path if rel.startswith("..") else rel)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
