"""Spot interruptions of fit jobs: local instances whose agents watch a real
ec2-metadata-mock (IMDSv2, through spot_imds.SpotMetadata). The Keras runner
and yard-train write a checkpoint at once, the job is requeued and resumes
from it, and its history holds every epoch once."""
import os

import pytest

from conftest import YARD_TRAIN, release_home, use_home, wait_for
from spot_imds import SpotMetadata, skip_reason

pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")
import trainyard  # noqa: E402

WATCH = {"YARD_PREEMPTION_WATCH": "imds", "YARD_PREEMPTION_POLL_S": "0.2", "YARD_PREEMPTION_MARGIN_S": "5"}


@pytest.fixture
def spot(tmp_path_factory):
    """A fresh home whose server (and so its local agents) watches a fresh
    metadata service: one interruption per test."""
    imds = SpotMetadata().start()
    saved = {k: os.environ.get(k) for k in [*WATCH, "AWS_EC2_METADATA_SERVICE_ENDPOINT"]}
    os.environ.update(WATCH, AWS_EC2_METADATA_SERVICE_ENDPOINT=imds.url)
    home, old = use_home(tmp_path_factory, "spot")
    yield home, imds
    release_home(home, old)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    imds.stop()


def epoch_metrics(evs):
    return [e["values"]["epoch"] for e in evs
            if e["kind"] == "metric" and "epoch" in e["values"] and "event" not in e["values"]]


def output(evs):
    return "".join(e.get("data", "") for e in evs if e["kind"] == "output")


def checkpoints(evs):
    return [e["entry"]["path"] for e in evs if e["kind"] == "artifact" and e["dir"] == "checkpoints"]


def test_keras_runner_checkpoints_mid_epoch_and_resumes(spot, digits, monkeypatch):
    tf = pytest.importorskip("tensorflow")  # noqa: F841
    from test_fit_keras import make_model
    home, imds = spot
    xtr, ytr, xte, yte = digits
    monkeypatch.setenv("TRAINYARD_STEP_DELAY_S", "0.05")  # ~2 s per epoch
    job_id = trainyard.offline_fit(make_model(), xtr, ytr, machine_ids=["local"], batch_size=32, epochs=3,
                                   validation_data=(xte, yte))
    wait_for(lambda: any(e["kind"] == "metric" and e["values"].get("event") == "progress"
                         and e["values"].get("epoch") == 2 for e in home.events(job_id)),
             timeout=180, interval=0.1, what="epoch 2 to be under way")
    imds.interrupt()
    _, model, history = trainyard.attach(job_id)
    assert model is not None
    assert len(history.history["loss"]) == 3 and len(history.history["val_accuracy"]) == 3
    evs = home.events(job_id)
    mid = [c for c in checkpoints(evs) if "-step-" in c]
    assert len(mid) == 1 and mid[0].startswith("epoch-001-step-"), checkpoints(evs)
    text = output(evs)
    assert text.count(f"Spot interruption notice: saved {mid[0]} (epoch 2, step ") == 1, text
    assert f"Resuming from {mid[0]} (epoch 1 done and " in text, text
    assert "was preempted (spot interruption notice" in text
    assert sorted(epoch_metrics(evs)) == [1, 2, 3], "every epoch's metrics once"
    for n in (1, 2, 3):
        assert text.count(f"Epoch {n}/3 ") == 1, text
    assert len({e["instance"] for e in evs if e["kind"] == "metric" and e.get("instance")}) == 2


@pytest.mark.skipif(not YARD_TRAIN.exists(), reason=f"{YARD_TRAIN} not built (libtorch-dev)")
def test_yard_train_checkpoints_on_the_notice_and_resumes(spot, digits):
    torch = pytest.importorskip("torch")
    from test_fit_torchscript import scripted
    home, imds = spot
    xtr, ytr, xte, yte = digits
    epochs = 150  # long enough that the notice comes before the end
    job_id = trainyard.offline_fit(scripted(), xtr, ytr, machine_ids=["local"], batch_size=16, epochs=epochs,
                                   validation_data=(xte, yte),
                                   fit_kwargs={"loss": "cross_entropy", "optimizer": "sgd", "learning_rate": 0.01})
    wait_for(lambda: 2 in epoch_metrics(home.events(job_id)), timeout=120, interval=0.1, what="epoch 2's metrics")
    imds.interrupt()
    _, model, history = trainyard.attach(job_id)
    assert model is not None and isinstance(model, torch.jit.ScriptModule)
    assert len(history.history["loss"]) == epochs
    evs = home.events(job_id)
    assert sorted(epoch_metrics(evs)) == list(range(1, epochs + 1)), "every epoch's metrics once"
    text = output(evs)
    assert text.count("Spot interruption notice: ") == 1, text
    assert "was preempted (spot interruption notice" in text
    mid = [c for c in checkpoints(evs) if "-step-" in c]
    if mid:  # the notice came within an epoch (the usual case): it continued at the step
        assert f"Resuming epoch " in text and mid[-1].replace(".state", ".pt") in text, text
