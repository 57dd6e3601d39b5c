"""Training: simulated pairs from single images, or registered real pairs.

Budgeted by wall-clock minutes because clinics train on a CPU or a Jetson:
the learning-rate schedule follows the fraction of the budget used, the
colour layer starts from the closed-form colour fit, and a checkpoint is
written every few minutes (and on Ctrl-C/SIGTERM) so a run resumes where it
stopped.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch

from edge import sampletypes
from edge.colourchart import SIMULATED_METHOD
from edge.simulator import DEFAULT_PHONE, PhoneOptics
from models import data as D
from models.baseline import fit_baseline, fit_colour
from models.network import EnhanceNet, build, cnn_colour_change, fit_colour_under

CHECKPOINT = "checkpoint.pt"
DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "zoo" / "phonescope-default.pt"
HOLD_COLOUR = 0.1   # --pairs: training_loss's hold_colour (measured on two family phones: README, "A new phone")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def save_checkpoint(path: Path, state: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises many types for a bad file
        raise ValueError(f"{path}: not a phonescope checkpoint ({type(e).__name__})") from None


def net_from_checkpoint(ck: dict) -> EnhanceNet:
    if "model" not in ck or "net_config" not in ck:
        raise ValueError("not a phonescope checkpoint (no model weights)")
    net = build(ck["net_config"])
    net.load_state_dict(ck["model"])
    return net.eval()


def load_profile(path: str | None) -> PhoneOptics:
    if not path:
        return DEFAULT_PHONE
    try:
        d = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read simulator profile ({e})") from None
    return PhoneOptics.from_dict(d)


def _prepare_family(args, out: Path):
    """Every sample type, each field through phones drawn from the randomised family (issue 13)."""
    fields = D.typed_fields(D.list_images(args.simulate))
    train_fields = [f for f in fields if not f.heldout]
    held_fields = [f for f in fields if f.heldout]
    if not train_fields or not held_fields:
        raise ValueError("need images to train on and to hold out (at least two, or one large one)")
    counts = {}
    for f in fields:
        c = counts.setdefault(f.sample or "-", {"train": 0, "heldout": 0})
        c["heldout" if f.heldout else "train"] += 1
    if args.type_inputs < 0:
        raise ValueError("--type-inputs must be 0 (off) or more")
    variants = D.type_variants(train_fields, args.variants, args.type_inputs)
    log(f"simulating {len(train_fields)} training fields through family phones (per field: {variants}), "
        f"{len(held_fields)} held out: {counts}")
    bar = _progress("simulate")
    calibrated = bool(getattr(args, "colour_calibrated", False))
    train_pairs = D.simulate_family_pairs(train_fields, variants, salt=0, workers=args.workers, progress=bar,
                                          calibrated=calibrated)
    held_pairs = D.simulate_family_pairs(held_fields, 1, salt=1, workers=args.workers, calibrated=calibrated)
    D.write_pairs(held_pairs, out / "heldout")   # as the phones gave them: evaluate balances them by type
    train_pairs, balanced = balance_by_type(train_pairs)
    held_pairs, _ = balance_by_type(held_pairs, balanced)   # the validation crops, as at run time
    if balanced:
        log(f"glass brought to one colour per type before training (edge.glass): {sorted(balanced)}")
    origin = {"kind": "simulated", "phones": "randomised family (edge.simulator.random_phone)",
              "sources": [str(s) for s in args.simulate], "sample_types": counts,
              "train_images": [f.name for f in train_fields], "heldout_images": [f.name for f in held_fields],
              "variants": args.variants, "variants_by_type": variants,
              "weighting": "sample types equally, by area, sharp references up to 2x",
              "glass_balanced": {t: [round(float(v), 5) for v in w] for t, w in balanced.items()},
              "colour_calibrated": calibrated, "colour_method": SIMULATED_METHOD if calibrated else None,
              "references_evened": sorted({f.name.removesuffix(sampletypes.HELD) for f in fields if f.evened})}
    return train_pairs, held_pairs, origin, 1.0


def balance_by_type(pairs: list[D.Pair], targets: dict | None = None) -> tuple[list[D.Pair], dict]:
    """Family phones: each input of a sample type whose glass shows on at least MIN_SLIDES training slides
    has its glass brought to the type's median glass (edge.glass, as `[model] sample` does at run time;
    targets: those of the training pairs). A tile shows the network no cue to a phone's white balance, so
    unbalanced the family's blood smears were a guess: 27 min of family training left 6 held-out smears
    below their input (PSNR 25.97 vs 26.14 dB), while the shipped model behind the balance gained 5 dB.
    Types with fewer slides are left alone: their references' own glass differs by slide."""
    from edge.glass import MIN_SLIDES, WhiteBalance, glass_white

    if targets is None:
        targets = {}
        slides: dict = {}   # type -> slide (the pair's name without its variant) -> glass colours
        for p in pairs:
            t = sampletypes.of_pair(p.name)
            w = glass_white(p.phone) if t else None
            if w is not None:
                slides.setdefault(t, {}).setdefault(p.slide, []).append(w)
        for t, by_slide in slides.items():
            if len(by_slide) >= MIN_SLIDES:
                targets[t] = np.median([w for ws in by_slide.values() for w in ws], axis=0)
    balance = {t: WhiteBalance(w, t) for t, w in targets.items()}
    out = [dataclasses.replace(p, phone=balance[t](p.phone)) if (t := sampletypes.of_pair(p.name)) in balance
           else p for p in pairs]
    return out, targets


