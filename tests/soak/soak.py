"""The crash soak (issue 15): jobs in flight on two local instances while the
server is SIGKILLed at random moments and agents are SIGKILLed and started
again; afterwards every job has ended, every attempt's output lines are
stored once and in order, every final checkpoint arrives byte for byte and
the ledger bills each second of each instance once.

The soak plays the operator of a shared server: it runs `yard server` itself
(with a job quota that lets every job in) and starts it again after each
kill, as a supervisor would. It talks to the API over HTTP while the server
may be down (a `yard` command would start an embedded server of its own) and
uses the CLI (`yard submit`, `yard logs`, `yard fetch`) only while it is up.

Sizes come from the environment (SOAK_JOBS, SOAK_SERVER_KILLS,
SOAK_AGENT_KILLS, SOAK_LINES, SOAK_SEED) or the command line; the defaults
are the CI size. By hand, at full size:

    python3 tests/soak/soak.py --full            # 20 jobs, 100 + 20 kills
    python3 tests/soak/soak.py --seed 1234       # replay a failed run

tests/soak/test_crash_soak.py runs it under pytest (scripts/test.sh)."""
import argparse
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from waiting import kill_matching, pid_alive, processes_matching, wait_for  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
YARD = Path(os.environ.get("YARD_BIN", REPO / "build" / "yard"))
VENV_BIN = REPO / ".venv" / "bin"
FINAL_STATES = {"succeeded", "failed", "cancelled"}
CHECKPOINT_BYTES = 3 * 1024 * 1024 + 12345  # several chunks, a short last one

# Prints SOAK_LINES numbered lines, each "<nonce> <i>" (the nonce is new in
# every attempt), saving its progress as a checkpoint every SOAK_EVERY lines;
# a requeued attempt resumes from the newest one. At the end it writes
# final.bin, bytes fixed by SOAK_TAG.
JOB = r'''
import os, random, sys, time
n, every, pace = int(os.environ["SOAK_LINES"]), int(os.environ["SOAK_EVERY"]), float(os.environ["SOAK_PACE"])
ckpt = os.environ["YARD_CHECKPOINT_DIR"]
start, resume = 0, os.environ.get("YARD_RESUME_FROM", "")
if resume:
    start = n if os.path.basename(resume) == "final.bin" else int(open(resume).read())
nonce = os.urandom(6).hex()
out = sys.stdout
out.write(f"START {nonce} {start}\n"); out.flush()

def save(name, data):
    with open(os.path.join(ckpt, name + ".tmp"), "wb") as f:
        f.write(data)
    os.rename(os.path.join(ckpt, name + ".tmp"), os.path.join(ckpt, name))

for i in range(start, n):
    out.write(f"{nonce} {i}\n")
    out.flush()
    if i % every == every - 1:
        save("progress.txt", str(i + 1).encode())
    time.sleep(pace)
save("final.bin", random.Random("soak-" + os.environ["SOAK_TAG"]).randbytes(CHECKPOINT_BYTES))
out.write(f"DONE {nonce}\n"); out.flush()
'''.replace("CHECKPOINT_BYTES", str(CHECKPOINT_BYTES))


@dataclass
class Size:
    jobs: int = 6
    server_kills: int = 12
    agent_kills: int = 2
    lines: int = 400
    pace_s: float = 0.02
    every: int = 50
    # Seconds between two faults: uniform in [gap_min_s, gap_max_s] after the
    # server answers again.
    gap_min_s: float = 0.3
    gap_max_s: float = 2.5
    seed: int = field(default_factory=lambda: random.SystemRandom().randrange(1 << 31))

    @staticmethod
    def full():
        return Size(jobs=20, server_kills=100, agent_kills=20, lines=1500, pace_s=0.02, every=100)


@dataclass
class Figures:
    server_kills: int = 0
    agent_kills: int = 0
    agents_restarted: int = 0
    restarted_agents_registered: int = 0
    attempts: int = 0
    lines_checked: int = 0
    lines_replayed: int = 0  # printed again by a resumed attempt (after its checkpoint)
    server_down_s: float = 0.0
    max_restart_s: float = 0.0
    billed_s: float = 0.0
    spools_left: int = 0  # spool files of killed agents, with records the server lacks
    seconds: float = 0.0
    problems: list = field(default_factory=list)


