"""What a new user meets in the first hour with the CLI (issue 11): each
test is one behaviour they rely on, on the defaults they start with."""
import json
import re

from conftest import wait_for

# Holds its instance long enough for the others to find the host taken,
# well past their --wait-request.
BUSY_JOB = "import sys, time\ntime.sleep(2)\nprint('done', *sys.argv[1:])\n"


def test_concurrent_jobs_on_the_default_type_all_run(yard, project):
    (project / "train.py").write_text(BUSY_JOB)
    # No --machines and no terminal: the default type, `local` (all cores).
    ids = [yard.run("submit", "train.py", "--wait-request", "1", "--", "--batch", b,
                    cwd=project).stdout.strip() for b in ("512", "256", "128")]
    for job_id in ids:
        job = yard.wait_state(job_id, {"succeeded", "failed", "cancelled"}, timeout=120)
        assert job["state"] == "succeeded", job
    proc = yard.run("logs", ids[2], "--events")
    events = proc.stdout + proc.stderr  # decisions go to stderr
    assert "no capacity" not in events
    assert "waiting for local: its capacity is in use by other jobs" in events


def test_sweep_on_the_default_type_runs_every_job(yard, project):
    (project / "train.py").write_text(BUSY_JOB)
    proc = yard.run("fit", "train.py", "--sweep", "lr=0.1,0.01,0.001", "--wait-request", "1",
                    cwd=project, timeout=180, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    listed = proc.stdout.split("\n\n")[0]  # the job ids, before the first table
    ids = [line.split()[0] for line in listed.splitlines() if line.startswith("job-")]
    assert len(ids) == 3, proc.stdout
    assert [yard.job(i)["state"] for i in ids] == ["succeeded"] * 3


def test_cli_suggests_the_nearest_command_flag_and_state(yard, project):
    (project / "train.py").write_text("print('hi')\n")
    proc = yard.run("fitt", "train.py", cwd=project, check=False)
    assert proc.returncode == 2
    assert "unknown command 'fitt'; did you mean 'fit'?" in proc.stderr
    proc = yard.run("fit", "train.py", "--machine", "local", cwd=project, check=False)
    assert proc.returncode == 2
    assert "unknown flag --machine; did you mean '--machines'?" in proc.stderr
    proc = yard.run("jobs", "--state", "runing", check=False)
    assert proc.returncode == 1
    assert "--state runing is not a job state; did you mean 'running'?" in proc.stderr
    assert "waiting, requesting, starting, running, succeeded, failed, cancelled" in proc.stderr


def test_unknown_machine_type_is_refused_before_the_upload(yard, project):
    (project / "train.py").write_text("print('hi')\n")
    proc = yard.run("fit", "train.py", "--machines", "lcoal", cwd=project, check=False)
    assert proc.returncode == 1
    assert "unknown machine type 'lcoal'; did you mean 'local'?" in proc.stderr
    assert "sent" not in proc.stderr and "sending" not in proc.stderr, proc.stderr
    assert yard.json("jobs") == []


def test_a_job_is_named_by_a_unique_prefix_or_dash_for_the_newest(yard, project):
    (project / "train.py").write_text("print('hi')\n")
    first = yard.run("submit", "train.py", cwd=project).stdout.strip()
    yard.wait_state(first, "succeeded")
    second = yard.run("submit", "train.py", cwd=project).stdout.strip()
    yard.wait_state(second, "succeeded")
    assert json.loads(yard.run("status", "-", "--json").stdout)["id"] == second
    hex_part = first[len("job-"):]
    prefix = next(hex_part[:n] for n in range(1, len(hex_part) + 1)
                  if not second[len("job-"):].startswith(hex_part[:n]))
    assert json.loads(yard.run("status", prefix, "--json").stdout)["id"] == first
    assert "hi" in yard.run("logs", "job-" + prefix).stdout
    proc = yard.run("status", "job-", check=False)
    assert proc.returncode == 1 and "starts several job ids" in proc.stderr


def test_tensorflow_start_up_lines_are_quiet_unless_the_user_asks(yard, project):
    (project / "train.py").write_text("import os\nprint('level', os.environ.get('TF_CPP_MIN_LOG_LEVEL'))\n")
    assert "level 2" in yard.run("fit", "train.py", cwd=project).stdout
    assert "level 0" in yard.run("fit", "train.py", "-e", "TF_CPP_MIN_LOG_LEVEL=0", cwd=project).stdout
    env = dict(yard.env, TF_CPP_MIN_LOG_LEVEL="1")
    assert "level 1" in yard.run("fit", "train.py", cwd=project, env=env).stdout


def test_a_metric_line_never_glues_onto_an_unfinished_output_line(yard, project):
    # Prints half a line, then a metric (shown by `yard fit` on stderr), then
    # the rest of the line: with both streams in one file the metric line
    # must start on a line of its own.
    (project / "train.py").write_text(
        "import json, os, sys, time\n"
        "print('final val_accuracy 0.9667 (0.2s training)', end='', flush=True)\n"
        "time.sleep(1)\n"
        "open(os.environ['YARD_METRICS'], 'a').write(json.dumps({'epoch': 10, 'loss': 0.1}) + '\\n')\n"
        "time.sleep(1.5)\n"
        "print(' done')\n")
    import subprocess
    from conftest import YARD
    proc = subprocess.run([str(YARD), "fit", "train.py"], cwd=project, env=yard.env, timeout=120,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.returncode == 0, proc.stdout
    metric = [line for line in proc.stdout.splitlines() if "yard: metric" in line]
    assert metric == ["yard: metric epoch=10 loss=0.1"], proc.stdout


def test_pytorch_digits_example_does_not_import_tensorflow(tmp_path):
    import re
    import subprocess
    from conftest import REPO, VENV_BIN
    proc = subprocess.run([str(VENV_BIN / "python"), "-X", "importtime", str(REPO / "examples" / "digits" / "train.py"),
                           "--epochs", "1"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "outputs" / "tb").is_dir()
    imported = [line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")]
    assert not [m for m in imported if re.fullmatch(r"tensorflow(\..*)?", m)]


FIT_PROMPT = r"\[d\]etach \(the job goes on\), \[c\]ancel the job, or \[w\]atch on\? \[d/c/w\] "


def spawn_fit(yard, project):
    import pytest
    pexpect = pytest.importorskip("pexpect")
    from conftest import YARD
    return pexpect, pexpect.spawn(str(YARD), ["fit", "train.py", "--machines", "local"], cwd=str(project),
                                  env=yard.env, encoding="utf-8", timeout=120, dimensions=(40, 200))


def test_ctrl_c_question_in_yard_fit_goes_away_when_the_job_ends(yard, project):
    (project / "train.py").write_text("import time\nprint('started', flush=True)\ntime.sleep(4)\n"
                                      "print('finished')\nraise SystemExit(3)\n")
    pexpect, child = spawn_fit(yard, project)
    child.expect("started")
    child.sendintr()
    child.expect(FIT_PROMPT)
    child.expect(r"\(the job ended meanwhile\)")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 3  # the job's own, as without the Ctrl-C
    assert "Traceback" not in child.before


def test_second_ctrl_c_in_yard_fit_cancels_the_job(yard, project):
    (project / "train.py").write_text("import time\nprint('started', flush=True)\ntime.sleep(1000)\n")
    pexpect, child = spawn_fit(yard, project)
    child.expect("started")
    child.sendintr()
    child.expect(FIT_PROMPT)
    child.sendintr()
    child.expect(r"cancelling (job-\S+)")
    job_id = child.match.group(1)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130
    assert yard.job(job_id)["state"] == "cancelled"


def test_yard_init_run_sh_is_the_entry_point_so_an_edited_one_runs(yard, project):
    (project / "train.py").write_text("import sys\nprint('train', sys.argv[1:])\n")
    yard.run("init", "train.py", "--machines", "local", "--", "--lr", "0.1", cwd=project)
    run_sh = (project / "run.sh").read_text()
    (project / "run.sh").write_text(run_sh.replace("exec ", "echo edited run.sh\nexec ", 1))
    (project / "Dockerfile").unlink()  # without an image; test_images builds one through run.sh
    out = yard.run("fit", cwd=project).stdout
    assert "edited run.sh" in out and "train ['--lr', '0.1']" in out
    out = yard.run("fit", "train.py", "--", "--lr", "0.5", cwd=project).stdout
    assert "edited run.sh" in out and "train ['--lr', '0.5']" in out


def test_yard_init_dockerfile_installs_what_the_script_imports(yard, project):
    scripts = {
        "keras_train.py": "import numpy as np\nfrom tensorflow import keras\n",
        "torch_train.py": "import torch\nfrom torch import nn\n",
        "model-dev.ipynb": json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
            {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
             "source": ["import tensorflow as tf\n", "print(tf.__version__)\n"]}]}),
        "plain.py": "print('no framework')\n",
    }
    dockerfiles = {}
    for name, text in scripts.items():
        (project / name).write_text(text)
        yard.run("init", name, "--force", cwd=project)
        dockerfiles[name] = (project / "Dockerfile").read_text()
    assert "pip install --no-cache-dir tensorflow-cpu==2.15.1" in dockerfiles["keras_train.py"]
    assert "python3-numpy" in dockerfiles["keras_train.py"]
    assert "python3-torch" in dockerfiles["torch_train.py"]
    assert "tensorflow" not in dockerfiles["torch_train.py"]
    nb = dockerfiles["model-dev.ipynb"]
    assert "python3-nbclient" in nb and "python3-ipykernel" in nb and "tensorflow-cpu==2.15.1" in nb
    assert "RUN" not in dockerfiles["plain.py"]
    yard.run("init", "model-dev.ipynb", "--force", cwd=project)
    assert "exec python3 .yard/notebook_runner.py 'model-dev.ipynb' \"$@\"" in (project / "run.sh").read_text()


def test_sweep_mirrors_each_job_into_its_folder_and_shows_printed_epoch_metrics(yard, project):
    # A Keras-style script that prints its epochs and never writes $YARD_METRICS.
    (project / "train.py").write_text(
        "import argparse, os\n"
        "p = argparse.ArgumentParser(); p.add_argument('--lr'); a = p.parse_args()\n"
        "open(os.path.join(os.environ['YARD_CHECKPOINT_DIR'], 'ckpt.txt'), 'w').write(a.lr)\n"
        "open('result.txt', 'w').write(a.lr)\n"
        "print('Epoch 1/1')\n"
        "print('4/4 [==============================] - 0s 2ms/step - loss: 0.5000 - accuracy: 0.7500')\n")
    proc = yard.run("fit", "train.py", "--sweep", "lr=0.1,0.01", "--ckpt-dir", "ckpt", cwd=project,
                    timeout=180)
    for lr in ("0.1", "0.01"):
        assert (project / "ckpt" / f"lr={lr}" / "ckpt.txt").read_text() == lr
    final = proc.stdout.split("JOB")[-1]
    assert final.count("accuracy=0.75 epoch=1 loss=0.5") == 2, proc.stdout
    # What each job wrote beside its script is offered back, job by job.
    for job_id in [line.split()[0] for line in final.splitlines() if line.startswith("job-")]:
        offer = rf"yard: {job_id} wrote 1 file \([34] B\) in its working folder: `yard fetch {job_id} --all`"
        assert re.search(offer, proc.stderr), proc.stderr


def test_files_the_job_writes_beside_its_script_are_listed_and_fetched_with_all(yard, project):
    # A script that saves its model beside itself (no $YARD_OUTPUT_DIR) and
    # appends to a file of the bundle; the helper module it imports leaves a
    # __pycache__ and the data file it reads stays as sent.
    (project / "helper.py").write_text("MODEL = b'weights' * 1000\n")
    (project / "data.csv").write_text("x,y\n1,2\n")
    (project / "notes.txt").write_text("sent\n")
    (project / "train.py").write_text(
        "import helper\n"
        "open('data.csv').read()\n"
        "open('model.keras', 'wb').write(helper.MODEL)\n"
        "open('notes.txt', 'a').write('trained\\n')\n")
    proc = yard.run("fit", "train.py", cwd=project)
    job_id = yard.json("jobs")[0]["id"]
    assert "yard: the job wrote 2 files in its working folder:" in proc.stderr, proc.stderr
    offer = proc.stderr[proc.stderr.index("in its working folder"):]
    assert "model.keras  6.8 KiB" in offer and "notes.txt" in offer, offer
    for unchanged in ("train.py", "helper.py", "data.csv", "__pycache__"):
        assert unchanged not in offer, offer
    assert f"fetch them with `yard fetch {job_id} --all`" in offer, offer

    plain = yard.run("fetch", job_id, "--to", "plain", cwd=project)
    assert not (project / "plain" / "work").exists()
    assert f"`yard fetch {job_id} --all`" in plain.stderr, plain.stderr
    yard.run("fetch", job_id, "--all", "--to", "all", cwd=project)
    work = project / "all" / "work"
    assert (work / "model.keras").read_bytes() == b"weights" * 1000
    assert (work / "notes.txt").read_text() == "sent\ntrained\n"
    assert sorted(p.name for p in work.iterdir()) == ["model.keras", "notes.txt"]
