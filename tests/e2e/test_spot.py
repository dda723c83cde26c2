"""Spot interruptions end to end: local instances whose agents watch a real
ec2-metadata-mock (IMDSv2, through spot_imds.SpotMetadata) tell the job,
deliver its checkpoint, report the instance preempted, and the job is
requeued at once and resumes from that checkpoint on a new instance."""
import pytest

from conftest import wait_for
from spot_imds import FIT_SCRIPT as SCRIPT, SpotMetadata, skip_reason

pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")



@pytest.fixture
def imds():
    m = SpotMetadata().start()
    yield m
    m.stop()


def watch(yard, imds):
    yard.env.update({"YARD_PREEMPTION_WATCH": "imds", "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url,
                     "YARD_PREEMPTION_POLL_S": "0.2", "YARD_PREEMPTION_MARGIN_S": "5"})


def test_fit_script_checkpoints_on_the_notice_and_resumes_on_a_new_instance(yard, project, imds):
    watch(yard, imds)
    (project / "train.py").write_text(SCRIPT)
    job_id = yard.run("submit", "train.py", cwd=project).stdout.strip()
    wait_for(lambda: "line 4\n" in yard.run("logs", job_id).stdout, timeout=60, interval=0.1,
             what="the job to wait for its notice")
    first = yard.job(job_id)["instance"]
    imds.interrupt()
    job = yard.wait_state(job_id, "succeeded", timeout=90)
    assert job["instance"] != first
    out = yard.run("logs", job_id).stdout
    lines = out.splitlines()
    for i in range(10):
        assert lines.count(f"line {i}") == 1, out
    assert out.count("notice: terminate at ") == 1, out
    assert f"instance {first} was preempted (spot interruption notice: EC2 will terminate it at" in out
    assert "resuming from checkpoints/step-0005.json" in out
    assert out.index("notice: terminate") < out.index("was preempted") < out.index("resumed at line 5")
    shown = yard.run("logs", job_id, "--events").stderr
    assert "spot interruption notice: EC2 will terminate this instance at" in shown
    assert "told the job (SIGUSR1, $YARD_PREEMPTION_NOTICE)" in shown
    assert "the job stopped for the spot interruption (exit code 75)" in shown
    # The mock's own rule: the new instance's agent (a later session) got no notice.
    assert len(imds.sessions) >= 2
