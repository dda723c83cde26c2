"""Warm runners (src/agent/warm_runner.h): on a cooling instance whose last
job was a Keras fit, the next fit job is served by a runner that imported
TensorFlow already — and behaves like a cold job otherwise: same output,
model, history, cancel, and no process left when the instance ends."""
import json
import os

import numpy as np
import pytest

from conftest import YARD_TRAIN, processes_matching, wait_for

tf = pytest.importorskip("tensorflow")
import trainyard  # noqa: E402
from test_fit_keras import make_model  # noqa: E402

WARM_LINE = "yard: warm runner (tensorflow imported"
COOL_S = 120


def output_of(events):
    return "".join(e["data"] for e in events if e["kind"] == "output")


def start_to_first_epoch(events):
    """Seconds from the job's `running` state to its first epoch metric (server times)."""
    running = next(e["time"] for e in events if e["kind"] == "state" and e["state"] == "running")
    epoch = next(e["time"] for e in events if e["kind"] == "metric" and "epoch" in e["values"]
                 and "event" not in e["values"])
    return epoch - running


def instance_of(events):
    return next(e["instance"] for e in events if e["kind"] == "metric" and e.get("instance"))


def warm_runners(home):
    """PIDs of warm runners (python and its shim) started by this home's agents."""
    return [p for p in processes_matching("trainyard.runner --warm") if p in processes_matching(str(home.path))]


def fit(home, digits, **kw):
    xtr, ytr, xte, yte = digits
    args = dict(machine_ids=["local"], batch_size=32, epochs=2, validation_data=(xte, yte),
                cool_down_period_s=COOL_S)
    args.update(kw)
    return trainyard.online_fit(make_model(), xtr, ytr, **args)


@pytest.fixture(scope="module")
def cold_then_warm(home, digits):
    cold = fit(home, digits)
    # The agent starts the warm runner once the first job's command has
    # ended; wait until it has imported TensorFlow, so the comparison is
    # between a full import and none.
    wait_for(lambda: list(home.path.rglob("warm/ready-*.json")), timeout=120, what="a ready warm runner")
    warm = fit(home, digits)
    return {"cold": cold, "warm": warm, "cold_events": home.events(cold[0]),
            "warm_events": home.events(warm[0])}


def test_second_fit_on_a_cooling_instance_is_served_warm_and_starts_sooner(cold_then_warm):
    cold_ev, warm_ev = cold_then_warm["cold_events"], cold_then_warm["warm_events"]
    assert instance_of(cold_ev) == instance_of(warm_ev)
    assert WARM_LINE not in output_of(cold_ev)
    assert WARM_LINE in output_of(warm_ev), output_of(warm_ev)[-2000:]
    cold_s, warm_s = start_to_first_epoch(cold_ev), start_to_first_epoch(warm_ev)
    # The warm job skips the TensorFlow import (seconds); generous margin.
    assert warm_s < cold_s, (warm_s, cold_s)


def test_warm_served_fit_returns_a_trained_model_and_history(cold_then_warm, digits):
    _, _, xte, yte = digits
    job_id, model, history = cold_then_warm["warm"]
    assert model is not None, job_id
    acc = float(np.mean(np.argmax(model.predict(xte, verbose=0), axis=1) == yte))
    assert acc > 0.85, acc
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 2 for v in history.history.values())
    # The same checkpoints as a cold job, in the job's own folders.
    arts = json.loads(trainyard.fit._connect().get(f"/v1/jobs/{job_id}/artifacts"))["artifacts"]
    ckpts = sorted(a["entry"]["path"] for a in arts if a["dir"] == "checkpoints")
    assert ckpts == ["epoch-001.keras", "epoch-002.keras"]


