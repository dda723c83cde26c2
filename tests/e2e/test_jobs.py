"""Job lifecycle from the command line: submit, status, logs, fetch,
cancel, lost agents, description, exit codes."""
import os
import re
import signal
import subprocess

from conftest import wait_for, pid_alive, processes_matching, YARD


def test_fit_returns_the_scripts_exit_code_and_output(yard, project):
    (project / "job.sh").write_text("echo out; echo err >&2; echo \"$YARD_JOB_ID\"; exit 3\n")
    proc = yard.run("fit", "job.sh", cwd=project, check=False)
    assert proc.returncode == 3
    lines = proc.stdout.splitlines()
    assert lines[:2] == ["out", "err"]
    assert lines[2].startswith("job-")


def test_submit_description_jobs_status_and_default_machine(yard, project):
    (project / "job.sh").write_text("echo hello from $YARD_JOB_ID\n")
    job_id = yard.run("submit", "job.sh", "--description", "baseline lr=0.1", cwd=project).stdout.strip()
    job = yard.wait_state(job_id, "succeeded")
    assert job["description"] == "baseline lr=0.1"
    assert job["machine_type"] == "local"
    table = yard.run("jobs").stdout
    assert job_id in table and "baseline lr=0.1" in table
    assert yard.json("jobs", "--search", "lr=0.1")[0]["id"] == job_id
    assert yard.json("jobs", "--search", "nothing-like-this") == []
    assert "baseline lr=0.1" in yard.run("status", job_id).stdout
    events = yard.run("logs", job_id, "--events").stderr
    assert "using the default machine type 'local'" in events
    assert yard.run("logs", job_id).stdout == f"hello from {job_id}\n"


def test_metrics_are_events(yard, project):
    (project / "job.sh").write_text(
        'echo \'{"epoch": 1, "loss": 0.5}\' >> "$YARD_METRICS"\n'
        'echo \'{"epoch": 2, "loss": 0.25}\' >> "$YARD_METRICS"\n')
    proc = yard.run("fit", "job.sh", cwd=project)
    assert "metric epoch=1 loss=0.5" in proc.stderr
    assert "metric epoch=2 loss=0.25" in proc.stderr


def test_fetch_downloads_outputs(yard, project, tmp_path):
    (project / "job.sh").write_text(
        'mkdir -p "$YARD_OUTPUT_DIR/sub"; echo result > "$YARD_OUTPUT_DIR/sub/r.txt"\n'
        'echo w > "$YARD_CHECKPOINT_DIR/c.bin"\n')
    job_id = yard.run("submit", "job.sh", cwd=project).stdout.strip()
    yard.wait_state(job_id, "succeeded")
    yard.run("fetch", job_id, "--to", tmp_path / "got")
    assert (tmp_path / "got" / "outputs" / "sub" / "r.txt").read_text() == "result\n"
    assert (tmp_path / "got" / "checkpoints" / "c.bin").read_text() == "w\n"


def test_ended_local_instance_frees_its_disk_and_keeps_its_log(yard, project, tmp_path):
    # A cooling instance that runs job after job keeps no copy of earlier
    # jobs; an ended one keeps only agent.log (its spool, every record of
    # which the server holds, goes too).
    (project / "job.sh").write_text('head -c 3000000 /dev/urandom > "$YARD_CHECKPOINT_DIR/c.bin"\n')
    first = yard.run("submit", "job.sh", "--cool-down", "30", cwd=project).stdout.strip()
    instance = yard.wait_state(first, "succeeded")["instance"]
    inst_dir = yard.home / "instances" / instance
    assert (inst_dir / "jobs" / f"{first}-1" / "checkpoints" / "c.bin").exists()
    second = yard.run("submit", "job.sh", "--cool-down", "0", cwd=project).stdout.strip()
    assert yard.wait_state(second, "succeeded")["instance"] == instance  # reused while cooling
    wait_for(lambda: sorted(p.name for p in inst_dir.iterdir()) == ["agent.log"],
             timeout=30, what=f"{inst_dir} to hold only agent.log")
    # Nothing the jobs wrote was lost with the folder.
    for job_id in (first, second):
        yard.run("fetch", job_id, "--to", tmp_path / job_id)
        assert (tmp_path / job_id / "checkpoints" / "c.bin").stat().st_size == 3000000


