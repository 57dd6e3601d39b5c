"""Fine registration by a model of the phone: the benchtop image, blurred, colour-mapped and warped as the
phone sees it, compared with the phone image on the phone's own grid.

Why a model and not optical flow between the two images: what differs between a phone image and its
benchtop image (blur growing to the field edge, lateral chromatic aberration, another colour response and
tone curve, vignetting, JPEG's shifted chroma) pulls a flow estimate off by tenths of a pixel to pixels,
and a phone image upsampled to the benchtop grid is interpolated noise. Here each phone pixel is predicted
from the benchtop image at the point the warp maps it to:

    phone_c(p) = sum_t (a_ct + b_ct r(p)^2) term_t(p) + a_c0 + b_c0 r(p)^2
    term_t(p)  = ref_k blurred by s_l in linear light at T(p_k)   (and its square, for the tone curve)

where T(p) = A p + B-spline(p) is the warp (phone px -> benchtop px) and p_k = centre + (p - centre)/(1 + m_k)
is where benchtop channel k's light lands (lateral CA: red and blue magnified, m_green = 0). A phone channel
takes its own benchtop channel in full (two blur levels and a square) and the other two only as a linear
leak (one blur level): a sensor's colour cross-talk mixes light after the lens has displaced it, but a free
mix of correlated stain channels at two displacements could fake a shift, and the common red/blue CA then
leaked into the affine. The blur is applied in linear light and brought back to the benchtop image's sRGB,
as optics blur light, not encoded values: dark nuclei's blurred edges lie where the phone sees them.
(On 29 family pairs, `python -m calibration.measure_registration --images ../shared/data --per-type 12
--max-median 9 --max-p95 9`: CA displacing each phone channel with every benchtop channel at that point and
sRGB blur gave 0.35 / 1.00 px (median / p95) true misalignment, estimate gap 0.11 median, 0.41 worst; this
form 0.24 / 0.87, 0.035 / 0.35, and finds the CA of a phone instead of about half of it.)
s_l are two blur levels around the phone's blur (their r^2-weighted mix follows a blur that grows to the
field edge, and sharpening), and r^2 carries vignetting. The colour coefficients are a linear least-squares
fit; the warp and the CA are Gauss-Newton steps on all three channels with Huber weights and a Gaussian
prior on the B-spline.
The fit's covariance gives the misalignment it cannot rule out (noise, JPEG), the estimate in the report.
"""
from __future__ import annotations

import cv2
import numpy as np

from edge.colourspace import linear_to_srgb, srgb_to_linear

LEVELS = (0.7, 1.4)              # blur levels, relative to the fitted blur scale (the first: the leak's)
BLUR_FACTORS = (0.8, 1.2, 1.6, 2.0, 2.5, 3.0)   # blur scale searched, in phone px (times the sampling)
PRIOR_PX = 3.0                   # prior std of a B-spline coefficient (benchtop px): smooth warps of a few px
HUBER = 0.02                     # residuals above this (of full scale) are down-weighted
MARGIN_PX = 6                    # phone px at the border left out of the fit


def bspline_basis(u: np.ndarray, length: int, segments: int) -> np.ndarray:
    """Uniform cubic B-spline basis (len(u) x segments+3) over [0, length-1]."""
    h = (length - 1) / segments
    s = np.clip(u / h, 0, segments - 1e-9)
    j = np.floor(s).astype(int)
    t = s - j
    out = np.zeros((len(u), segments + 3))
    rows = np.arange(len(u))
    for k, w in enumerate(((1 - t) ** 3 / 6, (3 * t ** 3 - 6 * t ** 2 + 4) / 6,
                           (-3 * t ** 3 + 3 * t ** 2 + 3 * t + 1) / 6, t ** 3 / 6)):
        out[rows, j + k] = w
    return out