def log(msg):
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Server:
    """`yard server` for one home, supervised by the soak."""

    def __init__(self, home, env, extra_args):
        self.home, self.env, self.extra = home, env, extra_args
        self.proc = None

    def start(self):
        with open(self.home / "soak-server.log", "ab") as out:
            self.proc = subprocess.Popen([str(YARD), "server", "--home", str(self.home), *self.extra],
                                         env=self.env, stdout=out, stderr=out, start_new_session=True)
        t0 = time.monotonic()
        wait_for(lambda: self.proc.poll() is None and self.info().get("pid") == self.proc.pid
                 and self.healthy(), timeout=120, interval=0.05,
                 what=f"yard server to answer (log: {self.home}/soak-server.log)")
        return time.monotonic() - t0

    def info(self):
        try:
            return json.loads((self.home / "server.json").read_text())
        except (OSError, ValueError):
            return {}

    def healthy(self):
        try:
            return self.call("GET", "/v1/health", auth=False, timeout=5).get("ok") is True
        except (OSError, ValueError):
            return False

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.kill()

    def call(self, method, path, body=None, auth=True, timeout=60):
        req = urllib.request.Request(self.info()["url"] + path, method=method,
                                     data=None if body is None else json.dumps(body).encode())
        if auth:
            req.add_header("Authorization", "Bearer " + (self.home / "token").read_text().strip())
        if body is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
        if path.split("?")[0].endswith("/events"):
            return raw.decode()
        return json.loads(raw)

    def call_retrying(self, *args, timeout=120, **kw):
        """The call, retried while the server is down or restarting."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.call(*args, **kw)
            except (OSError, KeyError, ValueError) as e:
                if isinstance(e, urllib.error.HTTPError) and e.code < 500:
                    raise
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


class Agents:
    """Kills agents of the home's local instances and starts them again as a
    supervisor on the instance would: same command line, same environment."""

    def __init__(self, home):
        self.home = home
        self.restarted = []  # Popen of agents the soak started
        self.killed = set()  # instance ids whose agent the soak killed

    def running(self):
        return [p for p in processes_matching(f"--dir {self.home}/instances/") if self._is_agent(p)]

    @staticmethod
    def _is_agent(pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            return len(argv) > 1 and argv[1] == b"agent"
        except OSError:
            return False

    def kill_and_restart(self, pid):
        try:
            argv = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]]
            env = dict(e.decode().split("=", 1) for e in
                       Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if b"=" in e)
            os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError):
            return False  # it ended by itself meanwhile
        wait_for(lambda: not pid_alive(pid), timeout=30, what=f"agent {pid} to die")
        workdir = Path(argv[argv.index("--dir") + 1])
        self.killed.add(argv[argv.index("--instance") + 1])
        with open(workdir / "agent.log", "ab") as out:
            out.write(b"----- soak: SIGKILLed this agent and started it again\n")
            out.flush()
            self.restarted.append(subprocess.Popen(argv, env=env, stdout=out, stderr=out,
                                                   start_new_session=True))
        return True

    def stop(self):
        for p in self.restarted:
            if p.poll() is None:
                p.kill()
                p.wait()


class Soak:
    def __init__(self, size: Size, root: Path, home: Path = None):
        self.size = size
        self.rng = random.Random(size.seed)
        self.root = root
        self.home = home or root / "home"
        self.project = root / "project"
        self.yard_path = YARD
        self.home.mkdir(parents=True)
        self.project.mkdir(parents=True)
        self.env = dict(os.environ)
        self.env["YARD_HOME"] = str(self.home)
        self.env.pop("YARD_SERVER", None)
        self.env.pop("YARD_TOKEN", None)
        self.env["PATH"] = f"{VENV_BIN}:{self.env.get('PATH', '')}"
        self.server = Server(self.home, self.env,
                             ["--max-active-jobs", str(size.jobs + 5), "--max-active-instances", "2"])
        self.agents = Agents(self.home)
        self.figures = Figures()
        self.jobs = {}  # id -> tag

    # ------------------------------------------------------------- running

    def run(self):
        t0 = time.monotonic()
        log(f"seed {self.size.seed} (replay: SOAK_SEED={self.size.seed}); size {self.size}")
        try:
            self.server.start()
            self.submit_all()
            self.faults()
            self.wait_all_ended()
            self.check()
        finally:
            self.figures.seconds = time.monotonic() - t0
            self.agents.stop()
            self.stop_everything()
        return self.figures

    def yard(self, *args, timeout=300):
        proc = subprocess.run([str(YARD), *map(str, args)], cwd=self.project, env=self.env,
                              capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise AssertionError(f"yard {' '.join(map(str, args))} exited {proc.returncode}: "
                                 f"{proc.stderr[-2000:]}")
        return proc.stdout

    def submit_all(self, first=0):
        """Submits jobs j<first>... up to size.jobs of them."""
        (self.project / "job.py").write_text(JOB)
        s = self.size
        for k in range(first, first + s.jobs):
            tag = f"j{k}"
            out = self.yard("submit", "job.py", "--json", "-m", "local-1cpu", "--cool-down", "600",
                            "--max-restarts", "1000", "-d", f"soak {tag}",
                            "-e", f"SOAK_TAG={tag}", "-e", f"SOAK_LINES={s.lines}",
                            "-e", f"SOAK_EVERY={s.every}", "-e", f"SOAK_PACE={s.pace_s}")
            job = json.loads(out)
            job = job.get("job", job)
            self.jobs[job["id"]] = tag
        log(f"submitted {len(self.jobs)} jobs")

    def faults(self):
        s = self.size
        plan = ["server"] * s.server_kills + ["agent"] * s.agent_kills
        self.rng.shuffle(plan)
        for n, what in enumerate(plan, 1):
            time.sleep(self.rng.uniform(s.gap_min_s, s.gap_max_s))
            if what == "server":
                self.kill_server()
            else:
                self.kill_agent()
            if n % 10 == 0:
                log(f"{n}/{len(plan)} faults; jobs: {self.states_summary()}")

    def kill_server(self):
        t0 = time.monotonic()
        self.server.kill()
        self.figures.server_kills += 1
        # A random pause while it is down, then its supervisor starts it again.
        time.sleep(self.rng.uniform(0, 1.0))
        up = self.server.start()
        self.figures.max_restart_s = max(self.figures.max_restart_s, up)
        self.figures.server_down_s += time.monotonic() - t0

    def kill_agent(self):
        running = sorted(self.agents.running())
        if not running:
            log("no agent running to kill; skipped")
            return
        pid = self.rng.choice(running)
        if self.agents.kill_and_restart(pid):
            self.figures.agent_kills += 1
            self.figures.agents_restarted += 1

    def states(self):
        return {j["id"]: j for j in self.server.call_retrying("GET", "/v1/jobs?limit=1000")["jobs"]
                if j["id"] in self.jobs}

    def states_summary(self):
        counts = {}
        for j in self.states().values():
            counts[j["state"]] = counts.get(j["state"], 0) + 1
        return ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))

    def wait_all_ended(self):
        s = self.size
        budget = 120 + s.jobs * s.lines * (s.pace_s + 0.01) * 1.5
        wait_for(lambda: all(j["state"] in FINAL_STATES for j in self.states().values()),
                 timeout=budget, interval=1, what=f"every job to end ({self.states_summary()})")
        log(f"every job ended: {self.states_summary()}")
        # End the cooling instances, so that every interval of the ledger closes.
        self.server.call_retrying("POST", "/v1/instances/down", {})

    # ------------------------------------------------------------- checking

    def problem(self, text):
        self.figures.problems.append(text)
        log("PROBLEM: " + text)

    def check(self, only=None):
        """Checks every job (or those in `only`), the ledger and the agents."""
        for job_id, job in sorted(self.states().items()):
            if only is not None and job_id not in only:
                continue
            tag = self.jobs[job_id]
            if job["state"] != "succeeded":
                self.problem(f"{job_id} ({tag}) ended {job['state']}: {job.get('message')}")
            text = self.check_events(job_id, job)
            self.check_lines(job_id, text)
            logs = self.yard("logs", job_id)
            if logs != text:
                self.problem(f"{job_id}: `yard logs` differs from its output events")
            self.check_checkpoint(job_id, tag)
        self.check_ledger()
        self.check_agents_gone()
        self.check_instance_folders()

    def check_events(self, job_id, job):
        """The output of the job's events, in order; checks the numbering."""
        raw = self.server.call_retrying("GET", f"/v1/jobs/{job_id}/events?after=0&follow=0")
        events = [json.loads(line[len("data: "):]) for line in raw.splitlines()
                  if line.startswith("data: ")]
        seqs = [e["seq"] for e in events]
        if seqs != list(range(1, len(seqs) + 1)):
            self.problem(f"{job_id}: event numbers are not 1..{len(seqs)} without a gap")
        if job.get("last_seq") not in (None, len(seqs)):
            self.problem(f"{job_id}: last_seq {job.get('last_seq')} but {len(seqs)} events")
        return "".join(e.get("data", "") for e in events if e.get("kind") == "output")

    def check_lines(self, job_id, text):
        """Each attempt's lines once and in order from where it resumed; the
        attempts together cover every line; the last one finished."""
        n = self.size.lines
        segments = []  # [nonce, start, next expected, done]
        seen = set()
        for line in text.split("\n")[:-1] if text.endswith("\n") else text.split("\n"):
            if "----- yard" in line:
                cut = line[:line.index("----- yard")]
                if cut and not (segments and f"{segments[-1][0]} {segments[-1][2]}".startswith(cut)):
                    self.problem(f"{job_id}: unexpected text before a yard marker: {cut!r}")
                continue
            parts = line.split()
            if len(parts) == 3 and parts[0] == "START":
                start = int(parts[2])
                if segments and start > segments[-1][2]:
                    self.problem(f"{job_id}: attempt resumed at {start} but lines from "
                                 f"{segments[-1][2]} were never stored")
                if not segments and start != 0:
                    self.problem(f"{job_id}: first attempt started at {start}")
                segments.append([parts[1], start, start, False])
                self.figures.attempts += 1
                if len(segments) > 1:
                    self.figures.lines_replayed += max(0, segments[-2][2] - start)
            elif len(parts) == 2 and parts[0] == "DONE" and segments and parts[1] == segments[-1][0]:
                if segments[-1][2] != n:
                    self.problem(f"{job_id}: DONE after line {segments[-1][2] - 1} of {n}")
                segments[-1][3] = True
            elif len(parts) == 2 and segments and parts[0] == segments[-1][0] and parts[1].isdigit():
                i = int(parts[1])
                if i != segments[-1][2]:
                    what = "again" if i < segments[-1][2] else "early"
                    self.problem(f"{job_id}: line {i} {what} in attempt {segments[-1][0]} "
                                 f"(expected {segments[-1][2]})")
                    return
                segments[-1][2] = i + 1
                seen.add(i)
                self.figures.lines_checked += 1
            else:
                self.problem(f"{job_id}: unexpected output line {line[:200]!r}")
                return
        if not segments or not segments[-1][3]:
            self.problem(f"{job_id}: the last attempt did not print DONE")
        if len(seen) != n:
            self.problem(f"{job_id}: {n - len(seen)} of {n} lines never stored")

    def check_checkpoint(self, job_id, tag):
        dest = self.root / "fetched" / job_id
        self.yard("fetch", job_id, "--to", dest)
        want = hashlib.sha256(random.Random("soak-" + tag).randbytes(CHECKPOINT_BYTES)).hexdigest()
        files = list(dest.rglob("final.bin"))
        got = hashlib.sha256(files[0].read_bytes()).hexdigest() if files else None
        if got != want:
            self.problem(f"{job_id}: final.bin {'missing' if got is None else 'differs'} "
                         f"(fetched into {dest})")

    def check_ledger(self):
        """Per instance, intervals that neither overlap nor leave a gap, all
        closed, none billed past the instance's end."""
        cost = self.server.call_retrying("GET", "/v1/cost")
        machines = self.server.call_retrying("GET", "/v1/machines?all=1")
        ended_at = {i["id"]: i.get("state_since") for i in machines["instances"]}
        by_instance = {}
        for e in cost["entries"]:
            by_instance.setdefault(e["instance"], []).append(e)
            self.figures.billed_s += e["seconds"]
            if e["open"]:
                self.problem(f"ledger: {e['instance']} still billed ({e['kind']} open) after `yard down`")
        for inst, entries in sorted(by_instance.items()):
            entries.sort(key=lambda e: (e["start"], e["end"]))
            for a, b in zip(entries, entries[1:]):
                if b["start"] < a["end"] - 0.001:
                    self.problem(f"ledger: {inst} billed twice for {a['end'] - b['start']:.3f} s "
                                 f"({a['kind']} {a['start']:.3f}-{a['end']:.3f} and "
                                 f"{b['kind']} {b['start']:.3f}-{b['end']:.3f})")
                elif b["start"] > a["end"] + 0.5:
                    self.problem(f"ledger: {inst} not billed for {b['start'] - a['end']:.3f} s "
                                 f"between {a['end']:.3f} and {b['start']:.3f}")
            end = ended_at.get(inst)
            if end is not None and entries[-1]["end"] > end + 0.5:
                self.problem(f"ledger: {inst} billed until {entries[-1]['end']:.3f}, "
                             f"after it ended at {end:.3f}")

    def check_agents_gone(self):
        """Every instance ended: no agent of this home may keep running."""
        try:
            wait_for(lambda: not self.agents.running(), timeout=60, interval=0.5,
                     what="every agent of the soak's instances to exit")
        except AssertionError as e:
            self.problem(f"{e}: {self.agents.running()}")

    def check_instance_folders(self):
        """An instance that ended keeps agent.log only: its spool (whose
        records the server holds) goes too. Only an agent the soak killed may
        leave spool files, with records the server never got."""
        def leftovers():
            return sorted(str(p.relative_to(self.home)) for p in self.home.glob("instances/*/*")
                          if p.name != "agent.log" and p.parent.name not in self.agents.killed)
        try:  # the folders are emptied once each agent is gone
            wait_for(lambda: not leftovers(), timeout=60, interval=0.5,
                     what="ended instances' folders to hold agent.log only")
        except AssertionError:
            self.problem(f"ended instances keep {leftovers()[:10]}")
        # A killed agent's spool goes too once the server has moved past its
        # attempt (swept as later instances end, the last ones at `yard down`).
        spools = sorted(str(p.relative_to(self.home)) for p in self.home.glob("instances/*/spool/*.spool"))
        self.figures.spools_left = len(spools)
        if spools:
            self.problem(f"spool files left after every job ended: {spools[:10]}")

    def stop_everything(self):
        self.server.stop()
        kill_matching(str(self.home))


