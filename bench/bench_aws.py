#!/usr/bin/env python3
"""bench_aws: submit -> first output line on a new EC2 (moto) instance,
split into phases, beside a raw RunInstances -> running round trip measured
in the same run (issue 10).

    .venv/bin/python bench/bench_aws.py [--runs 5]

moto's EC2 server on loopback (tests/aws_harness.py) stands in for EC2; the
instances are "booted" at once by running their user-data
(tests/e2e/aws_instances.py), so the agent really downloads itself from the
server and dials in. Phases, from the server's event times and the
harness's clock (one host, one clock):

  submit -> requested      the submit call and the scheduler's pass
  requested -> granted     RunInstances, then DescribeInstances polls until
                           EC2 says running (poll_interval_s 0.2 here)
  granted -> boot*         the harness noticing the running instance (its own
                           0.2 s poll): stands in for the machine's boot, not
                           ours; negative when the harness saw "running"
                           before the provider's poll did (moto runs at once)
  user-data                download of yard + yard-shim, SHA-256 checks
  user-data -> registered  the agent starting and dialing in
  registered -> 1st line   assignment, bundle, the job's first print

The raw reference is boto3's RunInstances then DescribeInstances until
running, straight to moto. Prints medians; asserts nothing. (The spot
notice -> requeue figure is aws-spot's benchmark.)
"""
import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "e2e"))
from aws_harness import DUMMY_KEYS, Moto, loopback_subnet, skip_reason  # noqa: E402
from aws_instances import InstanceBooter  # noqa: E402
from waiting import wait_for  # noqa: E402

PHASES = ["submit -> requested", "requested -> granted", "granted -> boot (harness)*", "user-data",
          "user-data -> registered", "registered -> 1st line"]


def raw_round_trip(ec2, image, subnet):
    t0 = time.perf_counter()
    r = ec2.run_instances(ImageId=image, InstanceType="g4dn.xlarge", MinCount=1, MaxCount=1, SubnetId=subnet)
    ec2_id = r["Instances"][0]["InstanceId"]
    while ec2.describe_instances(InstanceIds=[ec2_id])["Reservations"][0]["Instances"][0]["State"]["Name"] != "running":
        pass
    dt = time.perf_counter() - t0
    ec2.terminate_instances(InstanceIds=[ec2_id])
    return dt


def events(url, token, job):
    """The job's events (SSE until its final state)."""
    req = urllib.request.Request(f"{url}/v1/jobs/{job}/events?after=0",
                                 headers={"Authorization": f"Bearer {token}"})
    out = []
    with urllib.request.urlopen(req, timeout=120) as r:
        for line in r:
            line = line.decode().rstrip("\n")
            if line.startswith("data:"):
                e = json.loads(line[5:])
                out.append(e)
                if e["kind"] == "state" and e["state"] in ("succeeded", "failed", "cancelled"):
                    break
    return out


def one_run(yard, env, project, url, token, booter, ec2):
    submitted = time.time()
    job = subprocess.run([str(yard), "submit", "first.py", "--machines", "g4dn.xlarge", "--cool-down", "0"],
                         cwd=project, env=env, capture_output=True, text=True, check=True).stdout.strip()
    ev = events(url, token, job)

    def first(pred):
        return next(e["time"] for e in ev if pred(e))
    requested = first(lambda e: e["kind"] == "decision" and e["message"].startswith("requested:"))
    granted = first(lambda e: e["kind"] == "decision" and e["message"].startswith("granted:"))
    registered = first(lambda e: e["kind"] == "state" and e["state"] == "starting")
    line = first(lambda e: e["kind"] == "output")
    inst = next(e["instance"] for e in ev if e["kind"] == "state" and e.get("instance"))
    found = ec2.describe_instances(Filters=[{"Name": "tag:trainyard:instance", "Values": [inst]}])
    ec2_id = found["Reservations"][0]["Instances"][0]["InstanceId"]
    wait_for(lambda: ec2_id in booter.timings, timeout=60, what="the user-data to end")
    ud_start, ud_end = booter.timings[ec2_id]
    return {"submit -> requested": requested - submitted, "requested -> granted": granted - requested,
            "granted -> boot (harness)*": ud_start - granted, "user-data": ud_end - ud_start,
            "user-data -> registered": registered - ud_end, "registered -> 1st line": line - registered,
            "total": line - submitted}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    reason = skip_reason()
    if reason:
        sys.exit(f"bench_aws: {reason}")
    yard = Path(os.environ.get("YARD_BIN") or REPO / "build" / "yard").resolve()
    tmp = Path(tempfile.mkdtemp(prefix="yard-bench-aws-"))
    moto = Moto(log_dir=tmp).start()
    server = None
    try:
        ec2 = moto.client()
        _, subnet = loopback_subnet(ec2)
        image = moto.any_image()
        raw = [raw_round_trip(ec2, image, subnet) for _ in range(args.runs)]
        home = tmp / "home"
        home.mkdir()
        (home / "catalog.json").write_text(json.dumps({
            "version": 1,
            "types": [{"name": "g4dn.xlarge", "provider": "aws", "cpus": 4, "gpus": 1, "on_demand_price": 0.526,
                       "options": {"ami": image, "subnet_id": subnet}}],
            "providers": {"aws": {"region": "us-east-1", "endpoint_url": moto.url, "connect": "direct",
                                  "poll_interval_s": 0.2}}}))
        env = dict(os.environ, YARD_HOME=str(home), AWS_ACCESS_KEY_ID=DUMMY_KEYS[0],
                   AWS_SECRET_ACCESS_KEY=DUMMY_KEYS[1], AWS_EC2_METADATA_DISABLED="true",
                   PATH=f"{REPO / '.venv' / 'bin'}:{os.environ.get('PATH', '')}")
        env.pop("YARD_SERVER", None)
        env.pop("YARD_TOKEN", None)
        log = open(tmp / "server.log", "w")
        server = subprocess.Popen([str(yard), "server"], env=env, stdout=log, stderr=log)
        wait_for(lambda: (home / "server.json").exists(), timeout=30, what="the server")
        url = json.loads((home / "server.json").read_text())["url"]
        token = (home / "token").read_text().strip()
        project = tmp / "project"
        project.mkdir()
        (project / "first.py").write_text('print("first line", flush=True)\n')
        runs = []
        with InstanceBooter(ec2, tmp / "machines", env=env, interval=0.2) as booter:
            for _ in range(args.runs):
                runs.append(one_run(yard, env, project, url, token, booter, ec2))
        raw_med = statistics.median(raw)
        print(f"raw RunInstances -> running (boto3 to moto): {raw_med * 1000:.1f} ms (median of {len(raw)})")
        print(f"{'phase':<28}{'median ms':>10}{'x raw':>9}")
        for name in PHASES + ["total"]:
            med = statistics.median(r[name] for r in runs)
            print(f"{name:<28}{med * 1000:>10.1f}{med / raw_med:>9.1f}")
    finally:
        if server:
            server.send_signal(signal.SIGTERM)
            server.wait(20)
        moto.stop()


if __name__ == "__main__":
    main()
