"""Registration of phone images onto benchtop images (the paper's pipeline).

1. Global: SIFT features on both images (scale-invariant, so the non-integer
   sampling factor and a few degrees of rotation need no prior), ratio test,
   then a similarity transform by RANSAC, refined to an affine one on the
   inliers. The phone image is resampled onto the benchtop grid.
2. Fine: a model of the phone (calibration/phone_model.py) predicts each
   phone pixel from the benchtop image (blur, colour response, vignetting,
   lateral chromatic aberration) through the warp, affine + a smooth cubic
   B-spline, fitted on the phone's own grid by Gauss-Newton.
3. Check: the misalignment the fit cannot rule out (its posterior
   uncertainty, with the residuals' correlation, plus what local patches
   show the smooth warp left); a pair above the limits, with too few
   feature inliers, or one the model cannot explain (another field), is
   rejected with the reason, never kept silently.
Output is cropped to the area valid in both images.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from calibration.phone_model import PhoneModel

MIN_INLIERS = 12       # RANSAC-consistent SIFT matches (unrelated smears give up to ~10)
MIN_EXPLAINED = 0.7    # of the phone image's variance the fitted model must explain (a right match: 0.85-0.98)
MAX_CA = 0.03          # lateral CA the fit may claim (real lenses: under 1 %)
# Default acceptance limits (median, p95 of the estimated misalignment, benchtop px): the larger of a fixed
# part of a benchtop pixel (the reference's own detail) and of a phone pixel (the input carries nothing
# finer, so at 3x sampling 0.5 benchtop px is a sixth of what the phone resolves).
LIMIT_BENCHTOP_PX = (0.5, 1.5)
LIMIT_PHONE_PX = (0.25, 0.75)


def default_limits(scale: float) -> tuple[float, float]:
    """Acceptance limits in benchtop px for a pair at `scale` benchtop px per phone px."""
    return (max(LIMIT_BENCHTOP_PX[0], LIMIT_PHONE_PX[0] * scale),
            max(LIMIT_BENCHTOP_PX[1], LIMIT_PHONE_PX[1] * scale))


@dataclass
class Registration:
    ok: bool
    reason: str
    phone: np.ndarray | None = None        # RGB uint8 on the reference grid, cropped
    reference: np.ndarray | None = None    # RGB uint8, cropped
    report: dict = field(default_factory=dict)
    matrix: np.ndarray | None = None       # phone -> reference affine (2x3)
    flow: np.ndarray | None = None         # elastic refinement on the reference grid (uncropped)
    # matrix and flow are kept for a rejected pair too, once they were estimated (diagnostics)


def gray(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def _match(kp1, d1, kp2, d2):
    matches = cv2.BFMatcher(cv2.NORM_L2).knnMatch(d1, d2, k=2)
    good = [m for m, n in (p for p in matches if len(p) == 2) if m.distance < 0.8 * n.distance]
    src = np.float32([kp1[m.queryIdx].pt for m in good]).reshape(-1, 2)
    dst = np.float32([kp2[m.trainIdx].pt for m in good]).reshape(-1, 2)
    return src, dst


def global_transform(phone: np.ndarray, ref: np.ndarray,
                     scales=(1.0, 1.25, 1.6, 2.0, 2.5, 3.2)) -> tuple[np.ndarray | None, int, str]:
    """2x3 affine mapping phone pixel coordinates to reference coordinates.

    Coarse first: the reference is matched at a few reductions that bracket
    the expected phone/benchtop sampling factor, and the reduction with the
    most RANSAC inliers wins; SIFT does the rest of the scale.
    """
    clahe = cv2.createCLAHE(clipLimit=3.0, tileGridSize=(8, 8))  # stained smears are low-contrast
    sift = cv2.SIFT_create(nfeatures=5000, contrastThreshold=0.01)
    kp1, d1 = sift.detectAndCompute(clahe.apply(gray(phone)), None)
    if d1 is None or len(kp1) < MIN_INLIERS:
        return None, 0, "too few features in the phone image (blank or out of focus?)"
    best = (0, None, None, None, None)
    for s, blur in ((s, b) for s in scales for b in (0.0, 1.3)):
        small = cv2.resize(ref, (max(8, round(ref.shape[1] / s)), max(8, round(ref.shape[0] / s))),
                           interpolation=cv2.INTER_AREA) if s != 1.0 else ref
        if blur:   # as blurred as a phone: a sharp reference shows features the phone never saw
            small = cv2.GaussianBlur(small, (0, 0), blur)
        kp2, d2 = sift.detectAndCompute(clahe.apply(gray(small)), None)
        if d2 is None or len(kp2) < MIN_INLIERS:
            continue
        src, dst = _match(kp1, d1, kp2, d2)
        if len(src) < MIN_INLIERS:
            continue
        sim, inl = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=2.5,
                                               maxIters=5000, confidence=0.999)
        n = int(inl.sum()) if inl is not None else 0
        # at a reduction near the sampling factor SIFT finds the rest of the scale: a far-off or collapsed
        # similarity (many matches on one point) is a bad match, whatever its count
        if sim is None or not 0.5 < np.sqrt(abs(np.linalg.det(sim[:, :2]))) < 2.0:
            continue
        if n > best[0]:
            best = (n, s, src[inl.ravel().astype(bool)], dst[inl.ravel().astype(bool)], sim)
    n, s, src, dst, sim = best
    if n < MIN_INLIERS:
        return None, n, f"only {n} consistent feature matches (different fields, or too blurred?)"
    sim = sim * s   # back to full reference coordinates
    # the affine by least squares on the similarity's inliers, unless they are too few or too clustered to
    # fix shear (then the similarity: the phone model refines it anyway)
    design = np.hstack([src, np.ones((len(src), 1), np.float32)]).astype(np.float64)
    aff = np.linalg.lstsq(design, (dst * s).astype(np.float64), rcond=None)[0].T
    det_ratio = np.linalg.det(aff[:, :2]) / np.linalg.det(sim[:, :2])
    if not (0.9 < det_ratio < 1.1) or np.abs(aff[:, :2] - sim[:, :2]).max() > 0.1 * np.sqrt(abs(np.linalg.det(sim[:, :2]))):
        aff = sim
    return aff.astype(np.float64), n, ""


def apply_flow(img: np.ndarray, flow: np.ndarray, border=cv2.BORDER_CONSTANT) -> np.ndarray:
    h, w = flow.shape[:2]
    xx, yy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(img, xx + flow[..., 0], yy + flow[..., 1], cv2.INTER_CUBIC, borderMode=border)


def valid_crop(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """A large axis-aligned rectangle inside the valid mask: shrink the border rows/cols that are not."""
    y0, y1, x0, x1 = 0, mask.shape[0], 0, mask.shape[1]
    while y1 - y0 > 16 and x1 - x0 > 16:
        sub = mask[y0:y1, x0:x1]
        bad = {"top": (~sub[0]).mean(), "bottom": (~sub[-1]).mean(), "left": (~sub[:, 0]).mean(),
               "right": (~sub[:, -1]).mean()}
        side, worst = max(bad.items(), key=lambda kv: kv[1])
        if worst == 0:
            return y0, y1, x0, x1
        if side == "top":
            y0 += 1
        elif side == "bottom":
            y1 -= 1
        elif side == "left":
            x0 += 1
        else:
            x1 -= 1
    return None


def register(phone: np.ndarray, ref: np.ndarray, max_median: float | None = None,
             max_p95: float | None = None) -> Registration:
    """Limits None: default_limits at the fitted sampling factor."""
    h, w = ref.shape[:2]
    m, inliers, why = global_transform(phone, ref)
    rep: dict = {"inliers": inliers}
    if m is None:
        return Registration(False, why, report=rep)
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    model = PhoneModel(phone, ref, m, scale)
    rep["phone_model"] = fit = model.fit()
    if fit["explained"] < MIN_EXPLAINED or max(abs(fit["ca_red"]), abs(fit["ca_blue"])) >= MAX_CA:
        return Registration(False, f"the benchtop image does not predict the phone image (the model explains "
                                   f"{100 * fit['explained']:.0f} %): another field, or a bad match",
                            report=rep, matrix=model.A)
    m = model.A.astype(np.float32)
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    rep.update(affine=np.round(m, 5).tolist(), scale=round(scale, 4),
               rotation_deg=round(float(np.degrees(np.arctan2(m[1, 0], m[0, 0]))), 3),
               shift=[round(float(m[0, 2]), 2), round(float(m[1, 2]), 2)])
    flow = model.flow_on_reference((h, w))
    warped = cv2.warpAffine(phone, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT)
    valid0 = cv2.warpAffine(np.full(phone.shape[:2], 255, np.uint8), m, (w, h), flags=cv2.INTER_NEAREST)
    aligned = apply_flow(warped, flow)
    valid = apply_flow(valid0, flow) == 255
    mag = np.hypot(flow[..., 0], flow[..., 1])
    rep["elastic_px"] = {"max": round(float(mag[valid].max()) if valid.any() else 0.0, 3),
                         "mean": round(float(mag[valid].mean()) if valid.any() else 0.0, 3)}
    crop = valid_crop(cv2.erode(valid.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool))
    if crop is None:
        return Registration(False, "no common area", report=rep, matrix=m, flow=flow)
    y0, y1, x0, x1 = crop
    rep["crop"] = [y0, y1, x0, x1]
    a, b = ref[y0:y1, x0:x1], aligned[y0:y1, x0:x1]
    med, p95 = misalignment_estimate(model)
    auto = default_limits(scale)
    max_median = auto[0] if max_median is None else max_median
    max_p95 = auto[1] if max_p95 is None else max_p95
    rep["residual_px"] = {"median": round(med, 3), "p95": round(p95, 3),
                          "how": "posterior of the phone-model fit (noise and its correlation)"}
    rep["limits_px"] = {"median": round(max_median, 3), "p95": round(max_p95, 3)}
    if med > max_median or p95 > max_p95:
        return Registration(False, f"residual misalignment median {med:.2f} px / p95 {p95:.2f} px above "
                                   f"{max_median:.2f} / {max_p95:.2f}", report=rep, matrix=m, flow=flow)
    return Registration(True, "", b, a, rep, m, flow)


def misalignment_estimate(model: PhoneModel, draws: int = 8) -> tuple[float, float]:
    """Median and 95th percentile (benchtop px) of the misalignment the fit cannot rule out, from its
    per-point uncertainty (Gaussian draws)."""
    sx, sy = model.uncertainty()
    misfit = model.local_misfit()
    bias = misfit / np.sqrt(2)          # per axis
    sx, sy = np.hypot(sx, bias), np.hypot(sy, bias)
    rng = np.random.default_rng(0)
    e = np.hypot(rng.standard_normal((draws, len(sx))) * sx, rng.standard_normal((draws, len(sy))) * sy)
    return float(np.median(e)), float(np.percentile(e, 95))


def overlay(phone: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Reference in red, phone in green/blue: misalignment shows as colour fringes."""
    g1 = cv2.equalizeHist(gray(ref))
    g2 = cv2.equalizeHist(gray(phone))
    return np.dstack([g1, g2, g2])
