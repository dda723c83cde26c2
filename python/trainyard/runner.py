"""The instance-side Keras runner: `python3 -m trainyard.runner fit_spec.json`.

Self-contained (standard library, numpy and TensorFlow only): the SDK ships a
copy inside every Keras fit bundle, so an instance needs TensorFlow but not
the trainyard package. It reads the fit spec written by the SDK and runs
model.fit with:

- one checkpoint per epoch, `$YARD_CHECKPOINT_DIR/epoch-NNN.keras` (the whole
  model with its optimizer state: what a requeued job resumes from);
- TensorBoard logs in `$YARD_LOG_DIR`;
- JSON lines in `$YARD_METRICS`: `{"event": "replicas", ...}` at start,
  `{"event": "progress", ...}` within an epoch (throttled), and one
  `{"epoch": N, "epochs": E, "loss": ..., ...}` per epoch;
- resume from `$YARD_RESUME_FROM` (weights, optimizer state, initial_epoch);
- on a spot interruption notice (SIGUSR1, or the file `$YARD_PREEMPTION_NOTICE`
  appearing), a checkpoint at once, mid-epoch, `epoch-NNN-step-SSSSS.keras`
  (NNN epochs done, SSSSS steps of the next), then exit 75 for the requeue.
  Resuming from it re-runs epoch NNN+1 from its start with those weights and
  optimizer state: Keras' shuffling cannot be replayed, so continuing at the
  step would see some samples twice and others never in that epoch; this way
  every sample is seen in every epoch and the first SSSSS steps' samples once
  more (docs/python.md, "Spot interruptions");
- the trained model in `$YARD_OUTPUT_DIR/model.keras` (+ `history.json`);
- with several devices, tf.distribute.MirroredStrategy: the model is
  rebuilt and compiled inside the strategy's scope.

Knobs from the environment (for development and tests):
`TRAINYARD_LOGICAL_CPUS=N` splits the CPU into N logical devices;
`TRAINYARD_EPOCH_DELAY_S=S` sleeps S seconds after each epoch;
`TRAINYARD_STEP_DELAY_S=S` after each batch (to land a notice mid-epoch).

Warm mode, `python3 -m trainyard.runner --warm READY_FILE` (started by the
agent on an idle instance; design in src/agent/warm_runner.h): imports
TensorFlow, writes READY_FILE ({"framework", "import_s", "ready_at"}), then
blocks reading one JSON line from stdin, {"argv", "cwd", "env"}: the
command a cold job would have run. It takes that environment and folder,
points stdin at /dev/null and runs main() on the command's arguments, so
the job behaves as if started cold, minus the import. EOF instead of a
request: exit 0. Variables read after the request (YARD_*,
TRAINYARD_EPOCH_DELAY_S, TRAINYARD_LOGICAL_CPUS) may differ from the warm
environment; the agent sends only jobs whose other variables are equal.
"""
import json
import logging
import os
import re
import signal
import sys
import tempfile
import time
import traceback

SPEC_VERSION = 1
PROGRESS_INTERVAL_S = 0.5
# Exit status after a checkpoint written for a spot interruption notice
# (EX_TEMPFAIL): the agent requeues the job, which resumes from it.
PREEMPTED_EXIT = 75
NOTICE_CHECK_S = 0.2  # how often the notice file is looked for


class _Notice:
    """A spot interruption notice: SIGUSR1 from the agent, or the file named
    by YARD_PREEMPTION_NOTICE appearing (either is enough)."""

    def __init__(self):
        self.path = os.environ.get("YARD_PREEMPTION_NOTICE") or ""
        self.seen = False
        self._looked = 0.0
        try:
            signal.signal(signal.SIGUSR1, self._on_signal)
        except ValueError:  # not the main thread: the file still works
            pass

    def _on_signal(self, signum, frame):
        self.seen = True

    def __call__(self):
        now = time.monotonic()
        if not self.seen and self.path and now - self._looked >= NOTICE_CHECK_S:
            self._looked = now
            self.seen = os.path.exists(self.path)
        return self.seen


