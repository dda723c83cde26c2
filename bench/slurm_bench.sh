#!/usr/bin/env bash
# Trainyard on Slurm against Slurm alone, on a throwaway two-node cluster on
# loopback (tests/e2e/slurm_cluster.py; 2 CPUs per node, so at most 4
# one-CPU jobs at once either way). Prints figures; asserts nothing.
#
#   latency, cold   `yard submit` -> the job's first output line, no instance
#                   yet (sbatch of the agent, registration, dispatch), against
#                   `sbatch --wrap` -> the first line in its output file
#   latency, warm   the same on a cooling instance (no Slurm call at all),
#                   against `srun --jobid` into an allocation already held
#   throughput      200 short jobs (`echo`) through Trainyard, instances kept
#                   cooling and reused, against 200 `sbatch --wrap` jobs
#
# Usage: bench/slurm_bench.sh [RUNS] [JOBS]   (defaults 5 and 200; as root)
# Environment: YARD_BIN (default <repo>/build/yard).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
runs="${1:-5}"
jobs="${2:-200}"
yard="${YARD_BIN:-$repo/build/yard}"
work="$(mktemp -d /tmp/yard-slurm-bench-XXXXXX)"
py=python3

export YARD_HOME="$work/home"
export SLURM_CONF=""
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  $py "$repo/tests/e2e/slurm_cluster.py" stop "$work/cluster" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "starting a two-node Slurm cluster in $work/cluster"
SLURM_CONF="$(SLURM_CONF= $py "$repo/tests/e2e/slurm_cluster.py" start "$work/cluster")"
export SLURM_CONF
mkdir -p "$YARD_HOME" "$work/project"
cat >"$YARD_HOME/catalog.json" <<EOF
{"version": 1, "types": [{"name": "slurm-1", "provider": "slurm", "cpus": 1}],
 "providers": {"slurm": {"poll_interval_s": 0.2}}}
EOF
"$yard" server --max-active-jobs 1000 --max-active-instances 4 >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do [ -s "$YARD_HOME/server.json" ] && break; sleep 0.05; done
echo 'echo first' >"$work/project/job.sh"
cd "$work/project"

# Seconds from running "$@" to the first line on its stdout.
first_line() {
  $py - "$@" <<'PY'
import subprocess, sys, time
t0 = time.monotonic()
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
p.stdout.readline()
print(f"{time.monotonic() - t0:.3f}")
p.wait()
PY
}

# Seconds from `sbatch --wrap` to the first line in its output file.
sbatch_first_line() {
  $py - "$work/out" <<'PY'
import os, subprocess, sys, time, uuid
path = os.path.join(sys.argv[1], uuid.uuid4().hex)
os.makedirs(sys.argv[1], exist_ok=True)
t0 = time.monotonic()
subprocess.run(["sbatch", "-Q", "-o", path, "--wrap", "echo first"], check=True)
while not (os.path.exists(path) and os.path.getsize(path) > 0):
    time.sleep(0.005)
print(f"{time.monotonic() - t0:.3f}")
PY
}

calc() { awk "BEGIN { printf \"%.4f\", $1 }"; }
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

wait_idle() {  # no Trainyard instance and no Slurm job left
  "$yard" down --all >/dev/null 2>&1 || true
  for _ in $(seq 200); do [ -z "$(squeue -h)" ] && return; sleep 0.05; done
}

echo "latency to the first output line, median of $runs"
cold_y=(); cold_s=(); warm_y=(); warm_s=()
for _ in $(seq "$runs"); do
  wait_idle
  cold_y+=("$(first_line "$yard" fit job.sh --machines slurm-1 --cool-down 60)")
  warm_y+=("$(first_line "$yard" fit job.sh --machines slurm-1 --cool-down 60)")
  wait_idle
  cold_s+=("$(sbatch_first_line)")
done
held="$(sbatch --parsable -o /dev/null --wrap 'sleep 600')"
for _ in $(seq 100); do [ "$(squeue -h -j "$held" -o %T)" = RUNNING ] && break; sleep 0.05; done
for _ in $(seq "$runs"); do warm_s+=("$(first_line srun --jobid="$held" --overlap echo first)"); done
scancel "$held"
cy="$(printf '%s\n' "${cold_y[@]}" | median)"; cs="$(printf '%s\n' "${cold_s[@]}" | median)"
wy="$(printf '%s\n' "${warm_y[@]}" | median)"; ws="$(printf '%s\n' "${warm_s[@]}" | median)"
printf '  cold: yard submit %6.3f s   sbatch       %6.3f s   ratio %.2f\n' "$cy" "$cs" "$(calc "$cy / $cs")"
printf '  warm: yard submit %6.3f s   srun --jobid %6.3f s   ratio %.2f\n' "$wy" "$ws" "$(calc "$wy / $ws")"

echo "throughput: $jobs short jobs"
wait_idle
t0="$(date +%s.%N)"
for i in $(seq "$jobs"); do
  "$yard" submit job.sh --machines slurm-1 --cool-down 30 --wait-request 600 >>"$work/ids" 2>/dev/null
done
t_submitted="$(date +%s.%N)"
$py - "$yard" "$work/ids" <<'PY'
import json, subprocess, sys, time
yard, ids = sys.argv[1], set(open(sys.argv[2]).read().split())
while True:
    jobs = json.loads(subprocess.run([yard, "jobs", "--json", "--limit", "100000"], capture_output=True,
                                     text=True, check=True).stdout)
    states = [j["state"] for j in jobs if j["id"] in ids]
    if all(s in ("succeeded", "failed", "cancelled") for s in states) and len(states) == len(ids):
        bad = [s for s in states if s != "succeeded"]
        if bad:
            sys.exit(f"{len(bad)} jobs did not succeed")
        break
    time.sleep(0.1)
PY
t1="$(date +%s.%N)"
wait_idle
t2="$(date +%s.%N)"
for i in $(seq "$jobs"); do sbatch -Q -o /dev/null --wrap 'echo first'; done
t_sbatched="$(date +%s.%N)"
while [ -n "$(squeue -h)" ]; do sleep 0.05; done
t3="$(date +%s.%N)"
ty="$(calc "$jobs / ($t1 - $t0)")"; ts="$(calc "$jobs / ($t3 - $t2)")"
printf '  trainyard: %6.1f jobs/s (%5.1f s; submitting took %5.1f s)\n' "$ty" "$(calc "$t1 - $t0")" "$(calc "$t_submitted - $t0")"
printf '  sbatch:    %6.1f jobs/s (%5.1f s; submitting took %5.1f s)\n' "$ts" "$(calc "$t3 - $t2")" "$(calc "$t_sbatched - $t2")"
printf '  ratio trainyard/sbatch: %.2f\n' "$(calc "$ty / $ts")"
