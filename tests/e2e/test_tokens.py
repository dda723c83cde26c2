"""Token lifecycle (issue 15), through the CLI against a real server: list,
revoke, expiry and scopes; a revoked token is refused at once, also on an
event stream held open with it; a `read` token watches but neither submits
nor cancels; guessed tokens slow their address; one user flooding the API
does not stop another user's calls."""
import hashlib
import json
import os
import sqlite3
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

from conftest import YARD, wait_for
from test_api_security import call, error_of
from test_server_starvation import open_stream


@pytest.fixture
def running(yard, project):
    """A running job of the home's user: (url, job id, that user)."""
    (project / "job.sh").write_text("echo started; sleep 600\n")
    job_id = yard.run("submit", "job.sh", cwd=project).stdout.strip()
    yard.wait_state(job_id, "running")
    yield yard.server_info()["url"], job_id, yard.job(job_id)["user"]
    yard.run("cancel", job_id, check=False)


def create(yard, user, *flags):
    return yard.run("token", "create", user, *flags).stdout.strip()


def listed(yard, token_id):
    return next(t for t in yard.json("token", "list") if t["id"] == token_id)


def token_id(token):
    """The id `yard token list` shows: the first 12 hex digits of the token's SHA-256."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def remote(yard, token, url):
    """The environment of a user on another machine: this server, this token."""
    env = dict(yard.env, YARD_SERVER=url, YARD_TOKEN=token)
    env.pop("YARD_HOME", None)
    return env


def test_list_shows_scope_expiry_and_last_use_but_never_the_token(yard, running):
    url, _, _ = running
    before = time.time()
    token = create(yard, "bob", "--scope", "read", "--expires", "30d")
    out = yard.run("token", "list").stdout
    assert token not in out and token_id(token) in out, out
    assert "bob" in out and "read" in out and "active" in out, out
    t = listed(yard, token_id(token))
    assert t["user"] == "bob" and t["scope"] == "read" and t["state"] == "active"
    assert before + 30 * 86400 - 5 <= t["expires_at"] <= time.time() + 30 * 86400 + 5
    assert t["last_used"] is None and t["revoked_at"] is None
    assert call(f"{url}/v1/jobs", token=token)[0] == 200
    used = listed(yard, token_id(token))["last_used"]
    assert used is not None and before - 1 <= used <= time.time() + 1
    assert "hash" not in t and token not in json.dumps(yard.json("token", "list"))
    # Units: hours and minutes; anything else is refused with the forms.
    short = create(yard, "bob", "--expires", "45m")
    assert abs(listed(yard, token_id(short))["expires_at"] - (time.time() + 45 * 60)) < 30
    bad = yard.run("token", "create", "bob", "--expires", "30s", check=False)
    assert bad.returncode != 0 and "30d, 12h or 45m" in bad.stderr


def test_an_expired_token_is_refused_saying_how_to_get_a_new_one(yard, running):
    url, _, _ = running
    token = create(yard, "bob", "--expires", "1h")
    assert call(f"{url}/v1/jobs", token=token)[0] == 200
    # An hour passing, in the store: the server reads the row at every call.
    with sqlite3.connect(yard.home / "state.db", timeout=30) as db:
        db.execute("UPDATE tokens SET expires_at = ? WHERE substr(hash, 1, 12) = ?",
                   (time.time() - 1, token_id(token)))
    status, body = call(f"{url}/v1/jobs", token=token)
    message = error_of(body)["message"]
    assert status == 401 and "expired at" in message and "yard token create" in message, message
    assert listed(yard, token_id(token))["state"] == "expired"
    proc = yard.run("jobs", env=remote(yard, token, url), check=False)
    assert proc.returncode != 0 and "expired" in proc.stderr, proc.stderr


def test_a_read_token_watches_but_neither_submits_nor_cancels(yard, running, project):
    url, job_id, user = running
    reader = create(yard, user, "--scope", "read")
    env = remote(yard, reader, url)
    assert job_id in yard.run("jobs", env=env).stdout
    assert "started" in yard.run("logs", job_id, env=env).stdout
    assert call(f"{url}/v1/jobs/{job_id}/events?follow=0", token=reader)[0] == 200
    for args in (["cancel", job_id], ["submit", "job.sh"]):
        proc = yard.run(*args, env=env, cwd=project, check=False)
        assert proc.returncode != 0 and "scope 'submit'" in proc.stderr, (args, proc.stderr)
    assert yard.job(job_id)["state"] == "running"
    status, body = call(f"{url}/v1/jobs/{job_id}/cancel", "POST", reader, body={})
    assert status == 403 and "scope 'submit'" in error_of(body)["message"]
    # A submit token submits and cancels but does not manage tokens.
    submitter = create(yard, user, "--scope", "submit")
    status, body = call(f"{url}/v1/tokens", token=submitter)
    assert status == 403 and "scope 'admin'" in error_of(body)["message"]
    # A metrics token reads /metrics only; user tokens do not read /metrics.
    scraper = create(yard, "prom", "--scope", "metrics")
    assert call(f"{url}/metrics", token=scraper)[0] == 200
    status, body = call(f"{url}/v1/jobs", token=scraper)
    assert status == 403 and "GET /metrics only" in error_of(body)["message"]
    status, body = call(f"{url}/metrics", token=submitter)
    assert status == 403 and "scope 'metrics'" in error_of(body)["message"]
    # The dashboard signs in with a read token, and its session keeps the scope.
    status, body = call(f"{url}/v1/dashboard/login-links", "POST", reader, body={})
    assert status == 200, body


def test_revoked_token_is_refused_at_once_and_its_open_streams_end(yard, running):
    url, job_id, user = running
    watcher = create(yard, user, "--scope", "read")
    follower = subprocess.Popen([str(YARD), "logs", "-f", job_id], env=remote(yard, watcher, url),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    raw, status, _ = open_stream(url, watcher, job_id)
    try:
        assert status == 200
        first = []
        reader = threading.Thread(target=lambda: first.append(follower.stdout.readline()), daemon=True)
        reader.start()
        reader.join(60)
        assert first and "started" in first[0], "the follower shows the job's output"
        revoked = yard.run("token", "revoke", token_id(watcher)).stdout
        assert "revoked token " + token_id(watcher) in revoked
        status, body = call(f"{url}/v1/jobs", token=watcher)
        assert status == 401 and "was revoked" in error_of(body)["message"]
        start = time.monotonic()
        _, err = follower.communicate(timeout=30)
        took = time.monotonic() - start
        assert follower.returncode != 0 and "revoked" in err, err
        assert took < 10, f"the follower ended {took:.1f} s after the revocation"
        raw.settimeout(10)
        tail = b""
        while not tail.endswith(b"0\r\n\r\n"):
            got = raw.recv(65536)
            assert got, "the stream was cut instead of ended"
            tail += got
        assert b"revoked or has expired" in tail
        assert listed(yard, token_id(watcher))["state"] == "revoked"
        assert yard.job(job_id)["state"] == "running", "the job goes on"
    finally:
        follower.kill()
        raw.close()


def test_a_user_manages_own_tokens_through_the_api(yard, running):
    url, _, user = running
    admin = yard.token()
    status, body = call(f"{url}/v1/tokens", "POST", admin, body={"scope": "read", "expires": "12h"})
    made = json.loads(body)
    assert status == 201 and made["scope"] == "read" and made["user"] == user, body
    assert abs(made["expires_at"] - (time.time() + 12 * 3600)) < 60
    assert call(f"{url}/v1/jobs", token=made["token"])[0] == 200
    status, body = call(f"{url}/v1/tokens", token=admin)
    ids = [t["id"] for t in json.loads(body)["tokens"]]
    assert status == 200 and made["id"] in ids and all("token" not in t for t in json.loads(body)["tokens"])
    # Another user's admin token neither sees nor revokes it.
    bob = create(yard, "bob")
    assert made["id"] not in [t["id"] for t in json.loads(call(f"{url}/v1/tokens", token=bob)[1])["tokens"]]
    assert call(f"{url}/v1/tokens/{made['id']}/revoke", "POST", bob, body={})[0] == 404
    status, body = call(f"{url}/v1/tokens/{made['id']}/revoke", "POST", admin, body={})
    assert status == 200 and json.loads(body)["state"] == "revoked"
    assert call(f"{url}/v1/jobs", token=made["token"])[0] == 401
    status, body = call(f"{url}/v1/tokens", "POST", admin, body={"scope": "metrics"})
    assert status == 400 and "operator" in error_of(body)["message"]


def test_with_a_server_set_yard_token_manages_your_own_tokens(yard, running):
    url, _, user = running
    env = remote(yard, yard.token(), url)
    reader = yard.run("token", "create", "--scope", "read", "--expires", "12h", env=env).stdout.strip()
    assert reader.startswith("yut_") and call(f"{url}/v1/jobs", token=reader)[0] == 200
    mine = json.loads(yard.run("token", "list", "--json", env=env).stdout)
    assert [t["scope"] for t in mine if t["id"] == token_id(reader)] == ["read"]
    assert {t["user"] for t in mine} == {user}
    assert token_id(reader) in yard.run("token", "list", env=env).stdout
    refused = yard.run("token", "create", "bob", env=env, check=False)
    assert refused.returncode != 0 and "for yourself" in refused.stderr
    # The read token itself may not manage tokens.
    proc = yard.run("token", "list", env=remote(yard, reader, url), check=False)
    assert proc.returncode != 0 and "scope 'admin'" in proc.stderr, proc.stderr
    assert "revoked token " + token_id(reader) in yard.run("token", "revoke", reader, env=env).stdout
    assert call(f"{url}/v1/jobs", token=reader)[0] == 401


def get_with_headers(url, token):
    req = urllib.request.Request(url)
    req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_guessed_tokens_slow_their_address_with_retry_after(yard, running):
    url, _, _ = running
    good = create(yard, "bob", "--scope", "read")
    for i in range(20):
        assert call(f"{url}/v1/jobs", token=f"yut_guess{i:04d}")[0] == 401
    status, headers, body = get_with_headers(f"{url}/v1/jobs", good)
    assert status == 429, body
    assert 1 <= int(headers["Retry-After"]) <= 60
    assert "too many unknown tokens" in error_of(body)["message"]
    assert call(f"{url}/v1/health")[0] == 200, "routes without a token still answer"


@pytest.fixture
def small_limit_server(tmp_path):
    """A foreground server allowing each user 4 requests in flight."""
    home = tmp_path / "limited"
    env = dict(os.environ, YARD_HOME=str(home))
    proc = subprocess.Popen([str(YARD), "--home", str(home), "server", "--port", "0",
                             "--max-requests-in-flight", "4"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    info = wait_for(lambda: (home / "server.json").exists() and json.loads((home / "server.json").read_text()),
                    timeout=30, what="the server to write server.json")
    wait_for(lambda: call(info["url"] + "/v1/health")[0] == 200, timeout=30, what="the server to answer")
    bob = subprocess.run([str(YARD), "--home", str(home), "token", "create", "bob"], env=env,
                         capture_output=True, text=True, check=True).stdout.strip()
    yield info["url"], (home / "token").read_text().strip(), bob
    proc.terminate()
    proc.wait(timeout=30)


def test_one_user_flooding_gets_429_and_another_user_is_served(small_limit_server):
    url, flooder, other = small_limit_server
    hashes = ["%064x" % i for i in range(5000)]  # a slow-ish call: 5000 look-ups
    refused, stop = [], threading.Event()

    def flood():
        while not stop.is_set():
            try:
                status, body = call(f"{url}/v1/blobs/missing", "POST", flooder, body={"hashes": hashes})
            except OSError:  # 32 connections at once on a loaded machine: a reset now and then
                continue
            if status == 429:
                refused.append(error_of(body)["message"])

    threads = [threading.Thread(target=flood) for _ in range(32)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: refused, timeout=60, interval=0.1, what="the flooding user to be refused")
        worst = 0.0
        for _ in range(20):
            start = time.monotonic()
            status, body = call(f"{url}/v1/jobs", token=other)
            worst = max(worst, time.monotonic() - start)
            assert status == 200, body
        assert worst < 5, f"another user's call took {worst:.2f} s during the flood"
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert "requests in flight, the limit per user (4)" in refused[0], refused[0]
