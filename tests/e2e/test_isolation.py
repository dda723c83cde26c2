"""A job is a tenant, not an insider (issue 15): on a server shared by alice
and bob, bob's job tries every way found by the attack run to reach alice's
data, the server's secrets or alice's job, from inside (its environment, its
files, /proc) and with an agent credential from outside; all are refused,
while alice's job ends normally with all its output and every job still
reads its bundle and writes its checkpoints."""
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest

from conftest import processes_matching, wait_for
from test_api_security import call
from test_slurm import cluster, shared, syard  # noqa: F401 (fixtures)
from test_ssh import hosts, hyard  # noqa: F401 (fixtures)

# Bob's job: tries each way in from inside and prints one line per try,
# "OK <what>" when refused, "LEAK <what>: <detail>" when not.
ATTACK = r'''
import glob, json, os, re, sys, urllib.request, urllib.error

TOKEN = re.compile(rb"y(?:ab|it|ut|at)_[0-9a-f]{16,}")
found = set()

def say(ok, what, detail=""):
    print(("OK " if ok else "LEAK ") + what + (": " + detail if detail else ""), flush=True)

def scan(what, data):
    hits = set(TOKEN.findall(data))
    found.update(hits)
    return hits

# 1. The environment (the server's was given secrets: SECRET_MARK).
env = "\n".join(f"{k}={v}" for k, v in os.environ.items()).encode()
marked = [k for k, v in os.environ.items() if os.environ["T_SECRET_MARK"] in v and k != "T_SECRET_MARK"]
say(not scan("env", env) and not any("TOKEN" in k for k in os.environ) and not marked,
    "environment", ",".join([k for k in os.environ if "TOKEN" in k] + marked))

# 2. Files: the server's home, other instances, the agent's own folder.
home, inst_dir = os.environ["T_HOME"], os.environ["T_ALICE_INST_DIR"]
own_agent = os.path.abspath("../../..")  # work/ is in <agent folder>/jobs/<job>-<attempt>/
for path in [home + "/token", home + "/agent_token", home + "/state.db", home + "/server.json",
             own_agent + "/credential", own_agent + "/agent.log", inst_dir + "/credential",
             inst_dir + "/agent.log"]:
    try:
        data = open(path, "rb").read()
        scan(path, data)
        say(False, "read " + path, repr(data[:40]))
    except OSError:
        say(True, "read " + path)
# Only the folders on the way to its own job folder may show (mount points),
# and its own agent's Python environments (read-only) and warm runners' folder.
own = os.getcwd()
shown = [own_agent + "/envs", own_agent + "/warm"]
for d in [home, home + "/blobs", home + "/instances", inst_dir, own_agent, own_agent + "/spool"]:
    try:
        seen = [e for e in os.listdir(d) if not (own + "/").startswith(os.path.join(d, e) + "/")
                and os.path.join(d, e) not in shown]
        say(not seen, "list " + d, ",".join(seen[:5]))
    except OSError:
        say(True, "list " + d)
chunk = os.environ["T_ALICE_CHUNK"]
hits = glob.glob(home + "/blobs/**/" + chunk + "*", recursive=True)
say(not hits, "alice's chunk file", ",".join(hits))

# 3. /proc: every process's environment and command line (the agent's).
leaked = []
for p in glob.glob("/proc/[0-9]*"):
    for f in ("environ", "cmdline"):
        try:
            if scan(p, open(p + "/" + f, "rb").read()):
                leaked.append(p + "/" + f)
        except OSError:
            pass
say(not leaked, "/proc environ", ",".join(leaked))

# 4. Whatever token was found, against the server (the loopback port).
server = os.environ["T_SERVER"]
def call(path, token, body=None):
    req = urllib.request.Request(server + path, method="POST" if body is not None else "GET",
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Authorization": "Bearer " + token,
                                          "Content-Type": "application/json"})
    try:
        return urllib.request.urlopen(req, timeout=10).status
    except urllib.error.HTTPError as e:
        return e.code
for t in sorted(found):
    t = t.decode()
    for what in ("T_ALICE_CHUNK", "T_ALICE_ARTIFACT"):
        status = call("/v1/blobs/" + os.environ[what], t)
        say(status != 200, "GET " + what + " with a found token", str(status))
say(True, "tokens found: %d" % len(found))
print("attack done", flush=True)
'''


