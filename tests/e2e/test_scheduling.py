"""Scheduling through the CLI on the simulated cloud: fallback shown live,
preemption and resume with real agents, cooling, cost, sweeps."""
import json
import os
import re
import signal
import urllib.request

from conftest import pid_alive, processes_matching, wait_for


def write_catalog(yard, types, scenario):
    yard.home.mkdir(parents=True, exist_ok=True)
    catalog = {"version": 1, "types": types,
               "providers": {"sim": {"scenario": {"version": 1, "types": scenario}}}}
    (yard.home / "catalog.json").write_text(json.dumps(catalog))


def sim_type(name, **kw):
    return {"name": name, "provider": "sim", "cpus": 1, "spot_price": 0.3,
            "on_demand_price": 0.9, "default_market": "spot", **kw}


def test_fallback_attempts_are_shown_and_all_failing_fails(yard, project):
    write_catalog(yard, [sim_type("big"), sim_type("small")],
                  {"big": {"capacity": [[0, 0]]}, "small": {"capacity": [[0, 1]]}})
    (project / "job.sh").write_text("echo ran on $YARD_JOB_ID\n")
    proc = yard.run("fit", "job.sh", "--machines", "big,small", "--wait-request", "1", cwd=project)
    assert "gave up on big: no capacity granted within 1 s" in proc.stderr
    assert "requesting small" in proc.stderr
    assert proc.stdout.startswith("ran on")
    proc = yard.run("fit", "job.sh", "--machines", "big", "--wait-request", "0.5", cwd=project, check=False)
    assert proc.returncode == 1
    assert "no machine could be had" in proc.stderr and "big: no capacity granted within 0.5 s" in proc.stderr


def test_preempted_job_resumes_from_its_checkpoint(yard, project):
    write_catalog(yard, [sim_type("spotty")], {"spotty": {}})
    (project / "job.sh").write_text(
        'if [ -n "$YARD_RESUME_FROM" ]; then echo "resumed from $(basename $YARD_RESUME_FROM): $(cat $YARD_RESUME_FROM)"; '
        'echo second run; exit 0; fi\n'
        'for i in 1 2 3; do echo "first run line $i"; done\n'
        'echo epoch2 > "$YARD_CHECKPOINT_DIR/epoch-2.ckpt"\n'
        'sleep 1000\n')
    job_id = yard.run("submit", "job.sh", "--machines", "spotty", cwd=project).stdout.strip()
    wait_for(lambda: yard.run("fetch", job_id, "--to", project / "got") and
             (project / "got" / "checkpoints" / "epoch-2.ckpt").exists(),
             timeout=30, interval=0.2, what="the checkpoint to reach the server")
    first = yard.job(job_id)["instance"]
    url, token = yard.server_info()["url"], yard.token()
    req = urllib.request.Request(f"{url}/v1/sim/interrupt/{first}", data=b"", method="POST",
                                 headers={"Authorization": f"Bearer {token}"})
    assert urllib.request.urlopen(req).status == 200
    job = yard.wait_state(job_id, "succeeded", timeout=60)
    assert job["instance"] != first
    out = yard.run("logs", job_id).stdout
    assert out.count("first run line 1") == 1 and out.count("first run line 3") == 1
    assert f"instance {first} was preempted" in out
    assert "resumed from epoch-2.ckpt: epoch2" in out
    assert out.index("first run line 3") < out.index("preempted") < out.index("second run")


def test_cooling_reuse_machines_cost_and_down(yard, project):
    write_catalog(yard, [sim_type("warm")], {"warm": {}})
    (project / "job.sh").write_text("echo hi\n")
    a = yard.run("submit", "job.sh", "--machines", "warm", "--cool-down", "600", cwd=project).stdout.strip()
    yard.wait_state(a, "succeeded")
    inst = yard.job(a)["instance"]
    machines = yard.json("machines")
    cooling = [i for i in machines["instances"] if i["id"] == inst][0]
    assert cooling["state"] == "cooling" and cooling["market"] == "spot"
    assert cooling["price_per_hour"] == 0.3
    assert "cooling" in yard.run("machines").stdout
    b = yard.run("submit", "job.sh", "--machines", "warm", "--cool-down", "600", cwd=project).stdout.strip()
    yard.wait_state(b, "succeeded")
    assert yard.job(b)["instance"] == inst
    assert "took cooling instance" in yard.run("logs", b, "--events").stderr
    cost = yard.json("cost")
    kinds = {e["kind"] for e in cost["entries"]}
    assert kinds == {"running", "cooling"}
    assert set(cost["by_job"]) == {a, b}
    assert yard.run("down", "--all").stdout.strip() == f"ended {inst}"
    assert [i for i in yard.json("machines")["instances"] if i["id"] == inst] == []


def test_sweep_runs_every_combination(yard, project):
    (project / "job.sh").write_text('echo "args: $*"\n')
    proc = yard.run("fit", "job.sh", "--sweep", "lr=0.1,0.01", "--sweep", "batch=8,16", cwd=project)
    ids = re.findall(r"^(job-[0-9a-f]+)\s", proc.stdout, re.M)
    assert len(set(ids)) == 4
    outputs = sorted(yard.run("logs", i).stdout.strip() for i in set(ids))
    assert outputs == sorted(f"args: --lr {lr} --batch {b}" for lr in ("0.1", "0.01") for b in ("8", "16"))
    descriptions = {j["description"] for j in yard.json("jobs")}
    assert "lr=0.01 batch=16" in descriptions
    assert proc.stdout.count("succeeded") >= 4


