"""Notebooks as jobs: `yard fit model-dev.ipynb` runs the code cells in order
on the instance, streams each cell's output as it runs, and returns the
executed notebook among the job's outputs."""
import json
import subprocess
import sys
import threading
from pathlib import Path

import nbformat

from conftest import REPO, wait_for

RUNNER = REPO / "python" / "trainyard" / "notebook_runner.py"


def write_notebook(path, *sources):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# experiment")]
    nb.cells += [nbformat.v4.new_code_cell(src) for src in sources]
    nbformat.write(nb, str(path))


def code_cells(path):
    nb = nbformat.read(str(path), as_version=4)
    nbformat.validate(nb)
    return [c for c in nb.cells if c.cell_type == "code"]


def text_of(cell):
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


class Lines:
    """Collects a process's stdout lines on a thread, so a test can wait for one."""

    def __init__(self, stream):
        self.lines = []
        self._t = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._t.start()

    def _read(self, stream):
        for line in stream:
            self.lines.append(line.decode(errors="replace"))

    def seen(self, text):
        return any(text in l for l in self.lines)


def test_three_cells_stream_live_and_come_back_executed(yard, project, tmp_path):
    # "go" in the job's working folder: a confined job sees no other folder here.
    go = "go"
    write_notebook(project / "model-dev.ipynb",
                   "import sys\nprint('cell-one ran', sys.argv[1:])",
                   "x = 6 * 7\nx",
                   "import os, time\n"
                   f"deadline = time.time() + 60\n"
                   f"while not os.path.exists({str(go)!r}) and time.time() < deadline:\n"
                   "    time.sleep(0.05)\n"
                   f"print('cell-three saw the file:', os.path.exists({str(go)!r}))")
    proc = yard.start("fit", "model-dev.ipynb", "-m", "local", "--out-dir", "nbout",
                      "--", "--lr", "0.1", cwd=project)
    out = Lines(proc.stdout)
    # Cell 3 cannot finish before the file exists, and the file is made only
    # once cell 1's output has reached this terminal: output is live.
    wait_for(lambda: out.seen("cell-one ran"), timeout=90, what="cell 1's output")
    assert not out.seen("cell-three saw the file")
    work = wait_for(lambda: next(iter((yard.home / "instances").glob("*/jobs/*/work")), None), timeout=30,
                    what="the job's working folder")
    (work / go).write_text("go")
    assert proc.wait(timeout=90) == 0, "".join(out.lines) + proc.stderr.read().decode()
    out._t.join(timeout=10)
    text = "".join(out.lines)
    assert "cell-one ran ['--lr', '0.1']" in text
    assert "42" in text  # an execute_result is shown too
    assert "cell-three saw the file: True" in text

    mirrored = code_cells(project / "nbout" / "model-dev.ipynb")
    assert [c.execution_count for c in mirrored] == [1, 2, 3]
    assert "cell-one ran" in text_of(mirrored[0])
    assert mirrored[1].outputs[0]["data"]["text/plain"] == "42"
    assert "cell-three saw the file: True" in text_of(mirrored[2])

    job_id = yard.json("jobs")[0]["id"]
    yard.run("fetch", job_id, "--to", tmp_path / "got")
    fetched = code_cells(tmp_path / "got" / "outputs" / "model-dev.ipynb")
    # Only the notebook: no temporary file of its saves became an artifact.
    assert [p.name for p in (tmp_path / "got" / "outputs").iterdir()] == ["model-dev.ipynb"]
    assert [p.name for p in (project / "nbout").iterdir()] == ["model-dev.ipynb"]
    assert [text_of(c) for c in fetched] == [text_of(c) for c in mirrored]
    # The notebook in the project folder is left as it was.
    assert all(not c.outputs for c in code_cells(project / "model-dev.ipynb"))


