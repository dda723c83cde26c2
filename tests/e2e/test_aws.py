"""The aws provider end to end, against moto's EC2 server on loopback with
IAM enforced (the EC2 API of an independent implementation, reached by the
real client of src/aws), the fault proxy in front of it for the capacity
answers moto never gives (tests/aws_harness.py), and instances "booted" by
running their user-data (aws_instances.py). Every claim about instances is
checked with EC2's own view: DescribeInstances through boto3, straight to
moto."""
import base64
import json
import os
import re
import signal
import subprocess
import time
import urllib.parse

import pytest

from aws_harness import CAPACITY, FaultProxy, Moto, loopback_subnet, skip_reason
from aws_instances import InstanceBooter
from conftest import YARD, wait_for

JOB = ('import os, pathlib\n'
       'for i in range(3):\n'
       '    print(f"line {i}", flush=True)\n'
       'ckpt = pathlib.Path(os.environ["YARD_CHECKPOINT_DIR"]) / "epoch-1.txt"\n'
       'ckpt.write_text("weights")\n'
       'print("done", flush=True)\n')


class HoldingProxy(FaultProxy):
    """The fault proxy, plus: DescribeInstances shows the instances of the
    types in `held` "pending" while moto says "running" (EC2 may take
    minutes to leave pending; moto never does)."""

    def __init__(self, upstream_url):
        super().__init__(upstream_url)
        self.held = set()

    def _forward(self, h, body):
        params = dict(urllib.parse.parse_qsl(body.decode(errors="replace")))
        if params.get("Action") != "DescribeInstances" or not self.held:
            return super()._forward(h, body)
        reply = self._reply

        def rewrite(h2, status, data, content_type):
            parts = data.decode().split("<instanceId>")
            for i, part in enumerate(parts[1:], 1):
                if any(f"<instanceType>{t}</instanceType>" in part for t in self.held):
                    parts[i] = re.sub(r"<code>16</code>(\s*)<name>running</name>",
                                      r"<code>0</code>\1<name>pending</name>", part, count=1)
            reply(h2, status, "<instanceId>".join(parts).encode(), content_type)
        self._reply = rewrite
        try:
            super()._forward(h, body)
        finally:
            del self._reply


class Ec2:
    """moto with IAM enforced (requests must be signed with keys it knows),
    its loopback subnet, and the fault proxy in front of it."""

    def __init__(self, folder):
        os.environ["MOTO_ENABLE_AMI_VALIDATION"] = "true"  # an unknown AMI is InvalidAMIID.NotFound
        self.moto = Moto(enforce_auth=True, log_dir=folder).start()
        self.proxy = HoldingProxy(self.moto.url).start()
        self.ec2 = self.moto.client()
        _, self.subnet_id = loopback_subnet(self.ec2)
        self.image_id = self.moto.any_image()
        # An image that boots from /dev/xvda (Amazon Linux, as Debian's do).
        self.xvda_image_id = sorted(i["ImageId"] for i in self.ec2.describe_images(Owners=["amazon"])["Images"]
                                    if i.get("RootDeviceName") == "/dev/xvda"
                                    and i.get("Architecture") == "x86_64")[0]

    def stop(self):
        self.proxy.stop()
        self.moto.stop()

    def credentials_env(self, keys=None):
        key_id, secret = keys or self.moto.admin_keys
        return {"AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret,
                "AWS_EC2_METADATA_DISABLED": "true"}

    def instances(self, filters):
        flt = [{"Name": k, "Values": [v]} for k, v in filters.items()]
        out = []
        for page in self.ec2.get_paginator("describe_instances").paginate(Filters=flt):
            for res in page["Reservations"]:
                out.extend(res["Instances"])
        return out

    def state(self, ec2_id):
        return self.ec2.describe_instances(InstanceIds=[ec2_id])["Reservations"][0]["Instances"][0]["State"]["Name"]

    def run_tagged(self, tags):
        """An instance made outside Trainyard, with `tags`; its EC2 id."""
        r = self.ec2.run_instances(
            ImageId=self.image_id, InstanceType="t3.micro", MinCount=1, MaxCount=1, SubnetId=self.subnet_id,
            TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}])
        return r["Instances"][0]["InstanceId"]


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    m = Ec2(tmp_path_factory.mktemp("moto"))
    yield m
    m.stop()