SECRET_MARK = "sekrit-5c1e"


def write_sim_catalog(yard):
    yard.home.mkdir(parents=True, exist_ok=True)
    types = [{"name": "simbox", "provider": "sim", "cpus": 1, "spot_price": 0.3,
              "on_demand_price": 0.9, "default_market": "on-demand"}]
    catalog = {"version": 1, "types": types,
               "providers": {"sim": {"scenario": {"version": 1, "types": {"simbox": {}}}}}}
    (yard.home / "catalog.json").write_text(json.dumps(catalog))


class Users:
    """alice and bob on one server, each submitting through the CLI."""

    def __init__(self, yard):
        self.yard = yard
        yard.run("token", "create", "nobody")  # makes home/state.db
        self.url = None
        self.tokens = {u: yard.run("token", "create", u).stdout.strip() for u in ("alice", "bob")}

    def env(self, user):
        if self.url is None:
            # The embedded server starts with secrets of its own in its
            # environment (alice's token among them): no job may see them.
            self.yard.run("jobs", env=dict(self.yard.env, **self.server_secrets()))
            self.url = self.yard.server_info()["url"]
        env = dict(self.yard.env, YARD_SERVER=self.url, YARD_TOKEN=self.tokens[user])
        if "fingerprint" in self.yard.server_info():  # a TLS server (test_ssh's): pinned as its users would
            env["YARD_SERVER_FINGERPRINT"] = self.yard.server_info()["fingerprint"]
        return env

    def server_secrets(self):
        return {"ALICE_API_TOKEN": self.tokens["alice"], "AWS_SECRET_ACCESS_KEY": SECRET_MARK + "-aws",
                "DB_PASSWORD": SECRET_MARK + "-db"}

    def run(self, user, *args, cwd=None, check=True):
        return self.yard.run(*args, cwd=cwd, check=check, env=self.env(user))

    def job(self, user, job_id):
        return json.loads(self.run(user, "status", job_id, "--json").stdout)

    def wait_state(self, user, job_id, states, timeout=90):
        states = {states} if isinstance(states, str) else set(states)
        return wait_for(lambda: (j := self.job(user, job_id))["state"] in states and j,
                        timeout=timeout, interval=0.1, what=f"{job_id} to reach {states}")

    def get(self, user, path):
        status, body = call(self.url + path, token=self.tokens[user])
        assert status == 200, (path, status, body)
        return json.loads(body)

    def logs(self, user, job_id):
        return self.run(user, "logs", job_id).stdout


def job_folder(yard, inst):
    return wait_for(lambda: next(iter((yard.home / "instances" / inst / "jobs").glob("*-1")), None),
                    timeout=30, what=f"the job folder on {inst}")


def credential_of(yard, inst):
    return (yard.home / "instances" / inst / "credential").read_text().strip()


@pytest.fixture
def users(yard):
    return Users(yard)


