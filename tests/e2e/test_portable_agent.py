"""The portable agent (docs/operations.md, "The portable agent"):
build/yard-portable is `yard` linked statically, and it is what providers
copy to other machines. Shown on another distribution than this Debian 12
build machine: a Debian 11 container (glibc 2.31, OpenSSL 1.1; none of the
libraries `yard` links here) running sshd on loopback (container_host.py),
reached through the ssh provider like any host: the provider copies the
portable `yard` there, its agent registers with the server on this
machine, runs a job, streams its output and sends its files back."""
import hashlib
import json
import subprocess

import pytest

from conftest import YARD
from container_host import IMAGE, ContainerSshHost, image_present, podman, skip_reason

PORTABLE = YARD.parent / "yard-portable"


@pytest.fixture(scope="module")
def bullseye(tmp_path_factory):
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    assert image_present(), f"{IMAGE} is missing: run scripts/bullseye_image.sh (scripts/setup.sh does)"
    host = ContainerSshHost(tmp_path_factory.mktemp("bullseye")).start()
    yield host
    host.stop()


def test_yard_portable_is_built_and_static():
    assert PORTABLE.is_file(), f"{PORTABLE} was not built: see scripts/setup.sh's CMake output"
    headers = subprocess.run(["readelf", "--program-headers", "--dynamic", PORTABLE],
                             capture_output=True, text=True, check=True).stdout
    assert "INTERP" not in headers and "There is no dynamic section" in headers, headers


def test_the_container_is_another_distribution_where_the_ordinary_yard_fails(bullseye):
    assert bullseye.exec("cat", "/etc/debian_version").stdout.startswith("11.")
    assert "GLIBC 2.31" in bullseye.exec("ldd", "--version").stdout
    # The dynamic build/yard cannot start there: what the portable one is for.
    run = podman("run", "--rm", "-v", f"{YARD}:/yard:ro", IMAGE, "/yard", "--help", check=False)
    assert run.returncode == 127 and "error while loading shared libraries" in run.stderr, run.stderr
    run = podman("run", "--rm", "-v", f"{PORTABLE}:/yard:ro", IMAGE, "/yard", "--help", check=False)
    assert run.returncode == 0 and run.stdout.startswith("yard: "), run.stderr


def test_a_job_runs_on_debian_11_through_the_portable_agent(yard, bullseye, project):
    yard.home.mkdir(parents=True)
    (yard.home / "catalog.json").write_text(json.dumps({
        "version": 1,
        "types": [{"name": "bullseye", "provider": "ssh", "cpus": 1,
                   "options": {"hosts": [{"address": bullseye.address, "port": bullseye.port}]}}],
        "providers": {"ssh": bullseye.ssh_settings()}}))
    (project / "job.sh").write_text(
        'echo "debian $(cat /etc/debian_version)"\n'
        'ldd --version | head -1\n'
        'getent hosts localhost >/dev/null && echo "resolves localhost"\n'
        'echo ckpt > "$YARD_CHECKPOINT_DIR/epoch-1.txt"\n'
        'echo done\n')
    proc = yard.run("fit", "job.sh", "--machines", "bullseye", "--ckpt-dir", project / "ckpt",
                    cwd=project, timeout=180)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("debian 11."), proc.stdout
    assert "GLIBC 2.31" in lines[1], proc.stdout
    assert lines[2:] == ["resolves localhost", "done"], proc.stdout
    assert (project / "ckpt" / "epoch-1.txt").read_text() == "ckpt\n"
    # What the provider copied is the portable build, as bin/yard.
    sums = bullseye.exec("sha256sum", "/opt/trainyard/bin/yard").stdout
    assert sums.split()[0] == hashlib.sha256(PORTABLE.read_bytes()).hexdigest()
