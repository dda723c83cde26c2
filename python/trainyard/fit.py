"""online_fit, offline_fit and attach: a fit job is an ordinary job.

The SDK writes a bundle folder (the model, fit_spec.json and, for Keras, a
copy of the runner) and uploads it with the arrays, which become .npy files
of the bundle's data/ without being written here (chunked and sent from
their memory), through the bound C++ client (content-addressed chunks: the same arrays are never sent twice),
creates a job whose command runs the runner (Keras) or yard-train
(TorchScript), follows its events, mirrors its checkpoints and logs, and
fetches the trained model from the job's outputs.
"""
import dataclasses
import difflib
import inspect
import io
import json
import os
import shutil
import sys
import tempfile
import threading
import queue
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, TypeVar, Union

import numpy as np

from trainyard import display, interrupt, picker, record as recordmod
from trainyard._native import native, yard_binary

if TYPE_CHECKING:  # typing.ParamSpec is Python 3.10+; only the type checker needs it
    from typing import ParamSpec
    _P = ParamSpec("_P")
_R = TypeVar("_R")
ArrayLike = Any  # anything np.asarray takes: numpy arrays, lists, tensors with __array__
PathLike = Union[str, os.PathLike]

FINAL_STATES = ("succeeded", "failed", "cancelled")
RESERVED_KEYS = ("batch_size", "epochs", "validation_data")
# model.fit arguments the fit spec already decides.
KERAS_REFUSED = ("x", "y", "callbacks", "initial_epoch")
# Taken by the live view here (how much of the training it shows), as
# Model.fit takes it: 0 silent, 2 a line per epoch, 1/"auto" also a bar.
VERBOSE_VALUES = (0, 1, 2, "auto")
# Environment variables of the caller passed on to the job (development and
# test knobs of the runner; see runner.py).
FORWARDED_ENV = ("TRAINYARD_LOGICAL_CPUS", "TRAINYARD_EPOCH_DELAY_S")
# yard-train's environment: the OpenMP wait policy it would otherwise set
# itself by starting again, loading libtorch twice (src/trainer/runtime_env.h:
# libgomp reads it only as it loads).
TORCHSCRIPT_JOB_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}
# Providers whose instances run on this host, where this interpreter exists.
SAME_HOST_PROVIDERS = ("local", "sim")

# The last upload's numbers ({"data_chunks_sent", "data_chunks_total",
# "chunks_sent", "chunks_total", "bytes_sent"}), for the curious and the tests.
last_transfer = {}


class History:
    """Keras-shaped training history: .history {metric: [float per epoch]}
    (NaN where an epoch has no value), .epoch, .params."""

    def __init__(self, history: Dict[str, List[float]], params: Optional[Dict[str, Any]] = None,
                 model: Any = None) -> None:
        self.history = history
        self.epoch = list(range(len(next(iter(history.values()), []))))
        self.params = params or {}
        self.model = model

    def __repr__(self) -> str:
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"


# ---------------------------------------------------------------- input checks

def _framework(model):
    mod = type(model).__module__ or ""
    if "torch" in mod and hasattr(model, "save") and hasattr(model, "graph") or \
            type(model).__name__ in ("RecursiveScriptModule", "ScriptModule"):
        return "torchscript"
    if "torch" in mod:
        raise ValueError("a PyTorch model must be a TorchScript module: pass torch.jit.script(model)")
    if hasattr(model, "fit") and hasattr(model, "save") and ("keras" in mod or "tensorflow" in mod):
        return "keras"
    raise ValueError(f"model must be a compiled tf.keras Model or a TorchScript module, not {type(model).__name__}")


def _as_array(name, a):
    if a is None:
        raise ValueError(f"{name} is None")
    arr = np.asarray(a)
    if arr.dtype == object:
        raise ValueError(f"{name} must be a numeric array (got dtype object)")
    if arr.dtype.hasobject:  # a structured dtype with an object field: np.save would pickle it
        raise ValueError(f"{name} holds Python objects (dtype {arr.dtype}); the job reads arrays "
                         "without pickle: convert every field to a numeric dtype")
    if arr.ndim == 0:
        raise ValueError(f"{name} must have at least one dimension (one row per sample)")
    return np.ascontiguousarray(arr)


