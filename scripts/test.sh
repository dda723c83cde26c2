#!/usr/bin/env bash
# Sets up and builds (scripts/setup.sh), runs the C++ tests (ctest), clang's
# thread-safety analysis (scripts/thread_safety.sh, counted as one test), the
# formatting check (scripts/check_format.sh, one test: a file off the format
# fails it), the end-to-end tests (pytest tests/e2e), the crash soak at its
# CI size (pytest tests/soak; SOAK_FULL=1 for the full size), the Python SDK
# tests (pytest tests/python), and every C++ unit test suite again under
# ASan + UBSan plus the fuzz targets (scripts/fuzz.sh, fuzz/README.md), and
# ends with one line:
#   N passed, N failed
# summing both. Exits non-zero if anything failed or no test ran at all.
#
#   bash scripts/test.sh           # from any directory
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"
cd "$REPO_ROOT"

step() { printf '\n==> [test %3ds] %s\n' "$SECONDS" "$*"; }

setup_rc=0
bash scripts/setup.sh || setup_rc=$?
if ((setup_rc != 0)); then
  printf '\ntest.sh: scripts/setup.sh failed (exit %d); no tests were run\n' "$setup_rc" >&2
  exit "$setup_rc"
fi

LOG_DIR="$(mktemp -d)"
trap 'rm -rf "$LOG_DIR"' EXIT

passed=0
failed=0
skipped=0

# --------------------------------------------------------------------------
step "C++ tests (ctest)"
ctest_rc=0
ctest --test-dir build --output-on-failure -j2 2>&1 | tee "$LOG_DIR/ctest.log" || ctest_rc=$?

# "100% tests passed, 0 tests failed out of 12"
ctest_summary="$(grep -E '^[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$LOG_DIR/ctest.log" | tail -1 || true)"
if [[ -n "$ctest_summary" ]]; then
  c_total="$(sed -E 's/.* out of ([0-9]+).*/\1/' <<<"$ctest_summary")"
  c_failed="$(sed -E 's/.*passed, ([0-9]+) tests? failed.*/\1/' <<<"$ctest_summary")"
  # Skipped tests are listed after "The following tests did not run:" and
  # are counted in ctest's total and percentage as passed; report them apart.
  # (Disabled tests are listed there too but are not in the total.)
  c_skipped="$(awk '/^The following tests did not run:/ { on = 1; next }
                    on && /^[ \t]+[0-9]+ - / { if ($0 ~ /\(Skipped\)$/) n++; next }
                    on { on = 0 }
                    END { print n + 0 }' "$LOG_DIR/ctest.log")"
  c_passed=$((c_total - c_failed - c_skipped))
  ((c_passed >= 0)) || c_passed=0
  passed=$((passed + c_passed))
  failed=$((failed + c_failed))
  skipped=$((skipped + c_skipped))
  ctest_result="ctest: $c_passed passed, $c_failed failed, $c_skipped skipped"
elif grep -q 'No tests were found' "$LOG_DIR/ctest.log"; then
  ctest_result="ctest: no tests found"
else
  failed=$((failed + 1))
  ctest_result="ctest: no summary line (exit $ctest_rc); counted as one failure"
fi
# A non-zero exit with no failed test in the summary (e.g. a timeout or a
# crash during discovery) still fails the run.
if ((ctest_rc != 0)) && [[ -n "$ctest_summary" ]] && ((c_failed == 0)); then
  failed=$((failed + 1))
  ctest_result="$ctest_result; exit $ctest_rc with no failed test, counted as one failure"
fi

# --------------------------------------------------------------------------
step "Thread-safety analysis (scripts/thread_safety.sh, clang -Wthread-safety)"
if bash scripts/thread_safety.sh 2>&1 | tee "$LOG_DIR/thread_safety.log"; then
  passed=$((passed + 1))
  tsa_result="thread safety: passed"
else
  failed=$((failed + 1))
  tsa_result="thread safety: failed (findings in the log above)"
fi

# --------------------------------------------------------------------------
step "Formatting (scripts/check_format.sh, clang-format-14)"
# Every C++ file under src/, bench/ and fuzz/ as .clang-format says: a file
# off it fails the run, naming the command that formats it.
if bash scripts/check_format.sh 2>&1 | tee "$LOG_DIR/format.log"; then
  passed=$((passed + 1))
  format_result="format: passed"
