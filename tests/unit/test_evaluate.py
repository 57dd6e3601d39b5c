"""`phonescope evaluate` and the figures behind it."""
from __future__ import annotations

import numpy as np
import pytest

from models.metrics import all_metrics, ciede2000


@pytest.mark.filterwarnings("ignore:divide by zero")  # PSNR of identical images is infinite
def test_metrics_of_identical_and_shifted_colour():
    rng = np.random.default_rng(0)
    a = rng.random((32, 32, 3)).astype(np.float32)
    m = all_metrics(a, a)
    assert m["ssim"] > 0.9999 and m["ciede2000"] < 1e-6 and m["psnr"] > 100
    # colour-science's CIEDE2000 reference pair (Sharma et al. 2005, pair 1): 2.0425
    import colour
    lab1, lab2 = np.array([50.0, 2.6772, -79.7751]), np.array([50.0, 0.0, -82.7485])
    assert abs(float(colour.delta_E(lab1, lab2, method="CIE 2000")) - 2.0425) < 1e-4
    assert ciede2000(np.clip(a + 0.05, 0, 1), a) > 1.0