def _check_data_value(key, value, path):
    """JSON values and numpy arrays only; returns the JSON form (arrays -> None)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_check_data_value(key, v, path) for v in value]
    if isinstance(value, dict):
        return {str(k): _check_data_value(key, v, path) for k, v in value.items()}
    raise ValueError(f"fit_kwargs['{key}'] holds a {type(value).__name__} at {path or 'its top level'}: "
                     "only data (JSON values and numpy arrays) can travel to the instance; "
                     "callbacks and functions cannot (checkpoints and TensorBoard logs are built in)")


def _nearest(name, choices):
    """ "; did you mean 'shuffle'?" for a near miss, else ""."""
    close = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _check_fit_kwarg_names(model, framework, fit_kwargs):
    """Names checked where they go: Model.fit's signature (Keras) or
    yard-train's keys, before anything is sent."""
    if framework == "torchscript":
        return  # yard-train's own parser checks them (_check_torch_kwargs)
    try:
        params = inspect.signature(model.fit).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return
    for key in fit_kwargs:
        if key not in params:
            raise ValueError(f"fit_kwargs['{key}'] is not an argument of {type(model).__name__}.fit"
                             f"{_nearest(key, params)}")


def _check_torch_kwargs(json_kwargs):
    """yard-train's own parser (src/trainer/fit_options.cc, bound) decides:
    the names, values and combinations it takes, before anything is sent."""
    error = native().torch_fit_kwargs_error(json.dumps(json_kwargs))
    if error:
        raise ValueError(error)


def _dims(shape):
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def _check_shapes(model, framework, x, y, val):
    """The arrays against a Keras model's single input and output, when the
    model says what it takes (a built Sequential or functional model)."""
    if framework != "keras":
        return
    try:
        want_in, want_out = model.input_shape, model.output_shape
    except Exception:  # noqa: BLE001 - unbuilt or subclassed: nothing to check against
        return
    if not (isinstance(want_in, tuple) and isinstance(want_out, tuple)):
        return  # several inputs or outputs: Keras says it on the instance
    pairs = [("train_X", x, "train_Y", y)]
    if val is not None:
        pairs.append(("validation_data[0]", val[0], "validation_data[1]", val[1]))
    for xname, xa, yname, ya in pairs:
        got = (None,) + tuple(xa.shape[1:])
        if len(got) != len(want_in) or any(w is not None and w != g for w, g in zip(want_in[1:], got[1:])):
            raise ValueError(f"{xname} has rows of shape {_dims(xa.shape[1:])} but the model's input is "
                             f"{_dims(want_in)} (first dimension: the samples)")
        out = want_out[-1] if len(want_out) > 1 else None
        if ya.ndim >= 2 and out is not None and ya.shape[-1] not in (1, out):
            raise ValueError(f"{yname} has rows of shape {_dims(ya.shape[1:])} but the model's output is "
                             f"{_dims(want_out)}")


def _check_verbose(fit_kwargs):
    verbose = fit_kwargs.get("verbose", "auto")
    if isinstance(verbose, bool) or verbose not in VERBOSE_VALUES:
        raise ValueError(f"fit_kwargs['verbose'] must be one of 0, 1, 2, 'auto' (as for Model.fit), "
                         f"got {verbose!r}")
    return 1 if verbose == "auto" else int(verbose)


