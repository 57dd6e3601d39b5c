#!/usr/bin/env bash
# Install phonescope as a systemd service on a kiosk (a Jetson with JetPack 6, or any Debian/Ubuntu).
#   sudo deploy/install.sh            (or: sudo make install)
# TensorRT and its Python bindings come with JetPack (python3-libnvinfer); the
# venv is made with --system-site-packages so that it sees them.
set -euo pipefail
[ "$(id -u)" -eq 0 ] || { echo "install.sh: run as root (sudo make install)" >&2; exit 1; }
SRC="$(cd "$(dirname "$0")/.." && pwd)"
PREFIX=/opt/phonescope
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq python3-venv python3-dev libsystemd-dev pkg-config >/dev/null
getent group render >/dev/null || groupadd --system render   # /dev/dri/renderD* (udev's usual group)
id phonescope >/dev/null 2>&1 || useradd --system --home-dir /var/lib/phonescope --shell /usr/sbin/nologin phonescope
usermod -aG video,render phonescope
mkdir -p "$PREFIX"
cp -a "$SRC/pyproject.toml" "$SRC/README.md" "$SRC/edge" "$SRC/models" "$SRC/calibration" "$PREFIX/"
python3 -m venv --system-site-packages "$PREFIX/.venv"
"$PREFIX/.venv/bin/pip" install --quiet "$PREFIX"
bash "$SRC/deploy/use-system-opencv.sh" "$PREFIX/.venv/bin/python"   # JetPack's OpenCV has GStreamer, pip's not
if "$PREFIX/.venv/bin/python" -c "import tensorrt" 2>/dev/null; then   # the TensorRT backend's CUDA binding
    "$PREFIX/.venv/bin/python" -c "import pycuda.driver" 2>/dev/null \
        || PATH="/usr/local/cuda/bin:$PATH" "$PREFIX/.venv/bin/pip" install --quiet pycuda \
        || echo "install.sh: pycuda did not build (it needs the CUDA toolkit: nvcc in /usr/local/cuda/bin);" \
                "the kiosk runs ONNX Runtime until it is installed" >&2
fi
ln -sf "$PREFIX/.venv/bin/phonescope" /usr/local/bin/phonescope
install -d -m 0755 /etc/phonescope
[ -f /etc/phonescope/phonescope.toml ] || install -m 0644 "$SRC/deploy/phonescope.toml" /etc/phonescope/
install -m 0644 "$SRC/deploy/phonescope.service" /etc/systemd/system/phonescope.service
install -m 0644 "$SRC/deploy/99-phonescope-camera.rules" /etc/udev/rules.d/
udevadm control --reload-rules && udevadm trigger --subsystem-match=video4linux --subsystem-match=graphics || true
# The TensorRT engine for this device, where the service looks for it (the unit's PHONESCOPE_ENGINE_DIR).
ENGINES=/var/cache/phonescope/engines
install -d -m 0750 /var/cache/phonescope "$ENGINES"
if "$PREFIX/.venv/bin/python" -c "import tensorrt" 2>/dev/null; then
    echo "install.sh: building the TensorRT engine for this device (minutes on a Jetson)..."
    PHONESCOPE_ENGINE_DIR="$ENGINES" "$PREFIX/.venv/bin/phonescope" engine build --config /etc/phonescope/phonescope.toml \
        || echo "install.sh: the engine build failed: the kiosk runs ONNX Runtime until \`sudo make engine\` succeeds" >&2
else
    echo "install.sh: no TensorRT here: the kiosk runs ONNX Runtime (on a Jetson: apt install python3-libnvinfer," \
         "then sudo make engine)"
fi
chown -R phonescope:phonescope /var/cache/phonescope
systemctl daemon-reload
systemctl enable --now phonescope.service
echo "installed: systemctl status phonescope; journalctl -u phonescope -f; phonescope doctor"
