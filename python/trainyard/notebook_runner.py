"""Runs a Jupyter notebook as a Trainyard job: `python3 notebook_runner.py
NOTEBOOK [ARGS...]`.

Executes the code cells in order in a fresh kernel of this Python (so the
job's venv applies), printing each output as it arrives, and writes the
executed notebook to $YARD_OUTPUT_DIR/<name>.ipynb (./outputs/ outside a
job) after every cell, so a job that is killed still returns what ran. The
first failing cell stops the run: its traceback is printed and the exit
code is 1. ARGS become the kernel's sys.argv[1:].

Self-contained on purpose: `yard fit x.ipynb` ships this file inside the
job's bundle (.yard/notebook_runner.py, embedded in the yard binary), since
the instance may not have the trainyard package. It needs only nbclient,
nbformat and ipykernel there.
"""
import json
import os
import re
import signal
import sys

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_MISSING_HELP = ("yard: running a notebook needs {what} on the instance: "
                 "`pip install nbclient nbformat ipykernel` (Debian: `apt install python3-nbclient "
                 "python3-ipykernel`), or list them in the job's requirements.txt / environment.yml")


def _say(text):
    print(f"yard: {text}", flush=True)


def _require_jupyter():
    """Exits 2, saying what to install, when a Jupyter piece is missing."""
    import importlib.util
    missing = [m for m in ("nbformat", "nbclient", "ipykernel", "jupyter_client")
               if importlib.util.find_spec(m) is None]
    if missing:
        print(_MISSING_HELP.format(what=", ".join(missing)), file=sys.stderr, flush=True)
        sys.exit(2)


def _plain(text):
    return _ANSI.sub("", text)


def _show(output):
    """Prints one output of a cell the moment it arrives."""
    kind = output.get("output_type")
    if kind == "stream":
        stream = sys.stderr if output.get("name") == "stderr" else sys.stdout
        stream.write(output.get("text", ""))
        stream.flush()
    elif kind in ("execute_result", "display_data"):
        data = output.get("data", {})
        if "text/plain" in data:
            text = data["text/plain"]
            print(text if isinstance(text, str) else "".join(text), flush=True)
        else:
            print(f"[{', '.join(sorted(data)) or 'empty'} output]", flush=True)
    elif kind == "error":
        print(_plain("\n".join(output.get("traceback", []))), file=sys.stderr, flush=True)


def _save(nb, path):
    """Writes `nb` to `path` atomically. The temporary file sits beside the
    output folder, not in it: the artifact watcher would sync it too."""
    import nbformat
    folder, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(os.path.dirname(folder), f".{name}.yard-tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        nbformat.write(nb, f)
    os.replace(tmp, path)


def _this_python_kernel_manager():
    """A kernel manager whose kernel is ipykernel on this interpreter, whatever
    kernelspec the notebook names or the system installs (Debian's python3
    spec runs /usr/bin/python3, which would miss the job's venv)."""
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    class ThisPython(KernelSpecManager):
        def get_kernel_spec(self, kernel_name):
            return KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher", "-f",
                                    "{connection_file}"],
                              display_name="Python 3 (yard job)", language="python")

    class Manager(AsyncKernelManager):
        def __init__(self, **kw):
            kw.setdefault("kernel_spec_manager", ThisPython())
            super().__init__(**kw)

    return Manager


def _client_class():
    from nbclient import NotebookClient

    class StreamingClient(NotebookClient):
        """Prints each output the moment the kernel sends it."""

        def output(self, outs, msg, display_id, cell_index):
            out = super().output(outs, msg, display_id, cell_index)
            if out is not None:
                _show(out)
            return out

    return StreamingClient


def run(path, args, out_path, shown_as):
    # The kernel inherits this: without it, debugpy warns about frozen modules on 3.11.
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    import nbformat
    from nbclient.exceptions import CellExecutionError, DeadKernelError
    nb = nbformat.read(path, as_version=4)
    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.source.strip()]
    for cell in nb.cells:  # a stale run's outputs must not pass for this one's
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    failed = {}

    def on_start(cell, cell_index):
        if cell_index in code:
            _say(f"cell {code.index(cell_index) + 1}/{len(code)} (notebook cell {cell_index + 1})")

    def on_executed(cell, cell_index, execute_reply):
        _save(nb, out_path)

    def on_error(cell, cell_index, execute_reply):
        failed.update(index=cell_index, ename=execute_reply["content"].get("ename", "error"))

    # While cells run, nbclient takes SIGTERM itself: it shuts the kernel down
    # and the run ends in DeadKernelError below, which saves. This covers the
    # moments before and after.
    def on_term(signum, frame):
        _save(nb, out_path)
        os._exit(128 + signum)

    async def on_notebook_start(notebook):  # the kernel is up: give it our argv
        argv = json.dumps([os.path.basename(path), *args])
        await client.kc.execute_interactive(f"import sys; sys.argv = {argv}", silent=True,
                                            store_history=False, timeout=60)

    signal.signal(signal.SIGTERM, on_term)
    client = _client_class()(
        nb, kernel_name="python3", kernel_manager_class=_this_python_kernel_manager(),
        timeout=None, resources={"metadata": {"path": os.path.dirname(os.path.abspath(path))}},
        on_notebook_start=on_notebook_start, on_cell_start=on_start,
        on_cell_executed=on_executed, on_cell_error=on_error)
    _say(f"notebook {path}: {len(code)} code cells; executed copy: {shown_as}")
    try:
        client.execute()
    except CellExecutionError:
        _save(nb, out_path)
        where = failed.get("index", -1)
        _say(f"cell {code.index(where) + 1 if where in code else '?'}/{len(code)} failed "
             f"({failed.get('ename', 'error')}); the notebook stops there. Executed copy: {shown_as}")
        return 1
    except DeadKernelError as e:
        _save(nb, out_path)
        _say(f"the kernel died ({e}); executed copy up to there: {shown_as}")
        return 1
    _save(nb, out_path)
    _say(f"notebook done; executed copy: {shown_as}")
    return 0


def main(argv):
    if len(argv) < 1 or not argv[0].endswith(".ipynb"):
        print("usage: notebook_runner.py NOTEBOOK.ipynb [ARGS...]", file=sys.stderr)
        return 2
    _require_jupyter()
    path, args = argv[0], argv[1:]
    name = os.path.basename(path)
    out_dir = os.environ.get("YARD_OUTPUT_DIR") or "outputs"
    os.makedirs(out_dir, exist_ok=True)
    # In a job, the user finds it as outputs/NAME (yard fetch, --out-dir).
    shown_as = f"outputs/{name}" if os.environ.get("YARD_OUTPUT_DIR") else os.path.join(out_dir, name)
    return run(path, args, os.path.join(out_dir, name), shown_as)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