def test_failing_cell_fails_the_job_with_its_traceback(yard, project, tmp_path):
    write_notebook(project / "nb.ipynb",
                   "print('before the error')",
                   "def step():\n    return 1 / 0\nstep()",
                   "print('after the error')")
    proc = yard.run("fit", "nb.ipynb", "-m", "local", cwd=project, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "before the error" in out
    assert "ZeroDivisionError" in out and "Traceback" in out and "step()" in out
    assert "cell 2/3 failed (ZeroDivisionError)" in out
    assert "after the error" not in out
    job = yard.json("jobs")[0]
    assert job["state"] == "failed"
    yard.run("fetch", job["id"], "--to", tmp_path / "got")
    cells = code_cells(tmp_path / "got" / "outputs" / "nb.ipynb")
    assert "before the error" in text_of(cells[0])
    assert cells[1].outputs[-1].output_type == "error"
    assert cells[1].outputs[-1].ename == "ZeroDivisionError"
    assert cells[2].outputs == [] and cells[2].execution_count is None


def test_cancelled_notebook_still_returns_the_cells_that_ran(yard, project, tmp_path):
    write_notebook(project / "nb.ipynb", "print('first cell done')", "import time\ntime.sleep(600)")
    job_id = yard.run("submit", "nb.ipynb", "-m", "local", cwd=project).stdout.strip()
    wait_for(lambda: "first cell done" in yard.run("logs", job_id).stdout, timeout=90,
             interval=0.2, what="the first cell's output")
    yard.run("cancel", job_id)
    yard.wait_state(job_id, "cancelled")
    yard.run("fetch", job_id, "--to", tmp_path / "got")
    cells = code_cells(tmp_path / "got" / "outputs" / "nb.ipynb")
    assert "first cell done" in text_of(cells[0])


def _nothing_launched(yard):
    return yard.json("jobs") == [] and yard.json("machines", "--all")["instances"] == []


def test_invalid_notebook_is_refused_before_any_machine(yard, project):
    (project / "broken.ipynb").write_text('{"cells": [ {"cell_type": "code", ')
    proc = yard.run("fit", "broken.ipynb", "-m", "local", cwd=project, check=False)
    assert proc.returncode == 1
    assert "broken.ipynb is not valid JSON" in proc.stderr, proc.stderr
    assert _nothing_launched(yard)

    (project / "old.ipynb").write_text(json.dumps({"nbformat": 3, "worksheets": []}))
    proc = yard.run("submit", "old.ipynb", "-m", "local", cwd=project, check=False)
    assert proc.returncode == 1
    assert "old.ipynb is nbformat 3" in proc.stderr and "nbconvert" in proc.stderr
    (project / "nocells.ipynb").write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5}))
    proc = yard.run("fit", "nocells.ipynb", "-m", "local", cwd=project, check=False)
    assert proc.returncode == 1 and "no `cells` list" in proc.stderr
    assert _nothing_launched(yard)


def test_runner_without_jupyter_says_what_to_install(tmp_path):
    write_notebook(tmp_path / "nb.ipynb", "print('hi')")
    # -S: no site-packages, so neither nbclient nor ipykernel can be imported.
    proc = subprocess.run(["/usr/bin/python3", "-S", str(RUNNER), "nb.ipynb"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "needs nbformat, nbclient, ipykernel" in proc.stderr
    assert "pip install nbclient nbformat ipykernel" in proc.stderr
    assert "python3-nbclient" in proc.stderr


def test_runner_uses_this_python_not_the_notebooks_kernelspec(tmp_path):
    """The kernel is ipykernel on the interpreter that runs the runner (the
    job's venv), whatever kernelspec the notebook or the system names."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "some-conda-env", "display_name": "x", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("import sys\nprint('kernel', sys.executable)")]
    nbformat.write(nb, str(tmp_path / "nb.ipynb"))
    proc = subprocess.run([sys.executable, str(RUNNER), "nb.ipynb"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"kernel {sys.executable}" in proc.stdout
    assert (tmp_path / "outputs" / "nb.ipynb").exists()