@pytest.fixture
def aws(yard, moto, tmp_path):
    """A yard server with aws types p2.xlarge, g4dn.4xlarge, g4dn.xlarge (moto's
    image, the loopback subnet) and bad-image, whose EC2 is the fault proxy in
    front of moto. aws.restart(...) / aws.kill() for the restart tests."""
    moto.proxy.clear()
    moto.proxy.held.clear()
    yard.home.mkdir(parents=True, exist_ok=True)
    options = {"ami": moto.image_id, "subnet_id": moto.subnet_id}
    types = [{"name": n, "provider": "aws", "cpus": 4, "gpus": 1, "on_demand_price": p, "spot_price": s,
              "options": dict(options)}
             for n, p, s in (("p2.xlarge", 0.9, 0.27), ("g4dn.4xlarge", 1.204, 0.36), ("g4dn.xlarge", 0.526, 0.16))]
    types.append({"name": "bad-image", "provider": "aws", "cpus": 1, "on_demand_price": 0.1,
                  "options": {"ami": "ami-0000000000doesnotexist", "subnet_id": moto.subnet_id,
                              "instance_type": "t3.micro"}})
    types.append({"name": "big-root", "provider": "aws", "cpus": 1, "on_demand_price": 0.1,
                  "options": {"ami": moto.xvda_image_id, "subnet_id": moto.subnet_id,
                              "instance_type": "t3.micro", "root_volume_gb": 200}})
    types.append({"name": "big-root-bad-image", "provider": "aws", "cpus": 1, "on_demand_price": 0.1,
                  "options": {"ami": "ami-0000000000doesnotexist", "subnet_id": moto.subnet_id,
                              "instance_type": "t3.micro", "root_volume_gb": 200}})
    (yard.home / "catalog.json").write_text(json.dumps({
        "version": 1, "types": types,
        "providers": {"aws": {"region": "us-east-1", "endpoint_url": moto.proxy.url, "connect": "direct",
                              "poll_interval_s": 0.3}}}))
    yard.env.update(moto.credentials_env())
    server = AwsServer(yard, tmp_path / "server.log")
    server.start()
    yield server
    yard.run("down", "--all", check=False)  # nothing of this test's left running in moto
    server.stop()


class AwsServer:
    def __init__(self, yard, log_path):
        self.yard = yard
        self.log_path = log_path
        self.proc = None

    def start(self, *args, env=None):
        # A restarted server takes its last port again (server.json), so
        # agents already running find it.
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen([str(YARD), "server", *args], env=env or self.yard.env,
                                         stdout=log, stderr=log)
        wait_for(lambda: (self.yard.home / "server.json").exists() and
                 self.yard.server_info().get("pid") == self.proc.pid, timeout=20, what="the server to listen")

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
    proc = yard.run("logs", job, "--events")
    return proc.stdout + proc.stderr


