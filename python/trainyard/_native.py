"""Finds and loads the native client module (_yard*.so) and the `yard`
binary it starts the embedded server with."""
import glob
import importlib.util
import os
import shutil
import sys
from pathlib import Path

_PKG = Path(__file__).resolve().parent
_REPO = _PKG.parents[1]
_module = None


def yard_binary():
    """The `yard` executable: $YARD_BIN, else <repo>/build/yard, else PATH."""
    env = os.environ.get("YARD_BIN")
    if env:
        return str(Path(env).resolve())
    for cand in (_REPO / "build" / "yard",):
        if cand.is_file() and os.access(cand, os.X_OK):
            return str(cand)
    found = shutil.which("yard")
    if found:
        return found
    raise RuntimeError("cannot find the `yard` binary: set YARD_BIN or build the project "
                       "(bash scripts/setup.sh)")


def _candidates():
    dirs = []
    if os.environ.get("TRAINYARD_NATIVE_DIR"):
        dirs.append(Path(os.environ["TRAINYARD_NATIVE_DIR"]))
    if os.environ.get("YARD_BIN"):
        dirs.append(Path(os.environ["YARD_BIN"]).resolve().parent / "python" / "trainyard_native")
    dirs.append(_PKG)
    dirs.append(_REPO / "build" / "python" / "trainyard_native")
    return dirs


def native():
    """The trainyard._yard module (connect, Client, ArtifactMirror, YardError)."""
    global _module
    if _module is not None:
        return _module
    tried = []
    for d in _candidates():
        for path in sorted(glob.glob(str(d / "_yard*.so"))):
            spec = importlib.util.spec_from_file_location("trainyard._yard", path)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            sys.modules["trainyard._yard"] = mod
            _module = mod
            return mod
        tried.append(str(d))
    raise ImportError("trainyard's native client (_yard*.so) was not found in " + ", ".join(tried) +
                      ": build it with `cmake --build build --target yard_python_binding`")
