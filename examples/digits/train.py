#!/usr/bin/env python3
"""Train a small MLP on scikit-learn's 8x8 handwritten digits.

Runs the same on a laptop and as a Trainyard job. Under Trainyard the job
environment says where outputs go; every variable is optional:

  YARD_CHECKPOINT_DIR  checkpoints, one per epoch: ckpt-epoch-001.pt, ...
  YARD_LOG_DIR         TensorBoard scalars: loss, val_loss, val_accuracy
  YARD_METRICS         a file; one JSON line per epoch is appended to it
  YARD_RESUME_FROM     a checkpoint to load; training goes on from the epoch after it

On a spot interruption notice (SIGUSR1 from the agent; docs/workflow.md) it
saves ckpt-epoch-NNN-step-S.pt after the current batch (NNN: epochs done)
and exits 75; the requeued job resumes from it and runs epoch NNN+1 again.

Without them, outputs go under ./outputs (ckpt/, tb/, metrics.jsonl).
"""

import argparse
import json
import os
import signal
import sys
import time
import types

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

DEFAULT_OUTPUTS = "outputs"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=10, help="total epochs to train (default 10)")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (default 3e-3)")
    p.add_argument("--batch-size", type=int, default=32, help="mini-batch size (default 32)")
    p.add_argument("--seed", type=int, default=0, help="seed for the split, init and shuffling (default 0)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="share held out for validation (default 0.2)")
    args = p.parse_args()
    if args.epochs < 1 or args.batch_size < 1 or args.lr <= 0 or not 0 < args.val_fraction < 1:
        p.error("--epochs and --batch-size must be >= 1, --lr > 0, 0 < --val-fraction < 1")
    return args


def output_paths():
    """Where this run writes, from the job environment or ./outputs."""
    env = os.environ.get
    return {
        "ckpt_dir": env("YARD_CHECKPOINT_DIR") or os.path.join(DEFAULT_OUTPUTS, "ckpt"),
        "log_dir": env("YARD_LOG_DIR") or os.path.join(DEFAULT_OUTPUTS, "tb"),
        "metrics": env("YARD_METRICS") or os.path.join(DEFAULT_OUTPUTS, "metrics.jsonl"),
        "resume_from": env("YARD_RESUME_FROM") or None,
    }


def load_data(seed, val_fraction):
    digits = load_digits()
    x = digits.data.astype("float32") / 16.0  # pixel intensities are 0..16
    y = digits.target.astype("int64")
    x_tr, x_va, y_tr, y_va = train_test_split(
        x, y, test_size=val_fraction, random_state=seed, stratify=y
    )
    return (torch.from_numpy(x_tr), torch.from_numpy(y_tr),
            torch.from_numpy(x_va), torch.from_numpy(y_va))


def make_model():
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))


def make_summary_writer(log_dir):
    # TensorBoard's writer imports TensorFlow when it is installed (seconds of
    # start-up and its log lines) unless tensorboard.compat.notf exists: this
    # PyTorch script needs only the event files, which it writes without.
    sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception as e:  # tensorboard not installed: train anyway
        print(f"warning: no TensorBoard logs ({e})", file=sys.stderr, flush=True)
        return None
    return SummaryWriter(log_dir=log_dir)


def save_checkpoint(path, state):
    # Write aside, then rename, so that a reader (Trainyard's artifact sync,
    # or a resume after preemption) never sees half a file.
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def evaluate(model, loss_fn, x, y):
    model.eval()
    with torch.no_grad():
        logits = model(x)
        loss = loss_fn(logits, y).item()
        accuracy = (logits.argmax(dim=1) == y).float().mean().item()
    return loss, accuracy


def main():
    args = parse_args()
    paths = output_paths()
    torch.manual_seed(args.seed)

    x_tr, y_tr, x_va, y_va = load_data(args.seed, args.val_fraction)
    model = make_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = nn.CrossEntropyLoss()

    start_epoch = 1
    if paths["resume_from"]:
        ckpt = torch.load(paths["resume_from"], map_location="cpu")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if "rng_state" in ckpt:
            torch.set_rng_state(ckpt["rng_state"])
        start_epoch = int(ckpt["epoch"]) + 1
        print(f"resumed from {paths['resume_from']} (epoch {ckpt['epoch']})", flush=True)

    os.makedirs(paths["ckpt_dir"], exist_ok=True)
    os.makedirs(paths["log_dir"], exist_ok=True)
    metrics_dir = os.path.dirname(paths["metrics"])
    if metrics_dir:
        os.makedirs(metrics_dir, exist_ok=True)
    writer = make_summary_writer(paths["log_dir"])

    print(f"digits: {len(x_tr)} train, {len(x_va)} validation; "
          f"epochs {start_epoch}..{args.epochs}, lr {args.lr}, batch {args.batch_size}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)

    noticed = []  # a spot interruption notice came (SIGUSR1)
    signal.signal(signal.SIGUSR1, lambda signum, frame: noticed.append(signum))

    n = len(x_tr)
    started = time.monotonic()
    with open(paths["metrics"], "a", encoding="utf-8") as metrics:
        for epoch in range(start_epoch, args.epochs + 1):
            model.train()
            order = torch.randperm(n)
            total_loss = 0.0
            for i in range(0, n, args.batch_size):
                idx = order[i:i + args.batch_size]
                optimizer.zero_grad()
                loss = loss_fn(model(x_tr[idx]), y_tr[idx])
                loss.backward()
                optimizer.step()
                total_loss += loss.item() * len(idx)
                if noticed:  # checkpoint now; the requeued job runs this epoch again
                    step = i // args.batch_size + 1
                    save_checkpoint(os.path.join(paths["ckpt_dir"], f"ckpt-epoch-{epoch - 1:03d}-step-{step}.pt"),
                                    {"epoch": epoch - 1, "model": model.state_dict(),
                                     "optimizer": optimizer.state_dict(), "rng_state": torch.get_rng_state()})
                    print(f"spot interruption notice: saved epoch {epoch} step {step}; exiting", flush=True)
                    sys.exit(75)
            train_loss = total_loss / n
            val_loss, val_accuracy = evaluate(model, loss_fn, x_va, y_va)

            print(f"epoch {epoch:3d}/{args.epochs}  loss {train_loss:.4f}  "
                  f"val_loss {val_loss:.4f}  val_accuracy {val_accuracy:.4f}", flush=True)

            save_checkpoint(os.path.join(paths["ckpt_dir"], f"ckpt-epoch-{epoch:03d}.pt"), {
                "epoch": epoch,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "rng_state": torch.get_rng_state(),
                "val_accuracy": val_accuracy,
            })
            if writer is not None:
                writer.add_scalar("loss", train_loss, epoch)
                writer.add_scalar("val_loss", val_loss, epoch)
                writer.add_scalar("val_accuracy", val_accuracy, epoch)
                writer.flush()
            metrics.write(json.dumps({
                "epoch": epoch,
                "loss": round(train_loss, 6),
                "val_loss": round(val_loss, 6),
                "val_accuracy": round(val_accuracy, 6),
            }) + "\n")
            metrics.flush()

    if writer is not None:
        writer.close()
    _, val_accuracy = evaluate(model, loss_fn, x_va, y_va)
    print(f"final val_accuracy {val_accuracy:.4f} ({time.monotonic() - started:.1f}s training)", flush=True)


if __name__ == "__main__":
    main()
