"""A server that speaks TLS (`yard server --tls self-signed`): clients pin its
certificate's fingerprint or are refused saying how to get it, a wrong one
is refused, trust on first use asks on a terminal and remembers, plain HTTP
to its port is told to use https://, its agents connect over TLS and a job
runs end to end; and a server listening beyond loopback without TLS does
not start unless told --insecure-http."""
import os
import pty
import re
import select
import subprocess
import time

import pytest

from conftest import YARD, wait_for


def openssl_fingerprint(cert):
    out = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", str(cert)],
                         capture_output=True, text=True, check=True).stdout
    return out.strip().split("=", 1)[1]


class TlsServer:
    def __init__(self, yard, log_path):
        self.yard = yard
        self.log_path = log_path
        self.proc = None

    def start(self, *extra):
        if (self.yard.home / "server.json").exists():
            (self.yard.home / "server.json").unlink()
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen([str(YARD), "server", "--tls", "self-signed", *extra], env=self.yard.env,
                                         stdout=log, stderr=log)
        wait_for(lambda: (self.yard.home / "server.json").exists() and
                 self.yard.server_info()["url"].startswith("https://"),
                 timeout=30, what="the TLS server to listen")
        self.url = self.yard.server_info()["url"]
        self.fingerprint = self.yard.server_info()["fingerprint"]
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)

    def log(self):
        return self.log_path.read_text()


@pytest.fixture
def tls(yard, tmp_path):
    server = TlsServer(yard, tmp_path / "server.log").start()
    yield server
    server.stop()


def remote_env(yard, tls, tmp_path, **extra):
    """A client elsewhere: YARD_SERVER and YARD_TOKEN, its own config folder."""
    env = dict(yard.env)
    env.update(YARD_SERVER=tls.url, YARD_TOKEN=yard.token(), XDG_CONFIG_HOME=str(tmp_path / "client-config"),
               YARD_HOME=str(tmp_path / "client-home"))
    env.pop("YARD_SERVER_FINGERPRINT", None)
    env.update(extra)
    return env


def test_self_signed_certificate_is_made_once_and_its_fingerprint_printed(yard, tls):
    cert = yard.home / "tls" / "cert.pem"
    assert tls.fingerprint == openssl_fingerprint(cert)
    assert f"fingerprint {tls.fingerprint}" in tls.log()
    assert f"export YARD_SERVER_FINGERPRINT={tls.fingerprint}" in tls.log()
    assert (yard.home / "tls" / "key.pem").stat().st_mode & 0o777 == 0o600
    tls.stop()
    tls.start()
    assert tls.fingerprint == openssl_fingerprint(cert), "a restart keeps the certificate clients pinned"


def test_client_without_the_fingerprint_is_refused_saying_how_to_get_it(yard, tls, tmp_path):
    proc = yard.run("jobs", env=remote_env(yard, tls, tmp_path), check=False)
    assert proc.returncode != 0
    assert f"export YARD_SERVER_FINGERPRINT={tls.fingerprint}" in proc.stderr, proc.stderr
    assert "the fingerprint the server printed" in proc.stderr, proc.stderr


def test_wrong_fingerprint_is_refused(yard, tls, tmp_path):
    wrong = ":".join(["AB"] * 32)
    proc = yard.run("jobs", env=remote_env(yard, tls, tmp_path, YARD_SERVER_FINGERPRINT=wrong), check=False)
    assert proc.returncode != 0
    assert f"not the pinned {wrong}" in proc.stderr, proc.stderr
    assert tls.fingerprint in proc.stderr


def test_plain_http_to_the_tls_port_says_use_https(yard, tls, tmp_path):
    plain = tls.url.replace("https://", "http://")
    proc = yard.run("jobs", env=remote_env(yard, tls, tmp_path, YARD_SERVER=plain,
                                           YARD_SERVER_FINGERPRINT=tls.fingerprint), check=False)
    assert proc.returncode != 0
    assert "speaks TLS" in proc.stderr and f"use {tls.url}" in proc.stderr, proc.stderr


def run_on_terminal(env, args, answer, timeout=60):
    """Runs yard with stdin and stderr on a pseudo-terminal, answering its
    question with `answer`; returns (exit code, what the terminal showed)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([str(YARD), *args], env=env, stdin=slave, stderr=slave, stdout=subprocess.PIPE)
    os.close(slave)
    shown, answered = b"", False
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                shown += os.read(master, 4096)
            except OSError:
                break
        if not answered and b"[y/N]" in shown:
            os.write(master, answer.encode() + b"\n")
            answered = True
    proc.wait(timeout=max(1, deadline - time.monotonic()))
    try:
        while select.select([master], [], [], 0.2)[0]:
            shown += os.read(master, 4096)
    except OSError:
        pass
    os.close(master)
    return proc.returncode, shown.decode(errors="replace")


def test_trust_on_first_use_asks_on_a_terminal_and_remembers(yard, tls, tmp_path):
    env = remote_env(yard, tls, tmp_path)
    code, shown = run_on_terminal(env, ["jobs"], "n")
    assert code != 0 and tls.fingerprint in shown and "[y/N]" in shown, shown
    assert not (tmp_path / "client-config" / "trainyard" / "known_servers.json").exists()
    code, shown = run_on_terminal(env, ["jobs"], "y")
    assert code == 0, shown
    known = (tmp_path / "client-config" / "trainyard" / "known_servers.json").read_text()
    assert tls.url in known and tls.fingerprint in known
    # Remembered: no terminal, no question, and it works.
    yard.run("jobs", env=env)


def test_a_job_runs_end_to_end_over_tls(yard, tls, project, tmp_path):
    (project / "job.sh").write_text("echo hello over tls; mkdir -p \"$YARD_OUTPUT_DIR\"; "
                                    "echo out > \"$YARD_OUTPUT_DIR/o.txt\"\n")
    env = remote_env(yard, tls, tmp_path, YARD_SERVER_FINGERPRINT=tls.fingerprint)
    proc = yard.run("fit", "job.sh", "--out-dir", project / "got", cwd=project, env=env, timeout=180)
    assert proc.stdout == "hello over tls\n"
    assert (project / "got" / "o.txt").read_text() == "out\n"
    # Its local agent could only have reached the server over TLS (it
    # listens on nothing else), trusting it by the fingerprint it was given.
    assert list((yard.home / "instances").glob("*/agent.log")), "a local instance ran the job"
    # The CLI on the server's own home trusts it by server.json's fingerprint.
    assert "job-" in yard.run("jobs").stdout


def test_listening_beyond_loopback_without_tls_refuses_to_start(yard, tmp_path):
    proc = yard.run("server", "--host", "0.0.0.0", "--port", "0", check=False, timeout=60)
    assert proc.returncode != 0
    assert "--tls" in proc.stderr and "--insecure-http" in proc.stderr, proc.stderr
    assert not (yard.home / "server.json").exists()
    server = yard.start("server", "--host", "0.0.0.0", "--insecure-http")
    try:
        wait_for(lambda: (yard.home / "server.json").exists(), timeout=30, what="the server to start")
        assert yard.server_info()["url"].startswith("http://0.0.0.0:")
    finally:
        server.terminate()
        server.wait(30)
