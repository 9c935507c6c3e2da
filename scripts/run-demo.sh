#!/usr/bin/env bash
# The main job: sets up, builds rove, fetches the stock Debian 12 kernel (from the Debian
# archive, not installed) and a busybox initramfs, and boots them with the console on stdout.
# The guest's /init prints what it runs and powers the VM off; rove then exits 0.
#   bash scripts/run-demo.sh [extra rove run flags, e.g. --cpus 2 --stats]
#   bash scripts/run-demo.sh --multiboot   (the small multiboot demo kernel instead, no download)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build/release --target rove
if [ "${1:-}" = --multiboot ]; then
  shift
  mkdir -p build/demo
  nasm -w-zeroing -f bin -o build/demo/hello_multiboot.bin scripts/demo/hello_multiboot.asm
  exec ./build/release/rove run --kernel build/demo/hello_multiboot.bin --stats "$@"
fi
bash scripts/fetch-guest.sh
bash scripts/build-initramfs.sh
exec ./build/release/rove run --kernel build/guest/vmlinuz --initrd build/guest/initramfs.cpio.gz \
  --append "console=ttyS0 panic=-1" --mem 512 --accel auto "$@"
