"""AWS without AWS: moto's EC2 server, Amazon's ec2-metadata-mock and a
fault-injecting proxy, all on loopback, for the EC2 client's and the AWS
provider's tests. Nothing here talks to any address but 127.0.0.1.

Tools (scripts/setup.sh installs both): moto_server from <repo>/.venv, and
ec2-metadata-mock (built from the Go module proxy; looked for in
$EC2_METADATA_MOCK, /usr/local/bin, <repo>/build/tools, ~/go/bin, PATH).
`skip_reason()` / `metadata_mock_skip_reason()` say why a tool is missing.

moto (EC2's Query API; also IAM, STS, ...):

    moto = Moto().start()                # moto_server on a free port, waits until it answers
    moto.url                             # "http://127.0.0.1:PORT"
    ec2 = moto.client("ec2")             # boto3 client: an independent observer of moto's view
    vpc_id, subnet_id = loopback_subnet(ec2)   # VPC 127.1.0.0/16, subnet 127.1.1.0/24:
                                         # instances launched there get 127.1.1.x private
                                         # addresses (moto hands out .4, .5, ...)
    moto.any_image()                     # an AMI id moto knows
    moto.reset()                         # forget every resource (moto's /moto-api/reset)
    moto.stop()

  IAM enforcement: Moto(enforce_auth=True) starts moto with
  INITIAL_NO_AUTH_ACTION_COUNT set so that exactly the harness's own setup
  calls pass unauthenticated: it creates an "admin" user allowed everything,
  whose keys (moto.admin_keys: (access_key_id, secret)) moto.client() then
  uses. After that every request must be signed with a key moto knows:
  an unknown key gets AuthFailure (HTTP 401); a known key without the
  permission gets moto's `AccessDenied: User: arn:... is not authorized to
  perform: ec2:RunInstances` (HTTP 403).
    keys = moto.make_user("alice", ["ec2:Describe*"])   # (id, secret) allowed only that

Fault proxy (EC2 errors that moto never gives):

    proxy = FaultProxy(moto.url).start()
    proxy.url                            # point the client here instead of moto.url
    proxy.fail("RunInstances", code="InsufficientInstanceCapacity", status=500,
               instance_type="p2.xlarge", times=None)   # None: every time; N: the next N
    proxy.fail("DescribeInstances", **THROTTLED, times=2)
    proxy.count("RunInstances")          # requests seen per Action (faulted ones included)
    proxy.counts()                       # {"RunInstances": 3, ...}
    proxy.faulted("RunInstances")        # how many of them got a fault
    proxy.clear()                        # drop the rules and the counts
    proxy.stop()

  Preset faults (kwargs for fail()): CAPACITY (InsufficientInstanceCapacity,
  500), THROTTLED (RequestLimitExceeded, 503), UNAUTHORIZED
  (UnauthorizedOperation, 403, without a named action, as EC2 answers with
  an encoded message), UNAVAILABLE (Unavailable, 503).
  Answers have EC2's error document shape:
    <Response><Errors><Error><Code>..</Code><Message>..</Message></Error></Errors>
    <RequestID>..</RequestID></Response>
  The proxy also has a control API, so that another process (the C++
  tests) can drive it: POST /_fault/rules {"action", "code", "message",
  "status", "instance_type", "times"} adds a rule, DELETE /_fault/rules
  clears, GET /_fault/counts -> {"seen": {...}, "faulted": {...}}.

ec2-metadata-mock (IMDS):

    imds = MetadataMock().start()                       # all paths; IMDSv1 and v2
    imds = MetadataMock(imdsv2_only=True).start()       # -I: a token is required
    imds = MetadataMock(spot_terminate_after=10).start()  # `spot --action terminate -d 10`:
                                         # spot/instance-action is 404 for 10 s, then a notice
                                         # (the mock counts whole seconds from its own start:
                                         # the notice may come up to 1 s early)
    imds = MetadataMock(config={...}).start()           # the mock's JSON config (-c), e.g. other
                                         # iam security-credentials
    imds.url                             # AWS_EC2_METADATA_SERVICE_ENDPOINT for the client
    imds.stop()

Command line (for tests in other languages):

    .venv/bin/python tests/aws_harness.py serve [--enforce-auth] [--metadata-mock ARGS...]

prints one JSON line {"moto": url, "proxy": url, "subnet_id", "vpc_id",
"image_id", "admin_keys": [id, secret] | null, "imds": url | null} once
everything answers, and stops it all when its stdin closes (so a test that
dies does not leave servers behind) or on SIGTERM.

    .venv/bin/python tests/aws_harness.py metadata-mock [--imdsv2-only]
        [--spot-terminate-after N] [--config-json '{"metadata": {"values": {...}}}']

does the same for ec2-metadata-mock alone and prints {"imds": url}. With
--enforce-auth, serve also makes a user allowed only ec2:Describe* and
prints its keys as "limited_keys".

    .venv/bin/python tests/aws_harness.py boto URL ec2 describe_instances '{"InstanceIds": [...]}'
        [--keys ID SECRET] [--decode-base64 UserData.Value]

makes one boto3 call (an observer independent of our client) and prints
its answer as JSON.
src/aws/harness_testing.h runs both from C++ tests.
"""
import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = REPO / ".venv" / "bin"
REGION = "us-east-1"
DUMMY_KEYS = ("AKIDTRAINYARDTEST", "trainyard-test-secret")

