"""online_fit / offline_fit / attach with a Keras model on digits, through a
real embedded server and local agents (one server for the module)."""
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, YARD, Home, tb_scalars, wait_for

tf = pytest.importorskip("tensorflow")
import trainyard  # noqa: E402
from trainyard import fit  # noqa: E402

EPOCHS = 3


def make_model(seed=1):
    tf.keras.utils.set_random_seed(seed)
    m = tf.keras.Sequential([tf.keras.Input(shape=(64,)), tf.keras.layers.Dense(32, activation="relu"),
                             tf.keras.layers.Dense(10, activation="softmax")])
    m.compile(optimizer=tf.keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
    return m


@pytest.fixture(scope="module")
def first_fit(home, digits, tmp_path_factory):
    xtr, ytr, xte, yte = digits
    out = tmp_path_factory.mktemp("out")
    os.environ["TRAINYARD_RECORD_DIR"] = str(out / "records")
    job_id, model, history = trainyard.online_fit(
        make_model(), xtr, ytr, machine_ids=["local"], batch_size=32, epochs=EPOCHS,
        validation_data=(xte, yte), description="digits keras sdk-test",
        directory_to_save_ckpt=out / "ckpt", directory_to_save_log=out / "logs", record=True)
    return {"job": job_id, "model": model, "history": history, "out": out,
            "archive": trainyard.record.last_archive if hasattr(trainyard, "record") else None}


def test_online_fit_trains_on_an_agent_and_returns_model_history_ckpts_logs(home, digits, first_fit):
    xtr, ytr, xte, yte = digits
    job_id, model, history = first_fit["job"], first_fit["model"], first_fit["history"]
    assert job_id and model is not None and history is not None
    acc = float(np.mean(np.argmax(model.predict(xte, verbose=0), axis=1) == yte))
    assert acc > 0.9, acc
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == EPOCHS for v in history.history.values())
    assert history.epoch == list(range(EPOCHS))
    # metric events carry the instance that ran the job
    events = home.events(job_id)
    epochs = [e for e in events if e["kind"] == "metric" and "epoch" in e["values"] and "event" not in e["values"]]
    assert len(epochs) == EPOCHS and all(e.get("instance", "").strip() for e in epochs)
    ckpts = sorted(p.name for p in (first_fit["out"] / "ckpt").iterdir())
    assert ckpts == [f"epoch-{i:03d}.keras" for i in range(1, EPOCHS + 1)]
    scalars = tb_scalars(first_fit["out"] / "logs", ["epoch_loss", "epoch_accuracy"])
    assert np.allclose(scalars["train/epoch_loss"], history.history["loss"], rtol=1e-5)
    assert np.allclose(scalars["validation/epoch_loss"], history.history["val_loss"], rtol=1e-5)


def test_description_shown_by_yard_jobs(home, first_fit):
    out = home.yard("jobs").stdout
    line = next(l for l in out.splitlines() if first_fit["job"] in l)
    assert "digits keras sdk-test" in line


def test_second_fit_on_same_arrays_uploads_no_data_chunks(home, digits, first_fit):
    xtr, ytr, xte, yte = digits
    job_id, model, history = trainyard.online_fit(make_model(2), xtr, ytr, machine_ids=["local"],
                                                  batch_size=64, epochs=1, validation_data=(xte, yte))
    assert fit.last_transfer["data_chunks_total"] > 0
    assert fit.last_transfer["data_chunks_sent"] == 0
    assert model is not None and len(history.history["loss"]) == 1


def test_bad_input_fails_before_any_job(home, digits):
    xtr, ytr, _, _ = digits
    before = len(home.jobs())
    cases = [
        (dict(train_Y=ytr[:-1]), "1399"),
        (dict(fit_kwargs={"batch_size": 8}), "batch_size"),
        (dict(fit_kwargs={"epochs": 2}), "epochs"),
        (dict(fit_kwargs={"validation_data": (xtr, ytr)}), "validation_data"),
        (dict(fit_kwargs={"callbacks": [tf.keras.callbacks.History()]}), "callbacks"),
        (dict(fit_kwargs={"class_weight": {0: lambda: 1}}), "class_weight"),
        (dict(epochs=0), "epochs"),
        (dict(validation_data=(xtr, ytr[:5])), "validation_data"),
    ]
    for kw, needle in cases:
        args = dict(model=make_model(), train_X=xtr, train_Y=ytr, machine_ids=["local"])
        args.update(kw)
        with pytest.raises(ValueError, match=needle):
            trainyard.online_fit(**args)
    uncompiled = tf.keras.Sequential([tf.keras.Input(shape=(64,)), tf.keras.layers.Dense(10)])
    with pytest.raises(ValueError, match="compile"):
        trainyard.online_fit(uncompiled, xtr, ytr, machine_ids=["local"])
    assert len(home.jobs()) == before


def test_failed_job_returns_none_triple(home, digits, capsys):
    xtr, ytr, _, _ = digits
    # TensorFlow refuses labels past the model's 10 classes on the instance: the job fails.
    job_id, model, history = trainyard.online_fit(make_model(), xtr, ytr + 10, machine_ids=["local"])
    assert job_id and model is None and history is None
    assert "failed" in capsys.readouterr().err


