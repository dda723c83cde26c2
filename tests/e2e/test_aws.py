"""The aws provider end to end, against moto's EC2 server on loopback (the
EC2 API of an independent implementation, with the real client of
src/aws), a fault-injecting proxy in front of it for what moto does not do
(capacity and permission answers), and instances "booted" by running their
user-data (aws_instances.py). Every claim about instances is checked with
EC2's own view: DescribeInstances through boto3, straight to moto."""
import json
import os
import signal
import subprocess
import time

import pytest

from aws_instances import InstanceBooter
from conftest import YARD, wait_for
from moto_ec2 import MotoEc2, skip_reason

JOB = ('import os, pathlib\n'
       'for i in range(3):\n'
       '    print(f"line {i}", flush=True)\n'
       'ckpt = pathlib.Path(os.environ["YARD_CHECKPOINT_DIR"]) / "epoch-1.txt"\n'
       'ckpt.write_text("weights")\n'
       'print("done", flush=True)\n')


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    m = MotoEc2(tmp_path_factory.mktemp("moto")).start()
    yield m
    m.stop()


@pytest.fixture
def aws(yard, moto, tmp_path):
    """A yard server with aws types p2.xlarge and g4dn.4xlarge (moto's
    image, the loopback subnet) whose EC2 is the proxy in front of moto.
    Yields a started server; aws.restart() / aws.kill() for restart tests."""
    moto.reset_faults()
    yard.home.mkdir(parents=True, exist_ok=True)
    options = {"ami": moto.image_id, "subnet_id": moto.subnet_id}
    types = [{"name": n, "provider": "aws", "cpus": 4, "gpus": 1, "on_demand_price": p, "spot_price": s,
              "options": dict(options)}
             for n, p, s in (("p2.xlarge", 0.9, 0.27), ("g4dn.4xlarge", 1.204, 0.36), ("g4dn.xlarge", 0.526, 0.16))]
    types.append({"name": "bad-image", "provider": "aws", "cpus": 1, "on_demand_price": 0.1,
                  "options": {"ami": "ami-0000000000doesnotexist", "subnet_id": moto.subnet_id,
                              "instance_type": "t3.micro"}})
    (yard.home / "catalog.json").write_text(json.dumps({
        "version": 1, "types": types,
        "providers": {"aws": {"region": "us-east-1", "endpoint_url": moto.proxy_url, "connect": "direct",
                              "poll_interval_s": 0.3}}}))
    yard.env.update(moto.credentials_env())
    server = AwsServer(yard, tmp_path / "server.log")
    server.start()
    yield server
    server.stop()


class AwsServer:
    def __init__(self, yard, log_path, extra_args=()):
        self.yard = yard
        self.log_path = log_path
        self.extra_args = list(extra_args)
        self.proc = None

    def start(self, *args):
        if (self.yard.home / "server.json").exists():
            (self.yard.home / "server.json").unlink()
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen([str(YARD), "server", *self.extra_args, *args], env=self.yard.env,
                                         stdout=log, stderr=log)
        wait_for(lambda: (self.yard.home / "server.json").exists(), timeout=20, what="the server to listen")

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)

    def log(self):
        return self.log_path.read_text()

    @property
    def server_id(self):
        return (self.yard.home / "server_id").read_text().strip()


def ours(moto, server):
    return moto.instances({"tag:trainyard:server": server.server_id})


def events(yard, job):
    return yard.run("logs", job, "--events").stdout


def test_capacity_answer_falls_back_to_the_next_type_at_once(aws, moto, yard, project, tmp_path):
    moto.fail_run_instances("p2.xlarge", "InsufficientInstanceCapacity",
                            "We currently do not have sufficient p2.xlarge capacity in the Availability Zone you requested.")
    (project / "train.py").write_text(JOB)
    with InstanceBooter(moto.client(), tmp_path / "machines", env=yard.env) as booter:
        started = time.monotonic()
        job = yard.run("submit", "train.py", "--machines", "p2.xlarge:spot", "--machines", "g4dn.4xlarge",
                       "--wait-request", "600", "--cool-down", "300", cwd=project).stdout.strip()
        done = yard.wait_state(job, {"succeeded", "failed"}, timeout=120)
        assert done["state"] == "succeeded", events(yard, job) + "\n" + str(booter.errors)
        assert time.monotonic() - started < 60, "the fallback did not wait out wait_request_s"
        ev = events(yard, job)
        assert "gave up on p2.xlarge: EC2 RunInstances: InsufficientInstanceCapacity: We currently do not have" in ev, ev
        assert done["machine_type"] == "g4dn.4xlarge"
        insts = ours(moto, aws)
        assert len(insts) == 1, insts
        (only,) = insts
        assert only["State"]["Name"] == "running"
        assert only["InstanceType"] == "g4dn.4xlarge"
        assert "InstanceLifecycle" not in only, "g4dn.4xlarge was asked for on-demand"
        tags = {t["Key"]: t["Value"] for t in only["Tags"]}
        assert tags["trainyard:instance"] == done["instance"]
        assert tags["trainyard:user"] == yard.json("machines")["instances"][0]["user"]
        assert tags["trainyard:server"] == aws.server_id and tags["Name"]
        machines = yard.run("machines").stdout
        assert "EC2 ID" in machines and only["InstanceId"] in machines, machines
        # yard down ends the cooling instance at EC2.
        yard.run("down", "--all")
        wait_for(lambda: ours(moto, aws)[0]["State"]["Name"] == "terminated", timeout=20,
                 what="yard down to terminate the EC2 instance")


