"""The dashboard's speed (issue 12), each figure beside a reference measured in
the same run:

1. a job page of a finished 1,000,000-line job: load to first paint, and to
   its last line shown (the server reads the log's events once for the
   page), beside `yard logs JOB` printing the same log to the end;
2. 100 pages following live jobs (up to 4, one per core) on one server:
   the server's CPU per page per second. The pages are the page's own traffic, made by this script
   (each: one event stream of its job, and the cost poll every 5 s), not 100
   browser tabs; one real tab is measured beside them for its share.

Usage: .venv/bin/python bench/bench_dashboard.py [--lines 1000000] [--pages 100] [--seconds 20]
Reports; asserts nothing. Last line: RESULT ...
"""
import argparse
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parents[1]
YARD = Path(os.environ.get("YARD_BIN", REPO / "build" / "yard"))
VENV_BIN = REPO / ".venv" / "bin"
TICKS = os.sysconf("SC_CLK_TCK")
LIVE_JOBS = min(4, os.cpu_count() or 1)


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


class Home:
    def __init__(self, root):
        self.home = Path(root) / "home"
        self.project = Path(root) / "project"
        self.project.mkdir()
        self.env = dict(os.environ, YARD_HOME=str(self.home), PATH=f"{VENV_BIN}:{os.environ['PATH']}")
        self.env.pop("YARD_SERVER", None)
        self.env.pop("YARD_TOKEN", None)

    def yard(self, *args, **kw):
        return subprocess.run([str(YARD), *args], env=self.env, cwd=self.project, capture_output=True,
                              text=True, check=True, **kw).stdout

    def submit(self, script, body, *flags):
        (self.project / script).write_text(body)
        return self.yard("submit", script, *flags).strip()

    def wait(self, job, states, timeout=600):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            state = json.loads(self.yard("status", job, "--json"))["state"]
            if state in states:
                return state
            time.sleep(0.2)
        raise SystemExit(f"{job} did not reach {states} within {timeout}s")

    def url(self):
        return json.loads((self.home / "server.json").read_text())["url"]

    def server_pid(self):
        return json.loads((self.home / "server.json").read_text())["pid"]

    def stop(self):
        out = subprocess.run(["pgrep", "-f", str(self.home)], capture_output=True, text=True).stdout
        for pid in map(int, out.split()):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def login_link(h):
    out = h.yard("dashboard", "--no-browser")
    return re.search(r"(http://\S+/login#code=[0-9a-f]+)", out).group(1)


def bench_log(h, browser, lines):
    job = h.submit("big.sh", f"seq 1 {lines} | sed 's/^/line /'\n")
    h.wait(job, {"succeeded"})
    t = time.monotonic()
    out = subprocess.run([str(YARD), "logs", job], env=h.env, capture_output=True, text=True).stdout
    cli_s = time.monotonic() - t
    assert out.endswith(f"line {lines}\n"), out[-100:]
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.goto(login_link(h))
    page.wait_for_selector("#jobs")
    url = page.url.replace("/jobs", f"/jobs/{job}")
    t = time.monotonic()
    page.goto(url)
    page.wait_for_selector(f"#log .row:text-is('line {lines}')", timeout=60000)
    tail_s = time.monotonic() - t
    paint = page.evaluate("performance.getEntriesByType('paint').map(e => [e.name, e.startTime])")
    first_paint_ms = dict(paint).get("first-paint", float("nan"))
    t = time.monotonic()
    page.goto(url)  # again: the server has the log's index now
    page.wait_for_selector(f"#log .row:text-is('line {lines}')", timeout=60000)
    warm_s = time.monotonic() - t
    page.context.close()
    return first_paint_ms, tail_s, warm_s, cli_s


class FakePage:
    """What a job page asks of the server while open: the job's event stream
    (one connection, read to the end) and the cost every 5 s."""

    def __init__(self, base, cookie, job):
        self.base, self.cookie, self.job = urlparse(base), cookie, job
        self.stop = threading.Event()
        self.events = 0
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.poller = threading.Thread(target=self.poll, daemon=True)

    def conn(self):
        return http.client.HTTPConnection(self.base.hostname, self.base.port, timeout=60)

    def run(self):
        c = self.conn()
        c.request("GET", f"/v1/jobs/{self.job}/events?after=0", headers={"Cookie": self.cookie})
        r = c.getresponse()
        while not self.stop.is_set():
            line = r.fp.readline()
            if not line:
                break
            if line.startswith(b"id:"):
                self.events += 1
        c.close()

    def poll(self):
        while not self.stop.wait(5):
            c = self.conn()
            c.request("GET", "/v1/cost", headers={"Cookie": self.cookie})
            c.getresponse().read()
            c.close()


