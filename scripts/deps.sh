#!/usr/bin/env bash
# Installs what protoherb needs on Debian 12, and only what is missing.
# Usage: scripts/deps.sh            (run as root, or with sudo available)
set -euo pipefail

# Debian packages protoherb builds, tests and runs with:
#   libtorch-dev        the tensor engine (CPU libtorch 1.13.1 with oneDNN)
#   libgloo-dev         headers of Gloo, the collectives libtorch's c10d ProcessGroupGloo runs on (distributed training)
#   libturbojpeg0-dev   JPEG decoding with DCT-domain scaling
#   libjpeg62-turbo-dev jpeglib.h: decoding only the rows and columns a crop needs
#   libopenblas0-pthread  a fast system BLAS for libtorch's matrix products (reference BLAS is ~25x slower)
#   chromium            headless browser for the web page's end-to-end test
#   git, gcc, g++, make, pkg-config: the cgo toolchain
PKGS=(libtorch-dev libgloo-dev libturbojpeg0-dev libjpeg62-turbo-dev libopenblas0-pthread chromium g++ gcc make git)
# Optional extras with PROTOHERB_DEPS_EXTRA=1: python3-torch for regenerating test fixtures.
if [[ "${PROTOHERB_DEPS_EXTRA:-0}" == 1 ]]; then PKGS+=(python3-torch python3-numpy); fi

if [[ ! -r /etc/debian_version ]] || ! command -v dpkg-query >/dev/null || ! command -v apt-get >/dev/null; then
  echo "protoherb: 'make deps' supports Debian 12 (bookworm) only: this system has no apt/dpkg." >&2
  echo "Install by hand: libtorch (1.13, C++ API), libturbojpeg, an optimised BLAS, then run 'make build'." >&2
  echo "With an unpacked libtorch elsewhere: LIBTORCH=/path/to/libtorch make build" >&2
  exit 1
fi

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

SUDO=""
if [[ $(id -u) != 0 ]]; then
  if command -v sudo >/dev/null; then SUDO=sudo; else
    if [[ ${#missing[@]} -gt 0 ]]; then
      echo "protoherb: need root (or sudo) to install: ${missing[*]}" >&2; exit 1
    fi
  fi
fi

if [[ ${#missing[@]} -gt 0 ]]; then
  echo "protoherb: installing missing Debian packages: ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "protoherb: all Debian packages present (${PKGS[*]})"
fi

# libtorch sends matrix products to the system libblas.so.3: make sure it is OpenBLAS.
alt=libblas.so.3-x86_64-linux-gnu
cur=$(update-alternatives --query "$alt" 2>/dev/null | awk '/^Value:/ {print $2}')
if [[ "$cur" != *openblas* ]]; then
  best=$(update-alternatives --list "$alt" 2>/dev/null | grep openblas | head -n1 || true)
  if [[ -z "$best" ]]; then
    echo "protoherb: no OpenBLAS alternative for $alt; matrix products will be slow" >&2
  else
    echo "protoherb: selecting OpenBLAS as the system BLAS ($best)"
    $SUDO update-alternatives --set "$alt" "$best"
  fi
fi
echo "protoherb: BLAS is $(update-alternatives --query "$alt" 2>/dev/null | awk '/^Value:/ {print $2}')"