def test_cancel_ends_setsid_grandchild(yard, project):
    # Found by command line: a confined job's own pids are those of its PID
    # namespace, not the host's.
    (project / "job.sh").write_text(
        "setsid sleep 1000.25 & echo grandchild\n"
        "sleep 1000.5 & echo child\n"
        "wait\n")
    job_id = yard.run("submit", "job.sh", cwd=project).stdout.strip()
    pids = wait_for(lambda: len(p := processes_matching("sleep 1000.25") + processes_matching("sleep 1000.5")) == 2
                    and p, timeout=30, interval=0.1, what="the job's children to start")
    assert all(pid_alive(p) for p in pids)
    yard.run("cancel", job_id)
    job = yard.wait_state(job_id, "cancelled", timeout=30)
    assert job["state"] == "cancelled"
    wait_for(lambda: not any(pid_alive(p) for p in pids), timeout=15, what="the job's processes to end")


def kill_agent_of(yard, job_id):
    instance = yard.job(job_id)["instance"]
    agents = processes_matching(f"agent --instance {instance}")
    assert len(agents) == 1
    os.kill(agents[0], signal.SIGKILL)
    return instance


def test_killed_agent_without_restarts_marks_job_lost(yard, project):
    (project / "job.sh").write_text("echo started; sleep 1000\n")
    job_id = yard.run("submit", "job.sh", "--max-restarts", "0", cwd=project).stdout.strip()
    wait_for(lambda: "started" in yard.run("logs", job_id).stdout, timeout=30, interval=0.1,
             what="the job to start")
    instance = kill_agent_of(yard, job_id)
    job = yard.wait_state(job_id, "failed", timeout=30)
    assert "lost" in job["message"] and instance in job["message"]
    assert "started\n" == yard.run("logs", job_id).stdout  # what it printed is kept


def test_killed_agent_requeues_the_job_on_a_new_instance(yard, project):
    (project / "job.sh").write_text(
        'echo "run on $YARD_JOB_ID"\n'
        'if [ -e "$YARD_CHECKPOINT_DIR/step" ]; then echo resumed; exit 0; fi\n'
        'echo 1 > "$YARD_CHECKPOINT_DIR/step"; sleep 1000\n')
    job_id = yard.run("submit", "job.sh", cwd=project).stdout.strip()
    # The checkpoint must be on the server before the instance goes.
    wait_for(lambda: (yard.run("fetch", job_id, "--to", project / "got") and
                      (project / "got" / "checkpoints" / "step").exists()),
             timeout=30, interval=0.2, what="the checkpoint to sync")
    first = kill_agent_of(yard, job_id)
    job = yard.wait_state(job_id, "succeeded", timeout=60)
    assert job["instance"] != first and job["attempt"] == 2
    out = yard.run("logs", job_id).stdout
    assert out.count("run on") == 2 and out.count("resumed") == 1
    assert f"instance {first} was lost" in out  # the visible marker between the runs
    assert out.index("run on") < out.index("-----") < out.index("resumed")


def test_unknown_machine_is_refused_with_the_known_ones(yard, project):
    (project / "job.sh").write_text("true\n")
    proc = yard.run("submit", "job.sh", "--machines", "p9.huge", cwd=project, check=False)
    assert proc.returncode == 1
    assert "unknown machine type 'p9.huge'" in proc.stderr and "local" in proc.stderr


def test_three_concurrent_submits_start_one_server(yard, project):
    (project / "job.sh").write_text("echo ok\n")
    procs = [yard.start("submit", "job.sh", cwd=project, text=True) for _ in range(3)]
    ids = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        ids.append(out.strip())
    assert len(set(ids)) == 3
    log = (yard.home / "server.log").read_text()
    assert log.count("listening on") == 1 and "already runs" not in log, log
    # A server forking an agent shows a short-lived copy of itself: wait it out.
    wait_for(lambda: len(processes_matching(f"server --home {yard.home}")) == 1, timeout=5,
             what="exactly one server process")
    for job_id in ids:
        yard.wait_state(job_id, "succeeded", timeout=60)
