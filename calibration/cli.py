"""`phonescope calibrate colour|flat|dark|scale` and `phonescope pairs`: the calibration commands.

Registered with the one entry point through the `phonescope.commands` entry
point group (pyproject.toml), so edge/ never imports calibration/.
"""
from __future__ import annotations

import json
import sys

import numpy as np

from calibration.pairs import add_parser as add_pairs
from edge.errors import UserError
from edge.imageio import ImageError, read_image
from edge.profile import apply_ccm


def _corners(text: str) -> np.ndarray:
    try:
        pts = [float(v) for v in text.replace(";", " ").replace(",", " ").split()]
        if len(pts) != 8:
            raise ValueError
    except ValueError:
        raise UserError("--corners takes 8 numbers: x,y of the chart's top-left, top-right, bottom-right "
                        "and bottom-left corners", 2) from None
    return np.asarray(pts, np.float32).reshape(4, 2)


def camera_settings(args) -> dict:
    """The camera settings the calibration frames were taken with: [camera] of --config (by default the
    installed kiosk's config, else the embedded defaults)."""
    from edge import config
    from edge.sources.controls import Controls

    path = args.config or (str(config.INSTALLED) if config.installed() else None)
    return Controls.from_config(config.load(path, {})["camera"]).describe()


def cmd_colour(args) -> int:
    from calibration import colour as C
    from calibration.profile import update

    try:
        img = read_image(args.image)[0]
    except ImageError as e:
        raise UserError(str(e)) from None
    measured = C.sample_patches(img, _corners(args.corners))
    matrix = C.fit(measured, args.method)
    before, after = C.delta_e(measured), C.delta_e(apply_ccm(measured, matrix, args.method))
    print(f"{'patch':>5s} {'before':>7s} {'after':>7s}")
    for i, (b, a) in enumerate(zip(before, after)):
        print(f"{i + 1:5d} {b:7.2f} {a:7.2f}")
    print(f"{'mean':>5s} {before.mean():7.2f} {after.mean():7.2f}   (CIEDE2000, {args.method})")
    version = update(args.profile, "colour", {
        "method": args.method, "matrix": np.round(matrix, 6).tolist(), "chart": C.CHART,
        "source_image": str(args.image), "delta_e_before_mean": round(float(before.mean()), 3),
        "delta_e_after_mean": round(float(after.mean()), 3),
        "delta_e_after_max": round(float(after.max()), 3)}, camera=camera_settings(args))
    print(f"wrote {args.profile} (version {version})", file=sys.stderr)
    return 0


def _frames(path):
    from calibration.flat import frames_in

    try:
        frames = frames_in(path)
    except FileNotFoundError as e:
        raise UserError(str(e)) from None
    if not frames:
        raise UserError(f"{path}: no frames to average")
    return frames


def cmd_flat(args) -> int:
    from calibration.flat import average, make_flat
    from calibration.profile import update
    from edge.profile import ProfileError, load

    dark = None
    try:
        if args.kind == "dark":
            img = average(_frames(args.frames))
            value = {"frames": len(_frames(args.frames)), "mean": round(float(img.mean()), 6)}
        else:
            if args.dark_from_profile:
                dark = load(args.profile).dark
            img = make_flat(_frames(args.frames), dark)
            value = {"frames": len(_frames(args.frames)), "dark_subtracted": dark is not None,
                     "corner_to_centre": round(float(img[:8, :8].mean() / img[img.shape[0] // 2 - 4:
                                                                              img.shape[0] // 2 + 4].mean()), 4)}
    except (ValueError, ImageError, ProfileError) as e:
        raise UserError(str(e)) from None
    version = update(args.profile, args.kind, value, img, camera=camera_settings(args))
    print(json.dumps(value))
    print(f"wrote {args.profile} (version {version})", file=sys.stderr)
    return 0


def cmd_scale(args) -> int:
    from calibration.profile import update
    from calibration.scale import NoRuling, pixel_size_um

    try:
        img = read_image(args.image)[0]
        um, ruling = pixel_size_um(img, args.um)
    except (ImageError, NoRuling, ValueError) as e:
        raise UserError(f"{args.image}: {e}" if isinstance(e, NoRuling) else str(e)) from None
    h, w = img.shape[:2]
    value = {"pixel_size_um": round(um, 6), "width": w, "height": h, "spacing_um": args.um,
             "period_px": round(ruling.period_px, 4), "angle_deg": ruling.angle_deg,
             "contrast": ruling.contrast, "source_image": str(args.image)}
    version = update(args.profile, "scale", value, camera=camera_settings(args))
    print(json.dumps(value))
    print(f"{um:.4f} um per camera pixel at {w}x{h} (ruling period {ruling.period_px:.3f} px, "
          f"{args.um:g} um); wrote {args.profile} (version {version})", file=sys.stderr)
    return 0


def add_commands(sub) -> None:
    add_pairs(sub)
    c = sub.add_parser("calibrate", help="calibrate colour (chart photo), flat-field, dark frame or pixel size "
                       "(stage micrometer)")
    csub = c.add_subparsers(dest="what", metavar="colour|flat|dark|scale", required=True)
    sc = csub.add_parser("scale", help="pixel size in um from a photo of a stage micrometer (ruling period by FFT)")
    sc.add_argument("image", metavar="IMG", help="the micrometer's ruling, in focus, taken at the kiosk's "
                    "camera resolution")
    sc.add_argument("--um", type=float, required=True, metavar="N",
                    help="the ruling's line spacing in micrometres (10 on a 1 mm / 100 division slide)")
    sc.add_argument("--profile", required=True, metavar="FILE")
    sc.add_argument("--config", metavar="PATH", help="the kiosk's config, for the camera settings (default: "
                    "the installed one)")
    sc.set_defaults(func=cmd_scale)
    col = csub.add_parser("colour", help="colour-correction matrix from a 24-patch chart photo")
    col.add_argument("image", metavar="IMG")
    col.add_argument("--corners", required=True, help="x,y of the chart's TL, TR, BR, BL corners (8 numbers)")
    col.add_argument("--method", choices=["linear", "root-polynomial", "vandermonde"], default="vandermonde",
                     help="vandermonde (default): per-channel quadratic and cross-talk, which takes a phone's tone "
                          "curve too; root-polynomial: exposure-invariant; linear: a 3x3 matrix")
    col.add_argument("--profile", required=True, metavar="FILE")
    col.add_argument("--config", metavar="PATH", help="the kiosk's config, for the camera settings the chart was "
                     "photographed with (default: the installed one)")
    col.set_defaults(func=cmd_colour)
    for kind, text in (("flat", "flat-field from frames of an empty, evenly lit field"),
                       ("dark", "dark frame from frames taken with the light off")):
        f = csub.add_parser(kind, help=text)
        f.add_argument("frames", metavar="DIR", help="folder of frames (or one image)")
        f.add_argument("--profile", required=True, metavar="FILE")
        f.add_argument("--config", metavar="PATH", help="the kiosk's config, for the camera settings the frames "
                       "were taken with (default: the installed one)")
        if kind == "flat":
            f.add_argument("--dark-from-profile", action="store_true",
                           help="subtract the profile's dark frame first")
        f.set_defaults(func=cmd_flat, kind=kind)
