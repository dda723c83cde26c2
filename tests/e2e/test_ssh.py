"""Jobs on SSH hosts through the ssh provider: two hosts in network
namespaces (ssh_hosts.py), each seeing its own empty install folder, so the
provider really copies `yard` there; a host whose sshd is stopped is a
failed attempt with its reason, and the job falls back to the next type."""
import hashlib
import json
import subprocess

import pytest

from conftest import YARD, wait_for
from ssh_hosts import SshHosts, skip_reason

JOB = ('echo "on $(hostname -I | tr -d \' \')"\n'
       'echo out > "$YARD_OUTPUT_DIR/o.txt"\n')


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    h = SshHosts(tmp_path_factory.mktemp("ssh")).start()
    yield h
    h.stop()


@pytest.fixture
def hyard(yard, hosts):
    """A yard whose server listens on the hosts' network over TLS (beyond
    loopback it must), with types ssh-a (host 0) and ssh-b (host 1): the
    agents on the hosts pin its certificate by the fingerprint their start
    script exports."""
    yard.home.mkdir(parents=True, exist_ok=True)
    settings = {"user": "root", "key": str(hosts.key), "known_hosts": str(hosts.known_hosts),
                "remote_dir": str(hosts.remote_dir), "connect_timeout_s": 3}
    types = [{"name": name, "provider": "ssh", "cpus": 1, "options": {"hosts": [{"address": hosts.address(i)}]}}
             for i, name in enumerate(("ssh-a", "ssh-b"))]
    (yard.home / "catalog.json").write_text(json.dumps(
        {"version": 1, "types": types, "providers": {"ssh": settings}}))
    with open(yard.home.parent / "server.log", "w") as log:
        server = subprocess.Popen([str(YARD), "server", "--host", hosts.gateway, "--tls", "self-signed"], env=yard.env,
                                  stdout=log, stderr=log)
    try:
        wait_for(lambda: (yard.home / "server.json").exists() and
                 yard.server_info()["url"].startswith(f"https://{hosts.gateway}:"),
                 timeout=20, what="the server to listen on the hosts' network")
        yield yard
    finally:
        hosts.kill_sessions()
        server.terminate()
        server.wait(10)


def test_job_runs_on_a_host_after_yard_is_copied_there(hyard, hosts, project):
    assert hosts.listing(1, hosts.remote_dir) == []
    (project / "job.sh").write_text(JOB)
    proc = hyard.run("fit", "job.sh", "--machines", "ssh-b", "--out-dir", project / "got", cwd=project)
    assert proc.stdout == f"on {hosts.address(1)}\n"
    assert (project / "got" / "o.txt").read_text() == "out\n"
    assert hosts.listing(1, hosts.remote_dir) == ["bin", "instances"]
    # The static build (test_portable_agent.py) goes there, as bin/yard.
    portable = YARD.parent / "yard-portable"
    assert hosts.sha256(1, hosts.remote_dir / "bin" / "yard") == hashlib.sha256(portable.read_bytes()).hexdigest()
    shim = YARD.parent / "yard-shim"  # the per-job shim goes beside it
    assert hosts.sha256(1, hosts.remote_dir / "bin" / "yard-shim") == hashlib.sha256(shim.read_bytes()).hexdigest()
    assert list(hosts.remote_dir.iterdir()) == []  # this machine's folder is not the host's
    # The same build is not copied twice: a second job starts from what is there.
    hosts.kill_sessions()
    before = hosts.listing(1, hosts.remote_dir / "bin")
    assert hyard.run("fit", "job.sh", "--machines", "ssh-b", cwd=project).stdout == f"on {hosts.address(1)}\n"
    assert hosts.listing(1, hosts.remote_dir / "bin") == before == ["yard", "yard-shim"]


def test_an_ended_instance_frees_the_hosts_disk(hyard, hosts, project):
    (project / "job.sh").write_text(JOB)
    instances = hosts.remote_dir / "instances"
    # Instances of earlier tests (no instances/ at all on a fresh host).
    before = set(hosts.listing(1, hosts.remote_dir) and hosts.listing(1, instances))
    assert hyard.run("fit", "job.sh", "--machines", "ssh-b", cwd=project).stdout == f"on {hosts.address(1)}\n"
    # The job ran with no cool-down: its instance ends, and on the host only
    # agent.log and spool/ stay of it (bundle copy, chunk cache, job folder go).
    ids = set(hosts.listing(1, instances)) - before
    assert len(ids) == 1, ids
    wait_for(lambda: all(hosts.listing(1, instances / i) == ["agent.log", "spool"] for i in ids),
             timeout=30, what="the ended instance's folder on the host to be emptied")


def test_unreachable_host_is_a_failed_attempt_and_the_job_falls_back(hyard, hosts, project):
    hosts.stop_sshd(0)
    (project / "job.sh").write_text(JOB)
    proc = hyard.run("fit", "job.sh", "--machines", "ssh-a,ssh-b", cwd=project)
    reason = f"gave up on ssh-a: cannot reach root@{hosts.address(0)}:22: "
    assert reason in proc.stderr and "Connection refused" in proc.stderr, proc.stderr
    assert "requesting ssh-b" in proc.stderr
    assert proc.stdout == f"on {hosts.address(1)}\n"
    job_id = hyard.json("jobs")[0]["id"]
    assert hyard.job(job_id)["machine_type"] == "ssh-b"
    assert reason in hyard.run("logs", job_id, "--events").stderr