def test_capacity_answer_falls_back_to_the_next_type_at_once(aws, moto, yard, project, tmp_path):
    moto.proxy.fail("RunInstances", instance_type="p2.xlarge", **CAPACITY)
    (project / "train.py").write_text(JOB)
    with InstanceBooter.of_server(moto.ec2, tmp_path / "machines", aws.server_id, env=yard.env) as booter:
        started = time.monotonic()
        job = yard.run("submit", "train.py", "--machines", "p2.xlarge:spot", "--machines", "g4dn.4xlarge",
                       "--wait-request", "600", "--cool-down", "300", cwd=project).stdout.strip()
        done = yard.wait_state(job, {"succeeded", "failed"}, timeout=120)
        assert done["state"] == "succeeded", done["message"] + events(yard, job) + str(booter.errors)
        assert time.monotonic() - started < 60, "the fallback did not wait out wait_request_s"
        ev = events(yard, job)
        assert "gave up on p2.xlarge: EC2 RunInstances: InsufficientInstanceCapacity: We currently do not have sufficient capacity" in ev, ev
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
        volumes = moto.ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id",
                                                      "Values": [only["InstanceId"]]}])["Volumes"]
        assert volumes and all({"Key": "trainyard:instance", "Value": done["instance"]} in v.get("Tags", [])
                               for v in volumes), volumes
        machines = yard.run("machines").stdout
        assert "EC2 ID" in machines and only["InstanceId"] in machines, machines
        # yard down ends the cooling instance at EC2.
        yard.run("down", "--all")
        wait_for(lambda: ours(moto, aws)[0]["State"]["Name"] == "terminated", timeout=20,
                 what="yard down to terminate the EC2 instance")


def test_direct_mode_agent_downloads_itself_streams_and_its_instance_ends(aws, moto, yard, project, tmp_path):
    (project / "train.py").write_text(JOB)
    with InstanceBooter.of_server(moto.ec2, tmp_path / "machines", aws.server_id, env=yard.env) as booter:
        proc = yard.run("fit", "train.py", "--machines", "g4dn.xlarge:spot", "--ckpt-dir", project / "ckpt",
                        cwd=project, timeout=180)
        assert proc.stdout == "line 0\nline 1\nline 2\ndone\n", proc.stdout + proc.stderr + str(booter.errors)
        assert (project / "ckpt" / "epoch-1.txt").read_text() == "weights"
        (inst,) = ours(moto, aws)
        assert inst["InstanceLifecycle"] == "spot"
        folder = booter.booted[inst["InstanceId"]]
        assert (folder / "bin" / "yard").read_bytes() == (YARD.parent / "yard-portable").read_bytes(), \
            "the exact portable binary the server offers (docs/operations.md)"
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
    with InstanceBooter.of_server(moto.ec2, tmp_path / "machines", aws.server_id, env=yard.env):
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
    """Bad keys and a missing permission are moto's own IAM answers; the bad
    image is moto's AMI validation."""
    first = "bad-image" if case == "image" else "p2.xlarge"
    if case == "credentials":
        env = dict(yard.env, **moto.credentials_env(("AKIDNOBODYKNOWS", "wrong-secret")))
        expect = "AuthFailure"
    elif case == "permission":
        keys = moto.moto.make_user(f"no-run-{os.getpid()}-{time.monotonic_ns()}",
                                   ["ec2:Describe*", "ec2:TerminateInstances"])
        env = dict(yard.env, **moto.credentials_env(keys))
        expect = "ec2:RunInstances"
    else:
        env, expect = None, "InvalidAMIID.NotFound"
    if env:
        aws.stop()
        aws.start(env=env)
    (project / "train.py").write_text(JOB)
    job = yard.run("submit", "train.py", "--machines", first, "--machines", "g4dn.xlarge", cwd=project).stdout.strip()
    done = yard.wait_state(job, {"succeeded", "failed"}, timeout=60)
    assert done["state"] == "failed"
    assert expect in done["message"], done["message"]
    assert "no other machine type is tried" in done["message"]
    assert "requesting g4dn.xlarge" not in events(yard, job), "no fallback"
    assert moto.proxy.count("RunInstances") == 1
    assert [i for i in ours(moto, aws) if i["State"]["Name"] not in ("terminated", "shutting-down")] == []


