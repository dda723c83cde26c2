"""Train a TorchScript module on scikit-learn's digits on another machine,
with yard-train (the built-in libtorch trainer) doing the work there.

    bash scripts/setup.sh                 # once: builds yard, yard-train and the Python binding
    .venv/bin/python examples/online_fit_torchscript.py

A TorchScript module has no compile(): loss, optimizer, learning rate and
metrics travel in fit_kwargs (see src/trainer/README.md for the choices).
"""
import numpy as np
import torch
from sklearn.datasets import load_digits

from trainyard import online_fit


class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = torch.nn.Linear(64, 64)
        self.out = torch.nn.Linear(64, 10)

    def forward(self, x):
        return self.out(torch.relu(self.hidden(x)))


def main():
    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    y = digits.target.astype("int64")
    order = np.random.default_rng(0).permutation(len(x))  # a shuffled hold-out split
    x, y = x[order], y[order]
    x_train, y_train, x_test, y_test = x[:1500], y[:1500], x[1500:], y[1500:]

    job_id, trained, history = online_fit(
        torch.jit.script(MLP()), x_train, y_train,
        machine_ids=["local"],
        batch_size=32, epochs=5,
        validation_data=(x_test, y_test),
        description="digits, torchscript example",
        fit_kwargs={"loss": "cross_entropy", "optimizer": "adam", "learning_rate": 0.01,
                    "metrics": ["accuracy"]},
        directory_to_save_ckpt="runs/digits-torch/ckpt",
        directory_to_save_log="runs/digits-torch/logs",
    )
    if trained is None:
        print(f"job {job_id} ended without a model (see above)")
        return 1
    with torch.no_grad():
        acc = (trained(torch.from_numpy(x_test)).argmax(1).numpy() == y_test).mean()
    print(f"job {job_id}: held-out accuracy {acc:.3f}; loss by epoch {np.round(history.history['loss'], 4).tolist()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
