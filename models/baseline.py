"""The classical baseline: a global colour fit plus an unsharp mask.

It is what the CNN has to beat, and its colour fit (closed-form least
squares on the training pairs) is also where the CNN's colour layer starts.
Both are fitted on training pairs only and stored in the model card.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


def fit_colour(inputs: list[np.ndarray], targets: list[np.ndarray], max_samples: int = 400_000,
               seed: int = 0) -> np.ndarray:
    """Least-squares affine colour map (3x4) from input RGB to target RGB, both float [0,1]."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    per = max(1, max_samples // max(1, len(inputs)))
    for a, b in zip(inputs, targets):
        a = a.reshape(-1, 3)
        b = b.reshape(-1, 3)
        idx = rng.choice(len(a), size=min(per, len(a)), replace=False)
        xs.append(a[idx])
        ys.append(b[idx])
    x = np.concatenate(xs).astype(np.float64)
    y = np.concatenate(ys).astype(np.float64)
    xa = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    m, *_ = np.linalg.lstsq(xa, y, rcond=None)
    return m.T.astype(np.float32)  # 3x4: out = M[:, :3] @ rgb + M[:, 3]


def apply_colour(rgb: np.ndarray, m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, np.float32)
    return (rgb.reshape(-1, 3) @ m[:, :3].T + m[:, 3]).reshape(rgb.shape).astype(np.float32)


def unsharp(rgb: np.ndarray, sigma: float, amount: float) -> np.ndarray:
    if amount == 0:
        return rgb
    soft = cv2.GaussianBlur(rgb, (0, 0), sigma)
    return rgb + amount * (rgb - soft)


@dataclass
class Baseline:
    colour: np.ndarray       # 3x4 affine colour map
    sigma: float
    amount: float

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        return np.clip(unsharp(apply_colour(rgb, self.colour), self.sigma, self.amount), 0.0, 1.0)

    def to_dict(self) -> dict:
        return {"colour_matrix": np.round(self.colour, 6).tolist(), "unsharp_sigma": self.sigma,
                "unsharp_amount": self.amount}

    @classmethod
    def from_dict(cls, d: dict) -> "Baseline":
        return cls(np.asarray(d["colour_matrix"], np.float32), float(d["unsharp_sigma"]),
                   float(d["unsharp_amount"]))


def fit_baseline(inputs: list[np.ndarray], targets: list[np.ndarray]) -> Baseline:
    """Colour fit in closed form, then the unsharp mask that minimises MSE on the pairs."""
    m = fit_colour(inputs, targets)
    corrected = [apply_colour(a, m) for a in inputs]
    best = (np.inf, 1.0, 0.0)
    for sigma in (0.8, 1.2, 1.8, 2.5):
        for amount in (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0):
            err = np.mean([np.mean((np.clip(unsharp(c, sigma, amount), 0, 1) - t) ** 2)
                           for c, t in zip(corrected, targets)])
            if err < best[0]:
                best = (err, sigma, amount)
    return Baseline(m, best[1], best[2])
