#!/usr/bin/env bash
# Builds the acceptance initramfs: a gzip-compressed newc cpio archive holding a static busybox
# (from Debian's busybox-static package, fetched with `apt-get download` and unpacked with
# `dpkg-deb -x`, not installed), a symlink per applet, /dev/console and an /init script.
#
# Usage: scripts/build-initramfs.sh [--init FILE] [--out FILE]
#   --init FILE  the /init script (default: scripts/guest/init.sh)
#   --out FILE   output (default: $ROVE_INITRAMFS or <repo>/build/guest/initramfs.cpio.gz)
# Environment:
#   ROVE_GUEST_DIR  cache directory (default <repo>/build/guest); busybox is cached there
#   ROVE_SHA_MIB    MiB of zeros the default init hashes (default 16); the expected sha256 is
#                   computed here and stored in /etc/rove/sha256-expected
#
# Only apt needs the network; with busybox cached, the build is offline. The archive is
# reproducible: fixed timestamps, sorted names, root ownership.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
guest_dir=${ROVE_GUEST_DIR:-$repo/build/guest}
out=${ROVE_INITRAMFS:-$guest_dir/initramfs.cpio.gz}
init=$repo/scripts/guest/init.sh
sha_mib=${ROVE_SHA_MIB:-16}

while [ $# -gt 0 ]; do
  case "$1" in
    --init) init=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "build-initramfs: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -f "$init" ] || { echo "build-initramfs: init script $init not found" >&2; exit 1; }
case "$sha_mib" in ''|*[!0-9]*) echo "build-initramfs: ROVE_SHA_MIB must be a number" >&2; exit 2 ;; esac

SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- busybox (static), cached -------------------------------------------------------------
busybox=$guest_dir/busybox
if [ ! -x "$busybox" ] || ! "$busybox" true 2>/dev/null; then
  for tool in apt-get dpkg-deb; do
    command -v "$tool" >/dev/null || { echo "build-initramfs: $tool not found (needs a Debian host)" >&2; exit 1; }
  done
  echo "build-initramfs: downloading busybox-static"
  if ! (cd "$tmp" && apt-get download -qq busybox-static >/dev/null 2>&1); then
    echo "build-initramfs: refreshing apt package lists"
    $SUDO apt-get update -qq
    (cd "$tmp" && apt-get download -qq busybox-static >/dev/null)
  fi
  dpkg-deb -x "$tmp"/busybox-static_*.deb "$tmp/bb"
  mkdir -p "$guest_dir"
  cp "$tmp/bb/bin/busybox" "$busybox.tmp"
  mv "$busybox.tmp" "$busybox"
  dpkg-deb -f "$tmp"/busybox-static_*.deb Version >"$busybox.version"
  rm -rf "$tmp/bb" "$tmp"/*.deb
fi
if ! file_info=$(LC_ALL=C od -An -c -N4 "$busybox") || [[ "$file_info" != *E*L*F* ]]; then
  echo "build-initramfs: $busybox is not an ELF binary" >&2; exit 1
fi

# --- root file system ---------------------------------------------------------------------
root=$tmp/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,etc/rove,root}
cp "$busybox" "$root/bin/busybox"
chmod 755 "$root/bin/busybox"
# One symlink per applet, at the path busybox itself names.
while read -r applet; do
  [ -n "$applet" ] || continue
  [ "$applet" = bin/busybox ] && continue
  [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
done < <("$busybox" --list-full)
cp "$init" "$root/init"
chmod 755 "$root/init"
chmod 1777 "$root/tmp"
echo "$sha_mib" >"$root/etc/rove/sha256-mib"
head -c $((sha_mib * 1048576)) /dev/zero | sha256sum | cut -d' ' -f1 >"$root/etc/rove/sha256-expected"
find "$root" -exec touch -h -d @0 {} +

# --- cpio ---------------------------------------------------------------------------------
# /dev/console comes first, from a hand-written newc archive (no mknod, so no root needed);
# the kernel unpacks concatenated archives in order.
newc_entry() {  # name mode(octal) nlink rdevmajor rdevminor
  local name=$1 mode=$(( $2 )) nlink=$3 major=$4 minor=$5
  local namesize=$(( ${#name} + 1 ))
  printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
    $(( ++newc_ino )) "$mode" 0 0 "$nlink" 0 0 0 0 "$major" "$minor" "$namesize" 0
  printf '%s\0' "$name"
  head -c $(( (4 - (110 + namesize) % 4) % 4 )) /dev/zero
}
newc_ino=0x7000
{
  newc_entry dev 040755 2 0 0
  newc_entry dev/console 020600 1 5 1
  newc_entry TRAILER!!! 0 1 0 0
} >"$tmp/dev.cpio"

cpio_tool=()
if command -v cpio >/dev/null; then
  cpio_tool=(cpio --quiet -o -H newc -R 0:0)
  # (help text captured first: grep -q closing the pipe early would fail it under pipefail)
  cpio_help=$(cpio --help 2>&1 || true)
  [[ "$cpio_help" == *--reproducible* ]] && cpio_tool+=(--reproducible)
elif [[ "$("$busybox" cpio --help 2>&1 || true)" == *-o* ]]; then
  cpio_tool=("$busybox" cpio -o -H newc)
else
  echo "build-initramfs: no cpio (install the cpio package)" >&2; exit 1
fi
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | "${cpio_tool[@]}") >"$tmp/root.cpio"

mkdir -p "$(dirname "$out")"
cat "$tmp/dev.cpio" "$tmp/root.cpio" | gzip -9 -n >"$out.tmp"
mv "$out.tmp" "$out"
echo "build-initramfs: $out ($(du -k "$out" | cut -f1) KiB, busybox $(cat "$busybox.version" 2>/dev/null || echo '?'), init $(basename "$init"), sha256 over $sha_mib MiB)"