@pytest.mark.parametrize("machine", ["local-1cpu", "simbox"])
def test_bobs_job_reaches_nothing_of_alice_nor_the_server(users, yard, tmp_path, machine):
    if machine == "simbox":
        write_sim_catalog(yard)
    a_proj, b_proj = tmp_path / "alice", tmp_path / "bob"
    a_proj.mkdir()
    b_proj.mkdir()
    # Alice: a finished job with an artifact, then a job that runs until told.
    (a_proj / "data.txt").write_text("alice's private data\n")
    (a_proj / "first.sh").write_text('cat data.txt; cp data.txt "$YARD_OUTPUT_DIR/result.txt"\n')
    first = users.run("alice", "submit", "first.sh", "-m", machine, cwd=a_proj).stdout.strip()
    users.wait_state("alice", first, "succeeded")
    artifact = users.get("alice", f"/v1/jobs/{first}/artifacts")["artifacts"][0]["entry"]["chunks"][0][0]
    bundle_chunk = hashlib.sha256(b"alice's private data\n").hexdigest()
    (a_proj / "run.sh").write_text(
        'echo "alice start"; echo weights > "$YARD_CHECKPOINT_DIR/w.ckpt"\n'
        'while [ ! -e go ]; do sleep 0.05; done; echo "alice done"\n')
    alice = users.run("alice", "submit", "run.sh", "-m", machine, cwd=a_proj).stdout.strip()
    a_inst = users.wait_state("alice", alice, "running")["instance"]
    a_folder = job_folder(yard, a_inst)

    # Bob's job attacks from inside, then waits while the test tries his
    # instance's credential from outside.
    (b_proj / "attack.py").write_text(ATTACK)
    (b_proj / "run.sh").write_text('python3 attack.py; while [ ! -e go ]; do sleep 0.05; done; echo "bob done"\n')
    env = {"T_HOME": str(yard.home), "T_ALICE_INST_DIR": str(yard.home / "instances" / a_inst),
           "T_ALICE_CHUNK": bundle_chunk, "T_ALICE_ARTIFACT": artifact, "T_SERVER": users.url,
           "T_SECRET_MARK": SECRET_MARK}
    bob = users.run("bob", "submit", "run.sh", "-m", machine,
                    *[a for k, v in env.items() for a in ("--env", f"{k}={v}")], cwd=b_proj).stdout.strip()
    b_inst = users.wait_state("bob", bob, "running")["instance"]
    b_folder = job_folder(yard, b_inst)
    wait_for(lambda: "attack done" in users.logs("bob", bob), timeout=60, interval=0.2,
             what="bob's attack to finish")
    out = users.logs("bob", bob)
    assert "LEAK" not in out, out
    assert out.count("OK ") >= 15, out

    # From outside, with bob's instance credential (as if the job had it).
    cred = credential_of(yard, b_inst)
    url = users.url
    bob_chunk = hashlib.sha256(b"python3 attack.py; while [ ! -e go ]; do sleep 0.05; done; "
                               b"echo \"bob done\"\n").hexdigest()
    assert call(f"{url}/v1/blobs/{bob_chunk}", token=cred)[0] == 200, "his own job's bundle"
    for chunk in (bundle_chunk, artifact):
        assert call(f"{url}/v1/blobs/{chunk}", token=cred)[0] == 404, chunk
    refused = [
        ("POST", "/v1/agents/register", {"instance": a_inst, "resources": {}}),
        ("POST", f"/v1/agents/{a_inst}/heartbeat", {}),
        ("GET", f"/v1/agents/{a_inst}/work?wait=0", None),
        ("POST", f"/v1/agents/{a_inst}/events",
         {"job": alice, "attempt": 1, "first": 3, "records": [{"kind": "output", "data": "INJECTED\n"}]}),
        ("POST", f"/v1/agents/{b_inst}/events",
         {"job": alice, "attempt": 1, "first": 3, "records": [{"kind": "output", "data": "INJECTED\n"}]}),
        ("GET", "/v1/jobs", None),
    ]
    for method, path, body in refused:
        status, reply = call(url + path, method, cred, body)
        assert status == 403, (path, status, reply)
    # Records for his own job that name alice's chunks as his artifacts
    # (which would make them his): refused, he holds none of their bytes.
    for chunk in (bundle_chunk, artifact):
        claim = {"kind": "artifact", "dir": "outputs",
                 "entry": {"path": "stolen.txt", "mode": 420, "size": 21, "chunks": [[chunk, 21]]}}
        status, reply = call(f"{url}/v1/agents/{b_inst}/events", "POST", cred,
                             {"job": bob, "attempt": 1, "first": 1000000, "records": [claim]})
        assert status == 409, (status, reply)  # where his stream stands
        next_seq = json.loads(reply)["acked"] + 1
        status, reply = call(f"{url}/v1/agents/{b_inst}/events", "POST", cred,
                             {"job": bob, "attempt": 1, "first": next_seq, "records": [claim]})
        assert status == 403, (chunk, status, reply)
        assert call(f"{url}/v1/blobs/{chunk}", token=users.tokens["bob"])[0] == 404, chunk
    # A bootstrap is single-use, and the agent's own environment holds none.
    agent_pids = processes_matching(f"--instance {b_inst}")
    assert agent_pids
    for pid in agent_pids:
        environ = open(f"/proc/{pid}/environ", "rb").read()
        assert b"yab_" not in environ and b"yit_" not in environ and b"YARD_TOKEN=" not in environ
    assert not (yard.home / "agent_token").exists()

    # The probe is not blind: run outside the sandbox, from the agent's
    # folder, with the server's environment, it finds the leaks.
    if machine == "local-1cpu":
        probe = subprocess.run([sys.executable, str(b_proj / "attack.py")], cwd=b_folder / "work",
                               env=dict(yard.env, **users.server_secrets(), **env),
                               capture_output=True, text=True, timeout=60)
        leaks = probe.stdout
        for what in ("LEAK environment", f"LEAK read {yard.home}/token", f"LEAK read {yard.home}/state.db",
                     "/credential", "LEAK list " + str(yard.home / "instances"), "LEAK alice's chunk file",
                     "LEAK GET T_ALICE_CHUNK with a found token: 200"):
            assert what in leaks, (what, leaks, probe.stderr)

    # Alice's job ends normally, with all its output and checkpoint.
    (a_folder / "work" / "go").write_text("")
    (b_folder / "work" / "go").write_text("")
    users.wait_state("alice", alice, "succeeded")
    users.wait_state("bob", bob, "succeeded")
    log = users.logs("alice", alice)
    assert log == "alice start\nalice done\n", log
    got = tmp_path / "got"
    users.run("alice", "fetch", alice, "--to", got)
    assert (got / "checkpoints" / "w.ckpt").read_text() == "weights\n"
    assert "alice's private data" in users.logs("alice", first)


