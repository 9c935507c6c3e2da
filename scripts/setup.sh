#!/usr/bin/env bash
# Installs every build and test dependency of rove from Debian packages.
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
PACKAGES=(
  build-essential cmake ninja-build pkg-config clang-format
  libzydis-dev libzycore-dev libasmjit-dev libxbyak-dev
  libboost-container-dev libcli11-dev libfmt-dev libspdlog-dev
  googletest libgtest-dev libgmock-dev libbenchmark-dev
  nasm cpio acpica-tools ccache
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
echo "setup: all dependencies present"