def _check_inputs(model, train_X, train_Y, batch_size, epochs, validation_data, fit_kwargs):
    framework = _framework(model)
    if framework == "keras" and getattr(model, "optimizer", None) is None:
        raise ValueError("compile the model (model.compile(optimizer=..., loss=...)) before online_fit")
    x = _as_array("train_X", train_X)
    y = _as_array("train_Y", train_Y)
    if len(x) != len(y):
        raise ValueError(f"train_X has {len(x)} rows but train_Y has {len(y)}: they must match")
    if len(x) == 0:
        raise ValueError("train_X is empty")
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if not isinstance(epochs, (int, np.integer)) or isinstance(epochs, bool) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
    val = None
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError("validation_data must be a tuple (validation_X, validation_Y)")
        vx = _as_array("validation_data[0]", validation_data[0])
        vy = _as_array("validation_data[1]", validation_data[1])
        if len(vx) != len(vy):
            raise ValueError(f"validation_data has {len(vx)} inputs but {len(vy)} targets: they must match")
        val = (vx, vy)
    if fit_kwargs is None:
        fit_kwargs = {}
    if not isinstance(fit_kwargs, dict):
        raise ValueError("fit_kwargs must be a dict")
    _check_fit_kwarg_names(model, framework, fit_kwargs)
    _check_shapes(model, framework, x, y, val)
    json_kwargs, arrays, callbacks = {}, {}, []
    for key, value in fit_kwargs.items():
        if key == "verbose":
            continue  # the live view's (see _check_verbose)
        if key in RESERVED_KEYS:
            raise ValueError(f"fit_kwargs may not repeat '{key}': pass it as online_fit's own argument")
        if framework == "keras" and key == "callbacks":
            import tensorflow as tf
            from trainyard import callbacks as callbacksmod
            callbacks = callbacksmod.serialise(value, tf)
            continue
        if framework == "keras" and key in KERAS_REFUSED:
            raise ValueError(f"fit_kwargs['{key}'] is decided by trainyard and cannot be given")
        if isinstance(value, np.ndarray):
            if framework == "torchscript":
                raise ValueError(f"fit_kwargs['{key}']: yard-train takes no arrays in fit_kwargs")
            if len(value) != len(x) and key == "sample_weight":
                raise ValueError(f"fit_kwargs['sample_weight'] has {len(value)} rows, train_X {len(x)}")
            arrays[key] = _as_array(f"fit_kwargs['{key}']", value)
            continue
        json_kwargs[key] = _check_data_value(key, value, "")
    if framework == "torchscript":
        _check_torch_kwargs(json_kwargs)
    return framework, x, y, val, json_kwargs, arrays, callbacks


# ---------------------------------------------------------------- the bundle

def _save_model(model, framework, folder):
    if framework == "keras":
        name = "model.keras"
        # A compiled model that never trained has an unbuilt optimizer; build
        # it so the saved optimizer state loads on the instance without a
        # "Skipping variable loading for optimizer" warning.
        try:
            if not getattr(model.optimizer, "_built", False):
                model.optimizer.build(model.trainable_variables)
        except Exception:  # noqa: BLE001 - only cosmetic
            pass
        model.save(os.path.join(folder, name))
    else:
        name = "model.pt"
        model.save(os.path.join(folder, name))
    return name


def _write_bundle(model, framework, x, y, val, json_kwargs, arrays, batch_size, epochs, seed, callbacks=()):
    """-> (folder, command, arrays): folder/main is the bundle's top level;
    arrays ({name: array}) are its data/<name> .npy files, uploaded from
    memory apart from the rest (so what they cost is known apart)."""
    top = Path(tempfile.mkdtemp(prefix="trainyard-fit-"))
    root = top / "main"
    root.mkdir()
    model_name = _save_model(model, framework, str(root))
    arrays_out = {"train_x.npy": x, "train_y.npy": y}
    spec = {"version": 1, "framework": framework, "model": model_name,
            "train_x": "data/train_x.npy", "train_y": "data/train_y.npy",
            "batch_size": int(batch_size), "epochs": int(epochs), "seed": seed,
            "fit_kwargs": json_kwargs, "fit_arrays": {}}
    if callbacks:
        spec["callbacks"] = list(callbacks)  # see trainyard/callbacks.py
    if framework == "keras" and "tensorflow" in sys.modules:
        spec["client"] = {"tensorflow": getattr(sys.modules["tensorflow"], "__version__", "")}
    if val is not None:
        arrays_out.update({"val_x.npy": val[0], "val_y.npy": val[1]})
        spec["val_x"], spec["val_y"] = "data/val_x.npy", "data/val_y.npy"
    for key, arr in arrays.items():
        arrays_out[f"fit_{key}.npy"] = arr
        spec["fit_arrays"][key] = f"data/fit_{key}.npy"
    (root / "fit_spec.json").write_text(json.dumps(spec, indent=2))
    if framework == "keras":
        pkg = root / "trainyard"
        pkg.mkdir()
        (pkg / "__init__.py").write_text('"""The Keras runner, shipped with the fit bundle."""\n')
        shutil.copy(Path(__file__).with_name("runner.py"), pkg / "runner.py")
        command = ["python3", "-m", "trainyard.runner", "fit_spec.json"]
    else:
        command = ["yard-train", "--model", model_name, "--train-x", spec["train_x"],
                   "--train-y", spec["train_y"], "--epochs", str(epochs), "--batch-size", str(batch_size),
                   "--seed", str(seed if seed is not None else 0),
                   "--fit-kwargs", json.dumps(json_kwargs)]
        if val is not None:
            command += ["--val-x", spec["val_x"], "--val-y", spec["val_y"]]
        devices = _torch_devices()
        if devices:
            command += ["--devices", str(devices)]
    return top, command, arrays_out