class PhoneModel:
    def __init__(self, phone: np.ndarray, ref: np.ndarray, affine: np.ndarray, scale: float,
                 segments: int | None = None, step: int = 2):
        self.phone = phone.astype(np.float32) / 255
        self.ref_linear = srgb_to_linear(ref.astype(np.float32) / 255)
        self.hp, self.wp = phone.shape[:2]
        self.scale = scale
        self.A = np.asarray(affine, np.float64).copy()
        # about one control segment per 60 phone px: smooth lens distortion, not noise
        self.segments = segments or int(np.clip(round(max(self.hp, self.wp) / 60), 2, 6))
        n = self.segments + 3
        self.C = np.zeros((2, n, n))
        self.m = np.zeros(2)                                   # CA magnification of red and blue
        ys, xs = np.mgrid[0:self.hp:step, 0:self.wp:step]
        self.gshape = ys.shape
        self.ys, self.xs = ys.ravel().astype(np.float64), xs.ravel().astype(np.float64)
        self.cy, self.cx = (self.hp - 1) / 2, (self.wp - 1) / 2
        self.r2 = (((self.xs - self.cx) ** 2 + (self.ys - self.cy) ** 2) /
                   (self.cx ** 2 + self.cy ** 2)).astype(np.float32)
        # within a few blur widths of its own border the phone image holds less than the model assumes
        margin = MARGIN_PX
        self.inner = ((self.ys >= margin) & (self.ys < self.hp - margin) &
                      (self.xs >= margin) & (self.xs < self.wp - margin))
        self.targets = [self.phone[ys, xs, c].ravel() for c in range(3)]
        By = bspline_basis(self.ys, self.hp, self.segments)
        Bx = bspline_basis(self.xs, self.wp, self.segments)
        self.basis = (By[:, :, None] * Bx[:, None, :]).reshape(len(self.xs), -1).astype(np.float32)
        self.sigma = 0.0
        self.noise = None
        self.cov = None

    # -- the model ------------------------------------------------------------------------------------
    def set_blur(self, sigma: float) -> None:
        self.sigma = sigma
        self.levels = []
        for lv in LEVELS:
            b = linear_to_srgb(cv2.GaussianBlur(self.ref_linear, (0, 0), max(0.3, sigma * lv)))
            chans = [np.ascontiguousarray(b[..., k]) for k in range(3)]
            self.levels.append([(c, cv2.Sobel(c, cv2.CV_32F, 1, 0, ksize=3, scale=1 / 8),
                                 cv2.Sobel(c, cv2.CV_32F, 0, 1, ksize=3, scale=1 / 8)) for c in chans])

    def warp_at(self, px: np.ndarray, py: np.ndarray, dense_basis: np.ndarray | None = None):
        """T(p) for phone points (benchtop coordinates)."""
        basis = self.basis if dense_basis is None else dense_basis
        dx, dy = basis @ self.C[0].ravel(), basis @ self.C[1].ravel()
        return (self.A[0, 0] * px + self.A[0, 1] * py + self.A[0, 2] + dx,
                self.A[1, 0] * px + self.A[1, 1] * py + self.A[1, 2] + dy)

    def channel_points(self):
        """Where on the phone grid each benchtop channel's light lands (red and blue magnified by CA)."""
        return [(self.cx + (self.xs - self.cx) / (1 + m), self.cy + (self.ys - self.cy) / (1 + m))
                for m in (self.m[0], 0.0, self.m[1])]

    def _sample(self, img: np.ndarray, X: np.ndarray, Y: np.ndarray, interp=cv2.INTER_LINEAR) -> np.ndarray:
        return cv2.remap(img, X.reshape(self.gshape).astype(np.float32), Y.reshape(self.gshape).astype(np.float32),
                         interp, borderMode=cv2.BORDER_REFLECT101).ravel()

    def _terms(self):
        """Each benchtop channel's terms at its own points: (channel, value, d/dX, d/dY, is a leak term)."""
        pts = self.channel_points()
        maps = [self.warp_at(px, py) for px, py in pts]
        H, W = self.ref_linear.shape[:2]
        valid = self.inner.copy()
        for X, Y in maps:
            valid &= (X > 2) & (X < W - 3) & (Y > 2) & (Y < H - 3)
        terms = []
        for li, level in enumerate(self.levels):
            for k, (img, gx, gy) in enumerate(level):
                X, Y = maps[k]
                v = self._sample(img, X, Y, cv2.INTER_CUBIC)
                tx, ty = self._sample(gx, X, Y), self._sample(gy, X, Y)
                terms.append((k, v, tx, ty, li == 0))
                if li == 0:
                    terms.append((k, v * v, 2 * v * tx, 2 * v * ty, False))
        return pts, valid, terms

    # -- fitting --------------------------------------------------------------------------------------
    def step(self, elastic: bool = True, fit_ca: bool = True) -> float:
        """One Gauss-Newton step on all three channels; returns the residual rms."""
        pts, valid, terms = self._terms()
        A2 = self.A[:, :2]
        n_b = self.basis.shape[1]
        H = g = 0
        resid = []
        pts32 = [(px.astype(np.float32), py.astype(np.float32)) for px, py in pts]
        for c in range(3):
            e, gxs, gys = self._fit_colour(terms, valid, c)
            cols = np.zeros((len(e), 6), np.float32)
            for (px, py), gk, hk in zip(pts32, gxs, gys):
                cols += np.stack([gk * px, gk * py, gk, hk * px, hk * py, hk], 1)
            parts = [cols]
            if elastic:
                parts += [sum(gxs)[:, None] * self.basis, sum(gys)[:, None] * self.basis]
            if fit_ca:   # red's magnification moves only benchtop red's points, blue's only blue's
                ca = np.zeros((len(e), 2), np.float32)
                for k, m in ((0, self.m[0]), (2, self.m[1])):
                    dpx, dpy = -(self.xs - self.cx) / (1 + m) ** 2, -(self.ys - self.cy) / (1 + m) ** 2
                    dX, dY = A2[0, 0] * dpx + A2[0, 1] * dpy, A2[1, 0] * dpx + A2[1, 1] * dpy
                    ca[:, k // 2] = gxs[k] * dX + gys[k] * dY
                parts.append(ca)
            J = np.concatenate(parts, 1)
            a = np.abs(e)
            wt = (np.where(a < HUBER, 1.0, HUBER / np.maximum(a, 1e-9)) * valid).astype(np.float32)
            Jw = J * wt[:, None]
            H = H + (Jw.T @ J).astype(np.float64)
            g = g + (Jw.T @ e).astype(np.float64)
            resid.append(e[valid])
        e = np.concatenate(resid)
        self.noise = float(np.sqrt(np.median(e ** 2) / 0.4549))   # robust: the median of a chi-square(1)
        self.explained = 1.0 - float(np.mean(e ** 2)) / max(1e-12, float(np.mean(
            [np.var(t[valid]) for t in self.targets])))
        prior = np.zeros(len(g))
        theta = np.zeros(len(g))
        if elastic:
            prior[6:6 + 2 * n_b] = self.noise ** 2 / PRIOR_PX ** 2
            theta[6:6 + 2 * n_b] = self.C.ravel()
        Hp = H + np.diag(prior) + 1e-9 * np.eye(len(g))
        d = np.linalg.solve(Hp, g - prior * theta)
        self.A += d[:6].reshape(2, 3)
        if elastic:
            self.C += d[6:6 + 2 * n_b].reshape(self.C.shape)
        if fit_ca:   # kept within what a lens does: a bad start must not run away
            self.m = np.clip(self.m + d[-2:], -0.05, 0.05)
        self._hessian = (Hp, elastic, fit_ca, valid)
        return float(np.sqrt(np.mean(e ** 2)))

    def fit_blur(self) -> float:
        """The blur scale (phone px) that predicts the phone best after a few affine steps at each."""
        A0, m0 = self.A.copy(), self.m.copy()
        tried = []
        for f in BLUR_FACTORS:
            self.A, self.m = A0.copy(), m0.copy()
            self.set_blur(f * self.scale)
            rms = min(self.step(elastic=False) for _ in range(3))
            tried.append((rms, f, self.A.copy(), self.m.copy()))
        rms, f, self.A, self.m = min(tried, key=lambda t: t[0])
        self.set_blur(f * self.scale)
        return f

    def fit(self, affine_steps: int = 5, steps: int = 12) -> dict:
        self.set_blur(1.5 * self.scale)
        for _ in range(affine_steps):
            self.step(elastic=False)
        blur = self.fit_blur()
        rms = 0.0
        for _ in range(steps):
            rms = self.step()
        return {"blur_phone_px": round(blur, 2), "ca_red": round(float(self.m[0]), 5),
                "ca_blue": round(float(self.m[1]), 5), "segments": self.segments, "rms": round(rms, 4),
                "explained": round(self.explained, 3)}

    # -- results --------------------------------------------------------------------------------------
    def dense_displacement(self) -> tuple[np.ndarray, np.ndarray]:
        """The B-spline displacement on the whole phone grid (benchtop px)."""
        By = bspline_basis(np.arange(self.hp, dtype=np.float64), self.hp, self.segments)
        Bx = bspline_basis(np.arange(self.wp, dtype=np.float64), self.wp, self.segments)
        return By @ self.C[0] @ Bx.T, By @ self.C[1] @ Bx.T

    def flow_on_reference(self, shape: tuple[int, int]) -> np.ndarray:
        """flow(x) on the benchtop grid such that the phone sample for benchtop pixel x is at
        A^-1 (x + flow(x) - t): the warp inverted by fixed-point iteration (the displacement is smooth)."""
        H, W = shape
        yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
        a, t = self.A[:, :2], self.A[:, 2]
        ai = np.linalg.inv(a)
        dx, dy = (d.astype(np.float32) for d in self.dense_displacement())
        ddx = ddy = 0.0
        for _ in range(6):
            px = ai[0, 0] * (xx - t[0] - ddx) + ai[0, 1] * (yy - t[1] - ddy)
            py = ai[1, 0] * (xx - t[0] - ddx) + ai[1, 1] * (yy - t[1] - ddy)
            mx, my = px.astype(np.float32), py.astype(np.float32)
            ddx = cv2.remap(dx, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            ddy = cv2.remap(dy, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return np.dstack([-ddx, -ddy]).astype(np.float32)

    def uncertainty(self, step: int = 2) -> tuple[np.ndarray, np.ndarray]:
        """Per phone point (on a grid of `step` px) of the kept area: the std (benchtop px) of the warp's x and y
        that the data cannot rule out: the fit's posterior covariance, its noise from the residuals,
        inflated by their spatial correlation (JPEG blocks and demosaicing make neighbours err together)."""
        Hp, elastic, fit_ca, valid = self._hessian
        cov = self.noise ** 2 * np.linalg.inv(Hp) * self._correlation(*self._terms()[1:])
        ys, xs = np.mgrid[0:self.hp:step, 0:self.wp:step]
        ys, xs = ys.ravel().astype(np.float64), xs.ravel().astype(np.float64)
        n_p = Hp.shape[0]
        gx = np.zeros((len(xs), n_p))
        gy = np.zeros((len(xs), n_p))
        gx[:, 0], gx[:, 1], gx[:, 2] = xs, ys, 1
        gy[:, 3], gy[:, 4], gy[:, 5] = xs, ys, 1
        if elastic:
            basis = (bspline_basis(ys, self.hp, self.segments)[:, :, None] *
                     bspline_basis(xs, self.wp, self.segments)[:, None, :]).reshape(len(xs), -1)
            n_b = basis.shape[1]
            gx[:, 6:6 + n_b], gy[:, 6 + n_b:6 + 2 * n_b] = basis, basis
        return np.sqrt(np.einsum("np,pq,nq->n", gx, cov, gx)), np.sqrt(np.einsum("np,pq,nq->n", gy, cov, gy))

    def _correlation(self, valid, terms, radius: int = 6) -> float:
        """How many grid points' worth of residual move together: the sum of the residuals'
        normalised autocorrelation within `radius` grid steps (1 for white noise)."""
        e = np.where(valid, self._fit_colour(terms, valid, 1)[0], 0.0).reshape(self.gshape)
        e = e - e[valid.reshape(self.gshape)].mean() * valid.reshape(self.gshape)
        f = np.fft.rfft2(e, s=(2 * e.shape[0], 2 * e.shape[1]))
        ac = np.fft.irfft2(f * np.conj(f))
        ac = np.fft.fftshift(ac)
        cy, cx = ac.shape[0] // 2, ac.shape[1] // 2
        win = ac[cy - radius:cy + radius + 1, cx - radius:cx + radius + 1] / ac[cy, cx]
        return float(max(1.0, win[win > 0].sum()))

    def _fit_colour(self, terms, valid, c: int):
        """Phone channel c's colour coefficients (linear least squares over the valid points): its residual
        and the gradient of its prediction with respect to each benchtop channel's point (X, Y)."""
        tc = [t for t in terms if t[0] == c or t[4]]   # its own channel in full, the others as a leak
        nt = len(tc)
        F = np.stack([np.ones_like(tc[0][1])] + [t[1] for t in tc], 1)
        D = np.concatenate([F, F * self.r2[:, None]], 1)
        coef, *_ = np.linalg.lstsq(D[valid].astype(np.float64), self.targets[c][valid].astype(np.float64),
                                   rcond=None)
        coef = coef.astype(np.float32)
        gxs = [np.zeros_like(self.r2) for _ in range(3)]
        gys = [np.zeros_like(self.r2) for _ in range(3)]
        for j, (k, _, tx, ty, _) in enumerate(tc):
            w = coef[1 + j] + self.r2 * coef[nt + 2 + j]
            gxs[k] = gxs[k] + w * tx
            gys[k] = gys[k] + w * ty
        return self.targets[c] - D @ coef, gxs, gys

    def local_misfit(self, patch: int = 24) -> float:
        """RMS (benchtop px) of the local misalignment the smooth warp leaves: a translation fitted on each
        textured patch of the phone image, its noise variance subtracted (what remains is systematic)."""
        pts, valid, terms = self._terms()
        pid = ((self.ys // patch) * (self.wp // patch + 1) + self.xs // patch).astype(int)
        n = int(pid.max()) + 1
        sums = {k: np.zeros(n) for k in ("xx", "xy", "yy", "xe", "ye")}
        for c in range(3):
            e, gxs, gys = self._fit_colour(terms, valid, c)
            e, gx, gy = e * valid, sum(gxs) * valid, sum(gys) * valid
            for key, v in (("xx", gx * gx), ("xy", gx * gy), ("yy", gy * gy), ("xe", gx * e), ("ye", gy * e)):
                sums[key] += np.bincount(pid, v, n)
        det = sums["xx"] * sums["yy"] - sums["xy"] ** 2
        tr = sums["xx"] + sums["yy"]
        ok = (det > 1e-12) & (det > 0.05 * tr ** 2)   # textured both ways, not an edge alone
        if ok.sum() < 4:
            return 0.0
        xx, xy, yy, xe, ye, det = (v[ok] for v in (sums["xx"], sums["xy"], sums["yy"], sums["xe"], sums["ye"], det))
        dx, dy = (yy * xe - xy * ye) / det, (xx * ye - xy * xe) / det
        noise_var = self.noise ** 2 * self._correlation(valid, terms) * (xx + yy) / det   # trace of the 2x2 covariance
        return float(np.sqrt(max(0.0, float(np.median(dx * dx + dy * dy - noise_var)))))
