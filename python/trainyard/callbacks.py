"""User callbacks for online_fit (fit_kwargs['callbacks']): each one is turned
into data the fit spec carries and rebuilt on the instance by the runner
(trainyard.runner.build_callback), which runs it beside its own. Each is
rebuilt here too, the way the instance will, before a job exists: what
cannot travel is refused at once, saying why.

- Keras's own callbacks of settings only (EarlyStopping, ReduceLROnPlateau,
  TerminateOnNaN, CSVLogger, RemoteMonitor): Keras 2.15's callbacks have no
  get_config, so their settings are read back from their attributes (by
  their __init__ parameters' names) and the rebuilt callback is compared
  with the given one; any difference refuses it.
- Your own Callback subclasses with get_config(): serialised by Keras
  (tf.keras.saving.serialize_keras_object) and shipped with the class's
  source and the names it uses from its module (modules and importable
  objects, re-imported on the instance; plain JSON values, copied).
- The rest is refused: ModelCheckpoint, BackupAndRestore and TensorBoard
  (built in), History (online_fit returns it), ProgbarLogger (the live
  view), LambdaCallback and LearningRateScheduler (functions), classes
  without get_config.
"""
import ast
import inspect
import json
import sys
import textwrap

import numpy as np

# The attribute a Keras callback keeps an __init__ argument in, where it is
# not the argument's own name.
_ATTRIBUTE_OF = {("CSVLogger", "separator"): "sep"}
SETTINGS_CALLBACKS = ("EarlyStopping", "ReduceLROnPlateau", "TerminateOnNaN", "CSVLogger", "RemoteMonitor")
_BUILT_IN = "is not needed on the instance: "
_FUNCTIONS = "cannot travel to the instance: "
REFUSED = {
    "ModelCheckpoint": _BUILT_IN + "checkpoints are built in: pass directory_to_save_ckpt",
    "BackupAndRestore": _BUILT_IN + "checkpoints are built in (directory_to_save_ckpt) and a requeued job "
                                    "resumes from them",
    "TensorBoard": _BUILT_IN + "TensorBoard logs are built in: pass directory_to_save_log",
    "History": _BUILT_IN + "online_fit returns the history",
    "BaseLogger": _BUILT_IN + "online_fit returns the history",
    "ProgbarLogger": _BUILT_IN + "the live view shows the progress (fit_kwargs['verbose'] says how much)",
    "LambdaCallback": _FUNCTIONS + "it is made of functions; write a Callback subclass with get_config() "
                                   "instead",
    "LearningRateScheduler": _FUNCTIONS + "its schedule is a function; give the optimizer a "
                                          "tf.keras.optimizers.schedules learning rate (saved with the model)",
}


def serialise(callbacks, tf):
    """fit_kwargs['callbacks'] as fit spec entries; ValueError naming the
    callback and the reason for the first that cannot travel."""
    from trainyard.runner import build_callback
    if not isinstance(callbacks, (list, tuple)):
        raise ValueError("fit_kwargs['callbacks'] must be a list of tf.keras.callbacks.Callback")
    entries = []
    for i, cb in enumerate(callbacks):
        where = f"fit_kwargs['callbacks'][{i}] ({type(cb).__name__})"
        if not isinstance(cb, tf.keras.callbacks.Callback):
            raise ValueError(f"{where} is not a tf.keras.callbacks.Callback")
        entry = _entry(cb, where, tf)
        try:
            rebuilt = build_callback(json.loads(json.dumps(entry)), tf)
        except Exception as e:  # noqa: BLE001 - any failure here would fail on the instance
            raise ValueError(f"{where} cannot travel to the instance: rebuilt here as the instance would "
                             f"rebuild it, it fails with {type(e).__name__}: {e}") from None
        if "builtin" in entry and _state(rebuilt) != _state(cb):
            raise ValueError(f"{where} cannot travel to the instance: its settings could not be read back "
                             "from it (Keras 2.15's callbacks have no get_config)")
        entries.append(entry)
    return entries


def _entry(cb, where, tf):
    cls = type(cb)
    keras_class = cls.__module__.startswith(("keras.", "tensorflow.")) and hasattr(tf.keras.callbacks, cls.__name__)
    if keras_class and cls.__name__ in REFUSED:
        raise ValueError(f"{where} {REFUSED[cls.__name__]}")
    if keras_class and cls.__name__ in SETTINGS_CALLBACKS:
        return {"builtin": cls.__name__, "config": _settings(cb, where)}
    if keras_class or not hasattr(cb, "get_config"):
        raise ValueError(f"{where} cannot travel to the instance: Keras serialises a callback through its "
                         "get_config(), which it lacks; give it one returning its __init__ arguments")
    return _own_class_entry(cb, where, tf)


def _settings(cb, where):
    name = type(cb).__name__
    config = {}
    for p in list(inspect.signature(type(cb).__init__).parameters.values())[1:]:
        attr = _ATTRIBUTE_OF.get((name, p.name), p.name)
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and hasattr(cb, attr):
            config[p.name] = _data(getattr(cb, attr), f"{where} setting '{p.name}'")
    if name == "EarlyStopping":  # kept signed by its mode, the mode only in monitor_op
        config["min_delta"] = abs(config.get("min_delta", 0))
        config["mode"] = "min" if cb.monitor_op is np.less else "max"
    if name == "CSVLogger" and str(config.get("filename", "")).startswith("/"):
        raise ValueError(f"{where}: give it a relative file name: it is written in the job's working "
                         "folder and comes back with `yard fetch JOB --all`")
    return config


def _own_class_entry(cb, where, tf):
    cls = type(cb)
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError) as e:
        raise ValueError(f"{where} cannot travel to the instance: the source of {cls.__name__} "
                         f"cannot be found ({e})") from None
    try:
        keras_form = tf.keras.saving.serialize_keras_object(cb)
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"{where} cannot travel to the instance: Keras cannot serialise it: {e}") from None
    module = sys.modules.get(cls.__module__)
    imports, values = {}, {}
    names = {n.id for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Name)}
    for name in sorted(names - {cls.__name__}):
        if module is None or name not in vars(module):
            continue
        imports_or_value = _importable(vars(module)[name])
        if imports_or_value is not None:
            imports[name] = imports_or_value
        else:
            try:
                values[name] = json.loads(json.dumps(vars(module)[name]))
            except (TypeError, ValueError):
                raise ValueError(f"{where} cannot travel to the instance: {cls.__name__} uses '{name}' "
                                 f"of its module, which is neither importable nor data") from None
    return {"class_name": cls.__name__, "source": source, "imports": imports, "values": values,
            "keras": json.loads(json.dumps(keras_form))}


def _importable(obj):
    """[module, attribute path] that imports `obj` on the instance, or None."""
    if inspect.ismodule(obj):
        return [obj.__name__, ""]
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not module or not qualname or module == "__main__" or "<locals>" in qualname:
        return None
    return [module, qualname]


def _data(value, what):
    if isinstance(value, np.generic):
        value = value.item()
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        raise ValueError(f"{what} is a {type(value).__name__}, which cannot travel to the instance") from None


def _state(cb):
    """What tells two callbacks' settings apart: their attributes, functions
    by their code (a lambda made by the same line is the same)."""
    out = {}
    for k, v in vars(cb).items():
        if k in ("model", "params", "validation_data"):
            continue
        out[k] = getattr(v, "__code__", v)
    return out
