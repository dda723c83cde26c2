"""The SDK's live view keeps the embedded server alive as the CLI does:
`trainyard.attach` (the live view of online_fit too) that finds the server
gone starts it again and goes on from the last event it had."""
import json
import os
import signal
import subprocess
import sys
import threading

import pytest

from conftest import pid_alive, processes_matching, wait_for

SEGMENT = 10000

# Prints READY, then 2 segments of numbered lines, each after its release
# file appears in the job's working folder.
JOB = r'''
import os, sys, time
print("READY", os.getcwd(), flush=True)
for seg in range(2):
    while not os.path.exists(f"release-{seg}"):
        time.sleep(0.02)
    for i in range(seg * 10000, (seg + 1) * 10000):
        sys.stdout.write(f"line {i}\n")
    sys.stdout.flush()
'''


@pytest.fixture
def followers(home):
    """Followers the test starts; ended before the home fixture stops its
    processes, so that none outlives a failed test and revives its server."""
    procs = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_attach_restarts_a_killed_embedded_server(home, tmp_path, followers):
    project = tmp_path / "project"
    project.mkdir()
    (project / "job.py").write_text(JOB)
    submitted = subprocess.run([os.environ["YARD_BIN"], "submit", "job.py"], cwd=project,
                               env=home.env(), capture_output=True, text=True, timeout=120)
    assert submitted.returncode == 0, submitted.stderr
    job_id = home.jobs()[0]["id"]
    attach = subprocess.Popen([sys.executable, "-c", f"import trainyard; trainyard.attach({job_id!r})"],
                              env=home.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    followers.append(attach)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(attach.stdout), daemon=True)
    reader.start()

    def numbered():
        return [l for l in lines if l.startswith("line ")]

    ready = wait_for(lambda: next((l for l in lines if l.startswith("READY")), None), timeout=90,
                     what="the job's READY line at trainyard.attach")
    workdir = ready.split(None, 1)[1].strip()
    with open(os.path.join(workdir, "release-0"), "w") as f:
        f.write("go")
    wait_for(lambda: numbered(), timeout=60, what="the first lines at trainyard.attach")

    def server_pid():
        return json.loads((home.path / "server.json").read_text())["pid"]

    old = server_pid()
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: not pid_alive(old), what="the server to die")
    # Nobody else runs yard: only the SDK's live view can bring it back.
    new = wait_for(lambda: (p := server_pid()) != old and pid_alive(p) and p, timeout=60,
                   what="trainyard.attach to restart the server")
    assert processes_matching(f"server --home {home.path}") == [new]
    assert attach.poll() is None
    with open(os.path.join(workdir, "release-1"), "w") as f:
        f.write("go")

    assert attach.wait(timeout=120) == 0, attach.stderr.read()
    reader.join(timeout=30)  # the pipe's last lines
    assert not reader.is_alive()
    assert numbered() == [f"line {i}\n" for i in range(2 * SEGMENT)]
