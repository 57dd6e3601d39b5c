"""`phonescope enhance`: a batch of files, each done or refused on its own."""
from __future__ import annotations

import sys
from pathlib import Path

from edge.errors import UserError
from edge.enhancer import Enhancer, EngineError, ModelError
from edge.glass import WhiteBalance
from edge.imageio import ImageError, read_image, write_image
from edge.profile import ProfileError, load as load_profile, model_misfit
from edge.scope import Scope
from edge.tiling import TilingError


def run(args) -> int:
    out_dir = Path(args.out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create output folder {out_dir}: {e.strerror}") from None
    try:
        profile = load_profile(args.profile) if args.profile else None
    except ProfileError as e:
        raise UserError(str(e)) from None
    try:
        enhancer, why = Enhancer.open(args.model, args.backend, args.tile, sample=args.sample,
                                      colour_calibrated=bool(profile and profile.colour))
    except (ModelError, EngineError) as e:
        raise UserError(str(e)) from None
    card = enhancer.card
    uncalibrated = model_misfit(profile, card)
    if uncalibrated:
        print(f"note: {uncalibrated.replace('set [calibration] profile', 'pass it as --profile')}", file=sys.stderr)
    if args.sample and enhancer.balance is None:
        print(f"note: {WhiteBalance.why_none(card.raw, args.sample)}", file=sys.stderr)
    print(f"model {card.name} {card.version} (scale {card.scale:g}), backend {enhancer.engine.name}: {why}",
          file=sys.stderr)
    failed, seen = 0, {}
    scope, out_of_scope = Scope.from_card(card.raw), 0
    for name in args.images:
        src = Path(name)
        dst = out_dir / f"{src.stem}.png"
        if dst in seen:
            print(f"{src}: refused: its output {dst} would overwrite the output of {seen[dst]}", file=sys.stderr)
            failed += 1
            continue
        try:
            rgb, notes, bits = read_image(src)
            if profile is not None:   # as the daemon calibrates its frames before the model
                profile.check_size(rgb.shape)
                rgb = profile.apply(rgb)
            if scope:
                why = scope.check(enhancer.resample(enhancer.balanced(rgb)))
                out_of_scope += bool(why)
                for w in scope.first_time(why):
                    print(f"{src}: warning: out of the model's scope: {w}", file=sys.stderr)
            result = enhancer.enhance(rgb)
            write_image(dst, result, bits=bits)
        except ImageError as e:
            print(f"{e}", file=sys.stderr)
            failed += 1
            continue
        except (EngineError, TilingError, ValueError) as e:
            print(f"{src}: {e}", file=sys.stderr)
            failed += 1
            continue
        except OSError as e:
            print(f"{src}: cannot write {dst}: {e.strerror}", file=sys.stderr)
            failed += 1
            continue
        seen[dst] = src
        note = f" ({'; '.join(notes)})" if notes else ""
        print(f"{src} -> {dst} {result.shape[1]}x{result.shape[0]}{note}")
    enhancer.close()
    if out_of_scope > 1:
        print(f"{out_of_scope} of {len(args.images)} file(s) out of the model's scope (warned once above)",
              file=sys.stderr)
    if failed:
        print(f"{failed} of {len(args.images)} file(s) failed", file=sys.stderr)
        return 1
    return 0
