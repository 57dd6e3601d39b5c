#!/usr/bin/env bash
# Install (or upgrade) phonescope as a systemd service on a kiosk (a Jetson with JetPack 6, or any Debian/Ubuntu).
#   sudo deploy/install.sh                  from this source tree (pip builds it; needs the package index)
#   sudo deploy/install.sh --wheels DIR     offline: phonescope and its dependencies as wheels in DIR
#                                           (made on another machine: pip wheel -w DIR . ; see make rehearse)
# Running it again upgrades in place: config, captures and catalogue are kept, the service is restarted.
# TensorRT and its Python bindings come with JetPack (python3-libnvinfer); the
# venv is made with --system-site-packages so that it sees them.
set -euo pipefail
[ "$(id -u)" -eq 0 ] || { echo "install.sh: run as root (sudo make install)" >&2; exit 1; }
SRC="$(cd "$(dirname "$0")/.." && pwd)"
PREFIX=/opt/phonescope
WHEELS=""
while [ $# -gt 0 ]; do
    case "$1" in
        --wheels) WHEELS="$(cd "${2:?--wheels needs a folder}" && pwd)"; shift 2 ;;
        *) echo "install.sh: unknown argument $1 (usage: install.sh [--wheels DIR])" >&2; exit 2 ;;
    esac
done
export DEBIAN_FRONTEND=noninteractive
# from source, systemd-python is compiled (libsystemd-dev); from wheels only the venv module is needed
NEED="python3-venv"; [ -n "$WHEELS" ] || NEED="$NEED python3-dev libsystemd-dev pkg-config gcc"
MISSING="$(for p in $NEED; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || echo "$p"; done)"
if [ -n "$MISSING" ]; then
    apt-get install -y -qq $MISSING >/dev/null \
        || { echo "install.sh: cannot install" $MISSING "(no network? use --wheels on an offline kiosk)" >&2; exit 1; }
fi
getent group render >/dev/null || groupadd --system render   # /dev/dri/renderD* (udev's usual group)
getent group input >/dev/null || groupadd --system input     # /dev/input/event*: keyboards, scanners, pedals
id phonescope >/dev/null 2>&1 || useradd --system --home-dir /var/lib/phonescope --shell /usr/sbin/nologin phonescope
usermod -aG video,render,input phonescope
mkdir -p "$PREFIX"
cp -a "$SRC/README.md" "$PREFIX/"
python3 -m venv --system-site-packages "$PREFIX/.venv"
if [ -n "$WHEELS" ]; then
    # the same version number may be rebuilt: reinstall phonescope itself, keep dependencies that fit
    "$PREFIX/.venv/bin/pip" install --quiet --no-index --find-links "$WHEELS" phonescope
    "$PREFIX/.venv/bin/pip" install --quiet --no-index --find-links "$WHEELS" --force-reinstall --no-deps phonescope
else
    rm -rf "$PREFIX/src" && mkdir -p "$PREFIX/src"
    cp -a "$SRC/pyproject.toml" "$SRC/README.md" "$SRC/edge" "$SRC/models" "$SRC/calibration" "$PREFIX/src/"
    "$PREFIX/.venv/bin/pip" install --quiet "$PREFIX/src"
fi
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
# The unit denies all IP traffic and writes; drop-ins allow exactly the [upload] url's host and the
# [export] auto_dir folder (each removed without its key)
"$PREFIX/.venv/bin/python" -m edge.upload_unit dropin /etc/phonescope/phonescope.toml \
    || echo "install.sh: no upload or USB export allowance written (see the line above): captures stay on the kiosk" >&2
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
systemctl enable phonescope.service
# restart, not start: an upgrade over a running service must run the new code (pending captures are
# finished or refused with an answer by the daemon's own SIGTERM handling)
systemctl restart phonescope.service
echo "installed: systemctl status phonescope; journalctl -u phonescope -f; phonescope doctor"
echo "operators: sudo usermod -aG phonescope USER (then log in again) to use phonescope capture and status"
