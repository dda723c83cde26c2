"""What a new online_fit user meets in the first hour (issue 11): mistakes
caught before a machine is requested, failures on the instance told
plainly, the caller's own Python on a local instance, a quiet live view."""
import io
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import REPO, YARD

tf = pytest.importorskip("tensorflow")
import trainyard  # noqa: E402
from trainyard import display  # noqa: E402
from test_fit_keras import make_model  # noqa: E402


def test_fit_kwargs_typo_fails_at_once_naming_the_nearest_argument(home, digits):
    xtr, ytr, _, _ = digits
    before = len(home.jobs())
    with pytest.raises(ValueError, match=r"fit_kwargs\['shufle'\] is not an argument of Sequential\.fit; "
                                         r"did you mean 'shuffle'\?"):
        trainyard.online_fit(make_model(), xtr, ytr, machine_ids=["local"], fit_kwargs={"shufle": True})
    assert len(home.jobs()) == before


def test_array_shapes_are_checked_against_the_model_before_any_job(home, digits):
    xtr, ytr, xte, yte = digits
    before = len(home.jobs())
    with pytest.raises(ValueError, match=r"train_X has rows of shape \(63\) but the model's input is \(None, 64\)"):
        trainyard.online_fit(make_model(), xtr[:, :63], ytr, machine_ids=["local"])
    with pytest.raises(ValueError, match=r"validation_data\[1\] has rows of shape \(3\) but the model's output "
                                         r"is \(None, 10\)"):
        trainyard.online_fit(make_model(), xtr, ytr, machine_ids=["local"],
                             validation_data=(xte, np.zeros((len(xte), 3), "float32")))
    assert len(home.jobs()) == before


def test_verbose_is_honoured_by_the_live_view():
    epoch = {"kind": "metric", "values": {"epoch": 1, "epochs": 2, "loss": 0.5}}
    shown = {}
    for verbose in (0, 2):
        out = io.StringIO()
        view = display.LiveView("j-1", out=out, verbose=verbose)
        view.tty = True  # a bar would be drawn on a terminal
        view.show({"kind": "metric", "values": {"event": "progress", "epoch": 1, "epochs": 2,
                                                "step": 1, "steps": 4, "loss": 0.6}})
        view.show(epoch)
        view.close()
        shown[verbose] = out.getvalue()
    assert shown[0] == ""
    assert shown[2] == "Epoch 1/2 - loss: 0.5000\n"
    with pytest.raises(ValueError, match=r"fit_kwargs\['verbose'\] must be one of 0, 1, 2, 'auto'"):
        trainyard.online_fit(make_model(), np.zeros((4, 64)), np.zeros(4), machine_ids=["local"],
                             fit_kwargs={"verbose": 3})


def test_failure_on_the_instance_shows_its_type_and_message_before_the_traceback(home, digits, capsys):
    xtr, ytr, _, _ = digits
    bad_labels = ytr + 10  # the model has 10 classes: TensorFlow refuses these labels on the instance
    job_id, model, history = trainyard.online_fit(make_model(), xtr, bad_labels, machine_ids=["local"],
                                                  batch_size=64)
    assert job_id and model is None and history is None
    out = capsys.readouterr().out
    first = out.index("InvalidArgumentError: ")
    assert "is not in [0, 10)" in out[first:out.index("\n", first)], out[-4000:]
    assert out.index("Traceback (most recent call last)") > first


# The caller's interpreter (this venv's) with a PATH where `python3` is the
# system's, which has no TensorFlow: as when `.venv/bin/python fit.py` runs
# without the venv activated.
CALLER = textwrap.dedent("""
    import json, numpy as np, tensorflow as tf, trainyard
    m = tf.keras.Sequential([tf.keras.Input(shape=(4,)), tf.keras.layers.Dense(2, activation="softmax")])
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    job, model, history = trainyard.online_fit(m, x, (x[:, 0] > 0).astype("int64"), machine_ids=["local"],
                                               batch_size=16, epochs=1)
    print("RESULT " + json.dumps({"job": job, "model": model is not None}))
""")


def test_local_instance_runs_the_callers_python(tmp_path):
    script = tmp_path / "caller.py"
    script.write_text(CALLER)
    env = dict(os.environ, YARD_HOME=str(tmp_path / "home"), PATH="/usr/bin:/bin",
               PYTHONPATH=str(REPO / "python"), YARD_BIN=str(YARD))
    assert subprocess.run(["python3", "-c", "import tensorflow"], env=env, capture_output=True).returncode, \
        "this test needs a python3 on /usr/bin:/bin without TensorFlow"
    try:
        proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                              timeout=600)
    finally:
        from conftest import Home
        Home(tmp_path / "home").stop_everything()
    result = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert result and json.loads(result[0][7:])["model"], proc.stdout[-3000:] + proc.stderr[-3000:]


def test_messages_name_python_parameters_and_say_each_word_once(capsys):
    view = display.LiveView("j-1", out=io.StringIO())
    view.show({"kind": "state", "state": "waiting",
               "message": "waiting: 5 of your jobs are active (the limit); 1st in line"})
    view.show({"kind": "state", "state": "failed", "message": "gave up after waiting 30 s for a job slot "
               "(at most 5 active jobs per user): wait longer with --wait-new-job, or cancel a job"})
    err = capsys.readouterr().err
    assert "trainyard: j-1 waiting: 5 of your jobs are active (the limit); 1st in line\n" in err
    assert "wait longer with wait_new_job_create_s, or cancel a job" in err
    assert "--" not in err