def _metrics_writer(path):
    if not path:
        return lambda obj: None

    def write(obj):
        clean = {}
        for k, v in obj.items():
            if isinstance(v, float) and v != v:  # NaN -> null
                v = None
            clean[k] = v
        with open(path, "a") as f:
            f.write(json.dumps(clean) + "\n")
    return write


def _load_array(base, rel):
    import numpy as np
    return np.load(os.path.join(base, rel), allow_pickle=False)


def _fit_kwargs(spec, base):
    kwargs = dict(spec.get("fit_kwargs", {}))
    for key, rel in spec.get("fit_arrays", {}).items():
        kwargs[key] = _load_array(base, rel)
    cw = kwargs.get("class_weight")
    if isinstance(cw, dict):  # JSON turned the class ids into strings
        kwargs["class_weight"] = {int(k) if str(k).lstrip("-").isdigit() else k: v for k, v in cw.items()}
    return kwargs


def build_callback(entry, tf):
    """One user callback from its fit spec entry (made by the SDK, which
    builds each one this way before a job exists): a Keras callback class
    from its settings, {"builtin": NAME, "config": {...}}, or the user's own
    class from its source, the names it uses from its module and Keras's own
    serialisation of it, {"class_name", "source", "imports", "values", "keras"}."""
    if "builtin" in entry:
        return getattr(tf.keras.callbacks, entry["builtin"])(**entry["config"])
    import importlib
    namespace = {"__name__": "trainyard_user_callbacks"}
    for name, (module, attr) in entry.get("imports", {}).items():
        obj = importlib.import_module(module)
        for part in attr.split(".") if attr else []:
            obj = getattr(obj, part)
        namespace[name] = obj
    namespace.update(entry.get("values", {}))
    exec(compile(entry["source"], f"<callback {entry['class_name']}>", "exec"), namespace)  # noqa: S102
    cls = namespace[entry["class_name"]]
    if hasattr(cls, "from_config"):
        return tf.keras.saving.deserialize_keras_object(entry["keras"], custom_objects={entry["class_name"]: cls})
    return cls(**entry["keras"]["config"])  # what Keras's from_config does; Callback has none


def _epoch_of(path):
    m = re.search(r"epoch-(\d+)", os.path.basename(path))
    return int(m.group(1)) if m else 0


def _step_of(path):
    """Steps of the next epoch a mid-epoch checkpoint holds (0: none)."""
    m = re.search(r"epoch-\d+-step-(\d+)", os.path.basename(path))
    return int(m.group(1)) if m else 0


def _save_atomically(model, path):
    """model.save under a temporary folder beside the checkpoint folder, then
    a rename: the agent never sees (or syncs) half a file."""
    tmp = tempfile.mkdtemp(prefix=".preempt-", dir=os.path.dirname(os.path.dirname(os.path.abspath(path))))
    staged = os.path.join(tmp, os.path.basename(path))
    model.save(staged)
    os.replace(staged, path)
    os.rmdir(tmp)


def _fmt(logs):
    return " - ".join(f"{k}: {v:.4f}" for k, v in logs.items() if isinstance(v, (int, float)))


