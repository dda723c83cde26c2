"""GET /v1/openapi.json and GET /metrics against a live server: the
description validates as OpenAPI 3.1, schemathesis finds no 5xx and no
response that contradicts it, and the Prometheus text parses with
prometheus_client and agrees with the API."""
import json
import os
import subprocess
import urllib.error
import urllib.request

import pytest

from conftest import VENV_BIN, YARD, wait_for


def get(url, token=None):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.fixture
def fenced_server(tmp_path):
    """A foreground server whose jobs can never start (no active job
    allowed): a fuzzer's accepted job waits instead of running anything."""
    home = tmp_path / "fenced"
    env = dict(os.environ, YARD_HOME=str(home))
    proc = subprocess.Popen([str(YARD), "--home", str(home), "server", "--port", "0", "--max-active-jobs", "0"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    info = wait_for(lambda: (home / "server.json").exists() and json.loads((home / "server.json").read_text()),
                    timeout=30, what="the server to write server.json")
    wait_for(lambda: get(info["url"] + "/v1/health")[0] == 200, timeout=30, what="the server to answer")
    yield info["url"], (home / "token").read_text().strip()
    proc.terminate()
    proc.wait(timeout=30)


def test_openapi_description_validates_and_names_every_route(yard):
    from openapi_spec_validator import validate
    yard.run("jobs")
    status, text = get(yard.server_info()["url"] + "/v1/openapi.json")
    assert status == 200
    doc = json.loads(text)
    validate(doc)  # raises on any departure from OpenAPI 3.1
    assert doc["openapi"].startswith("3.1")
    for path, method in (("/v1/jobs", "post"), ("/v1/jobs/{id}/events", "get"), ("/v1/machines", "get"),
                         ("/v1/jobs/{id}/lines", "get"), ("/v1/dashboard/session", "post")):
        assert method in doc["paths"][path], (path, method)


def test_schemathesis_finds_no_server_error_and_no_contradiction(fenced_server, tmp_path):
    url, token = fenced_server
    report = tmp_path / "schemathesis"
    proc = subprocess.run(
        [str(VENV_BIN / "st"), "run", url + "/v1/openapi.json", "--url", url,
         "-H", f"Authorization: Bearer {token}",
         "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                     "response_schema_conformance",
         "--phases", "examples,coverage,fuzzing", "--max-examples", "25", "--seed", "1",
         "--request-timeout", "30", "--suppress-health-check", "all", "--no-color"],
        capture_output=True, text=True, timeout=900, cwd=tmp_path)
    tail = proc.stdout[-6000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, f"schemathesis found problems (exit {proc.returncode}):\n{tail}"
    assert "No issues found" in proc.stdout or "passed" in proc.stdout, tail


def test_metrics_parse_and_agree_with_the_api(yard, project):
    from prometheus_client.parser import text_string_to_metric_families
    (project / "ok.sh").write_text('echo \'{"epoch": 1, "loss": 1}\' >> "$YARD_METRICS"\n')
    (project / "bad.sh").write_text("exit 4\n")
    for script, state in (("ok.sh", "succeeded"), ("ok.sh", "succeeded"), ("bad.sh", "failed")):
        yard.wait_state(yard.run("submit", script, cwd=project).stdout.strip(), state)
    url = yard.server_info()["url"] + "/metrics"
    assert get(url)[0] == 401
    assert get(url, yard.token())[0] == 403  # a user token does not open the all-users figures
    metrics_token = yard.run("token", "create", "prometheus", "--kind", "metrics").stdout.strip()
    status, text = get(url, metrics_token)
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(text)}
    jobs = {s.labels["state"]: s.value for s in families["yard_jobs"].samples}
    api_jobs = yard.json("jobs")
    for state in ("succeeded", "failed", "running", "waiting", "cancelled"):
        assert jobs[state] == sum(1 for j in api_jobs if j["state"] == state), state
    assert jobs["succeeded"] == 2 and jobs["failed"] == 1
    events = families["yard_events_stored"].samples[0].value
    assert events == sum(j["last_seq"] for j in api_jobs)
    received = families["yard_blob_bytes_received"].samples[0].value
    assert received > 0  # the bundles were uploaded
    launches = [s for s in families["yard_provider_calls"].samples
                if s.labels == {"provider": "local", "call": "launch"} and s.name.endswith("_total")]
    assert launches and launches[0].value >= 1
    for name in ("yard_instances", "yard_queue_length", "yard_waiting_jobs", "yard_scheduler_pass_seconds",
                 "yard_event_streams_open", "yard_blob_bytes_sent", "yard_provider_errors"):
        assert name in families, name


def test_open_event_streams_are_counted(yard, project):
    from prometheus_client.parser import text_string_to_metric_families
    (project / "job.sh").write_text("sleep 300\n")
    job_id = yard.run("submit", "job.sh", cwd=project).stdout.strip()
    metrics_token = yard.run("token", "create", "prometheus", "--kind", "metrics").stdout.strip()
    url = yard.server_info()["url"]

    def open_streams():
        families = {f.name: f for f in text_string_to_metric_families(get(url + "/metrics", metrics_token)[1])}
        return families["yard_event_streams_open"].samples[0].value

    assert open_streams() == 0
    follower = yard.start("logs", job_id, "-f")
    try:
        wait_for(lambda: open_streams() == 1, timeout=20, what="the stream to be counted")
    finally:
        follower.kill()
        follower.wait()
    yard.run("cancel", job_id)
    wait_for(lambda: open_streams() == 0, timeout=30, what="the stream to be released")