def session_cookie(h):
    code = login_link(h).split("#code=")[1]
    u = urlparse(h.url())
    c = http.client.HTTPConnection(u.hostname, u.port)
    c.request("POST", "/v1/dashboard/session", body=json.dumps({"code": code}),
              headers={"Content-Type": "application/json", "X-Yard-Dashboard": "1"})
    r = c.getresponse()
    r.read()
    return r.getheader("Set-Cookie").split(";")[0]


def bench_pages(h, browser, pages, seconds):
    # Live jobs: a line every 0.1 s and a metric every second, like training.
    body = ('for i in $(seq 1 100000); do echo "step $i"; '
            'if [ $((i % 10)) = 0 ]; then echo "{\\"epoch\\": $i, \\"loss\\": 1}" >> "$YARD_METRICS"; fi; '
            'sleep 0.1; done\n')
    # One per core, each on its own 1-cpu slice: jobs on `local` (the whole
    # machine) would run one after the other.
    jobs = [h.submit(f"live{i}.sh", body, "--machines", "local-1cpu") for i in range(LIVE_JOBS)]
    for j in jobs:
        h.wait(j, {"running"})
    pid = h.server_pid()
    idle0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    idle_cpu = (cpu_seconds(pid) - idle0) / (time.monotonic() - t0)
    cookie = session_cookie(h)
    fakes = [FakePage(h.url(), cookie, jobs[i % len(jobs)]) for i in range(pages)]
    for f in fakes:
        f.thread.start()
        f.poller.start()
    time.sleep(2)  # every stream has caught up with its job's history
    c0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    busy_cpu = (cpu_seconds(pid) - c0) / (time.monotonic() - t0)
    for f in fakes:
        f.stop.set()
    # One real tab on a live job, for its own share.
    page = browser.new_context().new_page()
    page.goto(login_link(h))
    page.wait_for_selector("#jobs")
    page.goto(page.url.replace("/jobs", f"/jobs/{jobs[0]}"))
    page.wait_for_selector("#log .row")
    c0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    tab_cpu = (cpu_seconds(pid) - c0) / (time.monotonic() - t0)
    page.context.close()
    for j in jobs:
        h.yard("cancel", j)
    return idle_cpu, busy_cpu, tab_cpu, sum(f.events for f in fakes)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--pages", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=20)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        h = Home(tmp)
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"], headless=True)
        try:
            h.yard("jobs")
            fp, tail_s, warm_s, cli_s = bench_log(h, browser, args.lines)
            print(f"job page of a {args.lines:,}-line log: first paint {fp:.0f} ms; last line shown "
                  f"{tail_s:.2f} s (again, index warm: {warm_s:.2f} s)")
            print(f"  reference `yard logs JOB` to its last line: {cli_s:.2f} s "
                  f"-> page/cli {tail_s / cli_s:.2f} (warm {warm_s / cli_s:.2f})")
            idle, busy, tab, events = bench_pages(h, browser, args.pages, args.seconds)
            per_page = (busy - idle) / args.pages
            print(f"{args.pages} pages following {LIVE_JOBS} live jobs: server CPU {busy * 100:.1f} % of a core "
                  f"(no pages: {idle * 100:.1f} %); per page {per_page * 100:.3f} % of a core; "
                  f"{events} events delivered")
            print(f"  one real browser tab on a live job: server CPU {tab * 100:.1f} % of a core "
                  f"(its share {max(0.0, tab - idle) * 100:.2f} %)")
            print(f"RESULT dashboard first_paint_ms={fp:.0f} tail_s={tail_s:.2f} warm_tail_s={warm_s:.2f} "
                  f"yard_logs_s={cli_s:.2f} ratio={tail_s / cli_s:.2f} cpu_per_page_pct={per_page * 100:.3f}")
        finally:
            browser.close()
            h.stop()


if __name__ == "__main__":
    sys.exit(main())
