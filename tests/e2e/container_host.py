"""A throwaway SSH host of another distribution, for tests: a podman
container of localhost/trainyard/bullseye-sshd (Debian 11, glibc 2.31;
scripts/bullseye_image.sh) running its own sshd on an address and port of
this machine's loopback (--network=host), key authentication only, keys
made here. Its file system is the container's own, so what a provider copies
there really arrives on Debian 11; whatever runs there runs with Debian 11's
libraries. Traffic stays on loopback.

    host = ContainerSshHost(Path("/tmp/x"), address="127.1.1.7").start()
    host.address, host.port, host.key, host.known_hosts
    host.exec("cat", "/etc/debian_version")   # a command run in the container
    host.stop()                               # removes the container
"""
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

IMAGE = "localhost/trainyard/bullseye-sshd:latest"


def podman(*args, check=True, timeout=120):
    proc = subprocess.run(["podman", *map(str, args)], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"podman {' '.join(map(str, args))} exited {proc.returncode}: {proc.stderr}")
    return proc


def skip_reason():
    """Why this machine cannot run the host, or None. A missing image is a
    broken setup (scripts/setup.sh builds it), not a reason to skip."""
    for tool in ("podman", "ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/setup.sh installs it)"
    info = podman("info", check=False, timeout=60)
    if info.returncode != 0:
        return f"podman cannot run here: {info.stderr.strip()[-500:]}"
    return None


def image_present():
    return podman("image", "exists", IMAGE, check=False).returncode == 0


def free_port(address):
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


class ContainerSshHost:
    def __init__(self, root: Path, address="127.0.0.1", port=None, environment=None):
        """`environment`: variables every SSH session gets, as a machine's own
        environment would give them (authorized_keys' environment= option)."""
        self.root = Path(root)
        self.environment = dict(environment or {})
        self.address = address
        self.port = port or free_port(address)
        self.name = f"yard-host-{secrets.token_hex(4)}"
        self.key = self.root / "id_ed25519"
        self.known_hosts = self.root / "known_hosts"
        self.started = False

    def start(self):
        cfg = self.root / "sshd"
        cfg.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", self.key], check=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", cfg / "host_key"], check=True)
        env = ",".join(f'environment="{k}={v}"' for k, v in self.environment.items())
        (cfg / "authorized_keys").write_text((env + " " if env else "") + Path(f"{self.key}.pub").read_text())
        (cfg / "sshd_config").write_text(f"""ListenAddress {self.address}:{self.port}
HostKey /yard-sshd/host_key
PidFile none
UsePAM no
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile /yard-sshd/authorized_keys
PermitRootLogin prohibit-password
AllowTcpForwarding yes
PermitUserEnvironment {"yes" if self.environment else "no"}
""")
        podman("run", "-d", "--rm", "--network=host", "--name", self.name, "-v", f"{cfg}:/yard-sshd:ro",
               IMAGE, "sh", "-c", "mkdir -p /run/sshd && exec /usr/sbin/sshd -D -e -f /yard-sshd/sshd_config")
        self.started = True
        deadline = time.monotonic() + 30
        while not self._answers():
            if time.monotonic() > deadline:
                logs = podman("logs", self.name, check=False)
                self.stop()
                raise RuntimeError(f"sshd in {self.name} did not start: {logs.stdout}{logs.stderr}")
            time.sleep(0.05)
        return self

    def _answers(self):
        try:
            with socket.create_connection((self.address, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def exec(self, *cmd, check=True):
        """Runs `cmd` in the container; its CompletedProcess (text)."""
        return podman("exec", self.name, *cmd, check=check)

    def ssh_settings(self, remote_dir="/opt/trainyard"):
        """providers.ssh settings that reach this host as root."""
        return {"user": "root", "key": str(self.key), "known_hosts": str(self.known_hosts),
                "remote_dir": remote_dir, "connect_timeout_s": 5}

    def stop(self):
        """Removes the container and all that ran in it. Idempotent."""
        if self.started:
            podman("rm", "--force", "--time", "0", self.name, check=False)
            self.started = False
