"""Jobs on a real (two-node, loopback) Slurm cluster through the slurm
provider: live output and artifacts, cooling allocations, cancel, a
two-node DDP example, and a node failure that requeues a job which resumes
from its checkpoint. The cluster is started once for the module and
stopped after it (slurm_cluster.py)."""
import json
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import uuid
from pathlib import Path

import pytest

from conftest import REPO, VENV_BIN, Yard, processes_matching, wait_for
from slurm_cluster import SlurmCluster, skip_reason

EXAMPLE = REPO / "examples" / "ddp_digits"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    c = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    c.start()
    yield c
    c.stop()


@pytest.fixture
def shared():
    """A folder on the cluster's "shared storage": outside /tmp, which a
    confined job sees as a private, empty folder, and removed after the test."""
    folder = Path(tempfile.mkdtemp(prefix="yard-slurm-", dir="/srv"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def syard(cluster, shared):
    """A yard home whose server knows the cluster (catalog and SLURM_CONF).
    The home, and so the instance folders, are on the shared storage, where
    a confined job could reach them but for its sandbox's hiding."""
    yard = Yard(shared / "home")
    yard.env["SLURM_CONF"] = str(cluster.conf)
    yard.home.mkdir(parents=True, exist_ok=True)
    catalog = {"version": 1,
               "types": [{"name": "slurm-1", "provider": "slurm", "cpus": 1,
                          "spot_price": 0.1, "on_demand_price": 0.3, "options": {"time": "10:00"}},
                         {"name": "slurm-2node", "provider": "slurm", "cpus": 1,
                          "options": {"nodes": 2, "partition": "debug"}}],
               "providers": {"slurm": {"poll_interval_s": 0.3}}}
    (yard.home / "catalog.json").write_text(json.dumps(catalog))
    yield yard
    yard.stop_everything()


def slurm_id_of(yard, instance):
    machines = yard.json("machines", "--all")
    return [i for i in machines["instances"] if i["id"] == instance][0]["slurm_job_id"]


def lines_of(stream):
    """A queue receiving `stream`'s lines from a thread (None at EOF)."""
    q = queue.Queue()

    def pump():
        for line in stream:
            q.put(line)
        q.put(None)
    threading.Thread(target=pump, daemon=True).start()
    return q


def test_job_streams_live_syncs_artifacts_and_cools_on_its_allocation(syard, project, cluster, shared):
    go = shared / "go"  # where the job, confined, still sees it
    (project / "job.sh").write_text(
        'echo "hello from $SLURMD_NODENAME in Slurm job $SLURM_JOB_ID"\n'
        'echo ck > "$YARD_CHECKPOINT_DIR/ck.txt"; echo result > "$YARD_OUTPUT_DIR/result.txt"\n'
        'while [ ! -e "$GO" ]; do sleep 0.05; done\n'
        'echo after go\n')
    fit = syard.start("fit", "job.sh", "--machines", "slurm-1", "--cool-down", "120", "--env", f"GO={go}",
                      "--ckpt-dir", project / "got" / "ckpt", "--out-dir", project / "got" / "out",
                      cwd=project, text=True)
    try:
        out = lines_of(fit.stdout)
        first = out.get(timeout=60)
        # Live: the first line is here while the job still waits for us.
        assert re.match(r"hello from n[12] in Slurm job \d+", first), first
        assert fit.poll() is None
        go.touch()
        assert out.get(timeout=30) == "after go\n"
        assert fit.wait(30) == 0
    finally:
        if fit.poll() is None:
            fit.kill()
    assert (project / "got" / "ckpt" / "ck.txt").read_text() == "ck\n"
    assert (project / "got" / "out" / "result.txt").read_text() == "result\n"

    job = syard.json("jobs")[0]
    slurm_id = slurm_id_of(syard, job["instance"])
    assert slurm_id == first.split()[-1]
    # Cooling keeps the allocation, with its idle agent.
    inst = [i for i in syard.json("machines")["instances"] if i["id"] == job["instance"]][0]
    assert inst["state"] == "cooling"
    assert cluster.job_state(slurm_id) == "RUNNING"
    assert slurm_id in syard.run("machines").stdout
    go.unlink()
    (project / "job.sh").write_text('echo second on $SLURM_JOB_ID\n')
    second = syard.run("fit", "job.sh", "--machines", "slurm-1", cwd=project)
    assert second.stdout == f"second on {slurm_id}\n"
    assert "took cooling instance" in second.stderr
    # The second job had no cool-down: its end ends the allocation.
    wait_for(lambda: cluster.job_state(slurm_id) == "CANCELLED", timeout=20, interval=0.2,
             what=f"Slurm job {slurm_id} to be cancelled")


def test_cancel_ends_the_slurm_job(syard, project, cluster):
    marker = f"yard-slurm-test-{uuid.uuid4().hex[:8]}"
    (project / "job.sh").write_text(f'echo started\nexec -a {marker} sleep 1000\n')
    job_id = syard.run("submit", "job.sh", "--machines", "slurm-1", cwd=project).stdout.strip()
    wait_for(lambda: "started" in syard.run("logs", job_id).stdout and processes_matching(marker),
             timeout=60, interval=0.2, what="the job to start")
    slurm_id = slurm_id_of(syard, syard.job(job_id)["instance"])
    assert cluster.job_state(slurm_id) == "RUNNING"
    syard.run("cancel", job_id)
    syard.wait_state(job_id, "cancelled", timeout=30)
    wait_for(lambda: cluster.job_state(slurm_id) == "CANCELLED", timeout=20, interval=0.2,
             what=f"Slurm job {slurm_id} to be cancelled")
    wait_for(lambda: cluster.sacct_state(slurm_id).startswith("CANCELLED"), timeout=20, interval=0.2,
             what="sacct to record the cancel")
    wait_for(lambda: not processes_matching(marker), timeout=10, what="the job's process to end")


def test_the_agent_in_the_allocation_gets_none_of_the_servers_secrets(syard, project, cluster):
    """sbatch hands the agent the server's environment minus its secrets: a
    node that cannot confine jobs runs them as the agent's user, and they
    could read the agent's /proc/PID/environ."""
    sentinel = f"server-secret-{uuid.uuid4().hex}"
    syard.env.update({"AWS_ACCESS_KEY_ID": "AKIDSERVERONLY", "AWS_SECRET_ACCESS_KEY": sentinel,
                      "ANALYTICS_DB_PASSWORD": sentinel})
    marker = f"yard-slurm-env-{uuid.uuid4().hex[:8]}"
    (project / "job.sh").write_text(f'echo started\nexec -a {marker} sleep 1000\n')
    job_id = syard.run("submit", "job.sh", "--machines", "slurm-1", cwd=project).stdout.strip()
    wait_for(lambda: processes_matching(marker), timeout=60, interval=0.2, what="the job to start")
    instance = syard.job(job_id)["instance"]
    agents = [p for p in processes_matching(f"--instance {instance}")
              if b" agent " in Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ")]
    assert agents, f"no agent process of {instance}"
    for pid in agents:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert any(e.startswith(b"SLURM_JOB_ID=") for e in environ), "not the allocation's agent"
        assert any(e.startswith(b"SLURM_CONF=") for e in environ), "the server's settings go along"
        assert not [e for e in environ if sentinel.encode() in e or e.startswith(b"AWS_ACCESS_KEY_ID=")]
    syard.run("cancel", job_id)
    syard.wait_state(job_id, "cancelled", timeout=30)


def test_two_node_ddp_example(syard, cluster, tmp_path):
    proc = syard.run("fit", "train.py", "--machines", "slurm-2node", "--nodes", "2", "--out-dir",
                     tmp_path / "out", "--ckpt-dir", tmp_path / "ckpt", cwd=EXAMPLE, timeout=180)
    out = proc.stdout
    shards = dict(re.findall(r"^\[rank (\d)\] rank \1 of 2 on (n[12]): shard of 718 samples", out, re.M))
    assert shards.keys() == {"0", "1"} and set(shards.values()) == {"n1", "n2"}, out
    firsts = re.findall(r"^\[rank \d\] rank \d of 2 on n\d: .* first indices (\[.*\])$", out, re.M)
    assert len(set(firsts)) == 2, "each rank trains on its own shard"
    assert len(re.findall(r"^\[rank 1\] epoch \d/8 rank 1", out, re.M)) == 8
    assert len(re.findall(r"^\[rank 0\] epoch \d/8 rank 0", out, re.M)) == 8
    final = dict(re.findall(r"^\[rank (\d)\] rank \1: final weights ([0-9a-f]{16})", out, re.M))
    assert final.keys() == {"0", "1"} and final["0"] == final["1"], out
    # Rank 0's artifacts are the synced ones.
    assert json.loads((tmp_path / "out" / "rank-0.json").read_text())["weights"] == final["0"]
    assert not (tmp_path / "out" / "rank-1.json").exists()
    assert (tmp_path / "ckpt" / "ckpt-epoch-008.pt").exists()
    # What either shard alone trains to is something else.
    for k in (0, 1):
        alone = subprocess.run(
            [str(VENV_BIN / "python"), str(EXAMPLE / "train.py"), "--shard-only", str(k), "--shards", "2"],
            cwd=tmp_path, env={**syard.env, "YARD_OUTPUT_DIR": str(tmp_path / f"alone{k}"),
                               "YARD_CHECKPOINT_DIR": str(tmp_path / f"alone{k}")},
            capture_output=True, text=True, check=True, timeout=120)
        digest = re.search(r"final weights ([0-9a-f]{16})", alone.stdout).group(1)
        assert digest != final["0"]


def test_node_down_requeues_and_resumes_from_checkpoint(syard, project, cluster):
    (project / "job.sh").write_text(
        'if [ -n "$YARD_RESUME_FROM" ]; then echo "resumed from $(basename $YARD_RESUME_FROM): '
        '$(cat $YARD_RESUME_FROM)"; echo second run; exit 0; fi\n'
        'for i in 1 2 3; do echo "first run line $i"; done\n'
        'echo epoch2 > "$YARD_CHECKPOINT_DIR/epoch-2.ckpt"\n'
        'sleep 1000\n')
    job_id = syard.run("submit", "job.sh", "--machines", "slurm-1", cwd=project).stdout.strip()
    wait_for(lambda: syard.run("fetch", job_id, "--to", project / "got") and
             (project / "got" / "checkpoints" / "epoch-2.ckpt").exists(),
             timeout=60, interval=0.2, what="the checkpoint to reach the server")
    first = syard.job(job_id)["instance"]
    slurm_id = slurm_id_of(syard, first)
    node = cluster.node_of(slurm_id)
    try:
        cluster.run("scontrol", "update", f"nodename={node}", "state=down", "reason=yard-test")
        job = syard.wait_state(job_id, "succeeded", timeout=60)
    finally:
        cluster.run("scontrol", "update", f"nodename={node}", "state=resume", check=False)
    assert job["instance"] != first
    out = syard.run("logs", job_id).stdout
    assert out.count("first run line 1") == 1 and out.count("first run line 3") == 1
    assert f"instance {first} was preempted (Slurm job {slurm_id} on {node} NODE_FAIL" in out
    assert "resumed from epoch-2.ckpt: epoch2" in out
    assert out.index("first run line 3") < out.index("NODE_FAIL") < out.index("second run")
    assert cluster.sacct_state(slurm_id) == "NODE_FAIL"


def test_set_settings_reach_sbatch_yard_yaml_first_flags_win(syard, project, cluster):
    (project / "job.sh").write_text('echo "in partition $SLURM_JOB_PARTITION"\n')
    (project / "yard.yaml").write_text(
        'script: job.sh\nmachines: [slurm-1]\nsettings:\n  partition: debug\n  time: "5:00"\n')
    proc = syard.run("fit", "--set", "time=7:00", cwd=project)
    assert proc.stdout == "in partition debug\n"
    job = syard.json("jobs")[0]
    assert job["settings"] == {"partition": "debug", "time": "7:00"}
    slurm_id = slurm_id_of(syard, job["instance"])
    shown = cluster.run("scontrol", "show", "job", slurm_id)
    assert "Partition=debug" in shown
    assert "TimeLimit=00:07:00" in shown, "the flag wins over yard.yaml and the catalog's 10:00"

    bad = syard.run("submit", "job.sh", "--set", "nodes=2", cwd=project, check=False)
    assert bad.returncode != 0
    assert ("setting 'nodes' is not accepted by machine type 'slurm-1' (provider slurm): "
            "it accepts account, gres, mem, partition, qos, time") in bad.stderr
    assert len(syard.json("jobs")) == 1, "no job was created"
