#!/usr/bin/env python3
"""Data-parallel training of a small MLP on scikit-learn's 8x8 digits with
PyTorch DistributedDataParallel (Gloo), one process per node.

    yard fit train.py --machines slurm-2node --nodes 2

Trainyard starts this script once on each node with RANK, WORLD_SIZE,
LOCAL_RANK, NODE_RANK, MASTER_ADDR and MASTER_PORT set; each rank trains on
its own shard of the training set (every WORLD_SIZE-th sample, starting at
RANK), DDP averages the gradients, so the ranks keep equal weights and learn
from all shards together. Without those variables it runs alone on the
whole set; `--shard-only K --shards W` trains alone on shard K of W (what
one rank would learn without the others).

Rank 0 writes the checkpoints ($YARD_CHECKPOINT_DIR), TensorBoard-free
metrics ($YARD_METRICS) and resumes from $YARD_RESUME_FROM like
examples/digits; every rank writes outputs/rank-R.json (only rank 0's
outputs are synced by Trainyard) and ends with a line
"final weights <sha256 prefix>".
"""

import argparse
import hashlib
import json
import os
import socket
import time

import torch
import torch.distributed as dist
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.nn.parallel import DistributedDataParallel


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--batch-size", type=int, default=32, help="per rank")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shard-only", type=int, default=None, help="train alone on this shard")
    p.add_argument("--shards", type=int, default=2, help="with --shard-only: how many shards")
    return p.parse_args()


def env_int(name, default):
    return int(os.environ.get(name) or default)


def load_shard(seed, rank, world):
    digits = load_digits()
    x = torch.from_numpy(digits.data.astype("float32") / 16.0)
    y = torch.from_numpy(digits.target.astype("int64"))
    idx_tr, idx_va = train_test_split(range(len(y)), test_size=0.2, random_state=seed, stratify=y)
    per_rank = len(idx_tr) // world  # equal shards: every rank runs as many steps
    shard = torch.tensor(idx_tr[rank::world][:per_rank])
    return x[shard], y[shard], x[idx_va], y[idx_va], shard


def weights_digest(model):
    h = hashlib.sha256()
    for p in model.parameters():
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def save_checkpoint(path, state):
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def main():
    args = parse_args()
    rank, world = env_int("RANK", 0), env_int("WORLD_SIZE", 1)
    distributed = world > 1 and args.shard_only is None
    if args.shard_only is not None:
        rank, world = args.shard_only, args.shards
    node = os.environ.get("SLURMD_NODENAME") or socket.gethostname()
    torch.set_num_threads(env_int("SLURM_CPUS_PER_TASK", 1))
    if distributed:
        dist.init_process_group("gloo", init_method="env://", rank=rank, world_size=world)

    x_tr, y_tr, x_va, y_va, shard = load_shard(args.seed, rank, world)
    print(f"rank {rank} of {world} on {node}: shard of {len(shard)} samples, "
          f"first indices {shard[:4].tolist()}", flush=True)
    torch.manual_seed(args.seed)  # the same initial weights everywhere
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    start = 1
    resume = os.environ.get("YARD_RESUME_FROM")
    if resume:
        ckpt = torch.load(resume, map_location="cpu")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        start = ckpt["epoch"] + 1
        print(f"rank {rank}: resumed from epoch {ckpt['epoch']}", flush=True)
    net = DistributedDataParallel(model) if distributed else model
    loss_fn = nn.CrossEntropyLoss()
    ckpt_dir = os.environ.get("YARD_CHECKPOINT_DIR", "outputs/ckpt")
    out_dir = os.environ.get("YARD_OUTPUT_DIR", "outputs")
    os.makedirs(ckpt_dir, exist_ok=True)
    os.makedirs(out_dir, exist_ok=True)

    started = time.monotonic()
    for epoch in range(start, args.epochs + 1):
        net.train()
        order = torch.randperm(len(x_tr), generator=torch.Generator().manual_seed(args.seed * 1000 + epoch))
        total = 0.0
        for i in range(0, len(order), args.batch_size):
            b = order[i:i + args.batch_size]
            optimizer.zero_grad()
            loss = loss_fn(net(x_tr[b]), y_tr[b])
            loss.backward()  # DDP: gradients averaged over the ranks here
            optimizer.step()
            total += loss.item() * len(b)
        with torch.no_grad():
            accuracy = (model(x_va).argmax(1) == y_va).float().mean().item()
        print(f"epoch {epoch}/{args.epochs} rank {rank}: shard loss {total / len(x_tr):.4f} "
              f"val_accuracy {accuracy:.4f}", flush=True)
        if rank == 0:
            save_checkpoint(os.path.join(ckpt_dir, f"ckpt-epoch-{epoch:03d}.pt"),
                            {"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict()})
            if os.environ.get("YARD_METRICS"):
                with open(os.environ["YARD_METRICS"], "a") as m:
                    m.write(json.dumps({"epoch": epoch, "val_accuracy": round(accuracy, 6)}) + "\n")

    digest = weights_digest(model)
    with open(os.path.join(out_dir, f"rank-{rank}.json"), "w") as f:
        json.dump({"rank": rank, "world_size": world, "node": node, "weights": digest,
                   "shard_first": shard[:4].tolist()}, f)
    print(f"rank {rank}: final weights {digest} ({time.monotonic() - started:.1f}s training)", flush=True)
    if distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