def _npy_parts(arr):
    """-> (header, data): the bytes np.save writes for `arr` (C-contiguous)
    are header + data, data being the array's own memory as uint8, not a copy."""
    fmt = np.lib.format
    header = io.BytesIO()
    fields = fmt.header_data_from_array_1_0(arr)
    write_header = getattr(fmt, "_write_array_header", None)  # np.save's own choice of version
    if write_header is not None:
        write_header(header, fields, None)
    else:
        try:
            fmt.write_array_header_1_0(header, fields)
        except ValueError:  # a header of 64 KiB or more
            header = io.BytesIO()
            fmt.write_array_header_2_0(header, fields)
    flat = arr.reshape(-1)
    data = flat.view(np.uint8) if flat.dtype.itemsize else np.empty(0, np.uint8)
    return header.getvalue(), data


def _save_arrays(folder, arrays):
    """Writes the bundle's arrays as the .npy files the job gets (for a
    recorded job's archive)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, arr in arrays.items():
        np.save(folder / name, arr)


def _torch_devices():
    """yard-train's --devices, or None for its default.

    Devices are the instance's, as for the Keras runner: yard-train counts
    the CUDA devices the provider left visible (CUDA_VISIBLE_DEVICES) by
    itself, and on a CPU-only instance trains one replica unless
    TRAINYARD_LOGICAL_CPUS=N (forwarded to the job, where the Keras runner
    splits the CPU into N logical devices) asks for N CPU replicas."""
    value = os.environ.get("TRAINYARD_LOGICAL_CPUS", "")
    try:
        n = int(value or 0)
    except ValueError:
        raise ValueError(f"TRAINYARD_LOGICAL_CPUS must be an integer, not {value!r}") from None
    return n if n > 1 else None


def _progress_args(label):
    """upload_directory's progress arguments: a bar on a terminal, plain
    lines elsewhere (a notebook, a log), on sys.stderr; nothing for uploads
    over within a moment."""
    def write(text):
        sys.stderr.write(text)
        sys.stderr.flush()
    try:
        terminal = sys.stderr.isatty()
    except Exception:  # noqa: BLE001 - a replaced stderr without isatty
        terminal = False
    return {"progress": write, "label": f"trainyard: {label}", "terminal": terminal,
            "columns": shutil.get_terminal_size().columns}


def _upload_bundle(client, root, arrays):
    """Uploads `arrays` ({name: C-contiguous array}) as data/<name> .npy
    files, chunked and sent straight from the arrays' memory (no .npy written
    and read back), then root/main (the rest); -> the bundle manifest (dict)
    with the arrays under data/."""
    files = [(name, *_npy_parts(arr)) for name, arr in arrays.items()]
    data_json, data_stats = client.upload_memory(files, **_progress_args("sending arrays"))
    rest_json, rest_stats = client.upload_directory(str(Path(root) / "main"))
    data_m, rest_m = json.loads(data_json), json.loads(rest_json)
    files = rest_m["files"] + [dict(f, path="data/" + f["path"]) for f in data_m["files"]]
    files.sort(key=lambda f: f["path"].encode())
    last_transfer.clear()
    last_transfer.update({
        "data_chunks_sent": data_stats["chunks_sent"], "data_chunks_total": data_stats["chunks_total"],
        "chunks_sent": data_stats["chunks_sent"] + rest_stats["chunks_sent"],
        "chunks_total": data_stats["chunks_total"] + rest_stats["chunks_total"],
        "bytes_sent": data_stats["bytes_sent"] + rest_stats["bytes_sent"],
        "bytes_total": data_stats["bytes_total"] + rest_stats["bytes_total"],
    })
    display.info(f"sent the fit bundle: {display.human(last_transfer['bytes_total'])}; "
                 f"{last_transfer['chunks_sent']} of {last_transfer['chunks_total']} chunks were new "
                 f"({last_transfer['data_chunks_sent']} of {last_transfer['data_chunks_total']} data chunks)")
    return {"version": 1, "files": files}


def _instance_python(client, machine_ids):
    """The interpreter that runs the Keras runner: $TRAINYARD_PYTHON when
    set; else, when every machine id (none: the server's default type) is
    served on this host, this very interpreter (sys.executable: the packages
    the caller imported); else `python3` from the instance's PATH."""
    chosen = os.environ.get("TRAINYARD_PYTHON")
    if chosen:
        return chosen
    try:
        types = json.loads(client.get("/v1/machines")).get("types", [])
    except Exception:  # noqa: BLE001 - the server refuses the job later, with its reason
        return "python3"
    provider = {t.get("name"): t.get("provider") for t in types}
    names = [m.split(":", 1)[0] for m in machine_ids] or [t.get("name") for t in types if t.get("default")]
    if sys.executable and names and all(provider.get(n) in SAME_HOST_PROVIDERS for n in names):
        return sys.executable
    return "python3"


# ---------------------------------------------------------------- connecting

def _connect():
    """The configured server (YARD_SERVER/YARD_TOKEN), else the embedded one
    under YARD_HOME, started with the `yard` binary if none runs. Warns like
    the CLI when that embedded server runs another build than this `yard`
    (after a rebuild or an upgrade it goes on serving the old code)."""
    home = os.environ.get("YARD_HOME", "")
    binary = yard_binary()
    client = native().connect(home=home, yard_binary=binary)
    if not os.environ.get("YARD_SERVER"):
        note = native().embedded_server_of_another_build(home, binary)
        if note:
            display.info(f"warning: {note}")
    return client


def _get_job(client, job_id):
    return json.loads(client.get(f"/v1/jobs/{job_id}"))["job"]


# ---------------------------------------------------------------- submit

def _submit(r: "FitRequest", seed: int = 0):
    framework, x, y, val, json_kwargs, arrays, callbacks = _check_inputs(
        r.model, r.train_X, r.train_Y, r.batch_size, r.epochs, r.validation_data, r.fit_kwargs)
    verbose = _check_verbose(r.fit_kwargs or {})
    cool_down_period_s = r.cool_down_period_s
    if cool_down_period_s is None or cool_down_period_s < 0:
        raise ValueError("cool_down_period_s must be >= 0")
    machine_ids = r.machine_ids
    if machine_ids is not None:
        if isinstance(machine_ids, str):
            machine_ids = [machine_ids]
        machine_ids = [str(m) for m in machine_ids]
    root, command, bundle_arrays = _write_bundle(r.model, framework, x, y, val, json_kwargs, arrays, r.batch_size, r.epochs, seed,
                                  callbacks)
    try:
        client = _connect()
        if machine_ids is None:
            machine_ids = picker.pick(client) if picker.interactive() else []
        if framework == "keras":
            command[0] = _instance_python(client, machine_ids)
        manifest = _upload_bundle(client, root, bundle_arrays)
        env = {k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)}
        # TensorFlow's C++ start-up lines stay quiet unless the caller asks.
        env["TF_CPP_MIN_LOG_LEVEL"] = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")
        if framework != "keras":
            env.update(TORCHSCRIPT_JOB_ENV)
        spec = {"command": command, "bundle": manifest, "machines": machine_ids,
                "description": r.description or "", "cool_down_s": float(cool_down_period_s), "env": env,
                "wait_request_s": float(r.wait_request_s), "wait_new_job_s": float(r.wait_new_job_create_s),
                "wait_new_job_interval_s": float(r.wait_new_job_create_interval)}
        job = json.loads(client.post("/v1/jobs", json.dumps(spec)))["job"]
        display.info(f"job {job['id']} submitted ({framework}, {len(x)} samples, {r.epochs} epochs"
                     f"{', ' + r.description if r.description else ''})")
        if r.record:
            _save_arrays(root / "data", bundle_arrays)
            recordmod.stash(job["id"], root, spec)
        return client, job["id"], verbose
    finally:
        shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------- follow

