"""What the instance would refuse later is refused at submit, with the
problem named, before anything is queued or paid for."""
import json
import urllib.request

import pytest

from test_api_security import call, error_of, manifest


@pytest.fixture
def api(yard, project):
    (project / "job.sh").write_text("echo hi\n")
    job_id = yard.run("submit", "job.sh", cwd=project).stdout.strip()
    yard.wait_state(job_id, "succeeded")
    return yard.server_info()["url"], yard.token(), job_id


def job_count(url, token):
    return len(json.loads(call(f"{url}/v1/jobs", token=token)[1])["jobs"])


@pytest.mark.parametrize("spec, says", [
    ({"command": [""]}, "empty program name"),
    ({"command": ["echo", "a\u0000b"]}, "NUL"),
    ({"command": ["true"], "env": {"": "x"}}, "empty name"),
    ({"command": ["true"], "env": {"A=B": "x"}}, "'A=B' holds '=' or NUL"),
    ({"command": ["true"], "env": {"A\u0000B": "x"}}, "holds '=' or NUL"),
    ({"command": ["true"], "env": {"A": "x\u0000y"}}, "env 'A' holds a NUL"),
    # Numbers the server converts to integers or formats: once undefined
    # behaviour (1e300 as an int) or truncated (2^32 + 1 nodes read as 1).
    ({"command": ["true"], "max_restarts": 1e300}, "'max_restarts' must be a whole number from 0 to 1000"),
    ({"command": ["true"], "max_restarts": 2.5}, "'max_restarts' must be a whole number from 0 to 1000"),
    ({"command": ["true"], "nodes": 4294967297}, "'nodes' must be a whole number from 1 to 10000"),
    ({"command": ["true"], "wait_request_s": 1e300}, "'wait_request_s' must be a number of seconds from 0 to 1000000000"),
])
def test_a_job_the_instance_could_not_start_is_refused_at_submit(api, spec, says):
    url, token, _ = api
    before = job_count(url, token)
    status, body = call(f"{url}/v1/jobs", "POST", token, body={**spec, "bundle": manifest()})
    assert status == 400, body
    err = error_of(body)
    assert err["code"] == "invalid_argument" and says in err["message"], err
    assert job_count(url, token) == before


@pytest.mark.parametrize("header, query", [
    ("abc", ""), ("12abc", ""), ("-1", ""), (None, "?after=x"), (None, "?after=-5"),
])
def test_a_bogus_event_cursor_is_a_400_not_a_replay_from_the_start(api, header, query):
    url, token, job_id = api
    req = urllib.request.Request(f"{url}/v1/jobs/{job_id}/events{query}")
    req.add_header("Authorization", f"Bearer {token}")
    if header is not None:
        req.add_header("Last-Event-ID", header)
    with pytest.raises(urllib.error.HTTPError) as got:
        urllib.request.urlopen(req, timeout=30)
    assert got.value.code == 400
    err = error_of(got.value.read())
    assert "sequence number of an event" in err["message"], err


def test_a_valid_cursor_resumes_after_it(api):
    url, token, job_id = api
    req = urllib.request.Request(f"{url}/v1/jobs/{job_id}/events?follow=0")
    req.add_header("Authorization", f"Bearer {token}")
    req.add_header("Last-Event-ID", "1")
    with urllib.request.urlopen(req, timeout=30) as r:
        text = r.read().decode()
    ids = [int(line[4:]) for line in text.splitlines() if line.startswith("id: ")]
    assert ids and min(ids) == 2, text


@pytest.mark.parametrize("sweep, says", [
    (["lr=,,"], "value 1 of 'lr' is empty"),
    (["lr=0.1,,0.2"], "value 2 of 'lr' is empty"),
    (["lr=0.1", "lr=0.2"], "'lr' is given twice"),
    (["lr=0.1,0.1"], "'0.1' is given twice"),
])
def test_a_sweep_that_would_submit_nothing_or_twice_is_refused(api, yard, project, sweep, says):
    url, token, _ = api
    before = job_count(url, token)
    args = [a for s in sweep for a in ("--sweep", s)]
    proc = yard.run("submit", "job.sh", *args, cwd=project, check=False)
    assert proc.returncode != 0
    assert says in proc.stderr, proc.stderr
    assert job_count(url, token) == before
