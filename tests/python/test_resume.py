"""A fit job whose instance is preempted after epoch 2 of 4 resumes from its
checkpoint on a new instance (YARD_RESUME_FROM) and ends with 4 epochs of
history. Simulated cloud: POST /v1/sim/interrupt/{instance}."""
import json
import os

import pytest

from conftest import release_home, use_home, wait_for

tf = pytest.importorskip("tensorflow")
import trainyard  # noqa: E402
from test_fit_keras import make_model  # noqa: E402


@pytest.fixture(scope="module")
def sim_home(tmp_path_factory):
    catalog = {"version": 1,
               "types": [{"name": "spotty", "provider": "sim", "cpus": 1, "spot_price": 0.3,
                          "on_demand_price": 0.9, "default_market": "spot"}],
               "providers": {"sim": {"scenario": {"version": 1, "types": {"spotty": {}}}}}}
    h, old = use_home(tmp_path_factory, "sim", catalog)
    yield h
    release_home(h, old)


def test_preempted_fit_resumes_and_ends_with_all_epochs(sim_home, digits, monkeypatch):
    xtr, ytr, xte, yte = digits
    monkeypatch.setenv("TRAINYARD_EPOCH_DELAY_S", "2")
    job_id = trainyard.offline_fit(make_model(), xtr, ytr, machine_ids=["spotty"], batch_size=32, epochs=4,
                                   validation_data=(xte, yte))

    def second_checkpoint_stored():
        evs = sim_home.events(job_id)
        names = [e["entry"]["path"] for e in evs if e["kind"] == "artifact" and e["dir"] == "checkpoints"]
        # The checkpoint and the epoch's metric travel separately: wait for
        # both, so the interrupt cannot land between them (a preempted
        # machine loses what it had not sent yet).
        epochs = {e["values"].get("epoch") for e in evs if e["kind"] == "metric" and "event" not in e["values"]}
        return "epoch-002.keras" in names and 2 in epochs and evs
    evs = wait_for(second_checkpoint_stored, timeout=120, interval=0.2, what="epoch 2's checkpoint and metric")
    instance = json.loads(sim_home.client().get(f"/v1/jobs/{job_id}"))["job"]["instance"]
    done_before = max(e["values"]["epoch"] for e in evs if e["kind"] == "metric" and "epoch" in e["values"]
                      and "event" not in e["values"])
    assert done_before < 4
    sim_home.client().post(f"/v1/sim/interrupt/{instance}", "{}")
    j, model, history = trainyard.attach(job_id)
    assert model is not None
    assert len(history.history["loss"]) == 4 and len(history.history["val_accuracy"]) == 4
    evs = sim_home.events(job_id)
    text = "".join(e.get("data", "") for e in evs if e["kind"] == "output")
    assert "preempted" in text and "Resuming from epoch-00" in text
    epoch1 = [e for e in evs if e["kind"] == "metric" and e["values"].get("epoch") == 1
              and "event" not in e["values"]]
    assert len(epoch1) == 1  # not trained again
    instances = {e["instance"] for e in evs if e["kind"] == "metric" and e.get("instance")}
    assert len(instances) == 2