def report(size, figures):
    f = figures
    return (f"seed {size.seed}: {size.jobs} jobs x {size.lines} lines on 2 local instances; "
            f"{f.server_kills} server kills (down {f.server_down_s:.0f} s in all, slowest restart "
            f"{f.max_restart_s:.1f} s), {f.agent_kills} agent kills and restarts; {f.attempts} "
            f"attempts, {f.lines_checked} lines checked ({f.lines_replayed} printed again after a "
            f"resume), {f.billed_s:.0f} instance-seconds billed; {f.spools_left} spool files "
            f"left by killed agents; {len(f.problems)} problems; "
            f"{f.seconds:.0f} s")


def size_from(args=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full", action="store_true", help="the full size: 20 jobs, 100 + 20 kills")
    for name in ("jobs", "server_kills", "agent_kills", "lines", "seed"):
        p.add_argument("--" + name.replace("_", "-"), type=int,
                       default=os.environ.get("SOAK_" + name.upper()))
    a = p.parse_args(args)
    size = Size.full() if a.full or os.environ.get("SOAK_FULL") else Size()
    for name in ("jobs", "server_kills", "agent_kills", "lines", "seed"):
        if getattr(a, name) is not None:
            setattr(size, name, int(getattr(a, name)))
    return size


def main():
    import tempfile
    size = size_from()
    root = Path(tempfile.mkdtemp(prefix="yard-soak-"))
    figures = Soak(size, root).run()
    print(report(size, figures))
    for p in figures.problems:
        print("  " + p)
    print(f"(its files are in {root})")
    return 1 if figures.problems else 0


if __name__ == "__main__":
    sys.exit(main())
