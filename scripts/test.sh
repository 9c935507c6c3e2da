#!/usr/bin/env bash
# Sets up, builds and runs every test: a warnings-as-errors build and an ASan+UBSan build.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
JOBS=$(nproc)
build_and_test() {
  local dir=$1; shift
  cmake -S . -B "$dir" -G Ninja -DROVE_WERROR=ON "$@" >/dev/null
  cmake --build "$dir" -j "$JOBS"
  (cd "$dir" && ctest --output-on-failure -j "$JOBS" --timeout 900)
}
echo "== release build + tests"
build_and_test build/release -DCMAKE_BUILD_TYPE=RelWithDebInfo
if [ "${ROVE_SKIP_SANITIZE:-0}" != 1 ]; then
  echo "== ASan+UBSan build + tests"
  build_and_test build/asan -DCMAKE_BUILD_TYPE=Debug -DROVE_SANITIZE=ON
fi