def _follow(client, job_id, ckpt_dir, log_dir, events_out, out=None, verbose=1):
    """Shows the job live until its end; returns the final job, or None when
    the user detached. Every event is appended to `events_out`. Ctrl-C asks
    (see interrupt.py) and never raises here."""
    dirs = {}
    if ckpt_dir:
        dirs["checkpoints"] = str(Path(ckpt_dir).expanduser().resolve())
    if log_dir:
        dirs["logs"] = str(Path(log_dir).expanduser().resolve())
    mirror = native().ArtifactMirror(client, dirs)
    q = queue.Queue()
    stop = threading.Event()
    ended = threading.Event()

    def on_event(text):
        q.put(("event", text))
        return not stop.is_set()

    def on_disconnect(message):
        q.put(("disconnect", message))
        return not stop.is_set()

    def worker():
        try:
            client.follow_events(job_id, 0, True, on_event, on_disconnect)
            q.put(("end", None))
        except Exception as e:  # noqa: BLE001 - reported to the main thread
            q.put(("error", e))
        ended.set()

    t = threading.Thread(target=worker, name=f"trainyard-follow-{job_id}", daemon=True)
    t.start()
    view = display.LiveView(job_id, out=out, epochs=_epochs_of_job(client, job_id), verbose=verbose)
    cancelled = False
    with interrupt.Interrupts() as presses:
        while True:
            if presses.take() and not cancelled:
                choice = interrupt.ask(ended.is_set, presses)
                if choice == "cancel":
                    client.post(f"/v1/jobs/{job_id}/cancel", "{}")
                    display.info(f"cancelling {job_id}")
                    cancelled = True
                elif choice == "detach":
                    stop.set()
                    display.info(f"detached; the job goes on. Attach again with trainyard.attach('{job_id}') "
                                 f"or `yard logs {job_id} -f`")
                    return None
            try:
                kind, payload = q.get(timeout=0.1)
            except queue.Empty:
                continue
            if kind == "event":
                ev = json.loads(payload)
                events_out.append(ev)
                if ev.get("kind") in ("artifact", "artifact_part"):
                    mirror.add(payload)
                view.show(ev)
            elif kind == "disconnect":
                view.disconnected(payload)
            elif kind == "error":
                display.info(f"lost the job's event stream: {payload}")
                break
            else:
                break
        try:
            mirror.drain()
        except Exception as e:  # noqa: BLE001
            display.info(f"mirroring artifacts failed: {e}")
        view.close()
        return _get_job(client, job_id)


