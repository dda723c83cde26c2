"""Helpers shared by the test suites (tests/e2e, tests/python, tests/soak):
waiting for a condition instead of sleeping, and finding and killing
processes by command line."""
import os
import signal
import time
from pathlib import Path


def wait_for(condition, timeout=30.0, interval=0.02, what="condition"):
    """Polls `condition` until it returns a truthy value; fails after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def _state(pid_dir):
    return (pid_dir / "stat").read_text().rsplit(")", 1)[1].split()[0]


def processes_matching(text):
    """PIDs (not zombies) whose command line contains `text`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = _state(entry)
        except OSError:
            continue
        if text in cmd and state != "Z":
            pids.append(int(entry.name))
    return pids


def pid_alive(pid):
    try:
        return _state(Path(f"/proc/{pid}")) != "Z"
    except OSError:
        return False


def kill_matching(text):
    """SIGKILLs every process whose command line contains `text`: a test's own
    home or folder, never a broad name (others' processes run here too)."""
    for pid in processes_matching(text):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