def test_cancel_ends_a_confined_jobs_whole_tree(yard, project):
    marker = "1000.123"
    (project / "job.sh").write_text(
        f"setsid -f sleep {marker}\n"
        f"sh -c 'trap \"\" TERM; exec sleep {marker}' &\n"
        "echo started; wait\n")
    job_id = yard.run("submit", "job.sh", cwd=project).stdout.strip()
    wait_for(lambda: "started" in yard.run("logs", job_id).stdout, timeout=60, interval=0.1,
             what="the job to start")
    pids = wait_for(lambda: len(p := processes_matching(f"sleep {marker}")) == 2 and p, timeout=10,
                    what="both sleeps")
    yard.run("cancel", job_id)
    yard.wait_state(job_id, "cancelled", timeout=60)
    wait_for(lambda: not processes_matching(f"sleep {marker}"), timeout=20,
             what="every process of the cancelled job to end")
    assert all(not os.path.exists(f"/proc/{p}/cmdline") or not open(f"/proc/{p}/cmdline").read()
               for p in pids)


# ---- SSH and Slurm. An SSH host or a Slurm node that can (bubblewrap, as
# here) confines jobs: the job cannot read its agent's credential nor see
# the other instances, and still reads the host's own data. On Slurm the
# server's home (and so every instance folder) is on the storage the nodes
# share: the job cannot read the server's token, database or blobs there. ----

