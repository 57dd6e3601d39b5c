#!/usr/bin/env bash
# Debian packages that building and testing phonescope need: libsystemd-dev +
# pkg-config (systemd-python builds against them), Xvfb and xdotool (the preview
# window tests: a real X server, real key events). With --rehearse, also what `make rehearse` needs: debootstrap,
# qemu, e2fsprogs, dosfstools and mtools. Installs what is missing when run as root; otherwise says
# what to install.
set -euo pipefail
need=()
if [ "${1:-}" = "--rehearse" ]; then
    command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || need+=(debootstrap)
    command -v qemu-system-x86_64 >/dev/null 2>&1 || need+=(qemu-system-x86)
    command -v qemu-img >/dev/null 2>&1 || need+=(qemu-utils)
    command -v mke2fs >/dev/null 2>&1 || [ -x /usr/sbin/mke2fs ] || need+=(e2fsprogs)
    command -v mkfs.vfat >/dev/null 2>&1 || [ -x /usr/sbin/mkfs.vfat ] || need+=(dosfstools)   # the USB stick
    command -v mcopy >/dev/null 2>&1 || need+=(mtools)                                        # read back on the host
fi
[ -f /usr/include/linux/input.h ] || need+=(linux-libc-dev)   # python-evdev builds against it
pkg-config --exists libsystemd 2>/dev/null || need+=(libsystemd-dev pkg-config)
command -v Xvfb >/dev/null 2>&1 || need+=(xvfb)
command -v xdotool >/dev/null 2>&1 || need+=(xdotool)   # real key events into the preview window (tests)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
# the KMS sink's ioctl structs are checked against the kernel's drm_mode.h (tests)
[ -f /usr/include/libdrm/drm_mode.h ] || [ -f /usr/include/drm/drm_mode.h ] || need+=(libdrm-dev)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian packages: ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
    echo "phonescope needs these Debian packages: ${need[*]} (sudo apt-get install ${need[*]})" >&2
    exit 1
fi
