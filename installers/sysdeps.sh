#!/bin/sh
# System packages pharmos needs on Debian/Ubuntu: venv support, the libraries Qt loads
# offscreen, and Xvfb for screenshots. Installs them when run as root; otherwise prints the
# exact apt line. Safe to run repeatedly.
set -eu
PKGS="python3-venv libegl1 libgl1 libfontconfig1 libglib2.0-0 libdbus-1-3 libxkbcommon0 \
xvfb xauth libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-render-util0 \
libxcb-render0 libxcb-shape0 libxcb-util1 libxcb-xkb1 libxkbcommon-x11-0"
[ -n "${PHARMOS_EXTRA_APT:-}" ] && PKGS="$PKGS $PHARMOS_EXTRA_APT"
command -v dpkg-query >/dev/null 2>&1 || { echo "sysdeps: not a Debian/Ubuntu system; install the Qt runtime libraries yourself" >&2; exit 0; }
missing=""
for p in $PKGS; do
  case "$p" in python3-venv) python3 -c "import ensurepip, venv" 2>/dev/null && continue ;; esac
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = "0" ]; then
  echo "sysdeps: installing$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
else
  echo "sysdeps: missing system packages. Run:" >&2
  echo "  sudo apt-get install -y$missing" >&2
  exit 1
fi
