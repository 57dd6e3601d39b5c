"""Registration of phone images onto benchtop images (the paper's pipeline).

1. Global: SIFT features on both images (scale-invariant, so the non-integer
   sampling factor and a few degrees of rotation need no prior), ratio test,
   then a similarity transform by RANSAC, refined to an affine one on the
   inliers. The phone image is resampled onto the benchtop grid.
2. Local: dense optical flow (OpenCV Farneback) between the two, on locally
   normalised gray images so that colour and vignetting differences do not
   pull; the flow is smoothed hard (the phone lens distortion is smooth), so
   noise and JPEG blocks do not become warps. Two passes: the second
   measures what the first left.
3. Check: residual misalignment measured from the data by ECC (sub-pixel,
   gain-invariant) on a grid of textured patches; a pair above the limits,
   or with too few feature inliers, is rejected with the reason, never kept
   silently.
Output is cropped to the area valid in both images.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

MIN_INLIERS = 20
ELASTIC_PASSES = 2


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


def normalise(g: np.ndarray, sigma: float = 12.0) -> np.ndarray:
    """Local zero-mean, unit-contrast gray: robust to colour, vignetting and exposure differences."""
    g = g.astype(np.float32)
    mean = cv2.GaussianBlur(g, (0, 0), sigma)
    d = g - mean
    std = np.sqrt(cv2.GaussianBlur(d * d, (0, 0), sigma)) + 2.0
    return d / std


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
    best = (0, None, None, None)
    for s in scales:
        small = cv2.resize(ref, (max(8, round(ref.shape[1] / s)), max(8, round(ref.shape[0] / s))),
                           interpolation=cv2.INTER_AREA) if s != 1.0 else ref
        kp2, d2 = sift.detectAndCompute(clahe.apply(gray(small)), None)
        if d2 is None or len(kp2) < MIN_INLIERS:
            continue
        src, dst = _match(kp1, d1, kp2, d2)
        if len(src) < MIN_INLIERS:
            continue
        sim, inl = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=2.5,
                                               maxIters=5000, confidence=0.999)
        n = int(inl.sum()) if inl is not None else 0
        if sim is not None and n > best[0]:
            best = (n, s, src[inl.ravel().astype(bool)], dst[inl.ravel().astype(bool)])
    n, s, src, dst = best
    if n < MIN_INLIERS:
        return None, n, f"only {n} consistent feature matches (different fields, or too blurred?)"
    aff, _ = cv2.estimateAffine2D(src, dst * s, method=cv2.LMEDS)
    if aff is None:
        aff, _ = cv2.estimateAffinePartial2D(src, dst * s, method=cv2.LMEDS)
    return aff, n, ""


def elastic_field(moving: np.ndarray, fixed: np.ndarray, valid: np.ndarray, smooth: float = 24.0,
                  blur: float = 0.0) -> np.ndarray:
    """Smooth displacement (HxWx2) such that moving(x + flow(x)) ~ fixed(x).

    The raw Farneback flow is averaged by normalised convolution, weighted by local
    texture and validity: flat background and the empty border say nothing
    about the warp, so they must not vote.
    """
    if blur > 0:  # match the phone's sharpness, so both sides show the same detail
        fixed = cv2.GaussianBlur(fixed, (0, 0), blur)
    fill = np.where(valid[..., None] > 0, moving, fixed)  # no artificial edge at the border of the phone field
    na, nb = normalise(gray(fixed)), normalise(gray(fill))
    a = np.clip(na * 40 + 128, 0, 255).astype(np.uint8)
    b = np.clip(nb * 40 + 128, 0, 255).astype(np.uint8)
    # Farneback with a wide window and a 7-pixel polynomial: steadier than DIS on the
    # smooth, repetitive edges of blood cells (measured on known warps: lower median and p95).
    flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 31, 5, 7, 1.5, 0)
    gx = cv2.Sobel(gray(fixed).astype(np.float32), cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(gray(fixed).astype(np.float32), cv2.CV_32F, 0, 1)
    weight = cv2.GaussianBlur(gx * gx + gy * gy, (0, 0), 3.0) * valid
    den = cv2.GaussianBlur(weight, (0, 0), smooth) + 1e-6
    return np.dstack([cv2.GaussianBlur(flow[..., k] * weight, (0, 0), smooth) / den for k in range(2)])


def apply_flow(img: np.ndarray, flow: np.ndarray, border=cv2.BORDER_CONSTANT) -> np.ndarray:
    h, w = flow.shape[:2]
    xx, yy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(img, xx + flow[..., 0], yy + flow[..., 1], cv2.INTER_CUBIC, borderMode=border)


def residual(a: np.ndarray, b: np.ndarray, blur: float = 0.0, patch: int = 64, step: int = 32) -> np.ndarray:
    """Misalignment (px) of b against a, measured from the data: ECC translation on textured patches.

    `a` (the sharp reference) is blurred by `blur` first so that both sides
    show the same detail. ECC is iterative and sub-pixel, and insensitive to
    the gain and offset differences left by the phone's colour and
    vignetting; on known warps its median tracks the true median within
    about 0.15 px, while the spread of a single patch's estimate adds to the
    tail (so smaller patches overstate the 95th percentile).
    """
    if blur > 0:
        a = cv2.GaussianBlur(a, (0, 0), blur)
    ga, gb = normalise(gray(a)), normalise(gray(b))
    crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-5)
    shifts = []
    h, w = ga.shape
    for y in range(0, h - patch + 1, step):
        for x in range(0, w - patch + 1, step):
            pa, pb = ga[y:y + patch, x:x + patch], gb[y:y + patch, x:x + patch]
            gx, gy = cv2.Sobel(pa, cv2.CV_32F, 1, 0), cv2.Sobel(pa, cv2.CV_32F, 0, 1)
            if float(np.mean(gx * gx + gy * gy)) < 0.05:  # flat background: nothing to measure
                continue
            try:
                cc, m = cv2.findTransformECC(pa, pb, np.eye(2, 3, dtype=np.float32), cv2.MOTION_TRANSLATION,
                                             crit, None, 3)
            except cv2.error:  # did not converge: no measurement here
                continue
            if cc >= 0.3:
                shifts.append(float(np.hypot(m[0, 2], m[1, 2])))
    return np.asarray(shifts)


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


def register(phone: np.ndarray, ref: np.ndarray, max_median: float = 0.5, max_p95: float = 1.5) -> Registration:
    h, w = ref.shape[:2]
    m, inliers, why = global_transform(phone, ref)
    rep: dict = {"inliers": inliers}
    if m is None:
        return Registration(False, why, report=rep)
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    rep.update(affine=np.round(m, 5).tolist(), scale=round(scale, 4),
               rotation_deg=round(float(np.degrees(np.arctan2(m[1, 0], m[0, 0]))), 3),
               shift=[round(float(m[0, 2]), 2), round(float(m[1, 2]), 2)])
    warped = cv2.warpAffine(phone, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT)
    ones = np.full(phone.shape[:2], 255, np.uint8)
    valid0 = cv2.warpAffine(ones, m, (w, h), flags=cv2.INTER_NEAREST)
    blur = 0.5 * scale + 0.5  # the phone's extra blur in reference px: compare like with like
    flow = np.zeros((h, w, 2), np.float32)
    for _ in range(ELASTIC_PASSES):  # the second pass measures what the first left
        valid = apply_flow(valid0, flow) == 255
        flow += elastic_field(apply_flow(warped, flow), ref, valid.astype(np.float32), 48.0, blur)
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
    res = residual(a, b, blur)              # 64-px patches: the median
    tail = residual(a, b, blur, 96, 48)     # 96-px patches: less estimator spread in the tail
    if len(res) < 8 or len(tail) < 4:
        return Registration(False, "too little texture to verify the alignment", report=rep, matrix=m, flow=flow)
    med, p95 = float(np.median(res)), float(np.percentile(tail, 95))
    rep["residual_px"] = {"median": round(med, 3), "p95": round(p95, 3), "patches": int(len(res)),
                          "p95_64px": round(float(np.percentile(res, 95)), 3)}
    if med > max_median or p95 > max_p95:
        return Registration(False, f"residual misalignment median {med:.2f} px / p95 {p95:.2f} px above "
                                   f"{max_median} / {max_p95}", report=rep, matrix=m, flow=flow)
    return Registration(True, "", b, a, rep, m, flow)


def overlay(phone: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Reference in red, phone in green/blue: misalignment shows as colour fringes."""
    g1 = cv2.equalizeHist(gray(ref))
    g2 = cv2.equalizeHist(gray(phone))
    return np.dstack([g1, g2, g2])