def main(argv):
    if len(argv) != 1:
        print("usage: python3 -m trainyard.runner fit_spec.json", file=sys.stderr)
        return 2
    spec_path = os.path.abspath(argv[0])
    base = os.path.dirname(spec_path)
    with open(spec_path) as f:
        spec = json.load(f)
    if spec.get("version") != SPEC_VERSION:
        print(f"trainyard.runner: error: fit spec version {spec.get('version')} is not {SPEC_VERSION}",
              file=sys.stderr)
        return 2
    notice = _Notice()  # before TensorFlow's import: SIGUSR1 would end us meanwhile
    write_metric = _metrics_writer(os.environ.get("YARD_METRICS"))
    ckpt_dir = os.environ.get("YARD_CHECKPOINT_DIR")
    log_dir = os.environ.get("YARD_LOG_DIR")
    out_dir = os.environ.get("YARD_OUTPUT_DIR") or "."
    resume = os.environ.get("YARD_RESUME_FROM") or ""
    delay = float(os.environ.get("TRAINYARD_EPOCH_DELAY_S", "0") or 0)
    step_delay = float(os.environ.get("TRAINYARD_STEP_DELAY_S", "0") or 0)

    import numpy as np  # noqa: F401
    import tensorflow as tf

    # TensorFlow's logger has a handler of its own; once something in fit()
    # calls logging.warning(), the root logger gets one too and every
    # TensorFlow warning would be printed twice.
    logging.getLogger("tensorflow").propagate = False
    logical = int(os.environ.get("TRAINYARD_LOGICAL_CPUS", "0") or 0)
    if logical > 1:
        cpus = tf.config.list_physical_devices("CPU")
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(logical)])
    seed = spec.get("seed")
    if seed is not None:
        tf.keras.utils.set_random_seed(int(seed))
        try:
            tf.config.experimental.enable_op_determinism()
        except Exception:  # older TF
            pass

    gpus = tf.config.list_logical_devices("GPU")
    devices = gpus if gpus else tf.config.list_logical_devices("CPU")
    n = len(devices)
    batch_size = int(spec["batch_size"])
    epochs = int(spec["epochs"])
    write_metric({"event": "replicas", "devices": n, "names": [d.name for d in devices],
                  "strategy": "MirroredStrategy" if n > 1 else "default"})
    if n > 1:
        print(f"Training on {n} replicas ({', '.join(d.name for d in devices)}) with MirroredStrategy")
        if batch_size % n:
            _warn(write_metric, f"batch_size {batch_size} is not a multiple of the {n} devices: "
                                f"the replicas get uneven shards; use a multiple of {n}")

    client_tf = (spec.get("client") or {}).get("tensorflow")
    if client_tf and client_tf != tf.__version__:
        _warn(write_metric, f"this instance runs TensorFlow {tf.__version__}, the caller {client_tf}: "
                            "the model may load or train differently; install the same version on both")

    model_path = os.path.join(base, spec["model"])
    initial_epoch = 0
    if resume:
        model_path = resume
        initial_epoch = _epoch_of(resume)
        step = _step_of(resume)
        if step:
            print(f"Resuming from {os.path.basename(resume)} (epoch {initial_epoch} done and {step} "
                  f"steps of epoch {initial_epoch + 1}, saved at a spot interruption notice; "
                  f"epoch {initial_epoch + 1} runs again from its start with those weights)", flush=True)
        else:
            print(f"Resuming from {os.path.basename(resume)} (epoch {initial_epoch} done)", flush=True)

    def build():
        # load_model compiles with the saved config (and restores the
        # optimizer state of a checkpoint), so under a strategy scope the
        # model is rebuilt and compiled inside it.
        return tf.keras.models.load_model(model_path)

    if n > 1:
        strategy = tf.distribute.MirroredStrategy([d.name for d in devices])
        with strategy.scope():
            model = build()
    else:
        model = build()

    x = _load_array(base, spec["train_x"])
    y = _load_array(base, spec["train_y"])
    validation = None
    if spec.get("val_x"):
        validation = (_load_array(base, spec["val_x"]), _load_array(base, spec["val_y"]))
    kwargs = _fit_kwargs(spec, base)
    steps = -(-len(x) // batch_size)

    class Report(tf.keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            # Take the logs as tensors: no host sync per batch, only when a
            # progress line is written.
            self._supports_tf_logs = True

        def on_epoch_begin(self, epoch, logs=None):
            if delay > 0 and epoch > initial_epoch:
                end = time.monotonic() + delay  # between epochs, after the last one's checkpoint
                while time.monotonic() < end and not notice():
                    time.sleep(min(NOTICE_CHECK_S, end - time.monotonic()))
            self.t0 = time.monotonic()
            self.last = self.t0
            self.epoch = epoch + 1

        def on_train_batch_end(self, batch, logs=None):
            if step_delay > 0:
                time.sleep(step_delay)
            now = time.monotonic()
            if batch == 0:
                # The first progress line comes an interval after the first
                # batch (which may have traced the model for a second), not
                # at once: Keras times the first batches' hooks, and writing
                # a line (with a host sync) is the one costly thing here.
                self.last = now
            elif now - self.last >= PROGRESS_INTERVAL_S and batch + 1 < steps:
                self.last = now
                rec = {"event": "progress", "epoch": self.epoch, "epochs": epochs,
                       "step": batch + 1, "steps": steps}
                rec.update({k: float(v) for k, v in (logs or {}).items()})
                write_metric(rec)

        def on_epoch_end(self, epoch, logs=None):
            logs = {k: float(v) for k, v in (logs or {}).items()}
            secs = time.monotonic() - self.t0
            print(f"Epoch {epoch + 1}/{epochs} - {_fmt(logs)} - {secs:.2f}s", flush=True)
            rec = {"epoch": epoch + 1, "epochs": epochs}
            rec.update(logs)
            rec["seconds"] = round(secs, 4)
            write_metric(rec)

    # Report first: an epoch's metric line is written before its checkpoint,
    # and the agent spools metric lines before the artifact record of a file
    # written after them. So wherever a preemption cuts, the server never
    # holds a checkpoint without the metrics of the epochs it covers (a
    # resumed run would leave a hole in the history); at worst it re-runs an
    # epoch whose metric it has, and the newest values win.
    class Preempt(tf.keras.callbacks.Callback):
        """On a notice: a checkpoint now, then exit (the agent requeues)."""

        def __init__(self):
            super().__init__()
            # It never reads the logs: without this, Keras would turn them
            # into numbers (a host sync) before every batch hook.
            self._supports_tf_logs = True

        def on_epoch_begin(self, epoch, logs=None):
            if notice():  # between epochs: the last epoch's checkpoint holds it all
                done = (f"{epoch} epochs done and checkpointed" if epoch > initial_epoch
                        else "nothing trained yet in this run")
                print(f"Spot interruption notice: {done}; exiting for the requeue", flush=True)
                _exit(PREEMPTED_EXIT)
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if not notice():
                return
            name = f"epoch-{self.epoch:03d}-step-{batch + 1:05d}.keras"
            _save_atomically(self.model, os.path.join(ckpt_dir, name))
            print(f"Spot interruption notice: saved {name} (epoch {self.epoch + 1}, step {batch + 1} "
                  f"of {steps}); exiting for the requeue", flush=True)
            _exit(PREEMPTED_EXIT)

    callbacks = [Report()]
    if ckpt_dir:
        os.makedirs(ckpt_dir, exist_ok=True)
        callbacks.append(tf.keras.callbacks.ModelCheckpoint(
            os.path.join(ckpt_dir, "epoch-{epoch:03d}.keras"), save_weights_only=False,
            save_freq="epoch"))
        callbacks.append(Preempt())
    class EpochTensorBoard(tf.keras.callbacks.TensorBoard):
        """TensorBoard logs per epoch, without batch hooks. Our own batch hooks
        make Keras call every callback's, and TensorBoard's then runs a
        summary op per metric per batch, discarded with update_freq="epoch":
        most of a small batch's time, and Keras' "on_train_batch_end is slow"
        warning."""

        def on_train_batch_begin(self, batch, logs=None):
            pass

        def on_train_batch_end(self, batch, logs=None):
            pass

    if log_dir:
        callbacks.append(EpochTensorBoard(log_dir=log_dir, update_freq="epoch", write_graph=False,
                                          profile_batch=0))

    # The user's own (fit_kwargs['callbacks']), after ours: an epoch's
    # metrics and checkpoint are written before, say, EarlyStopping ends
    # the training.
    callbacks += [build_callback(entry, tf) for entry in spec.get("callbacks", [])]

    if initial_epoch >= epochs:
        print(f"Nothing to train: {initial_epoch} of {epochs} epochs already done", flush=True)
        history = {}
    else:
        h = model.fit(x, y, batch_size=batch_size, epochs=epochs, initial_epoch=initial_epoch,
                      validation_data=validation, callbacks=callbacks, verbose=0, **kwargs)
        history = {k: [float(v) for v in vs] for k, vs in h.history.items()}
    os.makedirs(out_dir, exist_ok=True)
    model.save(os.path.join(out_dir, "model.keras"))
    with open(os.path.join(out_dir, "history.json"), "w") as f:
        json.dump({"initial_epoch": initial_epoch, "history": history}, f)
    job = os.environ.get("YARD_JOB_ID")
    where = (f"the outputs of job {job} (online_fit returns it; `yard fetch {job} --to DIR` saves it)"
             if job else os.path.join(out_dir, "model.keras"))
    print(f"Saved the trained model as model.keras in {where}", flush=True)
    return 0


def _warn(write_metric, message):
    """A warning shown once: as a metric event when the job has $YARD_METRICS
    (the live view shows it), else printed."""
    if os.environ.get("YARD_METRICS"):
        write_metric({"event": "warning", "message": message})
    else:
        print("WARNING: " + message, flush=True)


def _summary(error):
    """The message on one line. TensorFlow's graph errors carry a traceback of
    their own ("Detected at node ... File ..."): only its unindented lines
    say what went wrong."""
    lines = [ln.strip() for ln in str(error).splitlines()
             if ln.strip() and not ln[:1].isspace() and not ln.startswith("Detected at node")]
    return " ".join(lines) or type(error).__qualname__


def _report_failure(error):
    """What failed first (type and message on one line), then the whole
    traceback below, on stderr; the job then exits 1."""
    tb = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    sys.stderr.write(f"{type(error).__qualname__}: {_summary(error)}\n\n{tb}")
    sys.stderr.flush()


def _main_reporting(run, argv):
    try:
        return run(argv)
    except Exception as e:  # noqa: BLE001 - reported, and the exit code says failed
        _report_failure(e)
        return 1


def _write_ready(path, framework, import_s):
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump({"framework": framework, "import_s": round(import_s, 3), "ready_at": time.time()}, f)
    os.replace(tmp, path)


def _take_request(request):
    """Becomes the process the request describes: its environment, folder,
    import path and argv; stdin on /dev/null as for a cold job."""
    argv = request["argv"]
    if argv[1:3] != ["-m", "trainyard.runner"]:
        raise ValueError(f"not a runner command: {argv}")
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    # `python3 -m` puts the starting folder first on sys.path: the job's.
    sys.path[0] = os.getcwd()
    sys.argv = [os.path.abspath(__file__)] + argv[3:]
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    return argv[3:]


def warm(argv):
    """--warm READY_FILE: import, say ready, wait for one job, run it."""
    if len(argv) != 1:
        print("usage: python3 -m trainyard.runner --warm READY_FILE", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    import numpy as np  # noqa: F401
    import tensorflow as tf
    # tf.keras loads its modules on first use: load what main() uses now.
    # Nothing here creates a device or an op, so device settings made after
    # the request (TRAINYARD_LOGICAL_CPUS) still apply.
    for name in ("models.load_model", "callbacks.ModelCheckpoint", "callbacks.TensorBoard",
                 "callbacks.Callback", "utils.set_random_seed"):
        obj = tf.keras
        for part in name.split("."):
            obj = getattr(obj, part)
    tf.distribute.MirroredStrategy  # noqa: B018 - loads tf.distribute
    _write_ready(argv[0], "tensorflow", time.monotonic() - t0)
    line = sys.stdin.readline()
    if not line.strip():
        return 0  # the agent ended us: no job came
    return main(_take_request(json.loads(line)))


def _exit(code):
    """Ends the process once everything is written, without TensorFlow's
    interpreter teardown (a second or more of a job's time, after its last
    line). Every file main() writes is closed by then; stdio is flushed here."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else 1)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--warm"]:
        _exit(_main_reporting(warm, sys.argv[2:]))
    _exit(_main_reporting(main, sys.argv[1:]))