def run_keras_runner(folder, model, x, y, batch_size, epochs, **env):
    """Runs the instance-side Keras runner on `model` as a job would (its
    checkpoint, log and output folders and $YARD_METRICS set); returns it."""
    model.save(folder / "model.keras")
    np.save(folder / "x.npy", x)
    np.save(folder / "y.npy", y)
    (folder / "spec.json").write_text(json.dumps({
        "version": 1, "model": "model.keras", "train_x": "x.npy", "train_y": "y.npy",
        "batch_size": batch_size, "epochs": epochs}))
    dirs = {name: folder / name for name in ("ckpt", "logs", "outputs")}
    job_env = dict(os.environ, YARD_CHECKPOINT_DIR=str(dirs["ckpt"]), YARD_LOG_DIR=str(dirs["logs"]),
                   YARD_OUTPUT_DIR=str(dirs["outputs"]), YARD_METRICS=str(folder / "metrics.jsonl"),
                   PYTHONPATH=str(REPO / "python"), **env)
    return subprocess.run([sys.executable, "-m", "trainyard.runner", "spec.json"], cwd=folder,
                          env=job_env, capture_output=True, text=True, timeout=300)


def test_our_keras_callbacks_never_make_keras_call_batch_hooks_slow(tmp_path):
    # Tiny batches of a tiny model: a batch takes about a millisecond, so
    # anything our callbacks do per batch shows in Keras' timing check (the
    # first batches of every fit).
    x = np.random.default_rng(0).random((64, 4), dtype=np.float32)
    y = (x.sum(axis=1) > 2).astype("int64")
    for run in range(3):
        model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(2, activation="softmax")])
        model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
        folder = tmp_path / str(run)
        folder.mkdir()
        proc = run_keras_runner(folder, model, x, y, batch_size=1, epochs=1)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "is slow compared to the batch time" not in proc.stdout + proc.stderr, proc.stderr[-3000:]
        lines = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        assert [r["epoch"] for r in lines if "loss" in r and "event" not in r] == [1]
    # A batch hook that is slow (here the runner's own test knob, sleeping
    # in it) is still told, once.
    folder = tmp_path / "slow"
    folder.mkdir()
    proc = run_keras_runner(folder, model, x, y, batch_size=1, epochs=1, TRAINYARD_STEP_DELAY_S="0.01")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("`on_train_batch_end` is slow compared to the batch time") == 1, proc.stderr


MARK = "epoch"  # a value of this module the callback below uses: shipped with it


class EpochFile(tf.keras.callbacks.Callback):
    """Appends each epoch's number to a file of the job's working folder."""

    def __init__(self, name="epochs.txt"):
        super().__init__()
        self.name = name

    def on_epoch_end(self, epoch, logs=None):
        with open(self.name, "a") as f:
            f.write(f"{MARK} {epoch + 1}\n")

    def get_config(self):
        return {"name": self.name}


class WithoutConfig(tf.keras.callbacks.Callback):
    pass


def test_keras_callbacks_travel_with_the_model_and_run_on_the_instance(home, digits, tmp_path, capsys):
    xtr, ytr, _, _ = digits
    before = len(home.jobs())
    refused = [
        (tf.keras.callbacks.LambdaCallback(on_epoch_end=print), r"\(LambdaCallback\) cannot travel to the "
                                                                r"instance: it is made of functions"),
        (WithoutConfig(), r"\(WithoutConfig\) cannot travel to the instance: Keras serialises a callback "
                          r"through its get_config\(\), which it lacks"),
        (tf.keras.callbacks.ModelCheckpoint("ck"), r"\(ModelCheckpoint\) is not needed on the instance: "
                                                   r"checkpoints are built in: pass directory_to_save_ckpt"),
    ]
    for callback, message in refused:
        with pytest.raises(ValueError, match=r"fit_kwargs\['callbacks'\]\[1\] " + message):
            trainyard.online_fit(make_model(), xtr, ytr, machine_ids=["local"],
                                 fit_kwargs={"callbacks": [EpochFile(), callback]})
    assert len(home.jobs()) == before  # all refused before any job

    # Never better by 10: EarlyStopping ends the training after epoch 2 of 5.
    early = tf.keras.callbacks.EarlyStopping(monitor="loss", patience=0, min_delta=10)
    job_id, model, history = trainyard.online_fit(
        make_model(), xtr, ytr, machine_ids=["local"], batch_size=64, epochs=5,
        fit_kwargs={"callbacks": [EpochFile("seen.txt"), early, tf.keras.callbacks.CSVLogger("log.csv")]})
    assert model is not None
    assert len(history.history["loss"]) == 2, history.history
    told = capsys.readouterr().err
    assert "trainyard: the job wrote log.csv (" in told and f"`yard fetch {job_id} --all`" in told, told
    # What they wrote in the job's working folder comes back with --all.
    home.yard("fetch", job_id, "--all", "--to", tmp_path / "fetched")
    work = tmp_path / "fetched" / "work"
    assert (work / "seen.txt").read_text() == "epoch 1\nepoch 2\n"
    assert (work / "log.csv").read_text().splitlines()[0].startswith("epoch,")
    assert len((work / "log.csv").read_text().splitlines()) == 3