def history_from_events(events: Iterable[Mapping[str, Any]]) -> Tuple[Dict[str, List[float]], List[int]]:
    """Keras-shaped history ({metric: [one float per epoch]}) and its epochs
    (1-based) from the metric events of every attempt: the C++ SDK's
    HistoryWithEpochs, bound, so both SDKs give the same history. A value an
    epoch did not report (or reported as null) is NaN (docs/python.md,
    "History")."""
    return native().history_from_events(event_texts(events))


def event_texts(events: Iterable[Mapping[str, Any]]) -> List[str]:
    """Events as the JSON texts the bound C++ functions take."""
    return [json.dumps(ev) for ev in events]


def _epochs_of_job(client, job_id):
    """Total epochs from a yard-train command line (Keras metrics carry it)."""
    try:
        cmd = _get_job(client, job_id).get("command") or []
        return int(cmd[cmd.index("--epochs") + 1]) if "--epochs" in cmd else None
    except Exception:  # noqa: BLE001 - display only
        return None


def _framework_of_job(job):
    cmd = job.get("command") or []
    return "torchscript" if cmd and os.path.basename(cmd[0]) == "yard-train" else "keras"


def _fetch_model(client, job_id, framework):
    name = "model.pt" if framework == "torchscript" else "model.keras"
    arts = json.loads(client.get(f"/v1/jobs/{job_id}/artifacts"))["artifacts"]
    entry = next((a["entry"] for a in arts if a["dir"] == "outputs" and a["entry"]["path"] == name), None)
    if entry is None:
        return None
    dest = tempfile.mkdtemp(prefix="trainyard-model-")
    try:
        client.download_entry(json.dumps(entry), dest)
        path = os.path.join(dest, name)
        if framework == "torchscript":
            import torch
            return torch.jit.load(path)
        import tensorflow as tf
        return tf.keras.models.load_model(path)
    finally:
        shutil.rmtree(dest, ignore_errors=True)


