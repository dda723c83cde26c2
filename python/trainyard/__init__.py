"""Trainyard's Python SDK: ship a Keras or TorchScript model and its data to
another machine, watch it train, get the trained model back.

    from trainyard import online_fit, offline_fit, attach
    job_id, model, history = online_fit(model, X, Y, epochs=5, batch_size=32)

A thin face over the C++ client (trainyard._yard, pybind11); see
docs/python.md.
"""

__version__ = "0.1.0"

__all__ = ["online_fit", "offline_fit", "attach", "Training", "History", "__version__"]


def __getattr__(name):
    # Lazy, so that the instance-side runner (`python3 -m trainyard.runner`)
    # never needs the native client.
    if name in ("online_fit", "offline_fit", "attach", "History"):
        from trainyard import fit
        return getattr(fit, name)
    if name == "Training":
        from trainyard import fit

        class Training:  # aibro-style namespace: Training.online_fit(...)
            online_fit = staticmethod(fit.online_fit)
            offline_fit = staticmethod(fit.offline_fit)
            attach = staticmethod(fit.attach)
        return Training
    raise AttributeError(name)
