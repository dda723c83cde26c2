#!/usr/bin/env bash
# Training throughput of yard-train against a plain PyTorch training loop in
# Python, on the same MLP (64 -> 128 -> 10, same initial weights), the same
# data (scikit-learn's digits, 1437 training samples), optimizer (Adam,
# lr 1e-3), loss (cross entropy), per-step loss and accuracy bookkeeping,
# batch size and thread count. Prints samples/s of both and the ratio, for
# batch 32 and batch 1, at 1 thread and at all cores. Only the training part of each epoch is timed (no
# validation, no checkpoints); the figure is the median over epochs 2..N
# (epoch 1 warms up), and the median of ROUNDS alternating runs.
#
#   bash src/trainer/bench_trainer.sh    # env: THREADS="1 2" ROUNDS=5 YARD_TRAIN=path
#
# On a machine that other processes keep busy the figures swing widely from
# run to run; the medians of alternating runs are what to compare.
#
# Both sides run with OMP_WAIT_POLICY=PASSIVE, which yard-train sets for
# itself anyway (see runtime_env.h); without it the Python loop on a busy
# machine would lose to spinning OpenMP threads, not to its own overhead.
set -euo pipefail

ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)"
PYTHON=/usr/bin/python3
THREADS="${THREADS:-1 $(nproc)}"
ROUNDS="${ROUNDS:-5}"
if [[ -z "${YARD_TRAIN:-}" ]]; then
  for candidate in "$ROOT/build/yard-train" "$ROOT/build-trainer/yard-train"; do
    [[ -x "$candidate" ]] && YARD_TRAIN="$candidate" && break
  done
fi
[[ -x "${YARD_TRAIN:-}" ]] || { echo "bench_trainer.sh: build yard-train first (or set YARD_TRAIN)" >&2; exit 1; }

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
"$PYTHON" "$ROOT/tests/trainer/make_fixtures.py" "$TMP/fx" >/dev/null
export OMP_WAIT_POLICY=PASSIVE

cat >"$TMP/loop.py" <<'PY'
import statistics, sys, time
import numpy as np, torch
from torch import nn

fx, batch, epochs, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
torch.manual_seed(0)
x = torch.from_numpy(np.load(f"{fx}/x_train.npy"))
y = torch.from_numpy(np.load(f"{fx}/y_train.npy"))
model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
scripted = dict(torch.jit.load(f"{fx}/mlp.pt").named_parameters())
with torch.no_grad():
    for mine, theirs in zip(model.parameters(), scripted.values()):
        mine.copy_(theirs)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
loss_fn = nn.CrossEntropyLoss()
rates = []
for epoch in range(epochs):
    start = time.perf_counter()
    perm = torch.randperm(len(x))
    xs, ys = x[perm], y[perm]
    loss_sum, correct = 0.0, 0
    for i in range(0, len(x), batch):
        xb, yb = xs[i:i + batch], ys[i:i + batch]
        opt.zero_grad()
        out = model(xb)
        loss = loss_fn(out, yb)
        loss.backward()
        opt.step()
        loss_sum += loss.item() * len(xb)
        correct += (out.argmax(1) == yb).sum().item()
    rates.append(len(x) / (time.perf_counter() - start))
print(statistics.median(rates[1:]))
PY

yard_rate() {  # batch epochs threads
  rm -f "$TMP/m.jsonl"
  "$YARD_TRAIN" --model "$TMP/fx/mlp.pt" --train-x "$TMP/fx/x_train.npy" --train-y "$TMP/fx/y_train.npy" \
    --epochs "$2" --batch-size "$1" --threads "$3" --devices 1 \
    --fit-kwargs '{"metrics": ["accuracy"]}' --metrics "$TMP/m.jsonl" --output "$TMP/out.pt" >/dev/null
  "$PYTHON" -c 'import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if "epoch" in l]
print(statistics.median(r["samples_per_s"] for r in rows[1:]))' "$TMP/m.jsonl"
}

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

echo "yard-train vs a Python PyTorch loop: MLP 64-128-10 on digits, Adam; median of $ROUNDS alternating runs"
for threads in $THREADS; do
  for spec in "32 12" "1 3"; do
    read -r batch epochs <<<"$spec"
    yard=() python=()
    for ((round = 0; round < ROUNDS; round++)); do
      yard+=("$(yard_rate "$batch" "$epochs" "$threads")")
      python+=("$("$PYTHON" "$TMP/loop.py" "$TMP/fx" "$batch" "$epochs" "$threads")")
    done
    y="$(median "${yard[@]}")" p="$(median "${python[@]}")"
    awk -v t="$threads" -v b="$batch" -v y="$y" -v p="$p" 'BEGIN {
      printf "threads %d batch %2d: yard-train %8.0f samples/s   python loop %8.0f samples/s   ratio %.2fx\n", t, b, y, p, y / p }'
  done
done
