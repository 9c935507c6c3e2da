#!/usr/bin/env bash
# The benchmark command: rove BT against native, QEMU TCG and KVM (where /dev/kvm is usable), side
# by side, plus the Google Benchmark micro benchmarks. On a fresh Debian 12 machine it installs
# what it needs (the build dependencies via scripts/setup.sh, qemu-system-x86 and gcc from
# Debian's packages, the Debian kernel via scripts/fetch-guest.sh), builds rove in release mode
# and the guest workloads, runs everything and writes bench/results/<date>-<host>.md and .json.
#
# Usage: bash scripts/bench.sh [run_bench.py options, e.g. --reps 5 or --engines native,rove-bt]
#   --smoke   the CI version: tiny plan, one repetition, native + rove-bt only, no installs
# Environment: ROVE_BENCH_BUILD (default <repo>/build/bench) is the build directory.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
build=${ROVE_BENCH_BUILD:-$repo/build/bench}
start=$(date +%s)

smoke=0
for a in "$@"; do [ "$a" = --smoke ] && smoke=1; done

SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi

if [ $smoke = 0 ]; then
  bash "$repo/scripts/setup.sh"
  missing=()
  for p in qemu-system-x86 gcc libc6-dev python3; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "bench: installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  ninja -C "$build" rove rove_bench
  echo "bench: build done after $(( $(date +%s) - start )) s"
  set -- --rove "$build/rove" --rove-bench "$build/bench/rove_bench" \
    --doc "$repo/docs/PERFORMANCE.md" "$@"
else
  set -- --engines native,rove-bt "$@"
fi

python3 "$repo/bench/run_bench.py" "$@"
echo "bench: total $(( $(date +%s) - start )) s"
