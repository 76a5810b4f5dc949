#!/usr/bin/env bash
# Runs every zsnap test on a Debian 12 machine, as root: installs what is needed, builds,
# runs the unit tests under ASan/UBSan, runs the fuzz targets briefly, then the whole ctest
# suite (unit + integration against real containerd, registry and overlayfs).
#
#   sudo scripts/test.sh            # everything
#   ZSNAP_TEST_QUICK=1 scripts/test.sh   # skip the sanitizer and fuzz builds
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD
jobs=$(nproc)

log() { printf '\n==== %s ====\n' "$*"; }

log "setup (Debian packages)"
bash scripts/setup.sh

log "build (RelWithDebInfo)"
cmake -S "$src" -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j"$jobs"

if [[ -z "${ZSNAP_TEST_QUICK:-}" ]]; then
  log "unit tests under ASan/UBSan"
  cmake -S "$src" -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DZSNAP_SANITIZE=address
  cmake --build build-asan -j"$jobs" --target overlay_tests unpack_tests
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan -L unit --output-on-failure -j"$jobs"

  if [[ -f tests/fuzz/CMakeLists.txt ]]; then
    log "fuzz targets (libFuzzer, bounded runs)"
    CC=clang CXX=clang++ cmake -S "$src" -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DZSNAP_FUZZ=ON -DZSNAP_BUILD_TESTS=ON
    cmake --build build-fuzz -j"$jobs" --target zsnap_fuzzers
    ctest --test-dir build-fuzz -L fuzz --output-on-failure
  fi
fi

log "all tests (unit + integration)"
ctest --test-dir build --output-on-failure
