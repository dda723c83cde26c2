"""Bad input gets a clear 4xx JSON error and changes nothing; users see
only what is theirs."""
import hashlib
import http.client
import json
import os
import urllib.error
import urllib.request

import pytest


def call(url, method="GET", token=None, body=None, raw=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def error_of(body):
    err = json.loads(body)["error"]
    assert err["code"] and err["message"]
    return err


@pytest.fixture
def api(yard, project):
    (project / "job.sh").write_text("echo hi; echo data > \"$YARD_OUTPUT_DIR/o.txt\"\n")
    job_id = yard.run("submit", "job.sh", cwd=project).stdout.strip()
    yard.wait_state(job_id, "succeeded")
    return yard.server_info()["url"], yard.token(), job_id


def put_blob(url, token, data):
    h = hashlib.sha256(data).hexdigest()
    status, _ = call(f"{url}/v1/blobs/{h}", "PUT", token, raw=data)
    assert status == 200
    return h


def manifest(*files):
    return {"version": 1, "files": list(files)}


def test_malformed_and_unknown_fields(api):
    url, token, _ = api
    status, body = call(f"{url}/v1/jobs", "POST", token, raw=b"{not json")
    assert status == 400 and "not valid JSON" in error_of(body)["message"]
    status, body = call(f"{url}/v1/jobs", "POST", token, body={"command": ["true"], "bundel": {}})
    assert status == 400 and "unknown field 'bundel'" in error_of(body)["message"]
    status, body = call(f"{url}/v1/jobs", "POST", token, body={"command": [], "bundle": manifest()})
    assert status == 400 and "command" in error_of(body)["message"]


def test_missing_or_wrong_token(api):
    url, _, job_id = api
    status, body = call(f"{url}/v1/jobs")
    assert status == 401 and "Bearer" in error_of(body)["message"]
    status, body = call(f"{url}/v1/jobs", token="yut_not_a_real_token")
    assert status == 401 and error_of(body)["code"] == "unauthenticated"


@pytest.mark.parametrize("entry", [
    {"path": "../escape.txt", "mode": 420, "size": 2, "chunks": []},
    {"path": "/tmp/yard-abs-escape.txt", "mode": 420, "size": 2, "chunks": []},
    {"path": "link", "mode": 511, "size": 0, "link": "../../../../tmp"},
    {"path": "abs-link", "mode": 511, "size": 0, "link": "/etc"},
])
def test_unsafe_bundles_are_refused(api, tmp_path, entry):
    url, token, _ = api
    h = put_blob(url, token, b"x\n")
    if "link" not in entry:
        entry["chunks"] = [[h, 2]]
    files = [entry]
    if "link" in entry:  # a file written through the link would land outside
        files.append({"path": entry["path"] + "/pwned.txt", "mode": 420, "size": 2, "chunks": [[h, 2]]})
    before = set(p.name for p in tmp_path.parent.iterdir())
    status, body = call(f"{url}/v1/jobs", "POST", token,
                        body={"command": ["true"], "bundle": manifest(*files)})
    assert status == 400, body
    assert error_of(body)["code"] == "invalid_argument"
    assert set(p.name for p in tmp_path.parent.iterdir()) == before
    import os
    assert not os.path.exists("/tmp/yard-abs-escape.txt") and not os.path.exists("/tmp/pwned.txt")


def test_bundle_with_unuploaded_chunks_is_refused(api):
    url, token, _ = api
    fake = "0" * 64
    status, body = call(f"{url}/v1/jobs", "POST", token, body={
        "command": ["true"],
        "bundle": manifest({"path": "a", "mode": 420, "size": 1, "chunks": [[fake, 1]]})})
    assert status == 409 and "not uploaded" in error_of(body)["message"]


def test_blob_hash_is_verified(api):
    url, token, _ = api
    status, body = call(f"{url}/v1/blobs/{'a' * 64}", "PUT", token, raw=b"not matching")
    assert status == 400 and error_of(body)["code"] == "invalid_argument"


def test_blob_puts_keep_their_connection_usable(api):
    """PUT /v1/blobs streams its body into the handler (server/http_server.h,
    StreamedBody): a body refused before it is read, or read and refused,
    must still be consumed, or the next request on the kept-alive
    connection would be read from its middle."""
    url, token, _ = api
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    big = os.urandom(3 * 1024 * 1024 + 17)  # several reads of the server's buffer
    good = hashlib.sha256(big).hexdigest()
    auth = {"Authorization": f"Bearer {token}"}

    def put(name, body, headers):
        conn.request("PUT", f"/v1/blobs/{name}", body=body, headers=headers)
        r = conn.getresponse()
        return r.status, r.read()

    status, body = put("b" * 64, big, auth)  # read, then refused: wrong content
    assert status == 400 and "does not match" in error_of(body)["message"]
    status, body = put(good, big, {})  # refused before it is read: no token
    assert status == 401, body
    status, body = put(good, big, auth)
    assert status == 200, body
    conn.request("GET", f"/v1/blobs/{good}", headers=auth)
    r = conn.getresponse()
    assert r.status == 200 and r.read() == big
    conn.close()


def test_other_users_see_nothing(api, yard):
    url, token, job_id = api
    other = yard.run("token", "create", "mallory").stdout.strip()
    assert call(f"{url}/v1/jobs", token=other)[1] == b'{"jobs":[]}'
    for path, method in [(f"/v1/jobs/{job_id}", "GET"), (f"/v1/jobs/{job_id}/events", "GET"),
                         (f"/v1/jobs/{job_id}/artifacts", "GET"),
                         (f"/v1/jobs/{job_id}/cancel", "POST")]:
        status, body = call(url + path, method, other, body={} if method == "POST" else None)
        assert status == 404, (path, status, body)
    # The owner can read the job's output chunk; the other user cannot, and
    # "missing" does not reveal that the server holds it.
    status, body = call(f"{url}/v1/jobs/{job_id}/artifacts", token=token)
    chunk = json.loads(body)["artifacts"][0]["entry"]["chunks"][0][0]
    assert call(f"{url}/v1/blobs/{chunk}", token=token)[0] == 200
    assert call(f"{url}/v1/blobs/{chunk}", token=other)[0] == 404
    status, body = call(f"{url}/v1/blobs/missing", "POST", other, body={"hashes": [chunk]})
    assert json.loads(body)["missing"] == [chunk]
    # The CLI says the same through YARD_SERVER/YARD_TOKEN.
    env = dict(yard.env, YARD_SERVER=url, YARD_TOKEN=other)
    proc = yard.run("status", job_id, check=False, env=env)
    assert proc.returncode == 1 and "no job" in proc.stderr


def test_agent_credential_cannot_use_user_routes(yard, project):
    # A cooling instance keeps its agent's credential valid.
    (project / "job.sh").write_text("echo hi\n")
    job_id = yard.run("submit", "job.sh", "--cool-down", "60", cwd=project).stdout.strip()
    inst = yard.wait_state(job_id, "succeeded")["instance"]
    credential = (yard.home / "instances" / inst / "credential").read_text().strip()
    url = yard.server_info()["url"]
    status, body = call(f"{url}/v1/jobs", token=credential)
    assert status == 403 and error_of(body)["code"] == "permission_denied"
    assert not (yard.home / "agent_token").exists()
    proc = yard.run("token", "create", "agents", "--kind", "agent", check=False)
    assert proc.returncode == 1 and "own agent credential" in proc.stderr
    yard.run("down", "--all")