def test_root_volume_resizes_the_device_the_image_boots_from(aws, moto, yard, project):
    """root_volume_gb on an image whose root is /dev/xvda: the root device
    itself gets the size, and no second volume is made (EC2 attaches one for
    a mapping of a device the image does not boot from)."""
    assert moto.ec2.describe_images(ImageIds=[moto.xvda_image_id])["Images"][0]["RootDeviceName"] == "/dev/xvda"
    (project / "train.py").write_text(JOB)
    job = yard.run("submit", "train.py", "--machines", "big-root", cwd=project).stdout.strip()
    (inst,) = wait_for(lambda: [i for i in ours(moto, aws) if i["State"]["Name"] == "running"], timeout=30,
                       what="the instance to run")
    assert inst["ImageId"] == moto.xvda_image_id and inst["RootDeviceName"] == "/dev/xvda"
    mappings = inst["BlockDeviceMappings"]
    assert [m["DeviceName"] for m in mappings] == ["/dev/xvda"], mappings
    volumes = moto.ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id",
                                                  "Values": [inst["InstanceId"]]}])["Volumes"]
    assert len(volumes) == 1, volumes
    (root,) = volumes
    assert root["VolumeId"] == mappings[0]["Ebs"]["VolumeId"]
    assert root["Size"] == 200 and root["Attachments"][0]["Device"] == "/dev/xvda", root
    assert moto.proxy.count("DescribeImages") == 1
    yard.run("cancel", job)
    wait_for(lambda: moto.state(inst["InstanceId"]) == "terminated", timeout=20,
             what="cancel to terminate the instance")


@pytest.mark.parametrize("case", ["missing-image", "no-describe-images-permission"])
def test_root_volume_of_an_image_ec2_cannot_show_fails_the_job_at_once(aws, moto, yard, project, case):
    """The root device comes from DescribeImages: a missing AMI names the AMI,
    the region and the option to change; a refused DescribeImages names the
    IAM action. Neither is capacity: no fallback, nothing launched."""
    if case == "missing-image":
        first, expect = "big-root-bad-image", ["AMI ami-0000000000doesnotexist is not in region us-east-1",
                                               "InvalidAMIID.NotFound",
                                               "set options.ami of type 'big-root-bad-image'"]
    else:
        keys = moto.moto.make_user(f"no-images-{os.getpid()}-{time.monotonic_ns()}",
                                   ["ec2:RunInstances", "ec2:CreateTags", "ec2:DescribeInstances",
                                    "ec2:TerminateInstances", "ec2:DescribeSpotPriceHistory"])
        aws.stop()
        aws.start(env=dict(yard.env, **moto.credentials_env(keys)))
        first, expect = "big-root", ["ec2:DescribeImages"]
    runs = moto.proxy.count("RunInstances")
    (project / "train.py").write_text(JOB)
    job = yard.run("submit", "train.py", "--machines", first, "--machines", "g4dn.xlarge",
                   cwd=project).stdout.strip()
    done = yard.wait_state(job, {"succeeded", "failed"}, timeout=60)
    assert done["state"] == "failed"
    for words in expect:
        assert words in done["message"], done["message"]
    assert "no other machine type is tried" in done["message"]
    assert "requesting g4dn.xlarge" not in events(yard, job), "no fallback"
    assert moto.proxy.count("RunInstances") == runs, "nothing launched"
    assert [i for i in ours(moto, aws) if i["State"]["Name"] not in ("terminated", "shutting-down")] == []


def test_agent_binaries_are_the_servers_portable_ones_and_for_agents_only(yard, project):
    """What direct-mode user-data downloads (GET /v1/agent/binaries/NAME):
    the static yard-portable built beside the server's yard, and yard-shim."""
    import hashlib
    import urllib.error
    import urllib.request

    # An agent credential: a local instance's, kept valid while it cools.
    (project / "job.sh").write_text("true\n")
    job_id = yard.run("submit", "job.sh", "--cool-down", "60", cwd=project).stdout.strip()
    inst = yard.wait_state(job_id, "succeeded")["instance"]
    url = yard.server_info()["url"]
    agent_token = (yard.home / "instances" / inst / "credential").read_text().strip()

    def get(name, token):
        req = urllib.request.Request(f"{url}/v1/agent/binaries/{name}")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    status, body = get("yard", agent_token)
    portable = (YARD.parent / "yard-portable").read_bytes()
    assert status == 200 and hashlib.sha256(body).digest() == hashlib.sha256(portable).digest()
    status, body = get("yard-shim", agent_token)
    assert status == 200 and body == (YARD.parent / "yard-shim").read_bytes()
    assert get("yard", yard.token())[0] == 403, "user tokens do not get agent routes"
    assert get("yard", None)[0] == 401
    assert get("state.db", agent_token)[0] == 404, "only the two binaries"
    yard.run("down", "--all")


