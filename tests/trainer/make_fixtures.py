"""Writes yard-train's test fixtures into a folder (argv[1]).

Run with Debian's /usr/bin/python3 (torch 1.13, numpy, scikit-learn):

  mlp.pt                 torch.jit.script(MLP 64 -> 128 -> 10), seed 0
  x_train.npy y_train.npy x_val.npy y_val.npy
                         scikit-learn's digits / 16, float32 / int64, 80/20 split
  reg.pt, y_reg.npy      a regression: Linear 64 -> 1 and float64 targets of shape [N]
  y_short.npy            y_train minus its last row (length mismatch)
  x_uint8.npy            an unsupported dtype
  not_script.pt          torch.save of a plain nn.Module (not TorchScript)
  garbage.pt             random bytes
  READY                  written last
"""
import os
import sys

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn


class MLP(nn.Module):
    def __init__(self, inputs=64, hidden=128, classes=10):
        super().__init__()
        self.fc1 = nn.Linear(inputs, hidden)
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def main(out):
    os.makedirs(out, exist_ok=True)
    p = lambda name: os.path.join(out, name)
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.2, random_state=0)
    for name, a in [("x_train", x_train), ("y_train", y_train), ("x_val", x_val), ("y_val", y_val),
                    ("y_short", y_train[:-1]), ("x_uint8", (x_train * 16).astype(np.uint8))]:
        np.save(p(name + ".npy"), np.ascontiguousarray(a))
    torch.manual_seed(0)
    model = MLP()
    torch.jit.script(model).save(p("mlp.pt"))
    torch.save(model, p("not_script.pt"))
    torch.jit.script(nn.Linear(64, 1)).save(p("reg.pt"))
    np.save(p("y_reg.npy"), y_train.astype(np.float64) / 9.0)
    with open(p("garbage.pt"), "wb") as f:
        f.write(np.random.default_rng(0).bytes(4096))
    with open(p("READY"), "w") as f:
        f.write("1\n")


if __name__ == "__main__":
    main(sys.argv[1])
