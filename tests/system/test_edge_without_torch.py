"""The kiosk side must run where PyTorch is not installed."""
from __future__ import annotations

import subprocess
import sys

from tests.helpers import ROOT, SAMPLES

# A finder that answers for torch exactly as Python does when it is not installed.
BLOCK_TORCH = (
    "import sys\n"
    "class NoTorch:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name == 'torch' or name.startswith('torch.'):\n"
    "            raise ModuleNotFoundError(f\"No module named '{name}'\", name=name)\n"
    "sys.meta_path.insert(0, NoTorch())\n"
)


def test_enhance_and_evaluate_run_without_torch(tmp_path):
    code = BLOCK_TORCH + ("from edge.cli import main\n"
                          f"sys.exit(main(['enhance', '{SAMPLES / 'phone' / 'BloodImage_00090.jpg'}', "
                          f"'--out', '{tmp_path}']) or main(['evaluate', '--pairs', '{SAMPLES}']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "BloodImage_00090.png").is_file()
    assert "torch" not in r.stderr


def test_train_without_torch_says_what_to_install():
    code = BLOCK_TORCH + "from edge.cli import main\nsys.exit(main(['train', '--simulate', 'x', '--out', 'y']))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 1 and "phonescope[train]" in r.stderr and "Traceback" not in r.stderr