def test_direct_mode_agent_downloads_itself_streams_and_its_instance_ends(aws, moto, yard, project, tmp_path):
    (project / "train.py").write_text(JOB)
    with InstanceBooter(moto.client(), tmp_path / "machines", env=yard.env) as booter:
        proc = yard.run("fit", "train.py", "--machines", "g4dn.xlarge:spot", "--ckpt-dir", project / "ckpt",
                        cwd=project, timeout=180)
        assert proc.stdout == "line 0\nline 1\nline 2\ndone\n", proc.stdout + proc.stderr + str(booter.errors)
        assert (project / "ckpt" / "epoch-1.txt").read_text() == "weights"
        (inst,) = ours(moto, aws)
        assert inst["InstanceLifecycle"] == "spot"
        folder = booter.booted[inst["InstanceId"]]
        assert (folder / "bin" / "yard").read_bytes() == YARD.read_bytes(), "the exact binary the server runs"
        assert "starting the agent" in booter.log(inst["InstanceId"])
        wait_for(lambda: ours(moto, aws)[0]["State"]["Name"] == "terminated", timeout=20,
                 what="the instance to be terminated after its job (no cool-down)")


def test_cancel_while_provisioning_terminates(aws, moto, yard, project):
    (project / "train.py").write_text(JOB)
    job = yard.run("submit", "train.py", "--machines", "g4dn.xlarge", cwd=project).stdout.strip()
    wait_for(lambda: [i for i in ours(moto, aws) if i["State"]["Name"] == "running"], timeout=30,
             what="the instance to run (never booted: its agent does not dial in)")
    wait_for(lambda: yard.json("machines")["instances"][0]["state"] == "provisioning", timeout=20,
             what="the grant")
    yard.run("cancel", job)
    wait_for(lambda: ours(moto, aws)[0]["State"]["Name"] == "terminated", timeout=20,
             what="cancel to terminate the EC2 instance")


def test_agent_that_never_dials_in_is_terminated_at_the_provisioning_timeout(yard, moto, aws, project):
    aws.stop()
    aws.start("--provisioning-timeout", "3")
    (project / "train.py").write_text(JOB)
    job = yard.run("submit", "train.py", "--machines", "g4dn.xlarge", "--max-restarts", "0",
                   cwd=project).stdout.strip()
    wait_for(lambda: ours(moto, aws) and ours(moto, aws)[0]["State"]["Name"] == "running", timeout=30,
             what="the instance to run")
    wait_for(lambda: ours(moto, aws)[0]["State"]["Name"] == "terminated", timeout=30,
             what="the provisioning timeout to terminate it")
    assert "did not register within 3 s" in events(yard, job)


def test_restart_adopts_known_instances_and_terminates_unknown_ones(aws, moto, yard, project, tmp_path):
    (project / "train.py").write_text(JOB)
    with InstanceBooter(moto.client(), tmp_path / "machines", env=yard.env):
        yard.run("fit", "train.py", "--machines", "g4dn.xlarge", "--cool-down", "600", cwd=project, timeout=180)
        (known,) = ours(moto, aws)
        assert known["State"]["Name"] == "running"
        aws.kill()
        stray = moto.run_tagged({"trainyard:server": aws.server_id, "trainyard:instance": "inst-notours"})
        aws.start()
        wait_for(lambda: moto.state(stray) == "terminated", timeout=30,
                 what="the restarted server to terminate the instance it does not know")
        assert moto.state(known["InstanceId"]) == "running", "the known one is adopted"
        (mine,) = yard.json("machines")["instances"]
        assert mine["ec2_instance_id"] == known["InstanceId"] and mine["state"] == "cooling"
        assert f"terminating EC2 instance {stray}" in aws.log()


@pytest.mark.parametrize("case", ["credentials", "permission", "image"])
def test_auth_permission_and_image_errors_fail_the_job_without_fallback(aws, moto, yard, project, case):
    first = "bad-image" if case == "image" else "p2.xlarge"
    if case == "credentials":
        moto.fail_run_instances("*", "AuthFailure", "AWS was not able to validate the provided access credentials",
                                status=401)
        expect = "AuthFailure: AWS was not able to validate the provided access credentials"
    elif case == "permission":
        moto.fail_run_instances("*", "UnauthorizedOperation",
                                "You are not authorized to perform this operation. User: arn:aws:iam::123456789012:"
                                "user/trainyard is not authorized to perform: ec2:RunInstances", status=403)
        expect = "ec2:RunInstances"
    else:
        expect = "InvalidAMIID.NotFound"
    (project / "train.py").write_text(JOB)
    job = yard.run("submit", "train.py", "--machines", first, "--machines", "g4dn.xlarge", cwd=project).stdout.strip()
    done = yard.wait_state(job, {"succeeded", "failed"}, timeout=60)
    assert done["state"] == "failed"
    assert expect in done["message"], done["message"]
    assert "g4dn.xlarge" not in events(yard, job).split("requesting " + first, 1)[1], "no fallback"
    assert [i for i in ours(moto, aws) if i["State"]["Name"] not in ("terminated", "shutting-down")] == []
