#!/usr/bin/env python3
"""bench_spot: from a spot interruption notice to the job requeued, and to
it running again from its checkpoint (issue 10), against references
measured in the same run.

    .venv/bin/python bench/bench_spot.py [--runs 3] [--poll 2]

Each run: a fresh YARD_HOME whose embedded server starts local agents with
YARD_PREEMPTION_WATCH=imds and YARD_PREEMPTION_POLL_S=--poll, pointed at a
real ec2-metadata-mock (IMDSv2) through tests/spot_imds.py; a `yard submit`
of the script of tests/spot_imds.py (FIT_SCRIPT: waits for the notice after
line 4, then checkpoints and exits 75; resumed, prints the rest). Once line
4 is out, the mock is started: from then on (t0) the notice is served. From
the server's event times (same host and clock):

  notice -> told      t0 until the agent's decision record "told the job"
  told -> checkpoint  the job's checkpoint stored (its artifact event)
  -> requeued         the requeue (state "requesting" after "was preempted")
  -> running          the job running again on a new instance
  -> resumed line     its first output line on the new instance

References, same run: the IMDSv2 round trip (token + GET of
spot/instance-action through the proxy, as the agent's watcher does it,
median of 50) and the poll interval itself — the notice is seen at most one
poll after it is served. The RESULT line gives notice -> requeued (median)
and its ratio to the poll interval.
"""
import argparse
import http.client
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
from spot_imds import FIT_SCRIPT, TOKEN_HEADER, TTL_HEADER, SpotMetadata, skip_reason  # noqa: E402
from waiting import processes_matching, wait_for  # noqa: E402


def default_yard():
    for build in ("build-bench", "build"):
        if (REPO / build / "yard").exists():
            return REPO / build / "yard"
    return REPO / "build" / "yard"


YARD = Path(os.environ.get("YARD_BIN") or default_yard())


class Home:
    def __init__(self, imds, poll):
        self.dir = Path(tempfile.mkdtemp(prefix="yard-bench-spot-"))
        self.env = dict(os.environ, YARD_HOME=str(self.dir / "home"), YARD_PREEMPTION_WATCH="imds",
                        AWS_EC2_METADATA_SERVICE_ENDPOINT=imds.url, YARD_PREEMPTION_POLL_S=str(poll),
                        PATH=f"{REPO / '.venv' / 'bin'}:{os.environ.get('PATH', '')}")
        self.env.pop("YARD_SERVER", None)
        self.env.pop("YARD_TOKEN", None)

    def yard(self, *args):
        return subprocess.run([str(YARD), *args], cwd=self.dir, env=self.env, capture_output=True,
                              text=True, timeout=120, check=True).stdout

    def events(self, job_id):
        home = Path(self.env["YARD_HOME"])
        url = json.loads((home / "server.json").read_text())["url"]
        req = urllib.request.Request(f"{url}/v1/jobs/{job_id}/events?after=0&follow=0",
                                     headers={"Authorization": f"Bearer {(home / 'token').read_text().strip()}"})
        out = []
        with urllib.request.urlopen(req, timeout=30) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("data: "):
                    out.append(json.loads(line[6:]))
        return out

    def stop(self):
        for pid in processes_matching(str(self.dir)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if not os.environ.get("YARD_BENCH_KEEP"):
            subprocess.run(["rm", "-rf", str(self.dir)])


def first(evs, pred, after=0.0):
    for e in evs:
        if e["time"] >= after and pred(e):
            return e["time"]
    raise RuntimeError("event not found")


def one_run(poll):
    imds = SpotMetadata().start()
    home = Home(imds, poll)
    try:
        (home.dir / "train.py").write_text(FIT_SCRIPT)
        job_id = home.yard("submit", "train.py").strip()
        wait_for(lambda: "line 4\n" in "".join(e.get("data", "") for e in home.events(job_id)),
                 timeout=120, interval=0.05, what="line 4")
        imds.interrupt()
        t0 = time.time()
        wait_for(lambda: any(e["kind"] == "state" and e["state"] == "succeeded" for e in home.events(job_id)),
                 timeout=120, interval=0.1, what="the job to succeed")
        evs = home.events(job_id)
        told = first(evs, lambda e: e["kind"] == "decision" and "told the job" in e.get("message", ""))
        ckpt = first(evs, lambda e: e["kind"] == "artifact" and e["dir"] == "checkpoints")
        preempted = first(evs, lambda e: e["kind"] == "output" and "was preempted" in e.get("data", ""))
        requeued = first(evs, lambda e: e["kind"] == "state" and e["state"] == "requesting", preempted)
        running = first(evs, lambda e: e["kind"] == "state" and e["state"] == "running", requeued)
        resumed = first(evs, lambda e: e["kind"] == "output" and "resumed at" in e.get("data", ""))
        rtt = imds_round_trips(imds, 50)
        return {"told": told - t0, "checkpoint": ckpt - t0, "requeued": requeued - t0,
                "running": running - t0, "resumed": resumed - t0, "imds_rtt": rtt}
    finally:
        home.stop()
        imds.stop()


def imds_round_trips(imds, n):
    """Seconds per token + GET of spot/instance-action through the proxy (median)."""
    port = int(imds.url.rsplit(":", 1)[1])
    times = []
    for _ in range(n):
        start = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("PUT", "/latest/api/token", headers={TTL_HEADER: "60"})
        token = conn.getresponse().read().decode()
        conn.request("GET", "/latest/meta-data/spot/instance-action", headers={TOKEN_HEADER: token})
        conn.getresponse().read()
        conn.close()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--poll", type=float, default=2.0, help="YARD_PREEMPTION_POLL_S (default 2)")
    args = p.parse_args()
    if skip_reason():
        print(f"bench_spot: skipped: {skip_reason()}")
        print("RESULT bench_spot skipped")
        return 0
    print(f"bench_spot: {args.runs} runs, poll every {args.poll} s, yard {YARD}, "
          f"load average {os.getloadavg()[0]:.1f}")
    runs = []
    for i in range(args.runs):
        r = one_run(args.poll)
        runs.append(r)
        print(f"run {i + 1}: notice -> told {r['told']:.2f} s, -> checkpoint stored {r['checkpoint']:.2f} s, "
              f"-> requeued {r['requeued']:.2f} s, -> running {r['running']:.2f} s, "
              f"-> resumed line {r['resumed']:.2f} s; IMDS round trip {r['imds_rtt'] * 1000:.2f} ms")
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    after_told = med["requeued"] - med["told"]
    print(f"median: notice -> requeued {med['requeued']:.2f} s = {med['requeued'] / args.poll:.2f} x the poll "
          f"interval ({args.poll} s; the notice is seen within one poll); told -> requeued {after_told:.2f} s "
          f"= {after_told / med['imds_rtt']:.0f} x the IMDS round trip ({med['imds_rtt'] * 1000:.2f} ms); "
          f"notice -> resumed line {med['resumed']:.2f} s")
    print(f"RESULT bench_spot notice_to_requeued_s={med['requeued']:.3f} ratio_to_poll={med['requeued'] / args.poll:.3f} "
          f"told_to_requeued_s={after_told:.3f} notice_to_running_s={med['running']:.3f} "
          f"imds_rtt_ms={med['imds_rtt'] * 1000:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
