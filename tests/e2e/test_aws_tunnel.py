"""The aws provider's tunnel mode end to end (docs/providers.md, "AWS: the
tunnel mode"): an embedded server on loopback, as on a laptop behind NAT;
moto's EC2 (test_aws.py's harness) gives the instance a 127.1.1.x address,
where the test brings up the "booted" instance: a Debian 11 container with
sshd (container_host.py). The server reaches it over SSH, copies the
portable agent there and keeps a reverse tunnel through which the agent
dials the server. Killing the tunnel's ssh mid-job: the job goes on, the
agent spools, the tunnel comes back, and the output holds every line once,
in order; the checkpoint arrives; the instance is terminated after."""
import json
import os
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from conftest import YARD, processes_matching, wait_for
from container_host import ContainerSshHost, free_port, image_present, skip_reason as host_skip_reason
from spot_imds import SpotMetadata, skip_reason as spot_skip_reason
from test_aws import AwsServer, Ec2, skip_reason as aws_skip_reason

LINES = 40
JOB = (f'for i in $(seq 1 {LINES}); do echo "line $i"; sleep 0.15; done\n'
       'echo weights > "$YARD_CHECKPOINT_DIR/epoch-1.txt"\n'
       'echo done\n')


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    reason = aws_skip_reason() or host_skip_reason()
    if reason:
        pytest.skip(reason)
    if not (Path(__file__).resolve().parents[2] / "src" / "aws" / "ec2_client.cc").exists():
        pytest.skip("this build has no EC2 client yet (src/aws/ec2_client.cc)")
    assert image_present(), "the bullseye-sshd image is missing: run scripts/bullseye_image.sh"
    m = Ec2(tmp_path_factory.mktemp("moto"))
    yield m
    m.stop()


def tunnel_processes(remote_port):
    return [p for p in processes_matching(f"127.0.0.1:{remote_port}:") if _is_ssh(p)]


def _is_ssh(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0] == b"ssh"
    except OSError:
        return False