def test_offline_fit_then_attach_from_another_process(home, digits, tmp_path):
    xtr, ytr, xte, yte = digits
    job_id = trainyard.offline_fit(make_model(3), xtr, ytr, machine_ids=["local"], batch_size=32, epochs=2,
                                   validation_data=(xte, yte), description="offline digits")
    assert isinstance(job_id, str) and job_id
    script = (
        "import json, sys, numpy as np, trainyard\n"
        f"j, m, h = trainyard.attach({job_id!r}, directory_to_save_ckpt={str(tmp_path / 'ck')!r})\n"
        "w = [float(np.asarray(x).sum()) for x in m.get_weights()]\n"
        "print('RESULT ' + json.dumps({'job': j, 'history': h.history, 'weights': w}))\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr[-3000:]
    other = json.loads(next(l for l in proc.stdout.splitlines() if l.startswith("RESULT "))[7:])
    j, model, history = trainyard.attach(job_id)
    assert other["job"] == j == job_id
    assert other["history"] == history.history and len(history.history["loss"]) == 2
    assert np.allclose(other["weights"], [float(np.asarray(x).sum()) for x in model.get_weights()])
    assert len(list((tmp_path / "ck").glob("epoch-*.keras"))) == 2


def test_two_logical_cpus_train_on_two_replicas(home, digits, monkeypatch, capsys):
    xtr, ytr, _, _ = digits
    monkeypatch.setenv("TRAINYARD_LOGICAL_CPUS", "2")
    job_id, model, history = trainyard.online_fit(make_model(), xtr[:400], ytr[:400], machine_ids=["local"],
                                                  batch_size=31, epochs=1)
    assert model is not None
    values = [e["values"] for e in home.events(job_id) if e["kind"] == "metric"]
    replicas = [v for v in values if v.get("event") == "replicas"]
    assert replicas and replicas[0]["devices"] == 2 and replicas[0]["strategy"] == "MirroredStrategy"
    warnings = [v for v in values if v.get("event") == "warning"]
    assert warnings and "not a multiple of the 2 devices" in warnings[0]["message"]
    assert "training on 2 replica(s)" in capsys.readouterr().err


def _alter_labels(archive, dest):
    with tarfile.open(archive) as src, tarfile.open(dest, "w:gz") as out:
        for m in src.getmembers():
            f = src.extractfile(m) if m.isfile() else None
            if m.name == "bundle/data/train_y.npy":
                import io
                y = np.load(io.BytesIO(f.read()))
                buf = io.BytesIO()
                np.save(buf, np.random.default_rng(7).permutation(y))  # labels no longer match the inputs
                data = buf.getvalue()
                m.size = len(data)
                out.addfile(m, io.BytesIO(data))
            else:
                out.addfile(m, f)


def has_yard_replay():
    return subprocess.run([str(YARD), "replay", "--help"], capture_output=True).returncode == 0


def test_record_then_replay_on_a_fresh_home(first_fit, tmp_path):
    archive = Path(first_fit["archive"])
    assert archive.exists()
    with tarfile.open(archive) as t:
        names = set(t.getnames())
        rec = json.load(t.extractfile("record.json"))
    assert {"record.json", "events.jsonl", "bundle/manifest.json", "bundle/data/train_y.npy",
            "bundle/main/fit_spec.json", "bundle/main/model.keras"} <= names
    assert rec["format"] == "trainyard-record" and rec["version"] == 1
    assert rec["environment"]["packages"].get("numpy") == np.__version__
    assert not [k for k in rec["environment"]["env"] if "TOKEN" in k.upper() or "SECRET" in k.upper()]
    assert abs(rec["final_metrics"]["loss"] - first_fit["history"].history["loss"][-1]) < 1e-9
    fresh = Home(tmp_path / "fresh")
    try:
        def replay(path, via_yard=False):
            # `python -m trainyard.replay` is a thin front for `yard replay` (C++).
            cmd = ([str(YARD), "replay"] if via_yard else [sys.executable, "-m", "trainyard.replay"])
            proc = subprocess.run(cmd + [str(path), "--json"], capture_output=True, text=True, timeout=300,
                                  env=fresh.env(YARD_PYTHON=sys.executable))
            assert proc.returncode in (0, 1), proc.stderr[-3000:]
            return json.loads(proc.stdout)
        same = replay(archive)
        assert same["state"] == "succeeded", same
        loss = next(r for r in same["metrics"] if r["metric"] == "loss")
        assert abs(loss["diff"]) < 1e-3, same
        altered = tmp_path / "altered.tar.gz"
        _alter_labels(archive, altered)
        other = replay(altered, via_yard=has_yard_replay())
        loss = next(r for r in other["metrics"] if r["metric"] == "loss")
        assert other["state"] == "succeeded" and abs(loss["diff"]) > 0.05, other
        assert not other["same"]
    finally:
        fresh.stop_everything()
