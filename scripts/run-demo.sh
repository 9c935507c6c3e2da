#!/usr/bin/env bash
# Sets up, builds rove and boots the demo multiboot guest (32-bit protected mode -> long mode)
# under binary translation, with its console on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build/release --target rove
mkdir -p build/demo
nasm -w-zeroing -f bin -o build/demo/hello_multiboot.bin scripts/demo/hello_multiboot.asm
exec ./build/release/rove run --kernel build/demo/hello_multiboot.bin --stats "$@"
