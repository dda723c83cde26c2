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
    """Answers every GET with JSON whose fields have the wrong types."""

    def do_GET(self):
        body = json.dumps({"jobs": 5, "job": 5, "instances": 5, "types": 5, "ok": True,
                           "service": "trainyard"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
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