def test_pending_instances_end_on_cancel_and_at_wait_request(aws, moto, yard, project):
    moto.proxy.held.add("p2.xlarge")
    (project / "train.py").write_text(JOB)
    first = yard.run("submit", "train.py", "--machines", "p2.xlarge", "--wait-request", "600",
                     cwd=project).stdout.strip()
    (held,) = wait_for(lambda: ours(moto, aws), timeout=30, what="RunInstances of p2.xlarge")
    wait_for(lambda: yard.json("machines")["instances"][0]["state"] == "requested", timeout=10,
             what="the instance to be requested, not granted, while EC2 says pending")
    polls = moto.proxy.count("DescribeInstances")
    wait_for(lambda: moto.proxy.count("DescribeInstances") >= polls + 2, timeout=10, what="two more polls")
    assert yard.json("machines")["instances"][0]["state"] == "requested"
    yard.run("cancel", first)
    wait_for(lambda: moto.state(held["InstanceId"]) == "terminated", timeout=20,
             what="cancel to terminate the pending instance")

    second = yard.run("submit", "train.py", "--machines", "p2.xlarge", "--machines", "g4dn.xlarge",
                      "--wait-request", "3", cwd=project).stdout.strip()
    started = time.monotonic()
    wait_for(lambda: [i for i in ours(moto, aws) if i["InstanceType"] == "g4dn.xlarge"], timeout=30,
             what="the fallback to g4dn.xlarge")
    assert time.monotonic() - started >= 2.5, "not before wait_request_s"
    ev = events(yard, second)
    assert "gave up on p2.xlarge: not running within 3 s (still pending: withdrawn and ended)" in ev, ev
    p2 = [i for i in ours(moto, aws) if i["InstanceType"] == "p2.xlarge" and i["InstanceId"] != held["InstanceId"]]
    assert len(p2) == 1
    wait_for(lambda: moto.state(p2[0]["InstanceId"]) == "terminated", timeout=20,
             what="the withdrawn p2.xlarge to be terminated")
    wait_for(lambda: yard.job(second)["instance"] and
             any(i["state"] == "provisioning" for i in yard.json("machines")["instances"]), timeout=20,
             what="g4dn.xlarge to be granted (running)")
    yard.run("cancel", second)
    wait_for(lambda: all(i["State"]["Name"] == "terminated" for i in ours(moto, aws)), timeout=20,
             what="every instance terminated")


def test_instance_ec2_ends_is_preempted_and_the_job_resumes_on_a_new_one(aws, moto, yard, project, tmp_path):
    """A spot reclaim as the provider sees it: EC2 lists the instance
    terminated (the harness's machine goes away with it)."""
    (project / "job.sh").write_text(
        'if [ -n "$YARD_RESUME_FROM" ]; then echo "resumed from $(basename $YARD_RESUME_FROM): $(cat $YARD_RESUME_FROM)"; '
        'echo second run; exit 0; fi\n'
        'for i in 1 2 3; do echo "first run line $i"; done\n'
        'echo epoch2 > "$YARD_CHECKPOINT_DIR/epoch-2.ckpt"\n'
        'sleep 1000\n')
    with InstanceBooter.of_server(moto.ec2, tmp_path / "machines", aws.server_id, env=yard.env):
        job = yard.run("submit", "job.sh", "--machines", "g4dn.xlarge:spot", cwd=project).stdout.strip()
        wait_for(lambda: yard.run("fetch", job, "--to", project / "got") and
                 (project / "got" / "checkpoints" / "epoch-2.ckpt").exists(),
                 timeout=60, interval=0.2, what="the checkpoint to reach the server")
        first = yard.job(job)["instance"]
        (reclaimed,) = ours(moto, aws)
        moto.ec2.terminate_instances(InstanceIds=[reclaimed["InstanceId"]])  # EC2 takes it back
        done = yard.wait_state(job, "succeeded", timeout=90)
        assert done["instance"] != first
        out = yard.run("logs", job).stdout
        assert f"instance {first} was preempted (EC2 instance {reclaimed['InstanceId']} is terminated" in out, out
        assert out.count("first run line 3") == 1 and "resumed from epoch-2.ckpt: epoch2" in out
        wait_for(lambda: all(i["State"]["Name"] == "terminated" for i in ours(moto, aws)), timeout=20,
                 what="the second instance to end with its job")
        assert len(ours(moto, aws)) == 2