CAPACITY = dict(code="InsufficientInstanceCapacity", status=500,
                message="We currently do not have sufficient capacity in the Availability Zone "
                        "you requested. Our system will be working on provisioning additional "
                        "capacity.")
THROTTLED = dict(code="RequestLimitExceeded", status=503, message="Request limit exceeded.")
UNAUTHORIZED = dict(code="UnauthorizedOperation", status=403,
                    message="You are not authorized to perform this operation. Encoded "
                            "authorization failure message: trainyard-test-encoded")
UNAVAILABLE = dict(code="Unavailable", status=503,
                   message="The server is overloaded and can't handle the request.")


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(condition, timeout, what, proc=None, log=None):
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: the process exited with {proc.returncode}"
                               f"{_tail(log)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not ready after {timeout}s{_tail(log)}")
        time.sleep(0.05)


def _tail(log):
    if log is None:
        return ""
    try:
        return "\n" + Path(log).read_text(errors="replace")[-2000:]
    except OSError:
        return ""


def _answers(url, path="/"):
    """True when an HTTP server at url answers (any status) on path."""
    parts = urllib.parse.urlsplit(url)
    try:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=1)
        conn.request("GET", path)
        conn.getresponse().read()
        conn.close()
        return True
    except OSError:
        return False


def _stop_process(proc, timeout=10):
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def moto_server_binary():
    path = VENV_BIN / "moto_server"
    return path if path.exists() else None


def skip_reason():
    """Why moto cannot run here, or None."""
    if moto_server_binary() is None:
        return f"moto is not installed ({VENV_BIN}/moto_server missing): run scripts/setup.sh"
    return None


def metadata_mock_binary():
    candidates = [os.environ.get("EC2_METADATA_MOCK"), "/usr/local/bin/ec2-metadata-mock",
                  str(REPO / "build" / "tools" / "ec2-metadata-mock"),
                  str(Path.home() / "go" / "bin" / "ec2-metadata-mock"),
                  shutil.which("ec2-metadata-mock")]
    for c in candidates:
        if c and os.access(c, os.X_OK):
            return Path(c)
    return None


def metadata_mock_skip_reason():
    if metadata_mock_binary() is None:
        return ("ec2-metadata-mock is not installed (scripts/setup.sh builds it with "
                "`go install github.com/aws/amazon-ec2-metadata-mock/cmd/ec2-metadata-mock@v1.13.0`)")
    return None


