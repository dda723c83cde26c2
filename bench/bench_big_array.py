#!/usr/bin/env python3
"""bench_big_array: `online_fit` of a TorchScript model on a 2 GiB array
(issue 4: "arrays of 2 GB work, shown by the benchmark").

    .venv/bin/python bench/bench_big_array.py [--gib 2.0]

X is float32 of shape (rows, 1024) filling --gib GiB, Y a class from X's
first column; the model is a 1024-2 linear layer trained one epoch with
batch 4096 through yard-train. Two calls on the same arrays:

1. first: the arrays are chunked from memory as .npy files and uploaded; the job
   materializes them on the instance and trains;
2. second: the same arrays again: no data chunk should travel.

Reports, per call, wall time, bytes and chunks sent, the job's phases, and
for reference `cp` of the .npy file on the same disk, measured in the same
run. Before starting it checks that the disk holding the temporary
YARD_HOME has room for about five copies of the array (an older SDK's .npy, the
server's blobs, the instance's chunk cache and job folder, cp's copy) and
shrinks the array with a note when it has not.
Needs yard-train (libtorch) beside the `yard` picked by YARD_BIN (default:
build/).
"""
import argparse
import contextlib
import io
import json
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
from bench_online_fit import events_of, phases, processes_matching, stop_home  # noqa: E402

FEATURES = 1024
COPIES_NEEDED = 5
FIT_KWARGS = {"loss": "cross_entropy", "optimizer": "sgd", "learning_rate": 0.1, "metrics": ["accuracy"]}


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


def cpu_seconds(pids):
    """utime + stime of `pids`, their reaped children included (a job's
    shim and trainer are children of its agent)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(v) for v in fields[11:15]) / tick
    return total


def cpu_sample(home):
    """{"server+agents": s, "client": s}: the processes of this YARD_HOME and this one."""
    me = os.times()
    return {"server+agents": cpu_seconds(processes_matching(str(home))),
            "client": me.user + me.system}


def training_alone(x, y, scratch, yard):
    """Seconds of yard-train alone on the same .npy files, one epoch, as the
    job runs it (reading the arrays included): "the training itself"."""
    import numpy as np
    import torch
    torch.manual_seed(0)
    folder = scratch / "train-alone"
    folder.mkdir()
    try:
        torch.jit.script(torch.nn.Linear(FEATURES, 2)).save(str(folder / "model.pt"))
        np.save(folder / "x.npy", x)
        np.save(folder / "y.npy", y)
        env = dict(os.environ)
        for name in ("YARD_CHECKPOINT_DIR", "YARD_LOG_DIR", "YARD_OUTPUT_DIR"):
            (folder / name).mkdir()
            env[name] = str(folder / name)
        env["YARD_METRICS"] = str(folder / "metrics.jsonl")
        cmd = [str(yard.parent / "yard-train"), "--model", "model.pt", "--train-x", "x.npy",
               "--train-y", "y.npy", "--epochs", "1", "--batch-size", "4096", "--seed", "0",
               "--fit-kwargs", json.dumps(FIT_KWARGS)]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=600)
        took = time.perf_counter() - t0
        if r.returncode != 0:
            print(f"  training alone failed ({r.returncode}): {r.stderr[-500:]}", flush=True)
            return None
        return took
    finally:
        shutil.rmtree(folder, ignore_errors=True)


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
            fit_kwargs=dict(FIT_KWARGS))
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
        train = training_alone(x, y, root, yard)
        if train is not None:
            print(f"  {'yard-train alone':<28} {train:7.2f} s  (reading the .npy files and one epoch)",
                  flush=True)
        load = os.getloadavg()[0]
        cpu0 = cpu_sample(home)
        first, _ = one_call(x, y, "online_fit, first")
        cpu1 = cpu_sample(home)
        second, sent = one_call(x, y, "online_fit, same arrays")
        cpu2 = cpu_sample(home)
        gb = nbytes / 1e9
        for name, a, b in (("first", cpu0, cpu1), ("second", cpu1, cpu2)):
            print(f"    CPU per GB, {name} call: server, agents and jobs "
                  f"{(b['server+agents'] - a['server+agents']) / gb:.2f} s, client "
                  f"{(b['client'] - a['client']) / gb:.2f} s", flush=True)
    finally:
        stop_home(home, yard)
        if not os.environ.get("YARD_BENCH_KEEP"):
            shutil.rmtree(root, ignore_errors=True)
    goal = 3 * cp + (train or 0)
    verdict = "" if train is None else ("MEETS" if first <= goal else "MISSES")
    print(f"RESULT big_array: {nbytes / 2**30:.2f} GiB of arrays trained through online_fit: first call "
          f"{first:.1f} s ({nbytes / first / 1e6:.0f} MB/s of arrays end to end; cp {cp:.2f} s, "
          f"{x.nbytes / cp / 1e6:.0f} MB/s; yard-train alone {train if train is not None else float('nan'):.1f} s; "
          f"goal <= 3 x cp + training = {goal:.1f} s), same arrays again {second:.1f} s; second transfer: "
          f"{sent}; load {load:.1f} {verdict}", flush=True)


if __name__ == "__main__":
    main()