def _prepare_simulated(args, out: Path, profile: PhoneOptics):
    paths = D.list_images(args.simulate)
    if len(paths) < 2:
        raise ValueError("need at least two images to simulate from (one is held out)")
    train_paths, held_paths = D.split(paths)
    log(f"simulating {len(train_paths)} training images x {args.variants} variants, "
        f"{len(held_paths)} held out ({profile.name}, scale {profile.scale})")
    bar = _progress("simulate")
    train_pairs = D.simulate_pairs(train_paths, profile, args.variants, salt=0, workers=args.workers, progress=bar)
    held_pairs = D.simulate_pairs(held_paths, profile, 1, salt=1, workers=args.workers)
    D.write_pairs(held_pairs, out / "heldout")
    origin = {"kind": "simulated", "sources": [str(s) for s in args.simulate], "profile": profile.to_dict(),
              "train_images": [p.name for p in train_paths], "heldout_images": [p.name for p in held_paths],
              "variants": args.variants}
    return train_pairs, held_pairs, origin, profile.scale


def _prepare_real(args, out: Path):
    pairs = D.load_pairs(args.pairs)
    train_pairs, held_pairs = D.split_pairs(pairs)
    report = Path(args.pairs) / "report.json"
    if report.is_file():  # registered pairs: the phone side is already on the benchtop grid
        rep = json.loads(report.read_text())
        scale = float(rep.get("scale_median") or 1.0)
    else:
        scale = float(np.median([p.reference.shape[1] / p.phone.shape[1] for p in pairs]))
    D.write_pairs(held_pairs, out / "heldout")
    origin = {"kind": "registered pairs", "sources": [str(args.pairs)],
              "train_images": [p.name for p in train_pairs], "heldout_images": [p.name for p in held_pairs],
              "scale_measured": round(scale, 4)}
    named = held_pairs and all(p.name.endswith(sampletypes.HELD) for p in held_pairs)
    log(f"{len(train_pairs)} training pairs, {len(held_pairs)} held out{' (named -held)' if named else ''}, "
        f"scale {scale:.3f}")
    return train_pairs, held_pairs, origin, scale


def _progress(label: str):
    last = [0.0]

    def bar(i: int, n: int) -> None:
        now = time.monotonic()
        if now - last[0] > 2 or i == n:
            last[0] = now
            filled = int(30 * i / n)
            print(f"\r{label} [{'#' * filled}{'.' * (30 - filled)}] {i}/{n}", end="\n" if i == n else "",
                  file=sys.stderr, flush=True)
    return bar


def _validation_set(held_pairs: list[D.Pair], size: int = 256, n: int = 8):
    """Up to n held-out pairs, taken in turn from each sample type (by name prefix)."""
    from edge import sampletypes

    groups: dict = {}
    for p in held_pairs:
        groups.setdefault(sampletypes.of_pair(p.name), []).append(p)
    chosen = []
    while len(chosen) < n and any(groups.values()):
        for g in groups.values():
            if g and len(chosen) < n:
                chosen.append(g.pop(0))
    xs, ys = [], []
    size = min([size] + [min(p.reference.shape[:2]) for p in chosen])   # one crop size for all
    for p in chosen:
        x = D.resample_to(p.phone, p.reference.shape[:2])
        h, w = p.reference.shape[:2]
        s = size // 2 * 2
        y0, x0 = (h - s) // 2 // 2 * 2, (w - s) // 2 // 2 * 2
        xs.append(x[y0:y0 + s, x0:x0 + s])
        ys.append(p.reference[y0:y0 + s, x0:x0 + s])
    if not xs:
        return None
    to = lambda a: torch.from_numpy(np.stack(a).transpose(0, 3, 1, 2).astype(np.float32) / 255.0)
    return to(xs), to(ys)