def test_cancel_of_a_warm_served_job_ends_it_and_leaves_no_process(home, digits, monkeypatch):
    wait_for(lambda: list(home.path.rglob("warm/ready-*.json")), timeout=120, what="a ready warm runner")
    serving = set(warm_runners(home))
    assert serving
    monkeypatch.setenv("TRAINYARD_EPOCH_DELAY_S", "30")  # late-bound: still served warm
    xtr, ytr, _, _ = digits
    job_id = trainyard.offline_fit(make_model(), xtr, ytr, machine_ids=["local"], batch_size=32, epochs=5,
                                   cool_down_period_s=COOL_S)
    client = trainyard.fit._connect()

    def first_epoch():
        return [e for e in home.events(job_id) if e["kind"] == "metric" and "epoch" in e["values"]]
    wait_for(first_epoch, timeout=120, what="the first epoch")
    client.post(f"/v1/jobs/{job_id}/cancel", "{}")
    job = wait_for(lambda: (lambda j: j if j["state"] in ("cancelled", "failed", "succeeded") else None)(
        json.loads(client.get(f"/v1/jobs/{job_id}"))["job"]), timeout=60, what="the cancel")
    assert job["state"] == "cancelled", job
    assert WARM_LINE in output_of(home.events(job_id))
    # The runner that served the job (python and its shim) is gone.
    wait_for(lambda: not (serving & set(processes_matching("trainyard.runner --warm"))), timeout=30,
             what="the cancelled job's processes to end")


def test_a_different_environment_starts_cold_and_says_why(home, digits, monkeypatch):
    wait_for(lambda: list(home.path.rglob("warm/ready-*.json")), timeout=120, what="a ready warm runner")
    # TensorFlow reads TF_NUM_INTEROP_THREADS when it starts: a runner that
    # imported it without must not serve this job.
    monkeypatch.setattr(trainyard.fit, "FORWARDED_ENV", trainyard.fit.FORWARDED_ENV + ("TF_NUM_INTEROP_THREADS",))
    monkeypatch.setenv("TF_NUM_INTEROP_THREADS", "1")
    job_id, model, history = fit(home, digits, epochs=1)
    out = output_of(home.events(job_id))
    assert WARM_LINE not in out
    assert "yard: cold start: the warm runner does not fit this job: the environment differs in " \
        "TF_NUM_INTEROP_THREADS" in out, out[-2000:]
    assert model is not None and len(history.history["loss"]) == 1


@pytest.mark.skipif(not YARD_TRAIN.exists(), reason=f"{YARD_TRAIN} not built (libtorch-dev)")
def test_torchscript_job_trains_on_the_instances_devices_and_leaves_the_warm_runner(home, digits, monkeypatch):
    torch = pytest.importorskip("torch")
    wait_for(lambda: warm_runners(home), timeout=120, what="a warm runner on the cooling instance")
    waiting = set(warm_runners(home))
    # Two logical CPU devices, as the Keras runner would use: two yard-train replicas.
    monkeypatch.setenv("TRAINYARD_LOGICAL_CPUS", "2")
    torch.manual_seed(0)
    module = torch.jit.script(torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10)))
    xtr, ytr, _, _ = digits
    job_id, model, history = trainyard.online_fit(
        module, xtr, ytr, machine_ids=["local"], batch_size=32, epochs=1, cool_down_period_s=COOL_S,
        fit_kwargs={"loss": "cross_entropy", "optimizer": "adam", "learning_rate": 0.01})
    assert model is not None and len(history.history["loss"]) == 1
    events = home.events(job_id)
    replicas = [e["values"] for e in events if e["kind"] == "metric" and e["values"].get("event") == "replicas"]
    assert replicas and replicas[0]["devices"] == 2, replicas
    out = output_of(events)
    assert WARM_LINE not in out and "cold start" not in out
    assert set(warm_runners(home)) == waiting  # still there for the next Keras fit


def test_ending_the_instance_leaves_no_warm_runner(home, digits):
    wait_for(lambda: warm_runners(home), timeout=120, what="a warm runner on the cooling instance")
    home.yard("down", "--all")
    wait_for(lambda: not warm_runners(home), timeout=60, what="the warm runner to end with its instance")
