"""Checks yard-train's outputs from Python, as a user would.

  inspect_outputs.py load A.pt [B.pt ...]   torch.jit.load each; prints {"loaded": N}
  inspect_outputs.py diff A.pt B.pt         prints {"max_abs_diff": d} over all parameters
  inspect_outputs.py tb LOGDIR              TensorBoard's EventAccumulator; prints
                                            {"tag": [[step, value], ...], ...}

`load` and `diff` need torch (/usr/bin/python3); `tb` needs tensorboard (.venv).
"""
import json
import sys


def load(paths):
    import torch
    for p in paths:
        m = torch.jit.load(p)
        m(torch.zeros(2, 64))
    return {"loaded": len(paths)}


def diff(a, b):
    import torch
    pa = dict(torch.jit.load(a).named_parameters())
    pb = dict(torch.jit.load(b).named_parameters())
    assert pa.keys() == pb.keys(), (pa.keys(), pb.keys())
    d = max(float((pa[k] - pb[k]).abs().max()) for k in pa)
    return {"max_abs_diff": d}


def tb(logdir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(logdir)
    acc.Reload()
    return {tag: [[e.step, e.value] for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    result = {"load": lambda: load(args), "diff": lambda: diff(*args), "tb": lambda: tb(args[0])}[cmd]()
    print(json.dumps(result))
