"""Jobs on SSH hosts through the ssh provider: two hosts in network
namespaces (ssh_hosts.py), each seeing its own empty install folder, so the
provider really copies `yard` there; a host whose sshd is stopped is a
failed attempt with its reason, and the job falls back to the next type."""
import hashlib
import json
import shlex
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


def test_a_login_on_a_host_runs_none_of_this_machines_rc_files(hosts):
    # Root's .bashrc here ran for every command sshd ran on a host (bash
    # reads it then), and a stale pyenv lock it touched hung every SSH test.
    # The hosts' login home is their own, empty, as on a new machine.
    out = hosts.login(0, 'echo "home=$HOME"; stat -f -c "fs=%T" "$HOME"; ls -A "$HOME"; echo end')
    assert out.splitlines() == [f"home={hosts.home}", "fs=tmpfs", "end"], out


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
    # agent.log stays of it (bundle copy, chunk cache, job folder, and the
    # spool whose records the server holds go).
    ids = set(hosts.listing(1, instances)) - before
    assert len(ids) == 1, ids
    wait_for(lambda: all(hosts.listing(1, instances / i) == ["agent.log"] for i in ids),
             timeout=30, what="the ended instance's folder on the host to be emptied")


def test_a_killed_agents_delivered_spool_is_removed_from_the_host(hyard, hosts, project):
    # An agent SIGKILLed mid-job leaves its spool file (its job never sent an
    # exit record). Once the server has every record of it, or has moved past
    # that attempt (the job was requeued), the file goes with the instance, as
    # on local instances. Before, it stayed on the host (one was 1.5 GB).
    (project / "job.sh").write_text("echo before\nwhile [ ! -e gate ]; do sleep 0.05; done\n")
    job_id = hyard.run("submit", "job.sh", "--machines", "ssh-b", "--max-restarts", "1",
                       cwd=project).stdout.strip()
    hyard.wait_state(job_id, "running", timeout=60)
    inst = hyard.job(job_id)["instance"]
    wait_for(lambda: "before" in hyard.run("logs", job_id).stdout, timeout=30, what="the job's first line")
    spool = hosts.remote_dir / "instances" / inst / "spool"
    assert hosts.listing(1, spool), "the running job's spool file"
    pid = hosts.login(1, f"pgrep -f 'instanc[e] {inst}'").split()
    assert len(pid) == 1, pid
    hosts.login(1, f"kill -KILL {pid[0]}")
    wait_for(lambda: f"instance {inst} was lost" in hyard.run("logs", job_id, "--events").stderr,
             timeout=60, what="the server to find the agent gone (heartbeat timeout)")
    hyard.run("cancel", job_id)  # its next attempt is not needed
    hyard.wait_state(job_id, "cancelled", timeout=60)
    wait_for(lambda: hosts.listing(1, hosts.remote_dir / "instances" / inst) == ["agent.log"],
             timeout=60, what="the lost instance's folder on the host to hold agent.log only")


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


def test_an_agent_started_again_in_place_gets_its_job_back(hyard, hosts, project):
    # The agent on a host is killed and started again with the same command
    # line (same instance and folder, so the same credential file) and the
    # same environment but for the bootstrap, which the agent scrubbed from
    # it (single-use: a restart presents the credential file), and the
    # server's TLS fingerprint, which a supervisor there may not know: the
    # agent kept it in its folder at its first start. It registers again
    # over TLS; its job, whose processes ended with the agent before it, is
    # requeued and runs again on the same instance as its next attempt.
    # Before, the register was answered as if nothing had happened and the
    # job stayed "running" for ever; and an agent started again without
    # YARD_SERVER_FINGERPRINT refused the server's self-signed certificate.
    (project / "job.sh").write_text(
        'echo start\nwhile [ ! -e gate ]; do sleep 0.05; done\necho done\n')
    job_id = hyard.run("submit", "job.sh", "--machines", "ssh-b", "--max-restarts", "1",
                       cwd=project).stdout.strip()
    hyard.wait_state(job_id, "running", timeout=60)
    inst = hyard.job(job_id)["instance"]
    wait_for(lambda: "start" in hyard.run("logs", job_id).stdout, timeout=30, what="the job's first line")
    pid = hosts.login(1, f"pgrep -f 'instanc[e] {inst}'").split()
    assert len(pid) == 1, pid
    argv = hosts.login(1, f"tr '\\0' '\\n' < /proc/{pid[0]}/cmdline").splitlines()
    folder = argv[argv.index("--dir") + 1]
    environ = hosts.login(1, f"tr '\\0' '\\n' < /proc/{pid[0]}/environ").splitlines()
    fingerprint = hyard.server_info()["fingerprint"]
    assert f"YARD_SERVER_FINGERPRINT={fingerprint}" in environ, environ
    assert hosts.login(1, f"stat -c %a {folder}/server-fingerprint; cat {folder}/server-fingerprint") == \
        f"600\n{fingerprint}\n", "the pin kept beside the credential"
    environ = [e for e in environ if not e.startswith(("YARD_AGENT_TOKEN=", "YARD_SERVER_FINGERPRINT="))]
    hosts.login(1, f"kill -KILL {pid[0]}")
    command = " ".join(shlex.quote(a) for a in ["env", "-i", *environ, *argv])
    hosts.login(1, f"cd {folder}; setsid {command} >> agent.log 2>&1 < /dev/null &")
    wait_for(lambda: f"the agent of instance {inst} started again" in hyard.run("logs", job_id, "--events").stderr,
             timeout=30, what="the restarted agent to register and its job to be requeued")
    gate = hosts.remote_dir / "instances" / inst / "jobs"
    wait_for(lambda: any(n.startswith(f"{job_id}-") and n != f"{job_id}-1" for n in hosts.listing(1, gate)),
             timeout=60, what="the job's next attempt to start on the same instance")
    attempt = next(n for n in hosts.listing(1, gate) if n.startswith(f"{job_id}-") and n != f"{job_id}-1")
    hosts.login(1, f"touch {gate / attempt / 'work' / 'gate'}")
    job = hyard.wait_state(job_id, {"succeeded", "failed"}, timeout=60)
    assert job["state"] == "succeeded" and job["instance"] == inst, job
    out = hyard.run("logs", job_id).stdout
    assert out.startswith("start\n----- yard: the agent of instance ") and out.endswith("start\ndone\n"), out
    assert out.count("start\n") == 2 and out.count("done\n") == 1, out