def _finish(client, job_id, directory_to_save_ckpt, directory_to_save_log, verbose=1):
    events = []
    job = _follow(client, job_id, directory_to_save_ckpt, directory_to_save_log, events, verbose=verbose)
    if job is None:
        return job_id, None, None
    recordmod.complete(client, job_id, job, events)
    if job["state"] != "succeeded":
        display.info(f"job {job_id} {job['state']}: {job.get('message') or 'no message'}; no model to return")
        return job_id, None, None
    framework = _framework_of_job(job)
    model = _fetch_model(client, job_id, framework)
    if model is None:
        display.info(f"job {job_id} succeeded but wrote no trained model to its outputs")
        return job_id, None, None
    hist, epochs = history_from_events(events)
    params = {"epochs": epochs[-1] if epochs else 0, "steps": None, "verbose": 1}
    history = History(hist, params, model)
    if framework == "keras":
        try:
            import tensorflow as tf
            h = tf.keras.callbacks.History()
            h.history, h.epoch, h.params = hist, [e - 1 for e in epochs], params
            h.set_model(model)
            history = h
        except Exception:  # noqa: BLE001 - the plain History is Keras-shaped too
            pass
    return job_id, model, history


# ---------------------------------------------------------------- public API

@dataclasses.dataclass(frozen=True)
class FitRequest:
    """The parameters of online_fit and offline_fit: one definition for both
    (their signatures are this class's). Names and defaults follow aibro's
    online_fit; docs/python.md says what each does."""
    model: Any
    train_X: ArrayLike
    train_Y: ArrayLike
    machine_ids: Optional[Union[str, Sequence[str]]] = None
    batch_size: int = 1
    epochs: int = 1
    validation_data: Optional[Tuple[ArrayLike, ArrayLike]] = None
    description: str = ""
    cool_down_period_s: float = 0
    fit_kwargs: Optional[Mapping[str, Any]] = None
    directory_to_save_ckpt: Optional[PathLike] = None
    directory_to_save_log: Optional[PathLike] = None
    wait_request_s: float = 30
    wait_new_job_create_s: float = -1
    wait_new_job_create_interval: float = 10
    record: bool = False


FitResult = Tuple[str, Optional[Any], Optional[Any]]  # (job id, trained model, History)


def _takes_fit_request(impl: "Callable[[FitRequest], _R]") -> "Callable[_P, _R]":
    """Makes impl(request) callable with FitRequest's parameters; help() and
    inspect show them (with impl's return type and docstring)."""
    def api(*args: Any, **kwargs: Any) -> Any:
        try:
            request = FitRequest(*args, **kwargs)
        except TypeError as e:  # a wrong argument: name the function called, not the dataclass
            raise TypeError(str(e).replace("FitRequest.__init__()", f"{impl.__name__}()")) from None
        return impl(request)
    for attr in ("__name__", "__qualname__", "__module__", "__doc__"):
        setattr(api, attr, getattr(impl, attr))
    api.__signature__ = inspect.signature(FitRequest).replace(  # type: ignore[attr-defined]
        return_annotation=inspect.signature(impl).return_annotation)
    return api  # type: ignore[return-value]


@_takes_fit_request
def online_fit(request: FitRequest) -> FitResult:
    """Trains `model` on another machine and shows its progress until the end.

    Returns (job_id, trained model, history); (job_id, None, None) when the
    job ends without a model (the reason is printed). Raises ValueError only
    for bad input found before any job exists."""
    client, job_id, verbose = _submit(request)
    return _finish(client, job_id, request.directory_to_save_ckpt, request.directory_to_save_log, verbose)


@_takes_fit_request
def offline_fit(request: FitRequest) -> str:
    """Like online_fit, but returns the job id at once; attach(job_id) later,
    from any process, gets (job_id, model, history). Checkpoints and logs are
    kept by the server; attach mirrors them into the folders given here."""
    _, job_id, _ = _submit(request)
    if request.directory_to_save_ckpt or request.directory_to_save_log:
        recordmod.remember_dirs(job_id, request.directory_to_save_ckpt, request.directory_to_save_log)
    return job_id


def attach(job_id: str, directory_to_save_ckpt: Optional[PathLike] = None,
           directory_to_save_log: Optional[PathLike] = None) -> FitResult:
    """Follows a job from its first event to its end (live if it still runs)
    and returns (job_id, model, history) like online_fit."""
    client = _connect()
    _get_job(client, job_id)  # not_found early, as YardError
    dirs = recordmod.remembered_dirs(job_id)
    return _finish(client, job_id, directory_to_save_ckpt or dirs.get("ckpt"),
                   directory_to_save_log or dirs.get("log"))
