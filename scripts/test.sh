#!/usr/bin/env bash
# Sets up, builds and runs every test: a warnings-as-errors build and an ASan+UBSan build.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
JOBS=$(nproc)
build_and_test() {
  local dir=$1 ctest_args=$2; shift 2
  cmake -S . -B "$dir" -G Ninja -DROVE_WERROR=ON "$@" >/dev/null
  cmake --build "$dir" -j "$JOBS"
  # shellcheck disable=SC2086
  (cd "$dir" && ctest --output-on-failure -j "$JOBS" --timeout 1500 $ctest_args)
}
echo "== release build + tests (including the Debian kernel boot)"
build_and_test build/release "" -DCMAKE_BUILD_TYPE=RelWithDebInfo
if [ "${ROVE_SKIP_SANITIZE:-0}" != 1 ]; then
  echo "== ASan+UBSan build + tests (the Linux boot is left to the release build: too slow here)"
  build_and_test build/asan "-LE linux" -DCMAKE_BUILD_TYPE=Debug -DROVE_SANITIZE=ON
fi