@torch.no_grad()
def _validate(net: EnhanceNet, val) -> float:
    if val is None:
        return float("nan")
    net.eval()
    x, y = val
    out = torch.cat([net(x[i:i + 2]) for i in range(0, len(x), 2)]).clamp(0, 1)
    net.train()
    mse = torch.mean((out - y) ** 2).item()
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def inputs_by_type(sampler: D.PatchSampler) -> dict[str | None, list[int]]:
    """The training inputs' indices per sample type (by the pairs' names; None: untyped)."""
    by_type: dict = {}
    for i, name in enumerate(sampler.names):
        by_type.setdefault(sampletypes.of_pair(name), []).append(i)
    return by_type


def training_white(sampler: D.PatchSampler, per_type: int = 100) -> dict:
    """The card's `input_white` (edge.glass): per sample type (by the pairs' names) the range of glass
    colours of up to `per_type` of its training inputs; untyped pairs are left out."""
    from edge.glass import input_white

    chosen = {t: idx[:: max(1, len(idx) // per_type)] for t, idx in inputs_by_type(sampler).items() if t}
    return input_white({t: [sampler.inputs[i] for i in idx] for t, idx in chosen.items()},
                       {t: [sampler.slides[i] for i in idx] for t, idx in chosen.items()})


def training_loss(net: EnhanceNet, x: torch.Tensor, y: torch.Tensor, hold_colour: float = 0.0) -> torch.Tensor:
    """L1 to the reference, plus hold_colour x the CNN's own colour change over 16-px blocks: the colour
    layer's affine map carries over to slides the training never saw; local colour the CNN learns from a
    few slides does not (README, "A new phone": the held-out malaria field)."""
    pred = net(x)
    loss = torch.nn.functional.l1_loss(pred, y)
    if hold_colour:
        loss = loss + hold_colour * cnn_colour_change(net, x, pred)
    return loss


def train(args) -> int:
    if getattr(args, "colour_calibrated", False) and not (args.simulate and args.family):
        raise ValueError("--colour-calibrated needs --simulate ... --family (registered pairs are calibrated when "
                         "their phone images are: make them from frames the kiosk's colour profile corrected)")
    if getattr(args, "type_inputs", 0) and not (args.simulate and args.family):
        raise ValueError("--type-inputs needs --simulate ... --family (it sets how many family phones a type's "
                         "fields are seen through)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    ck_path = out / CHECKPOINT
    resume = ck_path.exists() and not args.fresh
    profile = load_profile(args.profile)

    if args.simulate and args.family:
        train_pairs, held_pairs, origin, scale = _prepare_family(args, out)
    elif args.simulate:
        train_pairs, held_pairs, origin, scale = _prepare_simulated(args, out, profile)
    else:
        train_pairs, held_pairs, origin, scale = _prepare_real(args, out)

    sampler = D.PatchSampler(train_pairs, args.patch, align=2, seed=args.seed)
    val = _validation_set(held_pairs)

    if resume:
        ck = load_checkpoint(ck_path)
        net = net_from_checkpoint(ck).train()
        log(f"resuming from {ck_path} at step {ck['step']} ({ck['elapsed_s'] / 60:.1f} min done)")
    else:
        init = args.init
        if init is None and args.pairs and not args.scratch and DEFAULT_WEIGHTS.is_file():
            init = str(DEFAULT_WEIGHTS)  # a new phone: start from what the shipped model already knows
        if init:
            ck = load_checkpoint(init)
            net = net_from_checkpoint(ck).train()
            ck = {"step": 0, "elapsed_s": 0.0, "history": [], "init": str(init)}
            log(f"fine-tuning from {init}")
        else:
            net = build({"width": args.width, "blocks": args.blocks}).train()
            ck = {"step": 0, "elapsed_s": 0.0, "history": []}
        if args.pairs or not init:
            # Another phone's colour error is mostly global: its closed-form fit takes the bulk
            # before the CNN learns the rest. Measured on 51 registered pairs of another phone
            # (calibration.synthetic), 2 CPU minutes: fine-tuning beats training from scratch
            # (held-out PSNR 31.5 vs 31.1 dB), and the refit starts it at validation PSNR 31.7
            # instead of 23.7 dB, ending level with the plain fine-tune. A started model's CNN adds
            # its own colour correction, so the layer is fitted to what that CNN leaves (else the
            # start corrects twice): on the seed-7 family phone it starts at 28.59 dB instead of
            # 24.91, and the held-out malaria field ends at 30.11 / 3.77 instead of 29.52 / 4.12.
            if init:
                m = fit_colour_under(net, sampler.inputs, sampler.targets)
            else:
                m = fit_colour([s.astype(np.float32) / 255 for s in sampler.inputs],
                               [t.astype(np.float32) / 255 for t in sampler.targets])
            net.set_colour(m)
            log("colour layer initialised from the closed-form colour fit" + (" under the CNN" if init else ""))

    if "input_stats" not in ck:   # what the model is trained on, for edge.scope's out-of-scope warning
        from edge.scope import summarise

        chosen = [(t, i) for t, g in inputs_by_type(sampler).items()
                  for i in g[:: max(1, -(-len(g) // 150))]]   # every type, <= 150 each
        ck["input_stats"] = summarise([sampler.inputs[i] for _, i in chosen], [t for t, _ in chosen])
    if "input_white" not in ck:   # the training phone's glass per sample type, for edge.glass
        ck["input_white"] = training_white(sampler)
    if "baseline" not in ck:
        k = min(len(train_pairs), 48)
        idx = np.linspace(0, len(sampler.inputs) - 1, k).astype(int)
        ck["baseline"] = fit_baseline([sampler.inputs[i].astype(np.float32) / 255 for i in idx],
                                      [sampler.targets[i].astype(np.float32) / 255 for i in idx]).to_dict()

    hold = args.hold_colour if args.hold_colour is not None else HOLD_COLOUR if args.pairs else 0.0
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    if resume and "optimizer" in ck:
        opt.load_state_dict(ck["optimizer"])
    budget = args.minutes * 60.0
    step, elapsed0 = int(ck["step"]), float(ck["elapsed_s"])
    history = list(ck.get("history", []))

    stop = {"flag": False}

    def on_signal(signum, frame):   # a flag only: printing here could re-enter a print the signal cut
        stop["flag"] = True

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}

    def state() -> dict:
        return {"model": net.state_dict(), "optimizer": opt.state_dict(), "net_config": net.config(),
                "step": step, "elapsed_s": elapsed, "history": history, "origin": origin, "scale": scale,
                "baseline": ck["baseline"], "input_stats": ck["input_stats"], "input_white": ck["input_white"],
                "heldout_dir": str((out / "heldout").resolve()),
                "receptive_field": net.receptive_field(), "flops_per_pixel": net.flops_per_pixel(),
                "args": {k: v for k, v in vars(args).items() if k not in ("func",)},
                "init": ck.get("init"), "hold_colour": hold, "complete": elapsed >= budget}

    t0 = time.monotonic()
    last_log = last_save = t0
    losses: list[float] = []
    elapsed = elapsed0
    psnr0 = _validate(net, val)
    log(f"start: validation PSNR {psnr0:.2f} dB, budget {args.minutes:g} min, "
        f"{net.flops_per_pixel() / 1e3:.0f} kFLOP/px, receptive field {net.receptive_field()} px")
    try:
        while not stop["flag"]:
            elapsed = elapsed0 + time.monotonic() - t0
            if elapsed >= budget or (args.steps and step >= args.steps):
                break
            frac = min(1.0, max(elapsed / budget, step / args.steps if args.steps else 0.0))
            lr = args.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * frac)))
            if step < 50 and not resume and not args.init:
                lr *= (step + 1) / 50
            for g in opt.param_groups:
                g["lr"] = lr
            x, y = sampler.batch(args.batch)
            x, y = torch.from_numpy(x), torch.from_numpy(y)
            loss = training_loss(net, x, y, hold)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            step += 1
            now = time.monotonic()
            if now - last_log >= args.log_every or step == 1:
                psnr = _validate(net, val)
                history.append({"step": step, "minutes": round(elapsed / 60, 2), "loss": float(np.mean(losses)),
                                "val_psnr": round(psnr, 3), "lr": lr})
                rate = step / max(1e-9, elapsed) if elapsed > 0 else 0.0
                log(f"step {step} | {elapsed / 60:.1f}/{args.minutes:g} min | loss {np.mean(losses):.4f} | "
                    f"val PSNR {psnr:.2f} dB | lr {lr:.2e} | {rate:.2f} steps/s")
                losses, last_log = [], now
            if now - last_save >= args.save_every:
                save_checkpoint(ck_path, state())
                last_save = now
    finally:
        if stop["flag"]:
            log("stopping: saving a checkpoint (run the same command again to resume)")
        elapsed = elapsed0 + time.monotonic() - t0
        save_checkpoint(ck_path, state())
        for s, h in old.items():
            signal.signal(s, h)
    psnr = _validate(net, val)
    log(f"done: step {step}, {elapsed / 60:.1f} min, validation PSNR {psnr0:.2f} -> {psnr:.2f} dB; "
        f"checkpoint {ck_path}")
    log(f"next: phonescope export {ck_path} --out {out / 'model.onnx'}")
    return 0