def test_jobs_queued_behind_a_running_one_cancel_and_hand_back(yard, project):
    """Pipelining (docs/scheduling.md): with the only instance busy, a job is
    queued on it behind the running one. Cancelled there, it never runs; one
    left waiting is handed back after a second and runs there once free."""
    write_catalog(yard, [sim_type("one")], {"one": {"capacity": [[0, 1]]}})
    (project / "long.sh").write_text("echo long started\nwhile [ ! -e gate ]; do sleep 0.05; done\necho long done\n")
    (project / "quick.sh").write_text("echo quick ran\n")
    submit = lambda script: yard.run("submit", script, "--machines", "one", "--cool-down", "60",
                                     cwd=project).stdout.strip()
    long_id = submit("long.sh")
    yard.wait_state(long_id, "running", timeout=30)
    inst = yard.job(long_id)["instance"]
    queued_on = f"queued on busy instance {inst} behind job {long_id}"

    cancelled = submit("quick.sh")
    yard.run("cancel", cancelled)
    assert yard.wait_state(cancelled, "cancelled", timeout=30)["state"] == "cancelled"
    events = yard.run("logs", cancelled, "--events").stderr
    assert queued_on in events
    assert "quick ran" not in yard.run("logs", cancelled).stdout

    handed_back = submit("quick.sh")
    wait_for(lambda: "placed again" in yard.run("logs", handed_back, "--events").stderr,
             timeout=30, interval=0.2, what="the queued job to be handed back after waiting")
    assert yard.job(handed_back)["state"] == "requesting"
    assert yard.job(long_id)["state"] == "running"
    gate = wait_for(lambda: next(iter((yard.home / "instances" / inst / "jobs").glob(f"{long_id}-*/work")), None),
                    timeout=30, what=f"the working folder of {long_id}")
    (gate / "gate").touch()
    assert yard.wait_state(long_id, "succeeded", timeout=30)
    job = yard.wait_state(handed_back, "succeeded", timeout=30)
    assert job["instance"] == inst
    out = yard.run("logs", handed_back).stdout
    assert out.count("quick ran") == 1
    assert queued_on in yard.run("logs", handed_back, "--events").stderr


def test_a_restarted_server_adopts_the_sim_instance_whose_agent_runs(yard, project):
    """A server killed while a job runs on the simulated cloud, then started
    again, adopts the instance (its agent still runs the job): the job goes
    on there as the same attempt, nothing is lost or requeued, and no agent
    is left over. Before, the sim never stored the agent's pid: the
    restarted server marked the instance lost and requeued the job."""
    write_catalog(yard, [sim_type("steady")], {"steady": {}})
    (project / "job.sh").write_text("echo before\nwhile [ ! -e gate ]; do sleep 0.05; done\necho after\n")
    job_id = yard.run("submit", "job.sh", "--machines", "steady", cwd=project).stdout.strip()
    yard.wait_state(job_id, "running", timeout=60)
    inst = yard.job(job_id)["instance"]
    wait_for(lambda: "before" in yard.run("logs", job_id).stdout, timeout=30, what="the job's first line")
    agents = processes_matching(f"--instance {inst}")
    assert len(agents) == 1, agents

    server_pid = yard.server_info()["pid"]
    os.kill(server_pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(server_pid), what="the server to die")
    yard.run("jobs")  # any command brings the embedded server back
    assert yard.server_info()["pid"] != server_pid
    assert yard.job(job_id)["state"] == "running"
    gate = wait_for(lambda: next(iter((yard.home / "instances" / inst / "jobs").glob(f"{job_id}-*/work")), None),
                    timeout=30, what=f"the working folder of {job_id}")
    (gate / "gate").touch()
    job = yard.wait_state(job_id, {"succeeded", "failed"}, timeout=60)
    assert job["state"] == "succeeded" and job["instance"] == inst, job
    assert yard.run("logs", job_id).stdout == "before\nafter\n"
    events = yard.run("logs", job_id, "--events").stderr
    assert "lost" not in events and "requeued" not in events, events
    wait_for(lambda: not processes_matching(f"--instance {inst}"), timeout=30,
             what="the instance's agent to end with it (no cool-down)")


def test_a_restarted_server_adopts_the_sim_instance_whose_agent_had_not_started(yard, project):
    """A server killed during a sim instance's provisioning delay, before its
    agent started, then started again: the instance is adopted, its agent
    starts when the delay ends and runs the job as its first attempt. Before,
    the instance was lost (billed) and the job requeued on a new one."""
    write_catalog(yard, [sim_type("slow")], {"slow": {"provisioning_delay_s": 4}})
    (project / "job.sh").write_text("echo ran\n")
    job_id = yard.run("submit", "job.sh", "--machines", "slow", cwd=project).stdout.strip()
    inst = wait_for(lambda: yard.job(job_id).get("instance"), timeout=30, what="an instance for the job")
    assert not processes_matching(f"--instance {inst}"), "its agent starts after the delay"
    server_pid = yard.server_info()["pid"]
    os.kill(server_pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(server_pid), what="the server to die")
    yard.run("jobs")  # any command brings the embedded server back
    job = yard.wait_state(job_id, {"succeeded", "failed"}, timeout=60)
    assert job["state"] == "succeeded" and job["instance"] == inst and job["attempt"] == 1, job
    assert yard.run("logs", job_id).stdout == "ran\n"
    events = yard.run("logs", job_id, "--events").stderr
    assert "lost" not in events and "requeued" not in events, events
    assert [i["id"] for i in yard.json("machines", "--all")["instances"]] == [inst], "no second instance"
