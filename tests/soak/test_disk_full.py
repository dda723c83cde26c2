"""YARD_HOME on a small tmpfs that fills up while a job runs (issue 15): the
errors say what is full, the store stays whole, and once space returns the
server serves again and the job's output is complete."""
import hashlib
import json
import os
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from soak import Server, Soak, Size, log, wait_for

TMPFS_MB = 96


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_MB}m", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs for YARD_HOME (needs root or CAP_SYS_ADMIN): "
                    f"{proc.stderr.strip()}")
    yield mnt
    for _ in range(50):
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode == 0:
            break
        time.sleep(0.2)  # a process of the test may still hold a file open
    else:
        subprocess.run(["umount", "-l", str(mnt)])


def fill(path):
    """Writes `path` until the disk is full; returns its size."""
    block = b"\0" * (1 << 20)
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(block)
        except OSError:
            pass
    return path.stat().st_size


def put_new_chunk(url, token):
    """PUTs a chunk the server has not seen; its HTTP status and error (None
    and why when no server answers)."""
    data = os.urandom(1 << 20)
    req = urllib.request.Request(f"{url}/v1/blobs/{hashlib.sha256(data).hexdigest()}", data=data,
                                 method="PUT", headers={"Authorization": f"Bearer {token}",
                                                        "Content-Type": "application/octet-stream"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, {}
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())["error"]
    except urllib.error.URLError as e:  # no server listening
        return None, str(e)


def keep_logs(home, dest):
    """The server's and agents' logs, kept off the tmpfs for a failed test."""
    dest.mkdir(parents=True, exist_ok=True)
    for f in [*home.glob("*.log"), *home.glob("instances/*/agent.log")]:
        (dest / f"{f.parent.name}-{f.name}").write_bytes(f.read_bytes())
    log(f"logs kept in {dest}")


def test_disk_full_during_a_run(small_disk, tmp_path):
    size = Size(jobs=1, server_kills=0, agent_kills=0, lines=1500, pace_s=0.01, every=100, seed=7)
    soak = Soak(size, tmp_path / "run", home=small_disk / "home")
    try:
        soak.server.start()
        soak.submit_all()
        job_id = next(iter(soak.jobs))
        wait_for(lambda: soak.states()[job_id]["state"] == "running", timeout=120,
                 what="the job to run")
        filler = small_disk / "filler"
        log(f"filled the disk with {fill(filler) >> 20} MiB")
        time.sleep(3)
        url, token = soak.server.info()["url"], (soak.home / "token").read_text().strip()
        # While full: a submit fails saying what is full. As a shared
        # server's client (YARD_SERVER): a `yard` that found no server would
        # start an embedded one beside the soak's.
        env = dict(soak.env, YARD_SERVER=url, YARD_TOKEN=token)
        proc = subprocess.run([str(soak.yard_path), "submit", "job.py", "-m", "local-1cpu"],
                              cwd=soak.project, env=env, capture_output=True, text=True, timeout=120)
        log(f"submit while full: exit {proc.returncode}: {proc.stderr.strip()[-600:]}")
        assert proc.returncode != 0
        # A server whose change could not be stored stops (its memory would be
        # ahead of its store), saying why; its supervisor starts it again.
        try:
            soak.server.proc.wait(timeout=2)  # it stops 0.3 s after its answer
        except subprocess.TimeoutExpired:
            pass
        exited = soak.server.proc.poll()
        server_log = (soak.home / "soak-server.log").read_text()
        log(f"server while full: {'exited ' + str(exited) if exited is not None else 'running'}")
        if exited is not None:
            assert exited == 75, server_log[-2000:]
            assert "is full" in server_log and "not stored; stopping" in server_log, server_log[-2000:]
        if "is the server running" not in proc.stderr:  # it answered: with the reason
            assert "the server's disk is full (HTTP 507): " in proc.stderr, proc.stderr
            assert f"the disk holding {soak.home}" in proc.stderr and "Free space there" in proc.stderr, proc.stderr
        # Space returns: the job ends and everything it printed is stored.
        filler.unlink()
        if soak.server.proc.poll() is not None:
            soak.server.start()
        soak.wait_all_ended()
        # The job ran on the same full disk: it may have failed writing its
        # checkpoint (its own clear error), but all it printed is stored, once, in order.
        job = soak.states()[job_id]
        text = soak.check_events(job_id, job)
        log(f"the job during the full disk: {job['state']}: {job.get('message')}")
        if job["state"] != "succeeded":
            assert "No space left on device" in text, text[-2000:]
            text = text[:text.index("Traceback")] if "Traceback" in text else text
        lines = text.splitlines()
        nonce = lines[0].split()[1]
        assert lines == [f"START {nonce} 0"] + [f"{nonce} {i}" for i in range(len(lines) - 1)] or \
            job["state"] == "succeeded", text[-2000:]
        assert not soak.figures.problems, soak.figures.problems
        # The server serves again: a new job runs whole, and every check holds.
        before = set(soak.jobs)
        soak.submit_all(first=1)
        soak.wait_all_ended()
        soak.check(only=set(soak.jobs) - before)
        assert not soak.figures.problems, soak.figures.problems
        # Full again, now with nothing running (so the server stays up): an
        # upload is a 507 (the server's disk; 413 is for a request too
        # large) naming the folder that is full and what to do, and a
        # submit prints it as the server's.
        log(f"filled the disk again with {fill(filler) >> 20} MiB")
        url = soak.server.info()["url"]
        status, err = put_new_chunk(url, token)
        log(f"upload while full: {status}: {err}")
        blobs = soak.home / "blobs"
        assert status == 507 and err["code"] == "insufficient_storage", (status, err)
        assert f"the disk holding {blobs} is full. Free space there (`df -h {blobs}`" in err["message"], err
        (soak.project / "fresh.py").write_bytes(os.urandom(1 << 20).hex().encode())  # a new chunk
        proc = subprocess.run([str(soak.yard_path), "submit", "fresh.py", "-m", "local-1cpu"],
                              cwd=soak.project, env=dict(env, YARD_SERVER=url), capture_output=True,
                              text=True, timeout=120)
        log(f"submit while full again: exit {proc.returncode}: {proc.stderr.strip()[-600:]}")
        assert proc.returncode != 0
        assert proc.stderr.startswith("yard: ") and "the server's disk is full (HTTP 507): " in proc.stderr, proc.stderr
        assert f"the disk holding {blobs} is full" in proc.stderr, proc.stderr
        filler.unlink()
    finally:
        soak.agents.stop()
        soak.stop_everything()
        keep_logs(small_disk / "home", tmp_path / "logs")
    db = sqlite3.connect(small_disk / "home" / "state.db")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