PROBE = r'''
import json, os, ssl, urllib.request, urllib.error
# The server may speak TLS (test_ssh's does): the probe skips the certificate
# check, as an attacker would; what is tested is the server's answer.
insecure = ssl._create_unverified_context()
bad = sorted(k for k, v in os.environ.items()
             if "TOKEN" in k or v.startswith(("yab_", "yit_", "yut_")))
print("env secrets:", ",".join(bad) or "none", flush=True)
agent_dir = os.path.abspath("../../..")  # work/ is in <agent folder>/jobs/<job>-<attempt>/
try:
    cred = open(agent_dir + "/credential").read().strip()
    print("credential: read", flush=True)
except OSError:
    cred = "none"
    print("credential: unreadable", flush=True)
print("instances seen:", ",".join(sorted(os.listdir(os.path.dirname(agent_dir)))), flush=True)
print("host data:", open(os.environ["T_DATA"]).read(), flush=True)
own, alice_inst, alice_job = os.path.basename(agent_dir), os.environ["T_INST"], os.environ["T_JOB"]
home = os.environ.get("T_HOME")
if home:  # the server's home, where the nodes see it
    for name in ("token", "state.db", "instances/" + alice_inst + "/credential"):
        try:
            open(os.path.join(home, name), "rb").read(1)
            print("server's", name + ": read", flush=True)
        except OSError:
            print("server's", name + ": unreadable", flush=True)
    chunk = os.environ["T_CHUNK"]
    for path in (home + "/blobs", home + "/blobs/" + chunk[:2]):
        try:
            print("listed", path.replace(home, "HOME") + ":", ",".join(os.listdir(path)) or "empty", flush=True)
        except OSError:
            print("listed", path.replace(home, "HOME") + ": refused", flush=True)
for path in (f"/v1/agents/{alice_inst}/events", f"/v1/agents/{own}/events"):
    body = {"job": alice_job, "attempt": 1, "first": 2,
            "records": [{"kind": "output", "data": "INJECTED\n"}]}
    req = urllib.request.Request(os.environ["T_SERVER"] + path, data=json.dumps(body).encode(),
                                 method="POST", headers={"Authorization": "Bearer " + cred,
                                                         "Content-Type": "application/json"})
    try:
        status = urllib.request.urlopen(req, timeout=10, context=insecure).status
    except urllib.error.HTTPError as e:
        status = e.code
    print("records for alice via", "her instance" if alice_inst in path else "mine", status, flush=True)
'''


@pytest.fixture
def host_data():
    """A file of the host's own data, outside /tmp (private in a sandbox)."""
    folder = tempfile.mkdtemp(prefix="yard-host-data-", dir="/srv")
    path = os.path.join(folder, "x.txt")
    with open(path, "w") as f:
        f.write("dataset")
    os.chmod(folder, 0o755)
    yield path
    shutil.rmtree(folder)


def cross_instance_probe(yard, tmp_path, alice_machine, bob_machine, confined, data, probe_home=False):
    """Bob's job on `bob_machine` probes alice's on `alice_machine`; with
    `probe_home`, also the server's home (its token, database, blobs and
    alice's instance credential, each first checked to be there)."""
    users = Users(yard)
    a_proj, b_proj = tmp_path / "alice", tmp_path / "bob"
    a_proj.mkdir()
    b_proj.mkdir()
    (a_proj / "run.sh").write_text('echo "alice start"; while [ ! -e go ]; do sleep 0.05; done; echo "alice done"\n')
    alice = users.run("alice", "submit", "run.sh", "-m", alice_machine, cwd=a_proj).stdout.strip()
    job = users.wait_state("alice", alice, "running", timeout=120)
    wait_for(lambda: "alice start" in users.logs("alice", alice), timeout=60, interval=0.2,
             what="alice's first line")
    (b_proj / "probe.py").write_text(PROBE)
    (b_proj / "probe.sh").write_text("python3 probe.py\n")
    chunk = hashlib.sha256((a_proj / "run.sh").read_bytes()).hexdigest()
    extra = []
    if probe_home:
        # What the job must not reach is there, on the storage it shares.
        for name in ("token", "state.db", f"instances/{job['instance']}/credential",
                     f"blobs/{chunk[:2]}/{chunk}"):
            assert (yard.home / name).is_file(), name
        extra = ["--env", f"T_HOME={yard.home}", "--env", f"T_CHUNK={chunk}"]
    bob = users.run("bob", "submit", "probe.sh", "-m", bob_machine, "--env", f"T_INST={job['instance']}",
                    "--env", f"T_JOB={alice}", "--env", f"T_SERVER={users.url}", "--env", f"T_DATA={data}",
                    *extra, cwd=b_proj).stdout.strip()
    bob_job = users.wait_state("bob", bob, "succeeded", timeout=120)
    out = users.logs("bob", bob)
    assert "env secrets: none\n" in out, out
    assert "host data: dataset\n" in out, out
    if confined:
        assert "credential: unreadable\n" in out, out
        assert f"instances seen: {bob_job['instance']}\n" in out, out
        refused = "401"  # no credential to show
    else:
        assert "credential: read\n" in out, out
        refused = "403"  # its own instance's credential, good for its own job only
    assert f"records for alice via her instance {refused}\n" in out, out
    assert f"records for alice via mine {refused}\n" in out, out
    if probe_home:
        for name in ("token", "state.db", f"instances/{job['instance']}/credential"):
            assert f"server's {name}: unreadable\n" in out, out
        # Hidden folders show empty (a private tmpfs) or not at all.
        assert re.search(r"^listed HOME/blobs: (empty|refused)$", out, re.M), out
        assert re.search(rf"^listed HOME/blobs/{chunk[:2]}: (empty|refused)$", out, re.M), out
    return users, alice


