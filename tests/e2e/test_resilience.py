"""The embedded server is ours to keep alive: clients that find it gone start
it again by themselves, exactly once, and go on from the last event they had."""
import hashlib
import os
import random
import signal
import threading
from pathlib import Path

import pytest

from conftest import wait_for, pid_alive, processes_matching

SEGMENT = 25000
SEGMENTS = 4

# Prints 4 segments of 25,000 numbered lines, each after its release file
# appears, paced so that a server kill lands while lines are flowing.
JOB = r'''
import os, random, sys, time
print("READY", os.getcwd(), flush=True)
out = sys.stdout
for seg in range(4):
    while not os.path.exists(f"release-{seg}"):
        time.sleep(0.02)
    for i in range(seg * 25000, (seg + 1) * 25000):
        out.write(f"line {i}\n")
        if i % 2500 == 2499:
            out.flush()
            time.sleep(0.05)
out.flush()
ckpt = os.environ["YARD_CHECKPOINT_DIR"]
rng = random.Random(11)
with open(os.path.join(ckpt, "final.ckpt.tmp"), "wb") as f:
    f.write(rng.randbytes(8 * 1024 * 1024))
os.rename(os.path.join(ckpt, "final.ckpt.tmp"), os.path.join(ckpt, "final.ckpt"))
print("DONE", flush=True)
'''


def collect(proc):
    """The lines `proc` prints, as they come; and the thread reading them,
    which ends at the pipe's end (join it before reading the last lines)."""
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    return lines, reader


def drained(reader):
    reader.join(timeout=60)
    return not reader.is_alive()


def numbered(lines):
    return [l for l in lines if l.startswith("line ")]


def server_processes(yard):
    return processes_matching(f"server --home {yard.home}")


@pytest.fixture
def followers(yard):
    """Followers the test starts; ended before the yard fixture stops the
    home's processes, so that none outlives a failed test and revives its server."""
    procs = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_followers_restart_a_killed_embedded_server(yard, project, tmp_path, followers):
    (project / "job.py").write_text(JOB)
    ckpt = tmp_path / "ckpt"
    fit = yard.start("fit", "job.py", "--ckpt-dir", ckpt, cwd=project, text=True)
    followers.append(fit)
    fit_lines, fit_reader = collect(fit)
    ready = wait_for(lambda: next((l for l in fit_lines if l.startswith("READY")), None),
                     timeout=90, what="the job's READY line at yard fit")
    workdir = Path(ready.split(None, 1)[1].strip())
    job_id = yard.json("jobs")[0]["id"]
    # A second follower notices each kill at the same moment as yard fit.
    logs_f = yard.start("logs", "-f", job_id, text=True)
    followers.append(logs_f)
    logs_lines, logs_reader = collect(logs_f)
    # The kills are for followers: `yard logs -f` must be following first.
    wait_for(lambda: any(l.startswith("READY") for l in logs_lines), timeout=60,
             what="the job's READY line at yard logs -f")

    for seg in range(SEGMENTS):
        (workdir / f"release-{seg}").write_text("go")
        if seg == SEGMENTS - 1:
            break
        # Kill while this segment's lines are flowing to both followers.
        wait_for(lambda: len(numbered(fit_lines)) > seg * SEGMENT, timeout=90,
                 what=f"segment {seg} to reach yard fit")
        old = yard.server_info()["pid"]
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: not pid_alive(old), what="the server to die")
        # Nobody else runs yard: only the followers can bring it back.
        new = wait_for(lambda: (p := yard.server_info()["pid"]) != old and pid_alive(p) and p,
                       timeout=60, what=f"the followers to restart the server (kill {seg + 1})")
        assert server_processes(yard) == [new], "exactly one server must run after a restart"
        assert fit.poll() is None, fit.stderr.read()
        assert logs_f.poll() is None, logs_f.stderr.read()

    assert fit.wait(timeout=240) == 0, fit.stderr.read()
    assert logs_f.wait(timeout=60) == 0, logs_f.stderr.read()
    assert drained(fit_reader) and drained(logs_reader)
    want = [f"line {i}\n" for i in range(SEGMENT * SEGMENTS)]
    assert numbered(fit_lines) == want
    assert numbered(logs_lines) == want
    expected = hashlib.sha256(random.Random(11).randbytes(8 * 1024 * 1024)).hexdigest()
    assert hashlib.sha256((ckpt / "final.ckpt").read_bytes()).hexdigest() == expected
    logs = yard.run("logs", job_id).stdout.splitlines(keepends=True)
    assert numbered(logs) == want
    assert yard.job(job_id)["state"] == "succeeded"