def test_a_job_survives_its_tunnel_being_killed(yard, moto, project, tmp_path):
    host = ContainerSshHost(tmp_path / "host")  # address set once EC2 gives one
    remote_port = free_port("127.0.0.1")
    yard.home.mkdir(parents=True)
    tunnel = {"user": "root", "key": str(host.key), "known_hosts": str(host.known_hosts), "port": host.port,
              "address": "private", "remote_port": remote_port, "remote_dir": "/opt/trainyard",
              "connect_timeout_s": 3, "ready_timeout_s": 90}
    (yard.home / "catalog.json").write_text(json.dumps({
        "version": 1,
        "types": [{"name": "box", "provider": "aws", "cpus": 2, "on_demand_price": 0.1,
                   "options": {"ami": moto.image_id, "subnet_id": moto.subnet_id, "instance_type": "t3.micro"}}],
        "providers": {"aws": {"region": "us-east-1", "endpoint_url": moto.proxy.url, "connect": "tunnel",
                              "poll_interval_s": 0.3, "tunnel": tunnel}}}))
    yard.env.update(moto.credentials_env())
    server = AwsServer(yard, tmp_path / "server.log")
    server.start()
    fit = None
    try:
        (project / "job.sh").write_text(JOB)
        fit = subprocess.Popen([str(YARD), "fit", "job.sh", "--machines", "box", "--ckpt-dir", project / "ckpt"],
                               cwd=project, env=yard.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        mine = wait_for(lambda: [i for i in moto.instances({"tag:trainyard:server": server_id(yard)})
                                 if i["State"]["Name"] == "running"],
                        timeout=60, what="EC2 to run the instance")
        assert len(mine) == 1
        host.address = mine[0]["PrivateIpAddress"]
        assert host.address.startswith("127.1.1."), host.address
        host.start()  # the instance "boots"
        first = wait_for(lambda: tunnel_processes(remote_port), timeout=90, what="the tunnel's ssh")[0]
        agent_log = lambda: host.exec("sh", "-c", "cat /opt/trainyard/instances/*/agent.log", check=False).stdout
        seen = []  # what `yard fit` printed so far
        reader = threading.Thread(target=lambda: seen.extend(fit.stdout), daemon=True)
        reader.start()
        wait_for(lambda: "line 3" in [x.strip() for x in seen], timeout=120,
                 what="the job's output through the tunnel")
        os.kill(first, signal.SIGKILL)  # mid-job
        wait_for(lambda: [p for p in tunnel_processes(remote_port) if p != first], timeout=60,
                 what="the tunnel to be made again")
        assert fit.wait(timeout=180) == 0, fit.stderr.read()
        reader.join(10)
        assert [x.rstrip("\n") for x in seen] == [f"line {i}" for i in range(1, LINES + 1)] + ["done"], seen
        assert (project / "ckpt" / "epoch-1.txt").read_text() == "weights\n"
        log = agent_log()
        assert "the server is unreachable" in log, log  # the agent saw the outage
        wait_for(lambda: moto.state(mine[0]["InstanceId"]) in ("shutting-down", "terminated"), timeout=60,
                 what="the instance to be terminated after its job")
    finally:
        if fit and fit.poll() is None:
            fit.kill()
        yard.run("down", "--all", check=False)  # nothing of this test's left running in moto
        server.stop()
        host.stop()


SPOT_JOB = ('trap "noticed=1" USR1\n'
            'noticed=0\n'
            'for i in 1 2 3 4; do echo "line $i"; done\n'
            'while [ "$noticed" = 0 ]; do sleep 0.1 & wait $!; done\n'
            'echo "notice: $(tr -d \'\\n\\t \' < "$YARD_PREEMPTION_NOTICE")"\n'
            'echo step4 > "$YARD_CHECKPOINT_DIR/step-4.ckpt"\n'
            'exit 75\n')


@pytest.mark.skipif(spot_skip_reason() is not None, reason=spot_skip_reason() or "")
def test_a_spot_instance_in_tunnel_mode_gets_the_interruption_notice(yard, moto, project, tmp_path):
    """The agent started over SSH on a spot instance watches the metadata
    service (ec2-metadata-mock, through spot_imds.SpotMetadata) as the
    direct mode's does: the job gets SIGUSR1 and $YARD_PREEMPTION_NOTICE,
    writes its checkpoint, and the instance is reported preempted and ended.
    The machine's own environment (its sshd's) says where its metadata
    service is, as 169.254.169.254 would on EC2; YARD_PREEMPTION_WATCH comes
    from Trainyard."""
    imds = SpotMetadata().start()
    host = ContainerSshHost(tmp_path / "host", environment={
        "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url, "YARD_PREEMPTION_POLL_S": "0.2",
        "YARD_PREEMPTION_MARGIN_S": "5"})
    remote_port = free_port("127.0.0.1")
    yard.home.mkdir(parents=True)
    tunnel = {"user": "root", "key": str(host.key), "known_hosts": str(host.known_hosts), "port": host.port,
              "address": "private", "remote_port": remote_port, "remote_dir": "/opt/trainyard",
              "connect_timeout_s": 3, "ready_timeout_s": 90}
    (yard.home / "catalog.json").write_text(json.dumps({
        "version": 1,
        "types": [{"name": "box", "provider": "aws", "cpus": 2, "on_demand_price": 0.1, "spot_price": 0.03,
                   "options": {"ami": moto.image_id, "subnet_id": moto.subnet_id, "instance_type": "t3.micro"}}],
        "providers": {"aws": {"region": "us-east-1", "endpoint_url": moto.proxy.url, "connect": "tunnel",
                              "poll_interval_s": 0.3, "tunnel": tunnel}}}))
    yard.env.update(moto.credentials_env())
    server = AwsServer(yard, tmp_path / "server.log")
    server.start()
    job = None
    try:
        (project / "job.sh").write_text(SPOT_JOB)
        job = yard.run("submit", "job.sh", "--machines", "box:spot", "--max-restarts", "1",
                       cwd=project).stdout.strip()
        (first,) = wait_for(lambda: [i for i in moto.instances({"tag:trainyard:server": server_id(yard)})
                                     if i["State"]["Name"] == "running"],
                            timeout=60, what="EC2 to run the instance")
        assert first["InstanceLifecycle"] == "spot"
        host.address = first["PrivateIpAddress"]
        host.start()  # the instance "boots"
        wait_for(lambda: "line 4\n" in yard.run("logs", job).stdout, timeout=120, interval=0.2,
                 what="the job to wait for its notice")
        instance = yard.job(job)["instance"]
        imds.interrupt()
        wait_for(lambda: moto.state(first["InstanceId"]) in ("shutting-down", "terminated"), timeout=60,
                 what="the preempted instance to be terminated")
        out = yard.run("logs", job).stdout
        assert out.startswith("line 1\nline 2\nline 3\nline 4\nnotice: {\"action\":\"terminate\""), out
        assert out.count("\nnotice: ") == 1, out
        assert f"instance {instance} was preempted (spot interruption notice: EC2 will terminate it at" in out, out
        shown = yard.run("logs", job, "--events").stderr
        assert "told the job (SIGUSR1, $YARD_PREEMPTION_NOTICE)" in shown, shown
        yard.run("fetch", job, "--to", project / "got")
        assert (project / "got" / "checkpoints" / "step-4.ckpt").read_text() == "step4\n"
        agent_log = host.exec("sh", "-c", "cat /opt/trainyard/instances/*/agent.log", check=False).stdout
        assert "for spot interruptions" in agent_log, agent_log
        assert imds.sessions, "the agent asked the metadata service"
    finally:
        if job:
            yard.run("cancel", job, check=False)
        yard.run("down", "--all", check=False)
        server.stop()
        host.stop()
        imds.stop()


def server_id(yard):
    return (yard.home / "server_id").read_text().strip()
