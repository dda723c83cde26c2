#!/usr/bin/env bash
# Builds and runs the benchmarks of bench/ (issue 2's; --all: every one), then
# prints a summary of their RESULT lines. Benchmarks report numbers against a
# reference measured in the same run; they assert nothing. Exit status is
# non-zero only when a benchmark could not run.
#
# Usage: bench/run.sh [--all]    (from anywhere)
#   --all   also run the other benchmarks of bench/ (e.g. bench_scheduler,
#           issue 3; bench_upload and bench_online_fit.py, issue 4, the
#           latter with .venv's python; bench_tls, issue 15: TLS beside plain HTTP),
#           which can take minutes more on a busy 2-core machine
# Environment:
#   BUILD_DIR         build folder (default: <repo>/build-bench)
#   BENCH_TIMEOUT_S   limit per benchmark (default 240)
#   YARD_BENCH_KEEP   keep each benchmark's temporary YARD_HOME for a look
set -uo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$repo/build-bench}"
limit="${BENCH_TIMEOUT_S:-240}"

all=0
[ "${1:-}" = "--all" ] && all=1

# Every bench/*.cc is a benchmark (CMake builds each into its own
# executable). By default the issue 2 ones run, with arguments sized to keep
# the run within a few minutes on 2 cores; --all adds the others.
declare -A bench_args=(
  [bench_warm_start]="30"
  [bench_throughput]="1000 8"
  [bench_output]="200"
  [bench_artifacts]="256"
  [bench_scheduler]="--quick"
  [bench_upload]="1024"
  [bench_online_fit]="--runs 3 --epochs 10"
  [bench_spot]="--runs 3"
  [bench_tls]="20 300"
)
benches=(bench_warm_start bench_throughput bench_output bench_artifacts)
if [ "$all" = 1 ]; then
  for src in "$repo"/bench/*.cc; do
    name="$(basename "$src" .cc)"
    [[ " ${benches[*]} " == *" $name "* ]] || benches+=("$name")
  done
  # Python benchmarks (the SDK): run with .venv's python, need the binding.
  for src in "$repo"/bench/*.py; do benches+=("$(basename "$src" .py)"); done
fi

targets=(yard)
for name in "${benches[@]}"; do
  if [ -f "$repo/bench/$name.py" ]; then
    [[ " ${targets[*]} " == *" yard_python_binding "* ]] || targets+=(yard_python_binding)
  else
    targets+=("$name")
  fi
done

echo "== building ${targets[*]} in $build"
if [ ! -f "$build/build.ninja" ]; then
  # The project's default build type (RelWithDebInfo: -O2 -g), as shipped.
  cmake -S "$repo" -B "$build" -G Ninja >/dev/null || exit 1
fi
cmake --build "$build" --target "${targets[@]}" >"$build/bench-build.log" 2>&1 || {
  tail -n 30 "$build/bench-build.log"
  echo "run.sh: the build failed (full log: $build/bench-build.log)"
  exit 1
}

log="$build/bench-results.txt"
{
  echo "== machine"
  echo "date:    $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "nproc:   $(nproc)"
  echo "cpu:     $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "kernel:  $(uname -r)"
  echo "build:   $(grep -m1 '^CMAKE_BUILD_TYPE' "$build/CMakeCache.txt" | cut -d= -f2)"
  echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min, before the run)"
  echo "commit:  $(git -C "$repo" rev-parse --short HEAD 2>/dev/null)$(git -C "$repo" diff --quiet 2>/dev/null || echo ' + uncommitted changes')"
} | tee "$log"

failed=0
start=$(date +%s)
summary=""
for name in "${benches[@]}"; do
  read -r -a args <<<"${bench_args[$name]:-}"
  out="$build/$name.out"
  echo | tee -a "$log"
  t0=$(date +%s)
  cmd=("$build/$name")
  [ -f "$repo/bench/$name.py" ] && cmd=(env YARD_BIN="$build/yard" "$repo/.venv/bin/python" "$repo/bench/$name.py")
  timeout --signal=TERM "$limit" "${cmd[@]}" "${args[@]}" 2>&1 | tee "$out"
  rc=${PIPESTATUS[0]}
  echo "   ($name took $(( $(date +%s) - t0 )) s)" | tee -a "$out"
  cat "$out" >>"$log"
  if [ "$rc" -ne 0 ]; then
    echo "RESULT ${name#bench_}: did not complete (exit $rc)" | tee -a "$log" "$out"
    failed=1
  fi
  # A benchmark's RESULT lines, or (if it prints none) the tail of its output.
  if grep -q '^RESULT' "$out"; then
    summary+="$(grep '^RESULT' "$out" | sed 's/^RESULT /  /')"$'\n'
  else
    summary+="  ${name#bench_}:"$'\n'"$(grep -v '^   (' "$out" | tail -n 5 | sed 's/^/    /')"$'\n'
  fi
  rm -f "$out"
done

echo
echo "== summary ($(( $(date +%s) - start )) s; full output in $log)"
printf '%s' "$summary"
exit "$failed"
