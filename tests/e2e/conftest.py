"""Fixtures for end-to-end tests: each test gets its own YARD_HOME (so its
own embedded server and local agents) and a project folder, and everything
it started is stopped afterwards."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from waiting import kill_matching, pid_alive, processes_matching, wait_for  # noqa: E402,F401

REPO = Path(__file__).resolve().parents[2]
YARD = Path(os.environ.get("YARD_BIN", REPO / "build" / "yard"))
VENV_BIN = REPO / ".venv" / "bin"








class Yard:
    """Runs `yard` against one YARD_HOME."""

    def __init__(self, home: Path):
        self.home = home
        self.env = dict(os.environ)
        self.env["YARD_HOME"] = str(home)
        self.env.pop("YARD_SERVER", None)
        self.env.pop("YARD_TOKEN", None)
        # Jobs run `python3` from the instance's PATH: the project's venv.
        self.env["PATH"] = f"{VENV_BIN}:{self.env.get('PATH', '')}"

    def run(self, *args, cwd=None, check=True, timeout=120, env=None):
        proc = subprocess.run([str(YARD), *map(str, args)], cwd=cwd, env=env or self.env,
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"yard {' '.join(map(str, args))} exited {proc.returncode}\n"
                                 f"stdout: {proc.stdout[-3000:]}\nstderr: {proc.stderr[-3000:]}")
        return proc

    def start(self, *args, cwd=None, **kw):
        return subprocess.Popen([str(YARD), *map(str, args)], cwd=cwd, env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)

    def json(self, *args, cwd=None):
        return json.loads(self.run(*args, "--json", cwd=cwd).stdout)

    def server_info(self):
        return json.loads((self.home / "server.json").read_text())

    def token(self):
        return (self.home / "token").read_text().strip()

    def job(self, job_id):
        return self.json("status", job_id)

    def wait_state(self, job_id, states, timeout=60):
        states = {states} if isinstance(states, str) else set(states)
        return wait_for(lambda: (j := self.job(job_id))["state"] in states and j,
                        timeout=timeout, interval=0.1, what=f"{job_id} to reach {states}")

    def stop_everything(self):
        kill_matching(str(self.home))


@pytest.fixture
def yard(tmp_path):
    y = Yard(tmp_path / "home")
    yield y
    y.stop_everything()


@pytest.fixture
def project(tmp_path):
    p = tmp_path / "project"
    p.mkdir()
    return p
