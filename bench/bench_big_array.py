#!/usr/bin/env python3
"""bench_big_array: `online_fit` of a TorchScript model on a 2 GiB array
(issue 4: "arrays of 2 GB work, shown by the benchmark").

    .venv/bin/python bench/bench_big_array.py [--gib 2.0]

X is float32 of shape (rows, 1024) filling --gib GiB, Y a class from X's
first column; the model is a 1024-2 linear layer trained one epoch with
batch 4096 through yard-train. Two calls on the same arrays:

1. first: the arrays are written as .npy, chunked, uploaded; the job
   materializes them on the instance and trains;
2. second: the same arrays again: no data chunk should travel.

Reports, per call, wall time, bytes and chunks sent, the job's phases, and
for reference `cp` of the .npy file on the same disk, measured in the same
run. Before starting it checks that the disk holding the temporary
YARD_HOME has room for about five copies of the array (the SDK's .npy, the
server's blobs, the instance's chunk cache and job folder, cp's copy) and
shrinks the array with a note when it has not.
Needs yard-train (libtorch) beside the `yard` picked by YARD_BIN (default:
build/).
"""
import argparse
import contextlib
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "python"))
sys.path.insert(0, str(REPO / "bench"))
from bench_online_fit import events_of, phases, stop_home  # noqa: E402

FEATURES = 1024
COPIES_NEEDED = 5


def sized_gib(requested, where):
    free = shutil.disk_usage(where).free / 2**30
    fit = max(0.1, (free - 1.0) / COPIES_NEEDED)
    if fit < requested:
        print(f"  note: {free:.1f} GiB free under {where}: shrinking the array from {requested:.2f} "
              f"to {fit:.2f} GiB ({COPIES_NEEDED} copies must fit)", flush=True)
        return fit
    return requested


def arrays(gib):
    import numpy as np
    rows = int(gib * 2**30 // (4 * FEATURES))
    rng = np.random.default_rng(0)
    x = np.empty((rows, FEATURES), dtype=np.float32)
    step = 65536
    for i in range(0, rows, step):  # in slices: no second 2 GiB temporary
        x[i:i + step] = rng.standard_normal((min(step, rows - i), FEATURES), dtype=np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    return x, y


def cp_seconds(x, scratch):
    import numpy as np
    src, dst = scratch / "x.npy", scratch / "x-copy.npy"
    np.save(src, x)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        shutil.copyfile(src, dst)
        os.sync()
        times.append(time.perf_counter() - t0)
        dst.unlink()
    src.unlink()
    return statistics.median(times)


def one_call(x, y, label):
    import torch
    from trainyard import online_fit
    torch.manual_seed(0)
    model = torch.jit.script(torch.nn.Linear(FEATURES, 2))
    out = io.StringIO()
    called = time.time()
    t0 = time.perf_counter()
    with contextlib.redirect_stderr(out), contextlib.redirect_stdout(out):
        job_id, trained, history = online_fit(
            model, x, y, machine_ids=["local"], batch_size=4096, epochs=1, cool_down_period_s=120,
            fit_kwargs={"loss": "cross_entropy", "optimizer": "sgd", "learning_rate": 0.1,
                        "metrics": ["accuracy"]})
    wall = time.perf_counter() - t0
    returned = time.time()
    text = out.getvalue()
    if trained is None:
        sys.exit(f"bench_big_array: {label} failed (job {job_id}):\n{text[-3000:]}")
    sent = next((line.strip() for line in text.splitlines() if "were new" in line), "(no transfer line)")
    print(f"  {label:<28} {wall:7.2f} s  accuracy {history.history['accuracy'][-1]:.3f}", flush=True)
    print(f"    transfer: {sent}", flush=True)
    for name, secs in phases(events_of(job_id), called, returned).items():
        print(f"    {name:<22} {secs:7.2f} s", flush=True)
    return wall, sent


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gib", type=float, default=2.0)
    args = ap.parse_args()
    yard = Path(os.environ.get("YARD_BIN") or REPO / "build" / "yard").resolve()
    if not (yard.parent / "yard-train").exists():
        sys.exit(f"bench_big_array: no yard-train beside {yard} (libtorch-dev): nothing measured")
    os.environ["YARD_BIN"] = str(yard)
    os.environ["PATH"] = f"{REPO / '.venv' / 'bin'}:{os.environ.get('PATH', '')}"
    os.environ["YARD_PROGRESS"] = "never"
    for k in ("YARD_SERVER", "YARD_TOKEN", "TRAINYARD_LOGICAL_CPUS", "TRAINYARD_EPOCH_DELAY_S"):
        os.environ.pop(k, None)
    root = Path(tempfile.mkdtemp(prefix="bench-big-array-"))
    home = root / "home"
    home.mkdir()
    os.environ["YARD_HOME"] = str(home)
    gib = sized_gib(args.gib, root)
    print(f"bench_big_array: {gib:.2f} GiB float32 X ({FEATURES} columns), yard {yard}, "
          f"load {os.getloadavg()[0]:.1f}", flush=True)
    try:
        x, y = arrays(gib)
        nbytes = x.nbytes + y.nbytes
        cp = cp_seconds(x, root)
        print(f"  {'cp of the .npy':<28} {cp:7.2f} s  ({x.nbytes / cp / 1e6:.0f} MB/s)", flush=True)
        first, _ = one_call(x, y, "online_fit, first")
        second, sent = one_call(x, y, "online_fit, same arrays")
    finally:
        stop_home(home, yard)
        if not os.environ.get("YARD_BENCH_KEEP"):
            shutil.rmtree(root, ignore_errors=True)
    print(f"RESULT big_array: {nbytes / 2**30:.2f} GiB of arrays trained through online_fit: first call "
          f"{first:.1f} s ({nbytes / first / 1e6:.0f} MB/s of arrays end to end; cp {x.nbytes / cp / 1e6:.0f} "
          f"MB/s), same arrays again {second:.1f} s; second transfer: {sent}", flush=True)


if __name__ == "__main__":
    main()
