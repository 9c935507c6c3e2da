#!/usr/bin/env bash
# Fetches the acceptance guest kernel: the stock Debian 12 kernel (package linux-image-amd64 and
# the versioned linux-image-6.1.0-*-amd64 it depends on), downloaded with `apt-get download` and
# unpacked with `dpkg-deb -x` -- nothing is installed on the host.
#
# Output: $ROVE_VMLINUZ (default: <repo>/build/guest/vmlinuz) plus vmlinuz.package beside it
# naming the package it came from. Idempotent: an existing vmlinuz with a valid bzImage header is
# kept (set ROVE_GUEST_REFETCH=1 to fetch again). ROVE_KERNEL_PACKAGE picks a package by name
# instead of following linux-image-amd64's dependency.
#
# Needs only apt (Debian's archive); everything after the download is offline.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
guest_dir=${ROVE_GUEST_DIR:-$repo/build/guest}
out=${ROVE_VMLINUZ:-$guest_dir/vmlinuz}

is_bzimage() {
  # "HdrS" at offset 0x202 marks a Linux boot-protocol header.
  [ -s "$1" ] && [ "$(dd if="$1" bs=1 skip=514 count=4 2>/dev/null)" = "HdrS" ]
}

if [ "${ROVE_GUEST_REFETCH:-0}" != 1 ] && is_bzimage "$out"; then
  echo "fetch-guest: $out already present ($(cat "$out.package" 2>/dev/null || echo unknown package))"
  exit 0
fi

for tool in apt-get apt-cache dpkg-deb; do
  command -v "$tool" >/dev/null || { echo "fetch-guest: $tool not found (needs a Debian host)" >&2; exit 1; }
done

SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi

resolve_package() {
  apt-cache depends linux-image-amd64 2>/dev/null |
    awk '/Depends: linux-image-[0-9].*-amd64$/ { print $2; exit }'
}

pkg=${ROVE_KERNEL_PACKAGE:-}
if [ -z "$pkg" ]; then
  pkg=$(resolve_package || true)
  if [ -z "$pkg" ]; then
    echo "fetch-guest: refreshing apt package lists"
    $SUDO apt-get update -qq
    pkg=$(resolve_package || true)
  fi
fi
if [ -z "$pkg" ]; then
  echo "fetch-guest: cannot resolve the kernel package linux-image-amd64 depends on" >&2
  exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetch-guest: downloading $pkg"
# apt-get download writes into the current directory; run it as an ordinary user's tool (no
# sudo needed), falling back to _apt's sandbox warning being harmless as root.
(cd "$tmp" && apt-get download -qq "$pkg" 2>&1 | grep -v "^W: Download is performed unsandboxed" || true)
deb=$(ls "$tmp"/*.deb 2>/dev/null | head -n 1 || true)
if [ -z "$deb" ]; then
  echo "fetch-guest: apt-get download $pkg produced no .deb" >&2
  exit 1
fi
dpkg-deb -x "$deb" "$tmp/root"
vmlinuz=$(ls "$tmp"/root/boot/vmlinuz-* 2>/dev/null | head -n 1 || true)
if [ -z "$vmlinuz" ] || ! is_bzimage "$vmlinuz"; then
  echo "fetch-guest: $deb holds no bzImage at /boot/vmlinuz-*" >&2
  exit 1
fi

mkdir -p "$(dirname "$out")"
cp "$vmlinuz" "$out.tmp"
mv "$out.tmp" "$out"
echo "$pkg $(dpkg-deb -f "$deb" Version)" >"$out.package"
echo "fetch-guest: $out <- $(basename "$vmlinuz") ($(cat "$out.package"))"
