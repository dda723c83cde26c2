"""Boots moto's EC2 instances as the machines would: for each running
instance with a 127.1.1.x address (moto's VPC 127.1.0.0/16 puts them on
loopback), its user-data is fetched from the EC2 API and run with bash in a
folder of its own ($TRAINYARD_DIR), so the agent really downloads itself
from the server and dials in. When EC2 says the instance ended, everything
started under its folder is killed, as the machine would go away.

Nothing here knows Trainyard's internals: it reads what any EC2 client
reads (DescribeInstances, DescribeInstanceAttribute userData).
"""
import base64
import os
import subprocess
import threading
import time
from pathlib import Path

from waiting import kill_matching


class InstanceBooter:
    """Boots instances in a background thread until stop().

    `boot`: a predicate on the instance dict (DescribeInstances' form) that
    says whether to boot it; by default every instance. Tests that want an
    instance that never dials in leave it out.
    """

    def __init__(self, ec2, root: Path, env=None, boot=None, interval=0.2):
        self.ec2 = ec2
        self.root = root
        self.env = dict(env or os.environ)
        self.boot = boot or (lambda inst: True)
        self.interval = interval
        self.booted = {}  # EC2 id -> folder
        self.timings = {}  # EC2 id -> (user-data started, ended), time.time()
        self.ended = set()
        self.errors = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=10)
        for ec2_id in list(self.booted):
            self._kill(ec2_id)

    @classmethod
    def of_server(cls, ec2, root, server_id, **kw):
        """Boots only the instances tagged trainyard:server = server_id (moto
        may hold other tests' instances)."""
        def ours(inst):
            return {"Key": "trainyard:server", "Value": server_id} in inst.get("Tags", [])
        return cls(ec2, root, boot=ours, **kw)

    def _instances(self):
        out = []
        for page in self.ec2.get_paginator("describe_instances").paginate():
            for res in page["Reservations"]:
                out.extend(res["Instances"])
        return out

    def _run(self):
        while not self._stop.is_set():
            try:
                for inst in self._instances():
                    self._step(inst)
            except Exception as e:  # noqa: BLE001 - keep booting; the test reads errors
                self.errors.append(repr(e))
            self._stop.wait(self.interval)

    def _step(self, inst):
        ec2_id = inst["InstanceId"]
        state = inst["State"]["Name"]
        if state in ("shutting-down", "terminated", "stopping", "stopped"):
            if ec2_id in self.booted and ec2_id not in self.ended:
                self._kill(ec2_id)
            return
        ip = inst.get("PrivateIpAddress", "")
        if state != "running" or ec2_id in self.booted or not ip.startswith("127.1.1."):
            return
        if not self.boot(inst):
            return
        self._start(ec2_id, ip)

    def _start(self, ec2_id, ip):
        attr = self.ec2.describe_instance_attribute(InstanceId=ec2_id, Attribute="userData")
        script = base64.b64decode(attr["UserData"]["Value"]).decode()
        folder = self.root / ec2_id
        folder.mkdir(parents=True)
        (folder / "user-data").write_text(script)
        # The instance's metadata service: none here unless the test gives
        # one (a closed loopback port), never 169.254.169.254.
        env = dict({"AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:9"}, **self.env,
                   TRAINYARD_DIR=str(folder), EC2_PRIVATE_IP=ip)
        self.booted[ec2_id] = folder
        # As cloud-init would: run it once, to its end (the agent detaches);
        # in a thread of its own, so that one slow boot delays no other.
        threading.Thread(target=self._run_user_data, args=(ec2_id, folder, env), daemon=True).start()

    def _run_user_data(self, ec2_id, folder, env):
        started = time.time()
        proc = subprocess.run(["bash", str(folder / "user-data")], cwd=folder, env=env,
                              capture_output=True, text=True, timeout=120)
        self.timings[ec2_id] = (started, time.time())
        if proc.returncode != 0:
            self.errors.append(f"user-data of {ec2_id} exited {proc.returncode}: {proc.stderr[-2000:]}")

    def _kill(self, ec2_id):
        self.ended.add(ec2_id)
        kill_matching(str(self.booted[ec2_id]))

    def log(self, ec2_id, name="bootstrap.log"):
        """The instance's bootstrap.log (or agent.log), for failure messages."""
        folder = self.booted.get(ec2_id)
        if not folder:
            return f"({ec2_id} was not booted)"
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in folder.glob(f"instances/*/{name}"))
