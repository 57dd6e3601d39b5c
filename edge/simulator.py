"""Phone-optics degradation simulator.

Turns a benchtop-microscope image (the reference) into what a cheap camera
behind phone optics would record of the same field, so that paired training
data can be made from single real images. It lives in the runtime base
because the kiosk's simulated camera uses it too (numpy and OpenCV only).

The effects, in the order the light meets them:
optics (blur that grows over the field, lateral chromatic aberration,
vignetting) -> sensor sampling on a coarser grid -> colour cross-talk and
white balance -> exposure -> Bayer mosaic -> Poisson-Gaussian noise ->
demosaic -> tone curve -> ISP sharpening -> 8-bit -> JPEG.

A `PhoneOptics` profile holds what is fixed for one phone; the per-image
randomness (noise level, JPEG quality, small exposure/white-balance/blur
jitter) comes from a seeded generator, so a seed gives the same image.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import cv2
import numpy as np

from edge.colourspace import linear_to_srgb, srgb_to_linear


@dataclass(frozen=True)
class PhoneOptics:
    """What is fixed for one phone + adapter: the simulator's configuration."""

    name: str = "default-phone"
    scale: float = 1.0                 # phone pixel pitch in reference pixels (output px per input px)
    blur_sigma_centre: float = 0.9     # Gaussian PSF sigma at the field centre, reference px
    blur_sigma_corner: float = 2.0     # ... at the field corners (grows with r^2)
    chromatic_red: float = 0.003       # lateral CA: relative magnification of red vs green
    chromatic_blue: float = -0.003     # ... of blue vs green
    vignetting: float = 0.30           # relative light loss at the corners
    crosstalk: tuple = ((0.84, 0.13, 0.03),
                        (0.08, 0.82, 0.10),
                        (0.03, 0.15, 0.82))   # sensor RGB from true linear RGB
    white_balance: tuple = (1.06, 1.0, 0.90)  # residual white-balance error (gains)
    exposure: float = 0.92
    bayer: bool = True
    noise_shot: tuple = (0.001, 0.006)    # Poisson gain range (variance per unit signal)
    noise_read: tuple = (0.002, 0.008)    # Gaussian read-noise sigma range
    gamma: float = 1.0                 # extra tone-curve exponent on top of sRGB encoding
    tone_contrast: float = 0.0         # S-shaped tone curve: 0 none, >0 more mid-tone contrast, <0 flatter
    sharpen: float = 0.4               # ISP unsharp-mask amount
    jpeg_quality: tuple = (30, 95)     # inclusive range; None disables JPEG
    jitter: float = 0.03               # relative per-image jitter of exposure, white balance, blur

    def replace(self, **changes) -> "PhoneOptics":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PhoneOptics":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown simulator setting(s): {', '.join(sorted(unknown))}")
        conv = {}
        for k, v in d.items():
            conv[k] = tuple(tuple(r) if isinstance(r, list) else r for r in v) if isinstance(v, list) else v
        return cls(**conv)


DEFAULT_PHONE = PhoneOptics()


@dataclass
class Draw:
    """The per-image random choices, recorded for reproducibility."""

    exposure: float
    white_balance: tuple
    blur_factor: float
    noise_shot: float
    noise_read: float
    jpeg_quality: int | None
    extras: dict = field(default_factory=dict)


def radius_map(h: int, w: int) -> np.ndarray:
    """Normalised distance from the field centre: 0 at the centre, 1 at the corners."""
    y = (np.arange(h, dtype=np.float32) - (h - 1) / 2)[:, None]
    x = (np.arange(w, dtype=np.float32) - (w - 1) / 2)[None, :]
    return np.sqrt(x * x + y * y) / np.sqrt(((h - 1) / 2) ** 2 + ((w - 1) / 2) ** 2 + 1e-12)


