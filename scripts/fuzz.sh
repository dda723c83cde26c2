#!/usr/bin/env bash
# Builds the whole code base, its unit tests and the fuzz targets with clang
# under AddressSanitizer + UndefinedBehaviorSanitizer (CMakeLists.txt with
# YARD_SANITIZE=ON, cmake/yard_sanitize.cmake, fuzz/CMakeLists.txt) in
# build-fuzz/, runs every unit test suite once through ctest, then each fuzz
# target for FUZZ_SECONDS from its seed corpus (fuzz/corpus/<name>), two at a
# time. Ends with one line, `N passed, N failed`: ctest's counts, one test
# for the sanitizer reports of the processes the tests start (any report
# fails it), and one test per fuzz target. A target that finds something
# fails; its input is kept in build-fuzz/findings/<name>/ (crash-*,
# timeout-*, leak-*, oom-*) beside its log, and the run says where.
#
#   bash scripts/fuzz.sh                          # what scripts/test.sh runs (20 s each)
#   FUZZ_SECONDS=600 bash scripts/fuzz.sh npy spool  # longer, only these targets
#   FUZZ_SKIP_TESTS=1 bash scripts/fuzz.sh        # the fuzz targets only (builds only them)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"
cd "$REPO_ROOT"
BUILD_DIR="$REPO_ROOT/build-fuzz"
FUZZ_SECONDS="${FUZZ_SECONDS:-20}"
CXX_CLANG="${FUZZ_CXX:-clang++-14}"
JOBS="$(nproc)"

step() { printf '\n==> [fuzz %3ds] %s\n' "$SECONDS" "$*"; }

passed=0
failed=0

if ! command -v "$CXX_CLANG" >/dev/null; then
  printf 'fuzz.sh: %s not found: run scripts/setup.sh (it installs clang-14 and libclang-rt-14-dev)\n' "$CXX_CLANG" >&2
  printf '0 passed, 1 failed\n'
  exit 1
fi

build_targets=()
[[ -z "${FUZZ_SKIP_TESTS:-}" ]] || build_targets=(--target yard_fuzzers)
step "Build ($BUILD_DIR: $CXX_CLANG, ASan + UBSan + libFuzzer)"
build_rc=0
{ cmake -S . -B "$BUILD_DIR" -G Ninja -DYARD_SANITIZE=ON -DCMAKE_CXX_COMPILER="$CXX_CLANG" >/dev/null &&
  cmake --build "$BUILD_DIR" --parallel "$JOBS" "${build_targets[@]}"; } || build_rc=$?
if ((build_rc != 0)); then
  printf 'fuzz.sh: the sanitizer build failed (exit %d)\n0 passed, 1 failed\n' "$build_rc"
  exit 1
fi

# --------------------------------------------------------------------------
if [[ -z "${FUZZ_SKIP_TESTS:-}" ]]; then
  step "Unit tests under ASan + UBSan (ctest --test-dir $BUILD_DIR)"
  log="$BUILD_DIR/ctest.log"
  ctest_rc=0
  # Sanitizer reports go to files, report.<pid>, so that a finding in a
  # process a test starts (yard, its agent, yard-shim) is seen even when the
  # test passes: any file there is a failure. (Inside a job's sandbox, where
  # the folder is not writable, the sanitizer says so on stderr and stops
  # the process, which the test sees.)
  reports="$BUILD_DIR/sanitizer-reports"
  rm -rf "$reports"
  mkdir -p "$reports"
  ASAN_OPTIONS="log_path=$reports/report:detect_leaks=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}" \
    UBSAN_OPTIONS="log_path=$reports/report:halt_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}" \
    LSAN_OPTIONS="suppressions=$REPO_ROOT/fuzz/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}" \
    ctest --test-dir "$BUILD_DIR" --output-on-failure -j"$JOBS" >"$log" 2>&1 || ctest_rc=$?
  summary="$(grep -E '^[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -1 || true)"
  if [[ -n "$summary" ]]; then
    total="$(sed -E 's/.* out of ([0-9]+).*/\1/' <<<"$summary")"
    bad="$(sed -E 's/.*passed, ([0-9]+) tests? failed.*/\1/' <<<"$summary")"
    ((ctest_rc == 0 || bad > 0)) || bad=1  # a non-zero exit is never a pass
    passed=$((passed + total - bad))
    failed=$((failed + bad))
    printf '    %s (log: %s)\n' "$summary" "$log"
    ((bad == 0)) || grep -E '^\s*[0-9]+ - .*\((Failed|Timeout|SEGFAULT|Subprocess aborted|Exception)' "$log" || true
  else
    failed=$((failed + 1))
    printf '    no ctest summary (exit %d); see %s\n' "$ctest_rc" "$log"
  fi
  mapfile -t found < <(find "$reports" -type f | sort)
  if ((${#found[@]} == 0)); then
    passed=$((passed + 1))
    printf '    sanitizer reports: none\n'
  else
    failed=$((failed + 1))
    printf '    sanitizer reports: %d, in %s/\n' "${#found[@]}" "$reports"
    for f in "${found[@]}"; do
      printf '      %s: %s\n' "${f##*/}" "$(grep -m1 -E 'SUMMARY|runtime error|ERROR' "$f" || head -1 "$f")"
    done
  fi
fi

# --------------------------------------------------------------------------
# Runs one target for FUZZ_SECONDS; writes its verdict to findings/<name>.rc.
run_target() {
  local name="$1" bin="$BUILD_DIR/${1}_fuzzer"
  local out="$BUILD_DIR/findings/$name" work="$BUILD_DIR/corpus/$name"
  rm -rf "$out"
  mkdir -p "$out" "$work"
  local rc=0
  # New inputs go to build-fuzz/corpus/<name>; the seeds stay as they are.
  "$bin" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$out/" "$work" "fuzz/corpus/$name" >"$out.log" 2>&1 || rc=$?
  echo "$rc" >"$out.rc"
}

mapfile -t targets < <(if (($# > 0)); then printf '%s\n' "$@"; else
  find fuzz -maxdepth 1 -name '*_fuzzer.cc' -printf '%f\n' | sed 's/_fuzzer\.cc$//' | sort; fi)
step "Fuzz targets, ${FUZZ_SECONDS}s each, $JOBS at a time: ${targets[*]}"
running=0
for name in "${targets[@]}"; do
  if ((running >= JOBS)); then
    wait -n || true
    running=$((running - 1))
  fi
  run_target "$name" &
  running=$((running + 1))
done
wait || true

for name in "${targets[@]}"; do
  out="$BUILD_DIR/findings/$name"
  rc="$(cat "$out.rc" 2>/dev/null || echo missing)"
  runs="$(grep -oE 'number_of_executed_units: [0-9]+' "$out.log" 2>/dev/null | awk '{ print $2 }' || true)"
  if [[ "$rc" == 0 ]]; then
    passed=$((passed + 1))
    printf '    %-14s ok, %s inputs\n' "$name" "${runs:-?}"
  else
    failed=$((failed + 1))
    printf '    %-14s FAILED (exit %s): input in %s/, log %s.log\n' "$name" "$rc" "$out" "$out"
    grep -E 'ERROR: |runtime error|fuzz property broken|SUMMARY' "$out.log" | head -5 | sed 's/^/      /' || true
    printf '      reproduce: %s %s/<file>\n' "$BUILD_DIR/${name}_fuzzer" "$out"
  fi
done

step "Summary"
printf '%d passed, %d failed\n' "$passed" "$failed"
((failed == 0))
