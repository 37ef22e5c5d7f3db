#!/usr/bin/env bash
# Installs everything Veraltheim needs on a Debian machine with Python 3.11; safe to run again.
#   scripts/bootstrap.sh          runtime: Qt's system libraries, a venv with the package; with a
#                                 display (DISPLAY/WAYLAND_DISPLAY set) also the xcb libraries
#   scripts/bootstrap.sh --dist   also: PyInstaller and the installer tools (`make dist`)
#   scripts/bootstrap.sh --dev    all of --dist, and: clang/lld (kernel rebuild test), Node (interop
#                                 tests), Xvfb (installed-app test), test deps,
#                                 redis-server + haproxy + the [cluster] extra (cluster tests),
#                                 rustc for wasm32 (user-kernel SDK tests; zig comes from pip)
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0 dist=0
case "${1:-}" in
  --dev) dev=1 dist=1 ;;
  --dist) dist=1 ;;
esac
PYTHON=${PYTHON:-python3}
VENV=.venv

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
  echo "bootstrap: need root to run: $*" >&2; return 1; fi; }

# Debian packages: Qt needs these even offscreen (no font at all means every glyph is a box).
apt_pkgs=(libgl1 libegl1 libfontconfig1 fonts-dejavu-core libglib2.0-0 libxkbcommon0 libdbus-1-3)
$PYTHON -m venv --help >/dev/null 2>&1 && $PYTHON -c 'import ensurepip' 2>/dev/null || apt_pkgs+=(python3-venv)
# Qt's xcb platform (a window on an X server): without libxcb-icccm4 and libxcb-keysyms1 Qt aborts
# with "could not load the Qt platform plugin xcb". The wayland ones serve a Wayland session.
window_pkgs=(libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-render-util0
  libxcb-render0 libxcb-shape0 libxcb-util1 libxcb-xkb1 libxkbcommon-x11-0 libx11-xcb1
  libwayland-client0 libwayland-cursor0 libwayland-egl1)
if [ $dist = 1 ] || [ -n "${DISPLAY:-}" ] || [ -n "${WAYLAND_DISPLAY:-}" ]; then
  apt_pkgs+=("${window_pkgs[@]}")
fi
if [ $dist = 1 ]; then
  # packaging/build.py: .deb (dpkg-dev, lintian), .rpm, AppDir checks, Windows installers, ELF fixes
  apt_pkgs+=(dpkg-dev fakeroot lintian rpm desktop-file-utils appstream nsis wixl msitools
    patchelf binutils)
fi
if [ $dev = 1 ]; then
  apt_pkgs+=(clang lld redis-server haproxy)  # redis/haproxy: the cluster tests and benchmark
  apt_pkgs+=(rustc libstd-rust-dev-wasm32)  # user-kernel SDK tests: Rust to wasm32 (zig: pip)
  apt_pkgs+=(xvfb xauth)  # the installed app's window test
  command -v node >/dev/null || apt_pkgs+=(nodejs)
  command -v npm >/dev/null || apt_pkgs+=(npm)
fi
# BOOTSTRAP_LIST_APT=1: print the Debian packages this run wants, install nothing (tests).
if [ -n "${BOOTSTRAP_LIST_APT:-}" ]; then printf '%s\n' "${apt_pkgs[@]}"; exit 0; fi
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null; then
  echo "bootstrap: apt-get install ${missing[*]}"
  as_root apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${missing[@]}" >/dev/null
fi

# The venv, reinstalled only when pyproject.toml changed.
[ -x $VENV/bin/python ] || $PYTHON -m venv $VENV
extra=""; [ $dist = 1 ] && extra="[dist]"; [ $dev = 1 ] && extra="[dev]"
stamp=$VENV/.installed$extra.stamp
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  $VENV/bin/python -m pip install -q --upgrade pip
  $VENV/bin/python -m pip install -q -e ".$extra"
  touch "$stamp"
fi

# Node packages for the interop tests (the official phoenix client, yjs, y-phoenix-channel).
if [ $dev = 1 ] && [ -f tests/interop/package.json ]; then
  if [ ! -d tests/interop/node_modules ] || [ tests/interop/package.json -nt tests/interop/node_modules ]; then
    (cd tests/interop && npm install --no-audit --no-fund --legacy-peer-deps --loglevel=error && touch node_modules)
  fi
fi