def field_blur(img: np.ndarray, sigma_centre: float, sigma_corner: float) -> np.ndarray:
    """Gaussian blur whose sigma grows with r^2 from centre to corner.

    Blurs at a few sigmas and interpolates per pixel between the two nearest,
    which is exact at the knots and smooth in between.
    """
    h, w = img.shape[:2]
    sig = sigma_centre + (sigma_corner - sigma_centre) * radius_map(h, w) ** 2
    knots = np.linspace(sig.min(), sig.max(), 5) if sigma_corner != sigma_centre else np.array([sigma_centre])
    stack = [cv2.GaussianBlur(img, (0, 0), float(s), borderType=cv2.BORDER_REFLECT101) if s > 0.05 else img
             for s in knots]
    if len(knots) == 1:
        return stack[0]
    pos = (sig - knots[0]) / (knots[1] - knots[0])
    i0 = np.clip(np.floor(pos).astype(np.int32), 0, len(knots) - 2)
    t = (pos - i0)[..., None]
    out = np.zeros_like(img)
    for k in range(len(knots) - 1):
        m = (i0 == k)[..., None]
        out += np.where(m, stack[k] * (1 - t) + stack[k + 1] * t, 0)
    return out


def lateral_chromatic(img: np.ndarray, red: float, blue: float) -> np.ndarray:
    """Magnify red and blue about the optical centre relative to green."""
    h, w = img.shape[:2]
    cy, cx = (h - 1) / 2, (w - 1) / 2
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = img.copy()
    for ch, mag in ((0, red), (2, blue)):
        if mag == 0:
            continue
        mx = (cx + (xx - cx) / (1 + mag)).astype(np.float32)
        my = (cy + (yy - cy) / (1 + mag)).astype(np.float32)
        out[..., ch] = cv2.remap(img[..., ch], mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    return out


def vignette(img: np.ndarray, strength: float) -> np.ndarray:
    h, w = img.shape[:2]
    gain = 1.0 - strength * radius_map(h, w) ** 2
    return img * gain[..., None]


def sample_sensor(img: np.ndarray, scale: float) -> np.ndarray:
    """Integrate over phone pixels of `scale` reference pixels each (area resampling)."""
    if abs(scale - 1.0) < 1e-6:
        return img
    h, w = img.shape[:2]
    size = (max(1, int(round(w / scale))), max(1, int(round(h / scale))))
    interp = cv2.INTER_AREA if scale > 1 else cv2.INTER_CUBIC
    return cv2.resize(img, size, interpolation=interp)


def bayer_roundtrip(img: np.ndarray, rng: np.random.Generator, shot: float, read: float) -> np.ndarray:
    """RGGB mosaic, Poisson-Gaussian noise on the raw values, OpenCV demosaic."""
    h, w = img.shape[:2]
    raw = np.empty((h, w), np.float32)
    raw[0::2, 0::2] = img[0::2, 0::2, 0]
    raw[0::2, 1::2] = img[0::2, 1::2, 1]
    raw[1::2, 0::2] = img[1::2, 0::2, 1]
    raw[1::2, 1::2] = img[1::2, 1::2, 2]
    raw = add_noise(raw, rng, shot, read)
    raw16 = np.round(np.clip(raw, 0, 1) * 65535).astype(np.uint16)
    # OpenCV names Bayer patterns by the second row; RGGB is "BayerBG" and gives BGR order.
    bgr = cv2.cvtColor(raw16, cv2.COLOR_BayerBG2BGR_EA)
    return bgr[..., ::-1].astype(np.float32) / 65535.0


def add_noise(x: np.ndarray, rng: np.random.Generator, shot: float, read: float) -> np.ndarray:
    """Poisson-Gaussian noise: variance = shot * signal + read^2."""
    x = np.clip(x, 0, None)
    if shot > 0:
        x = rng.poisson(x / shot).astype(np.float32) * shot
    if read > 0:
        x = x + rng.normal(0.0, read, x.shape).astype(np.float32)
    return x.astype(np.float32)


def jpeg(img8: np.ndarray, quality: int) -> tuple[np.ndarray, int]:
    """JPEG round trip of an RGB uint8 image; returns the decoded image and the file size."""
    ok, buf = cv2.imencode(".jpg", img8[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].copy(), int(buf.size)


def draw(profile: PhoneOptics, rng: np.random.Generator) -> Draw:
    j = profile.jitter
    q = profile.jpeg_quality
    return Draw(
        exposure=float(profile.exposure * (1 + rng.uniform(-j, j))),
        white_balance=tuple(float(g * (1 + rng.uniform(-j, j))) for g in profile.white_balance),
        blur_factor=float(1 + rng.uniform(-j, j) * 3),
        noise_shot=float(np.exp(rng.uniform(*np.log(profile.noise_shot)))) if profile.noise_shot[1] > 0 else 0.0,
        noise_read=float(np.exp(rng.uniform(*np.log(profile.noise_read)))) if profile.noise_read[1] > 0 else 0.0,
        jpeg_quality=None if q is None else int(rng.integers(q[0], q[1] + 1)),
    )


def degrade(reference: np.ndarray, profile: PhoneOptics = DEFAULT_PHONE, seed: int | None = 0,
            choice: Draw | None = None) -> tuple[np.ndarray, Draw]:
    """Simulate the phone image of a reference image.

    reference: RGB, uint8 or float in [0, 1], HxWx3. Returns (phone image as
    RGB uint8 on the phone grid, the random choices made).
    """
    rng = np.random.default_rng(seed)
    d = choice or draw(profile, rng)
    ref = reference.astype(np.float32) / 255.0 if reference.dtype == np.uint8 else reference.astype(np.float32)
    lin = srgb_to_linear(ref)
    lin = field_blur(lin, profile.blur_sigma_centre * d.blur_factor, profile.blur_sigma_corner * d.blur_factor)
    lin = lateral_chromatic(lin, profile.chromatic_red, profile.chromatic_blue)
    lin = vignette(lin, profile.vignetting)
    lin = sample_sensor(lin, profile.scale)
    m = np.asarray(profile.crosstalk, np.float32) * np.asarray(d.white_balance, np.float32)[:, None]
    lin = (lin.reshape(-1, 3) @ m.T).reshape(lin.shape) * d.exposure
    if profile.bayer:
        lin = bayer_roundtrip(lin, rng, d.noise_shot, d.noise_read)
    else:
        lin = add_noise(lin, rng, d.noise_shot, d.noise_read)
    out = linear_to_srgb(lin)
    if profile.gamma != 1.0:
        out = np.power(out, profile.gamma)
    if profile.tone_contrast:
        out = np.clip(out, 0, 1)
        out = out + profile.tone_contrast * (out * out * (3 - 2 * out) - out)   # towards a smoothstep
    if profile.sharpen > 0:
        soft = cv2.GaussianBlur(out, (0, 0), 1.0)
        out = out + profile.sharpen * (out - soft)
    out8 = np.round(np.clip(out, 0, 1) * 255).astype(np.uint8)
    if d.jpeg_quality is not None:
        out8, size = jpeg(out8, d.jpeg_quality)
        d.extras["jpeg_bytes"] = size
    return out8, d


# The randomised family of phones (issue 13): models are trained and registration is measured on phones
# drawn from it, so that a phone nobody has seen is no surprise. Ranges: blur 1-3 phone px growing to
# the field edge, lateral CA up to +/-0.8 %, any diagonal-dominant colour cross-talk, white balance,
# exposure, gamma and S-curve tone, ISP sharpening, vignetting, noise, JPEG q50-90.
def random_phone(rng: np.random.Generator, name: str = "random-phone") -> PhoneOptics:
    centre = float(rng.uniform(1.0, 2.0))
    corner = float(rng.uniform(max(centre, 1.5), 3.0))
    leak = rng.uniform(0.01, 0.22, (3, 3))
    np.fill_diagonal(leak, 0.0)
    crosstalk = leak + np.diag(1.0 - leak.sum(axis=1))
    lo = int(rng.integers(50, 81))
    noise = float(np.exp(rng.uniform(np.log(0.7), np.log(1.4))))
    return PhoneOptics(
        name=name, blur_sigma_centre=round(centre, 3), blur_sigma_corner=round(corner, 3),
        chromatic_red=round(float(rng.uniform(-0.008, 0.008)), 5),
        chromatic_blue=round(float(rng.uniform(-0.008, 0.008)), 5),
        vignetting=round(float(rng.uniform(0.05, 0.5)), 3),
        crosstalk=tuple(tuple(round(float(v), 4) for v in row) for row in crosstalk),
        white_balance=(round(float(rng.uniform(0.82, 1.18)), 3), 1.0, round(float(rng.uniform(0.82, 1.18)), 3)),
        exposure=round(float(rng.uniform(0.8, 1.05)), 3), gamma=round(float(rng.uniform(0.8, 1.3)), 3),
        tone_contrast=round(float(rng.uniform(-0.3, 0.8)), 3), sharpen=round(float(rng.uniform(0.0, 1.0)), 3),
        noise_shot=(0.001 * noise, 0.006 * noise), noise_read=(0.002 * noise, 0.008 * noise),
        jpeg_quality=(lo, min(90, lo + 10)))
