#!/usr/bin/env bash
# On a Jetson, JetPack's OpenCV is built with GStreamer (the gst:nvarguscamerasrc camera source needs it)
# and pip's opencv-python is not: let a venv made with --system-site-packages use the system's.
#   deploy/use-system-opencv.sh VENV/bin/python      (run after every pip install into that venv)
# Does nothing where the system's OpenCV is missing or has no GStreamer.
set -euo pipefail
py="$1"
system_python="${SYSTEM_PYTHON:-/usr/bin/python3}"
has_gst='import cv2, re, sys; sys.exit(0 if re.search(r"GStreamer:\s+YES", cv2.getBuildInformation()) else 1)'
if [ -x "$system_python" ] && "$system_python" -c "$has_gst" 2>/dev/null && ! "$py" -c "$has_gst" 2>/dev/null; then
    "$py" -m pip uninstall -y -q opencv-python opencv-python-headless >/dev/null 2>&1 || true
    if "$py" -c "$has_gst" 2>/dev/null; then
        echo "using the system's OpenCV $("$py" -c 'import cv2; print(cv2.__version__)') (with GStreamer)"
    else
        echo "use-system-opencv.sh: the venv does not see the system's OpenCV (made without --system-site-packages?)" >&2
    fi
fi
