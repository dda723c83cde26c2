"""Fixtures for the Python SDK tests: a YARD_HOME per test module (its own
embedded server and local agents, started by the SDK itself), the `yard`
binary from YARD_BIN (default: build/yard, else build-py/yard), and the
digits data set split once."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from waiting import kill_matching, pid_alive, processes_matching, wait_for  # noqa: E402,F401

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"


def _default_yard():
    for build in ("build", "build-py"):
        if (REPO / build / "yard").exists() and list((REPO / build / "python" / "trainyard_native").glob("_yard*.so")):
            return REPO / build / "yard"
    return REPO / "build" / "yard"


YARD = Path(os.environ.get("YARD_BIN") or _default_yard()).resolve()
os.environ["YARD_BIN"] = str(YARD)
# yard-train beside yard (the agent puts yard's folder on the job's PATH).
YARD_TRAIN = Path(os.environ.get("YARD_TRAIN") or YARD.parent / "yard-train")
# Jobs run `python3` from the instance's PATH: the project's venv, where
# `import trainyard` works too.
# yard-train's folder goes last: the agent puts the folder of its own `yard`
# first on a job's PATH, so a yard-train built beside yard wins.
os.environ["PATH"] = f"{VENV_BIN}:{os.environ.get('PATH', '')}"
if YARD_TRAIN.parent.resolve() != YARD.parent:
    os.environ["PATH"] += f":{YARD_TRAIN.parent}"
os.environ.pop("YARD_SERVER", None)
os.environ.pop("YARD_TOKEN", None)
sys.path.insert(0, str(REPO / "python"))
os.environ["PYTHONPATH"] = str(REPO / "python") + (":" + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")






class Home:
    """One YARD_HOME, made current for the SDK (os.environ) while in use."""

    def __init__(self, path: Path):
        self.path = path
        path.mkdir(parents=True, exist_ok=True)

    def env(self, **extra):
        env = dict(os.environ)
        env["YARD_HOME"] = str(self.path)
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def yard(self, *args, check=True, timeout=120):
        proc = subprocess.run([str(YARD), *map(str, args)], env=self.env(), capture_output=True,
                              text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"yard {args} exited {proc.returncode}: {proc.stderr[-2000:]}")
        return proc

    def client(self):
        from trainyard import fit
        return fit._connect()

    def events(self, job_id):
        out = []
        self.client().follow_events(job_id, 0, False, lambda text: out.append(json.loads(text)))
        return out

    def jobs(self):
        return json.loads(self.client().get("/v1/jobs"))["jobs"]

    def stop_everything(self):
        kill_matching(str(self.path))


def use_home(tmp_path_factory, name, catalog=None):
    home = Home(tmp_path_factory.mktemp(name) / "home")
    if catalog is not None:
        (home.path / "catalog.json").write_text(json.dumps(catalog))
    old = os.environ.get("YARD_HOME")
    os.environ["YARD_HOME"] = str(home.path)
    return home, old


def release_home(home, old):
    home.stop_everything()
    if old is None:
        os.environ.pop("YARD_HOME", None)
    else:
        os.environ["YARD_HOME"] = old


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    h, old = use_home(tmp_path_factory, "yard")
    yield h
    release_home(h, old)


@pytest.fixture(scope="session")
def digits():
    from sklearn.datasets import load_digits
    d = load_digits()
    x = (d.data / 16.0).astype("float32")
    y = d.target.astype("int64")
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    x, y = x[order], y[order]
    return x[:1400], y[:1400], x[1400:], y[1400:]


def tb_scalars(log_dir, tag_candidates):
    """{tag: [values by step]} from every event file under log_dir, read by
    TensorBoard's EventAccumulator (scalars, or Keras' tensor summaries)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util
    out = {}
    for f in sorted(Path(log_dir).rglob("events.out.tfevents.*")):
        ea = EventAccumulator(str(f), size_guidance={"scalars": 0, "tensors": 0})
        ea.Reload()
        tags = ea.Tags()
        for tag in tag_candidates:
            rel = str(f.parent.relative_to(log_dir))
            key = tag if rel == "." else f"{rel}/{tag}"
            if tag in tags.get("scalars", []):
                out[key] = [e.value for e in sorted(ea.Scalars(tag), key=lambda e: e.step)]
            elif tag in tags.get("tensors", []):
                out[key] = [float(tensor_util.make_ndarray(e.tensor_proto))
                            for e in sorted(ea.Tensors(tag), key=lambda e: e.step)]
    return out
