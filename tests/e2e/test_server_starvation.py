"""One user cannot starve the server: event streams are limited per user,
the server's threads grow past clients that hold them (streams, half-sent
requests), and a connection that stalls mid-request is closed soon.
Health and other users' calls answer meanwhile."""
import json
import resource
import socket
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from waiting import wait_for

STREAMS_PER_USER = 256  # http_server.cc, kStreamsPerUser


def raise_open_file_limit(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))


def timed_get(url, token=None):
    """(status, seconds) of a GET with a generous timeout: the time is the assertion."""
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    start = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        status = e.code
    return status, time.monotonic() - start


def open_socket(url):
    parts = urllib.parse.urlsplit(url)
    return socket.create_connection((parts.hostname, parts.port), timeout=30)


def open_stream(url, token, job_id):
    """A follow stream left open; returns (socket, status, first bytes)."""
    s = open_socket(url)
    s.sendall((f"GET /v1/jobs/{job_id}/events HTTP/1.1\r\nHost: yard\r\n"
               f"Authorization: Bearer {token}\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        got = s.recv(4096)
        if not got:
            break
        head += got
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.1 ") else 0
    return s, status, head


@pytest.fixture
def busy(yard, project):
    """A running job of the default user, its server's url and both users' tokens."""
    raise_open_file_limit(4096)
    (project / "job.sh").write_text("echo started; sleep 600\n")
    job_id = yard.run("submit", "job.sh", cwd=project).stdout.strip()
    yard.wait_state(job_id, "running")
    other = yard.run("token", "create", "bob").stdout.strip()
    yield yard.server_info()["url"], yard.token(), other, job_id
    yard.run("cancel", job_id, check=False)


def assert_others_served(url, other):
    for path, token in [("/v1/health", None), ("/v1/jobs", other)]:
        status, took = timed_get(url + path, token)
        assert status == 200 and took < 2.0, f"{path}: {status} after {took:.2f} s"


def test_a_user_past_the_stream_limit_gets_429_and_others_are_served(busy):
    url, token, other, job_id = busy
    opened, refused = [], []
    try:
        for _ in range(STREAMS_PER_USER + 20):
            s, status, head = open_stream(url, token, job_id)
            (opened if status == 200 else refused).append((s, status, head))
        assert len(opened) == STREAMS_PER_USER, [r[2][:200] for r in refused[:1]]
        assert {r[1] for r in refused} == {429}
        body = refused[0][2] + refused[0][0].recv(4096)
        assert b"the limit per user (256)" in body, body
        assert_others_served(url, other)
        # Closing streams gives their places back (the server notices at its
        # next write to them, a keep-alive within 15 s).
        for s, _, _ in opened[:5]:
            s.close()
        del opened[:5]

        def one_more():
            s, status, _ = open_stream(url, token, job_id)
            if status == 200:
                opened.append((s, status, b""))
                return True
            s.close()
            return False
        wait_for(one_more, timeout=40, interval=1, what="a stream to open after others closed")
    finally:
        for s, _, _ in opened + refused:
            s.close()


def test_half_sent_requests_neither_starve_the_server_nor_stay_open(busy):
    url, token, other, _ = busy
    stalled = []
    try:
        for _ in range(1000):
            s = open_socket(url)
            s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: yard\r\n")  # and never the blank line
            stalled.append(s)
        assert_others_served(url, other)
        status, _ = timed_get(url + "/v1/jobs", token)
        assert status == 200
        # The server closes them once they have sent nothing for its read timeout (10 s).
        probe = stalled[0]
        probe.settimeout(40)
        start = time.monotonic()
        try:
            while probe.recv(4096):
                pass
        except ConnectionResetError:
            pass
        assert time.monotonic() - start < 30
    finally:
        for s in stalled:
            s.close()