def test_ssh_jobs_run_confined_read_the_hosts_data_and_cannot_post_for_another_instance(
        hyard, hosts, tmp_path, host_data):
    users, alice = cross_instance_probe(hyard, tmp_path, "ssh-a", "ssh-b", confined=True, data=host_data)
    users.run("alice", "cancel", alice)
    users.wait_state("alice", alice, "cancelled")
    assert "INJECTED" not in users.logs("alice", alice)


def test_slurm_jobs_run_confined_reach_no_secret_and_cannot_post_for_another_instance(
        syard, cluster, tmp_path, host_data):
    users, alice = cross_instance_probe(syard, tmp_path, "slurm-1", "slurm-1", confined=True, data=host_data,
                                        probe_home=True)
    users.run("alice", "cancel", alice)
    users.wait_state("alice", alice, "cancelled")
    assert "INJECTED" not in users.logs("alice", alice)


# Each rank of a multi-node Slurm job, on its own node: the same sandbox.
# srun stays outside it (the agent's): the job itself cannot reach munge's
# socket, so cannot speak to Slurm as the server's user (here the cluster's
# slurm.conf, in /tmp, is out of its view too).
RANK_PROBE = r'''
agent=$(cd ../../.. && pwd)
if cat "$agent/credential" >/dev/null 2>&1; then echo "credential: read"; else echo "credential: unreadable"; fi
echo "instances seen: $(ls "$(dirname "$agent")" | tr '\n' ' ')"
if cat "$T_HOME/token" >/dev/null 2>&1; then echo "token: read"; else echo "token: unreadable"; fi
if [ -S "$T_MUNGE" ]; then echo "munge: reachable"; else echo "munge: hidden"; fi
if squeue -h >/dev/null 2>&1; then echo "slurm: answered"; else echo "slurm: refused"; fi
echo "host data: $(cat "$T_DATA")"
'''


def test_each_rank_of_a_multi_node_slurm_job_runs_confined(syard, cluster, tmp_path, host_data):
    proj = tmp_path / "ranks"
    proj.mkdir()
    (proj / "probe.sh").write_text(RANK_PROBE)
    proc = syard.run("fit", "probe.sh", "--machines", "slurm-2node", "--nodes", "2",
                     "--env", f"T_HOME={syard.home}", "--env", f"T_DATA={host_data}",
                     "--env", f"T_MUNGE={cluster.munge_dir / 'sock'}", cwd=proj, timeout=180)
    out = proc.stdout
    inst = syard.json("jobs")[0]["instance"]
    # What the ranks must not reach is there, outside their sandbox.
    assert (syard.home / "token").is_file() and (syard.home / "instances" / inst / "credential").is_file()
    assert (cluster.munge_dir / "sock").is_socket() and squeue_answers(syard)
    for rank in ("0", "1"):
        for line in ("credential: unreadable", f"instances seen: {inst} ", "token: unreadable",
                     "munge: hidden", "slurm: refused", "host data: dataset"):
            assert f"[rank {rank}] {line}\n" in out, (line, out)


def squeue_answers(yard):
    return subprocess.run(["squeue", "-h"], env=yard.env, capture_output=True).returncode == 0