else
  failed=$((failed + 1))
  format_result="format: failed (files listed above; bash scripts/check_format.sh --fix formats them)"
fi

# --------------------------------------------------------------------------
# pytest on one folder; adds its counts to passed/failed/skipped and sets
# pytest_result to a one-line summary.
run_pytest() {
  local dir="$1" log="$LOG_DIR/pytest-$(basename "$1").log"
  pytest_result="pytest $dir: no test files; skipped"
  if [[ ! -d "$dir" ]] ||
    [[ -z "$(find "$dir" \( -name 'test_*.py' -o -name '*_test.py' \) -type f -print -quit)" ]]; then
    return 0
  fi
  local pytest_rc=0
  .venv/bin/python -m pytest -q "$dir" 2>&1 | tee "$log" || pytest_rc=$?
  # The last line with counts, e.g. "3 passed, 1 failed, 2 skipped in 4.2s"
  # (possibly between '=' bars).
  local py_summary
  py_summary="$(grep -E '[0-9]+ (passed|failed|errors?|skipped|xfailed|xpassed|deselected)' "$log" |
    grep -E ' in [0-9.]+s' | tail -1 || true)"
  count() { awk -v re="^($1)\$" '{ for (i = 2; i <= NF; i++) if ($(i-1) ~ /^[0-9]+$/ && $i ~ re) s += $(i-1) }
                                 END { print s + 0 }' < <(tr -c '0-9A-Za-z\n' ' ' <<<"$py_summary"); }
  local p_passed p_failed p_skipped
  p_passed="$(count passed)"
  p_failed=$(($(count failed) + $(count 'errors?')))
  p_skipped="$(count skipped)"
  case "$pytest_rc" in
    0 | 1) ;;
    5) pytest_result="pytest $dir: no tests collected" ;;
    *)
      # Interrupted, internal or usage error: never a pass.
      if ((p_failed == 0)); then p_failed=1; fi
      ;;
  esac
  if ((pytest_rc == 1 && p_failed == 0)); then p_failed=1; fi
  passed=$((passed + p_passed))
  failed=$((failed + p_failed))
  skipped=$((skipped + p_skipped))
  if ((pytest_rc != 5)); then
    pytest_result="pytest $dir: $p_passed passed, $p_failed failed, $p_skipped skipped (exit $pytest_rc)"
  fi
}

step "End-to-end tests (pytest tests/e2e)"
run_pytest tests/e2e
e2e_result="$pytest_result"

step "Crash soak and full disk (pytest tests/soak)"
run_pytest tests/soak
soak_result="$pytest_result"

step "Python SDK tests (pytest tests/python)"
run_pytest tests/python
python_result="$pytest_result"

# --------------------------------------------------------------------------
# Every unit test suite under ASan + UBSan, and each fuzz target
# (fuzz/README.md): its last line is `N passed, N failed`, added to ours.
step "Sanitizers and fuzzing (scripts/fuzz.sh)"
fuzz_rc=0
bash scripts/fuzz.sh 2>&1 | tee "$LOG_DIR/fuzz.log" || fuzz_rc=$?
fuzz_summary="$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$LOG_DIR/fuzz.log" | tail -1 || true)"
if [[ -n "$fuzz_summary" ]]; then
  f_passed="$(sed -E 's/^([0-9]+) passed.*/\1/' <<<"$fuzz_summary")"
  f_failed="$(sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/' <<<"$fuzz_summary")"
  if ((fuzz_rc != 0 && f_failed == 0)); then f_failed=1; fi
  passed=$((passed + f_passed))
  failed=$((failed + f_failed))
  fuzz_result="fuzz.sh: $f_passed passed, $f_failed failed (exit $fuzz_rc)"
else
  failed=$((failed + 1))
  fuzz_result="fuzz.sh: no summary line (exit $fuzz_rc); counted as one failure"
fi

# --------------------------------------------------------------------------
step "Summary"
printf '    %s\n' "$ctest_result" "$tsa_result" "$format_result" "$e2e_result" "$soak_result" "$python_result" "$fuzz_result"
rc=0
if ((failed > 0)); then
  rc=1
elif ((passed + failed == 0)); then
  printf '    no test ran\n'
  rc=1
fi
if ((skipped > 0)); then
  printf '%d passed, %d failed, %d skipped\n' "$passed" "$failed" "$skipped"
else
  printf '%d passed, %d failed\n' "$passed" "$failed"
fi
exit "$rc"
