"""phonescope's runtime base and kiosk daemon (no torch here)."""
from pathlib import Path

SAMPLES = Path(__file__).resolve().parent / "samples"   # shipped phone/reference pairs (self-test, demo, bench)