def test_direct_mode_over_tls_pins_the_servers_certificate(aws, moto, yard, project, tmp_path):
    """The user-data exports the server's fingerprint; the bootstrap's
    download (python3) and the agent both pin it, over https."""
    aws.stop()
    aws.start("--tls", "self-signed")
    info = yard.server_info()
    assert info["url"].startswith("https://")
    (project / "train.py").write_text(JOB)
    with InstanceBooter.of_server(moto.ec2, tmp_path / "machines", aws.server_id, env=yard.env) as booter:
        proc = yard.run("fit", "train.py", "--machines", "g4dn.xlarge", cwd=project, timeout=180)
        assert proc.stdout == "line 0\nline 1\nline 2\ndone\n", proc.stdout + proc.stderr + str(booter.errors)
        (inst,) = ours(moto, aws)
        user_data = moto.ec2.describe_instance_attribute(InstanceId=inst["InstanceId"], Attribute="userData")
        text = base64.b64decode(user_data["UserData"]["Value"]).decode()
        assert f"export YARD_SERVER_FINGERPRINT='{info['fingerprint']}'" in text
        assert f"SERVER='{info['url']}'" in text
        assert "starting the agent" in booter.log(inst["InstanceId"])
        (work,) = booter.booted[inst["InstanceId"]].glob("instances/*")
        assert (work / "server-fingerprint").read_text() == info["fingerprint"] + "\n", \
            "kept for a restart in place without YARD_SERVER_FINGERPRINT"


PROBE = ('import os\n'
         'agent = os.path.abspath("../../..")  # work/ is in <agent folder>/jobs/<job>-<attempt>/\n'
         'try:\n'
         '    open(os.path.join(agent, "credential")).read()\n'
         '    print("credential: read", flush=True)\n'
         'except OSError:\n'
         '    print("credential: unreadable", flush=True)\n'
         'print("instances seen:", ",".join(sorted(os.listdir(os.path.dirname(agent)))), flush=True)\n')


def test_direct_mode_jobs_run_confined_away_from_the_agents_folder(aws, moto, yard, project, tmp_path):
    """The user-data's agent confines its jobs as an SSH host's does (this
    machine can: bubblewrap): the job cannot read the agent's credential nor
    see the other agents' folders. Before, it ran jobs unconfined."""
    (project / "probe.py").write_text(PROBE)
    with InstanceBooter.of_server(moto.ec2, tmp_path / "machines", aws.server_id, env=yard.env) as booter:
        job = yard.run("submit", "probe.py", "--machines", "g4dn.xlarge", cwd=project).stdout.strip()
        done = yard.wait_state(job, {"succeeded", "failed"}, timeout=120)
        out = yard.run("logs", job).stdout
        assert done["state"] == "succeeded", done["message"] + out + events(yard, job) + str(booter.errors)
        (inst,) = ours(moto, aws)
        (work,) = booter.booted[inst["InstanceId"]].glob("instances/*")
        assert (work / "credential").read_text().startswith("yit_"), "the probe is not blind: it is there"
        assert "credential: unreadable\n" in out, out
        assert f"instances seen: {work.name}\n" in out, out
        assert "runs unconfined" not in events(yard, job)
