"""A spot interruption on loopback, for the agent's preemption watcher.

Amazon's ec2-metadata-mock (IMDSv2 only) serves the notice; in front of it a
small proxy gives every IMDSv2 session its own source address (127.0.0.1,
127.0.0.2, ...), as every instance has a metadata service of its own. The
mock runs with `--mock-ip-count 1`, so its own rule decides who is
interrupted: the first session (the agent of the instance that is running
the job) gets the notice, the agents of later instances get 404, as on a
fresh instance.

    imds = SpotMetadata().start()   # the proxy; every call answers 503 for now
    env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = imds.url
    ...
    imds.interrupt()                # starts the mock: the notice is served now
    imds.stop()

Nothing here talks to any address but 127.0.0.x.
"""
import http.client
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# A `yard fit` script following the contract of docs/workflow.md: on SIGUSR1
# (or $YARD_PREEMPTION_NOTICE appearing) it writes a checkpoint and exits.
# The first run waits for the notice after line 4; the resumed one goes on.
FIT_SCRIPT = r'''
import json, os, signal, sys, time

noticed = False
def on_notice(signum, frame):
    global noticed
    noticed = True
signal.signal(signal.SIGUSR1, on_notice)

ckpt_dir = os.environ["YARD_CHECKPOINT_DIR"]
start = 0
if os.environ.get("YARD_RESUME_FROM"):
    start = json.load(open(os.environ["YARD_RESUME_FROM"]))["next"]
    print(f"resumed at line {start}", flush=True)
for i in range(start, 10):
    print(f"line {i}", flush=True)
    if i == 4 and not start:
        while not noticed:
            time.sleep(0.01)
        notice = json.load(open(os.environ["YARD_PREEMPTION_NOTICE"]))
        print(f"notice: {notice['action']} at {notice['time']}", flush=True)
        with open(os.path.join(ckpt_dir, "step-0005.json.tmp"), "w") as f:
            json.dump({"next": 5}, f)
        os.replace(os.path.join(ckpt_dir, "step-0005.json.tmp"), os.path.join(ckpt_dir, "step-0005.json"))
        sys.exit(75)
'''

TOKEN_HEADER = "X-aws-ec2-metadata-token"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"


def mock_binary():
    for c in (os.environ.get("EC2_METADATA_MOCK"), "/usr/local/bin/ec2-metadata-mock",
              str(Path.home() / "go" / "bin" / "ec2-metadata-mock"), shutil.which("ec2-metadata-mock")):
        if c and os.access(c, os.X_OK):
            return c
    return None


def skip_reason():
    if mock_binary() is None:
        return ("ec2-metadata-mock is not installed (scripts/setup.sh builds it: "
                "go install github.com/aws/amazon-ec2-metadata-mock/cmd/ec2-metadata-mock@v1.13.0)")
    return None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _reply(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _forward(self, method, source, headers):
        port = self.server.owner.mock_port
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5, source_address=(source, 0))
        try:
            conn.request(method, self.path, headers=headers)
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def do_PUT(self):
        owner = self.server.owner
        if owner.mock_port is None:
            return self._reply(503, b"not started")
        source = owner.next_source()
        status, body = self._forward("PUT", source, {TTL_HEADER: self.headers.get(TTL_HEADER, "60")})
        if status == 200:
            owner.sessions[body.decode()] = source
        self._reply(status, body)

    def do_GET(self):
        owner = self.server.owner
        owner.gets += 1
        if owner.mock_port is None:
            return self._reply(503, b"not started")
        token = self.headers.get(TOKEN_HEADER, "")
        source = owner.sessions.get(token, "127.0.0.250")  # unknown: the mock answers 401
        status, body = self._forward("GET", source, {TOKEN_HEADER: token})
        self._reply(status, body, [("Content-Type", "application/json")] if status == 200 else ())


class SpotMetadata:
    def __init__(self, action="terminate"):
        self.action = action
        self.mock_port = None
        self.sessions = {}  # IMDSv2 token -> source address
        self.gets = 0
        self._count = 0
        self._lock = threading.Lock()
        self._proc = None
        self._dir = Path(tempfile.mkdtemp(prefix="yard-spot-imds-"))
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self):
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def next_source(self):
        with self._lock:
            self._count += 1
            return f"127.0.0.{self._count}"

    def start(self):
        self._thread.start()
        return self

    def interrupt(self, timeout=30):
        """Starts the mock; returns once it answers (the notice is served from then on)."""
        port = free_port()
        log = open(self._dir / "mock.log", "wb")
        self._proc = subprocess.Popen(
            [mock_binary(), "spot", "--action", self.action, "-d", "0", "-x", "1", "-I",
             "-n", "127.0.0.1", "-p", str(port)],
            stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, HOME=str(self._dir)),
            cwd=self._dir, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                conn.request("PUT", "/latest/api/token", headers={TTL_HEADER: "60"})
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ec2-metadata-mock did not start: {(self._dir / 'mock.log').read_text()}")
            time.sleep(0.02)
        self.mock_port = port
        return time.monotonic()

    def stop(self):
        self._server.shutdown()
        self._server.server_close()
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        shutil.rmtree(self._dir, ignore_errors=True)
