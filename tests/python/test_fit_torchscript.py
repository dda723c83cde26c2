"""online_fit with a TorchScript module: the job runs yard-train (found on
the instance's PATH beside `yard`)."""
import numpy as np
import pytest

from conftest import YARD_TRAIN, tb_scalars

torch = pytest.importorskip("torch")
import trainyard  # noqa: E402

EPOCHS = 4
pytestmark = pytest.mark.skipif(not YARD_TRAIN.exists(), reason=f"{YARD_TRAIN} not built (libtorch-dev)")


class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.l1 = torch.nn.Linear(64, 64)
        self.l2 = torch.nn.Linear(64, 10)

    def forward(self, x):
        return self.l2(torch.relu(self.l1(x)))


def scripted():
    torch.manual_seed(0)
    return torch.jit.script(MLP())


def test_torchscript_online_fit_on_digits(home, digits, tmp_path):
    xtr, ytr, xte, yte = digits
    job_id, model, history = trainyard.online_fit(
        scripted(), xtr, ytr, machine_ids=["local"], batch_size=32, epochs=EPOCHS, validation_data=(xte, yte),
        description="digits torchscript", directory_to_save_ckpt=tmp_path / "ckpt",
        directory_to_save_log=tmp_path / "logs",
        fit_kwargs={"loss": "cross_entropy", "optimizer": "adam", "learning_rate": 0.01, "metrics": ["accuracy"]})
    assert model is not None, job_id
    with torch.no_grad():
        acc = float((model(torch.from_numpy(xte)).argmax(1).numpy() == yte).mean())
    assert acc > 0.9, acc
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == EPOCHS for v in history.history.values())
    pts = sorted(p.name for p in (tmp_path / "ckpt").glob("epoch-*.pt"))
    assert pts == [f"epoch-{i:03d}.pt" for i in range(1, EPOCHS + 1)]
    scalars = tb_scalars(tmp_path / "logs", ["loss", "val_loss"])
    assert np.allclose(scalars["loss"], history.history["loss"], rtol=1e-5)
    assert np.allclose(scalars["val_loss"], history.history["val_loss"], rtol=1e-5)
    metrics = [e for e in trainyard_events(home, job_id) if e["kind"] == "metric" and "epoch" in e["values"]]
    assert len(metrics) == EPOCHS and all(e.get("instance") for e in metrics)


def trainyard_events(home, job_id):
    return home.events(job_id)


def test_torchscript_bad_fit_kwargs_fail_before_any_job(home, digits):
    xtr, ytr, _, _ = digits
    before = len(home.jobs())
    with pytest.raises(ValueError, match="loss"):
        trainyard.online_fit(scripted(), xtr, ytr, machine_ids=["local"], fit_kwargs={"loss": "hinge"})
    with pytest.raises(ValueError, match="dropout"):
        trainyard.online_fit(scripted(), xtr, ytr, machine_ids=["local"], fit_kwargs={"dropout": 0.1})
    with pytest.raises(ValueError, match="TorchScript"):
        trainyard.online_fit(MLP(), xtr, ytr, machine_ids=["local"])
    assert len(home.jobs()) == before
