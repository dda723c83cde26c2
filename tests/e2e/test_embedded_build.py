"""An embedded server started by another build of yard (an upgrade, a
rebuild) keeps serving the old code: every command says so, and how to
stop it; a server of this build says nothing."""
import json
import os
import signal

from waiting import pid_alive, wait_for


def test_a_server_of_another_build_is_named_until_it_is_stopped(yard):
    first = yard.run("jobs")
    assert "another build" not in first.stderr, first.stderr
    info_path = yard.home / "server.json"
    info = json.loads(info_path.read_text())
    assert len(info.get("build", "")) >= 16, info  # the linker's build id of this yard
    # As after an upgrade: the running server's build is not this program's.
    info_path.write_text(json.dumps({**info, "build": "0" * 40}))
    warned = yard.run("jobs")
    assert f"warning: the embedded server (pid {info['pid']}, {yard.home}) runs another build" in warned.stderr
    assert f"kill {info['pid']}" in warned.stderr
    os.kill(info["pid"], signal.SIGTERM)
    wait_for(lambda: not pid_alive(info["pid"]), timeout=30, what="the old server to stop")
    again = yard.run("jobs")
    assert "another build" not in again.stderr, again.stderr
    assert json.loads(info_path.read_text())["pid"] != info["pid"], "this build's server took over"