class Moto:
    """moto_server on a free loopback port (see the module docstring)."""

    # The harness's own unauthenticated setup calls when enforce_auth is on:
    # CreateUser, PutUserPolicy, CreateAccessKey.
    _SETUP_ACTIONS = 3

    def __init__(self, enforce_auth=False, log_dir=None):
        self.enforce_auth = enforce_auth
        self.proc = None
        self.port = None
        self.admin_keys = None
        self._log_dir = Path(log_dir or tempfile.mkdtemp(prefix="yard-moto-"))

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout=60):
        reason = skip_reason()
        if reason:
            raise RuntimeError(reason)
        env = dict(os.environ)
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
            env.pop(k, None)
        if self.enforce_auth:
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(self._SETUP_ACTIONS)
        else:
            env.pop("INITIAL_NO_AUTH_ACTION_COUNT", None)
        log = self._log_dir / "moto.log"
        for _ in range(3):  # the free port may be taken between probe and bind
            self.port = free_port()
            with open(log, "wb") as out:
                self.proc = subprocess.Popen(
                    [str(moto_server_binary()), "-H", "127.0.0.1", "-p", str(self.port)],
                    stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
            try:
                # /moto-api/ is not an AWS action: it does not count against
                # INITIAL_NO_AUTH_ACTION_COUNT.
                _wait(lambda: _answers(self.url, "/moto-api/data.json"), timeout,
                      "moto_server", self.proc, log)
                break
            except RuntimeError:
                if self.proc.poll() is None:
                    raise
        else:
            raise RuntimeError(f"moto_server did not start{_tail(log)}")
        if self.enforce_auth:
            self.admin_keys = self._make_user("admin", ["*"], DUMMY_KEYS)
        return self

    def stop(self):
        _stop_process(self.proc)
        self.proc = None

    def reset(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.request("POST", "/moto-api/reset")
        conn.getresponse().read()
        conn.close()

    def client(self, service="ec2", keys=None, url=None):
        """A boto3 client of moto (or of `url`, e.g. a FaultProxy in front of it)."""
        import boto3
        key_id, secret = keys or self.admin_keys or DUMMY_KEYS
        return boto3.client(service, region_name=REGION, endpoint_url=url or self.url,
                            aws_access_key_id=key_id, aws_secret_access_key=secret)

    def make_user(self, name, actions):
        """Creates an IAM user allowed exactly `actions` (on "*"); returns its keys."""
        return self._make_user(name, actions, self.admin_keys or DUMMY_KEYS)

    def _make_user(self, name, actions, keys):
        iam = self.client("iam", keys=keys)
        iam.create_user(UserName=name)
        policy = {"Version": "2012-10-17",
                  "Statement": [{"Effect": "Allow", "Action": list(actions), "Resource": "*"}]}
        iam.put_user_policy(UserName=name, PolicyName=f"{name}-policy",
                            PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]

    def any_image(self):
        """An AMI id from moto's catalogue."""
        images = self.client().describe_images(Owners=["amazon"])["Images"]
        return sorted(i["ImageId"] for i in images)[0]

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def loopback_subnet(ec2):
    """Creates VPC 127.1.0.0/16 and subnet 127.1.1.0/24 in moto: instances
    launched into the subnet get 127.1.1.x private addresses (loopback on
    Linux). Returns (vpc_id, subnet_id)."""
    vpc_id = ec2.create_vpc(CidrBlock="127.1.0.0/16")["Vpc"]["VpcId"]
    subnet_id = ec2.create_subnet(VpcId=vpc_id, CidrBlock="127.1.1.0/24")["Subnet"]["SubnetId"]
    return vpc_id, subnet_id


def error_document(code, message, request_id=None):
    """EC2's error document (XML) for one error."""
    from xml.sax.saxutils import escape
    request_id = request_id or str(uuid.uuid4())
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Response><Errors><Error><Code>{escape(code)}</Code>"
            f"<Message>{escape(message)}</Message></Error></Errors>"
            f"<RequestID>{request_id}</RequestID></Response>").encode()


class FaultProxy:
    """An HTTP proxy in front of moto answering chosen requests with EC2
    errors and counting requests per Action (see the module docstring)."""

    def __init__(self, upstream_url):
        parts = urllib.parse.urlsplit(upstream_url)
        self.upstream = (parts.hostname, parts.port)
        self._lock = threading.Lock()
        self._rules = []
        self._seen = {}
        self._faulted = {}
        self._server = None
        self._thread = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                proxy._handle(self)

            do_POST = do_PUT = do_DELETE = do_HEAD = do_GET

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def fail(self, action, code, status, message="", instance_type=None, times=None):
        """Answers `action` (and, if given, only requests whose InstanceType is
        `instance_type`) with EC2 error `code` and HTTP `status`, the next
        `times` times (None: until clear())."""
        with self._lock:
            self._rules.append(dict(action=action, code=code, status=int(status),
                                    message=message or f"{code} (injected by the test proxy)",
                                    instance_type=instance_type, times=times))

    def clear(self):
        with self._lock:
            self._rules.clear()
            self._seen.clear()
            self._faulted.clear()

    def count(self, action):
        with self._lock:
            return self._seen.get(action, 0)

    def faulted(self, action):
        with self._lock:
            return self._faulted.get(action, 0)

    def counts(self):
        with self._lock:
            return dict(self._seen)

    # -- request handling --------------------------------------------------

    def _handle(self, h):
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        if h.path.startswith("/_fault/"):
            return self._control(h, body)
        params = dict(urllib.parse.parse_qsl(body.decode(errors="replace")))
        params.update(urllib.parse.parse_qsl(urllib.parse.urlsplit(h.path).query))
        action = params.get("Action", "")
        rule = self._match(action, params.get("InstanceType"))
        if rule is not None:
            return self._reply(h, rule["status"], error_document(rule["code"], rule["message"]),
                               "text/xml;charset=UTF-8")
        self._forward(h, body)

    def _match(self, action, instance_type):
        with self._lock:
            self._seen[action] = self._seen.get(action, 0) + 1
            for rule in self._rules:
                if rule["action"] not in (None, "", action):
                    continue
                if rule["instance_type"] and rule["instance_type"] != instance_type:
                    continue
                if rule["times"] is not None:
                    if rule["times"] <= 0:
                        continue
                    rule["times"] -= 1
                self._faulted[action] = self._faulted.get(action, 0) + 1
                return dict(rule)
        return None

    def _forward(self, h, body):
        conn = http.client.HTTPConnection(*self.upstream, timeout=60)
        headers = {k: v for k, v in h.headers.items()
                   if k.lower() not in ("connection", "keep-alive", "transfer-encoding")}
        try:
            conn.request(h.command, h.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except OSError as e:
            return self._reply(h, 502, f"fault proxy: moto did not answer: {e}".encode(),
                               "text/plain")
        finally:
            conn.close()
        self._reply(h, resp.status, data, resp.getheader("Content-Type", "text/xml"))

    def _control(self, h, body):
        if h.command == "POST" and h.path == "/_fault/rules":
            rule = json.loads(body or b"{}")
            self.fail(rule.get("action"), rule["code"], rule.get("status", 500),
                      rule.get("message", ""), rule.get("instance_type"), rule.get("times"))
            return self._reply(h, 200, b"{}", "application/json")
        if h.command == "DELETE" and h.path == "/_fault/rules":
            self.clear()
            return self._reply(h, 200, b"{}", "application/json")
        if h.command == "GET" and h.path == "/_fault/counts":
            with self._lock:
                data = json.dumps({"seen": self._seen, "faulted": self._faulted}).encode()
            return self._reply(h, 200, data, "application/json")
        self._reply(h, 404, b"unknown fault proxy control path", "text/plain")

    @staticmethod
    def _reply(h, status, data, content_type):
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class MetadataMock:
    """Amazon's ec2-metadata-mock on a free loopback port (see the module
    docstring). Runs with HOME set to a fresh folder so that no
    ~/aemm-config.json of this machine changes what it serves."""

    def __init__(self, imdsv2_only=False, spot_terminate_after=None, config=None,
                 extra_args=()):
        self.args = []
        if spot_terminate_after is not None:
            self.args += ["spot", "--action", "terminate", "-d", str(int(spot_terminate_after))]
        if imdsv2_only:
            self.args.append("-I")
        self.args += list(extra_args)
        self.config = config
        self.proc = None
        self.port = None
        self._dir = Path(tempfile.mkdtemp(prefix="yard-imds-"))

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout=30):
        reason = metadata_mock_skip_reason()
        if reason:
            raise RuntimeError(reason)
        args = list(self.args)
        if self.config is not None:
            path = self._dir / "aemm-config.json"
            path.write_text(json.dumps(self.config))
            args += ["-c", str(path)]
        env = dict(os.environ, HOME=str(self._dir))
        log = self._dir / "mock.log"
        for _ in range(3):
            self.port = free_port()
            with open(log, "wb") as out:
                self.proc = subprocess.Popen(
                    [str(metadata_mock_binary()), *args, "-n", "127.0.0.1", "-p", str(self.port)],
                    stdout=out, stderr=subprocess.STDOUT, env=env, cwd=self._dir,
                    start_new_session=True)
            try:
                _wait(lambda: _answers(self.url, "/latest/api/token"), timeout,
                      "ec2-metadata-mock", self.proc, log)
                return self
            except RuntimeError:
                if self.proc.poll() is None:
                    raise
        raise RuntimeError(f"ec2-metadata-mock did not start{_tail(log)}")

    def stop(self):
        _stop_process(self.proc)
        self.proc = None
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _serve(args):
    moto = Moto(enforce_auth=args.enforce_auth).start()
    proxy = FaultProxy(moto.url).start()
    imds = None
    try:
        ec2 = moto.client()
        vpc_id, subnet_id = loopback_subnet(ec2)
        if args.metadata_mock is not None:
            imds = MetadataMock(extra_args=args.metadata_mock).start()
        limited = moto.make_user("limited", ["ec2:Describe*"]) if args.enforce_auth else None
        print(json.dumps({"moto": moto.url, "proxy": proxy.url, "vpc_id": vpc_id,
                          "subnet_id": subnet_id, "image_id": moto.any_image(),
                          "admin_keys": list(moto.admin_keys) if moto.admin_keys else None,
                          "limited_keys": list(limited) if limited else None,
                          "imds": imds.url if imds else None}), flush=True)
        _wait_for_stdin_close_or_sigterm()
    finally:
        proxy.stop()
        moto.stop()
        if imds:
            imds.stop()


def _wait_for_stdin_close_or_sigterm():
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    stop.wait()


def _metadata_mock(args):
    config = json.loads(args.config_json) if args.config_json else None
    with MetadataMock(imdsv2_only=args.imdsv2_only, spot_terminate_after=args.spot_terminate_after,
                      config=config) as imds:
        print(json.dumps({"imds": imds.url}), flush=True)
        _wait_for_stdin_close_or_sigterm()


def _boto(args):
    import base64
    import boto3
    key_id, secret = args.keys or DUMMY_KEYS
    client = boto3.client(args.service, region_name=REGION, endpoint_url=args.url,
                          aws_access_key_id=key_id, aws_secret_access_key=secret)
    result = getattr(client, args.method)(**json.loads(args.kwargs))
    result.pop("ResponseMetadata", None)
    if args.decode_base64:  # e.g. UserData.Value of describe_instance_attribute
        node = result
        for part in args.decode_base64.split("."):
            node = node[part]
        result["decoded"] = base64.b64decode(node).decode()
    print(json.dumps(result, default=str))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="moto + fault proxy (+ metadata mock) until stdin closes")
    serve.add_argument("--enforce-auth", action="store_true")
    serve.add_argument("--metadata-mock", nargs=argparse.REMAINDER, default=None,
                       help="start ec2-metadata-mock too, with these arguments")
    mock = sub.add_parser("metadata-mock", help="ec2-metadata-mock alone until stdin closes")
    mock.add_argument("--imdsv2-only", action="store_true")
    mock.add_argument("--spot-terminate-after", type=int, default=None)
    mock.add_argument("--config-json", default=None, help="the mock's JSON config (-c)")
    boto = sub.add_parser("boto", help="one boto3 call; prints its answer as JSON")
    boto.add_argument("url")
    boto.add_argument("service")
    boto.add_argument("method")
    boto.add_argument("kwargs", nargs="?", default="{}")
    boto.add_argument("--keys", nargs=2, default=None)
    boto.add_argument("--decode-base64", default=None, help="dotted path of a base64 value to decode")
    args = parser.parse_args()
    {"serve": _serve, "metadata-mock": _metadata_mock, "boto": _boto}[args.command](args)


if __name__ == "__main__":
    main()
