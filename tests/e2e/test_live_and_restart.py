"""A job's output and artifacts arrive live, and nothing is lost when the
server is killed mid-job."""
import hashlib
import os
import random
import signal
import threading
from pathlib import Path

from conftest import wait_for, pid_alive

JOB = r'''
import os, random, sys, time
from torch.utils.tensorboard import SummaryWriter

ckpt = os.environ["YARD_CHECKPOINT_DIR"]
with open(os.path.join(ckpt, "epoch-1.ckpt"), "wb") as f:
    f.write(b"epoch one weights\n" * 1000)
w = SummaryWriter(os.environ["YARD_LOG_DIR"])
w.add_scalar("loss", 0.5, 1)
w.flush()
print("READY", os.getcwd(), flush=True)
while not os.path.exists("release"):
    time.sleep(0.05)
out = sys.stdout
for i in range(100000):
    out.write(f"line {i}\n")
out.flush()
rng = random.Random(7)
with open(os.path.join(ckpt, "final.ckpt.tmp"), "wb") as f:
    f.write(rng.randbytes(20 * 1024 * 1024))
os.rename(os.path.join(ckpt, "final.ckpt.tmp"), os.path.join(ckpt, "final.ckpt"))
print("DONE", flush=True)
'''


def expected_checkpoint_hash():
    return hashlib.sha256(random.Random(7).randbytes(20 * 1024 * 1024)).hexdigest()


def test_live_mirror_survives_server_kill(yard, project, tmp_path):
    (project / "job.py").write_text(JOB)
    ckpt, tb = tmp_path / "ckpt", tmp_path / "tb"
    fit = yard.start("fit", "job.py", "--ckpt-dir", ckpt, "--log-dir", tb, cwd=project, text=True)
    stdout_lines = []
    reader = threading.Thread(target=lambda: stdout_lines.extend(fit.stdout), daemon=True)
    reader.start()
    ready = wait_for(lambda: next((l for l in stdout_lines if l.startswith("READY")), None),
                     timeout=60, what="the job's READY line at yard fit")
    workdir = Path(ready.split(None, 1)[1].strip())

    # While the job waits: the checkpoint and the TensorBoard file are mirrored.
    wait_for(lambda: (ckpt / "epoch-1.ckpt").exists(), timeout=10, what="live checkpoint")
    assert (ckpt / "epoch-1.ckpt").read_bytes() == b"epoch one weights\n" * 1000
    wait_for(lambda: list(tb.glob("events.out.tfevents.*")), timeout=10, what="live TB file")
    assert fit.poll() is None, "yard fit must still be following the waiting job"

    # Kill the server hard, start it again, then release the job.
    server_pid = yard.server_info()["pid"]
    os.kill(server_pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(server_pid), what="the server to die")
    yard.run("jobs")  # any command brings the embedded server back
    assert yard.server_info()["pid"] != server_pid
    (workdir / "release").write_text("go")

    assert fit.wait(timeout=180) == 0, fit.stderr.read()
    reader.join(timeout=10)
    numbered = [l for l in stdout_lines if l.startswith("line ")]
    assert numbered == [f"line {i}\n" for i in range(100000)]
    assert hashlib.sha256((ckpt / "final.ckpt").read_bytes()).hexdigest() == expected_checkpoint_hash()

    job_id = yard.json("jobs")[0]["id"]
    logs = yard.run("logs", job_id).stdout.splitlines(keepends=True)
    assert [l for l in logs if l.startswith("line ")] == numbered
    assert yard.job(job_id)["state"] == "succeeded"
