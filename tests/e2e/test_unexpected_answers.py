"""A server answer of an unexpected shape (another version, a proxy's page)
is a clear error from the CLI with its own exit code, never an abort."""
import http.server
import json
import os
import subprocess
import threading

import pytest

from conftest import YARD


class OddShapes(http.server.BaseHTTPRequestHandler):
    """Answers every call with JSON whose fields have the wrong types; a job's
    event stream carries an event whose seq is a string."""

    def do_GET(self):
        if "/events" in self.path:
            self.answer("text/event-stream", b'id: 1\ndata: {"seq": "one", "kind": "output"}\n\n')
            return
        self.answer("application/json", json.dumps(
            {"jobs": 5, "job": 5, "instances": 5, "types": 5, "entries": [{"cost": "1"}], "ok": True,
             "service": "trainyard"}).encode())

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.answer("application/json", json.dumps({"job": {"state": 5}, "ended": [5]}).encode())

    def answer(self, content_type, body):
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def odd_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), OddShapes)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.mark.parametrize("command", [["jobs"], ["machines"], ["--server", "{url}", "jobs"]])
def test_an_answer_of_the_wrong_shape_is_a_clear_error_not_an_abort(odd_server, tmp_path, command):
    env = dict(os.environ, YARD_SERVER=odd_server, YARD_TOKEN="yut_x", YARD_HOME=str(tmp_path))
    args = [a.replace("{url}", odd_server) for a in command]
    proc = subprocess.run([str(YARD), *args], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 70, (proc.returncode, proc.stderr)
    name = args[-1]
    assert f"yard {name}: stopped on an unexpected answer" in proc.stderr, proc.stderr
    assert "Trainyard server of this version" in proc.stderr
    assert "terminate called" not in proc.stderr


# Each names the route and the field that was not what the CLI reads.
@pytest.mark.parametrize("command,name,detail", [
    (["jobs"], "jobs", "GET /v1/jobs?limit=50: jobs is the number 5, not a list"),
    (["status", "job-1"], "status", "GET /v1/jobs/job-1: job is the number 5, not an object"),
    (["machines"], "machines", "GET /v1/machines: types is the number 5, not a list"),
    (["cost"], "cost", "GET /v1/cost: the answer has no entries[0].instance"),
    (["cancel", "job-1"], "cancel", "POST /v1/jobs/job-1/cancel: job.state is the number 5, not a string"),
    (["down", "--all"], "down", "POST /v1/instances/down: ended[0] is the number 5, not a string"),
    (["logs", "job-1"], "logs", "GET /v1/jobs/job-1/events?end=e&after=0&follow=0: seq is a string, not a whole number"),
])
def test_the_error_names_the_route_and_the_field(odd_server, tmp_path, command, name, detail):
    env = dict(os.environ, YARD_SERVER=odd_server, YARD_TOKEN="yut_x", YARD_HOME=str(tmp_path))
    proc = subprocess.run([str(YARD), *command], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 70, (proc.returncode, proc.stderr)
    assert f"yard {name}: stopped on an unexpected answer or state: {detail}" in proc.stderr, proc.stderr
    assert "Trainyard server of this version" in proc.stderr
    assert "terminate called" not in proc.stderr
