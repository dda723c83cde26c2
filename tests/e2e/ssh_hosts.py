"""Throwaway SSH hosts in network namespaces, for tests.

Each host is a network namespace (a veth pair onto a bridge in a private
/24 that this module picks unused and creates) running its own sshd (key
authentication only, keys made here), inside a private mount namespace in
which `remote_dir` is a fresh tmpfs: the host sees an empty install folder
whatever this machine holds there, so a copy of the `yard` binary to the
host really happens. Traffic goes only to the addresses made here.

The login user's home is a fresh empty tmpfs on each host too, as on a new
machine: a login there runs none of this machine's rc files (root's
.bashrc, which bash reads for every command sshd runs; a stale pyenv lock
it touched once hung every SSH test) and sees nothing of its home.

    hosts = SshHosts(Path("/tmp/x"), count=2).start()
    hosts.address(0), hosts.key, hosts.known_hosts, hosts.remote_dir
    hosts.listing(1, path)   # `ls -A path` as host 1 sees it
    hosts.stop_sshd(0)       # host 0 stops answering (connection refused)
    hosts.stop()             # kills everything in the namespaces, removes them
"""
import ipaddress
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path


def skip_reason():
    """Why this machine cannot make the hosts, or None."""
    if os.geteuid() != 0:
        return "SSH test hosts need root (network namespaces, mounts)"
    for tool in ("ip", "unshare", "nsenter", "ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not os.access("/usr/sbin/sshd", os.X_OK):
        return "sshd is not installed (scripts/setup.sh installs openssh-server)"
    probe = f"yardprobe{secrets.token_hex(3)}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot make network namespaces here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def sh(*args, check=True):
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))}: {proc.stderr.strip()}")
    return proc.stdout


def unused_subnet():
    """A 10.213.X.0/24 that no address or route of this machine touches."""
    taken = []
    for line in sh("ip", "-4", "-o", "addr").splitlines() + sh("ip", "-4", "route").splitlines():
        for word in line.split():
            try:
                taken.append(ipaddress.ip_network(word, strict=False))
            except ValueError:
                pass
    for _ in range(100):
        net = ipaddress.ip_network(f"10.213.{secrets.randbelow(250) + 2}.0/24")
        if not any(net.overlaps(t) for t in taken if t.prefixlen > 0):
            return net
    raise RuntimeError("no free 10.213.X.0/24 subnet")


class SshHosts:
    def __init__(self, root: Path, count=2):
        self.root = Path(root)
        self.count = count
        tag = secrets.token_hex(3)
        self.bridge = f"ybr{tag}"
        self.namespaces = [f"yard-{tag}-h{i}" for i in range(count)]
        self.veths = [f"yv{tag}{i}" for i in range(count)]
        self.net = None
        self.sshd = [None] * count
        self.key = self.root / "id_ed25519"
        self.known_hosts = self.root / "known_hosts"
        self.remote_dir = self.root / "remote"  # empty here; a tmpfs on each host
        self.home = Path(pwd.getpwuid(os.geteuid()).pw_dir)  # the login's; an empty tmpfs on each host

    def address(self, i):
        return str(self.net.network_address + 2 + i)

    @property
    def gateway(self):
        """This machine's address on the hosts' network (where a server listens)."""
        return str(self.net.network_address + 1)

    def start(self):
        if self.home in self.root.resolve().parents:
            raise RuntimeError(f"the hosts' folder {self.root} is under {self.home}, which each host "
                               "replaces with an empty home: give pytest a --basetemp outside it")
        self.root.mkdir(parents=True, exist_ok=True)
        self.remote_dir.mkdir(exist_ok=True)
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation folder
        try:
            self._network()
            sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", self.key)
            (self.root / "authorized_keys").write_text(Path(f"{self.key}.pub").read_text())
            for i in range(self.count):
                self._start_sshd(i)
        except Exception:
            self.stop()
            raise
        return self

    def _network(self):
        self.net = unused_subnet()
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        for i, (ns, veth) in enumerate(zip(self.namespaces, self.veths)):
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh("ip", "link", "set", veth, "master", self.bridge)
            sh("ip", "link", "set", veth, "up")
            sh("ip", "-n", ns, "addr", "add", f"{self.address(i)}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")

    def _start_sshd(self, i):
        host_key = self.root / f"h{i}_host_key"
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", host_key)
        conf = self.root / f"sshd_h{i}.conf"
        conf.write_text(f"""ListenAddress {self.address(i)}
Port 22
HostKey {host_key}
PidFile none
UsePAM no
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile {self.root}/authorized_keys
PermitRootLogin prohibit-password
""")
        script = (f"mount -t tmpfs -o size=1g,mode=755 yard-remote {self.remote_dir} && "
                  f"mount -t tmpfs -o size=64m,mode=700 yard-home {self.home} && "
                  f"exec /usr/sbin/sshd -D -e -f {conf}")
        with open(self.root / f"sshd_h{i}.log", "w") as log:
            self.sshd[i] = subprocess.Popen(
                ["ip", "netns", "exec", self.namespaces[i], "unshare", "--mount", "--propagation",
                 "private", "sh", "-c", script], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while not self._answers(i):
            if time.monotonic() > deadline or self.sshd[i].poll() is not None:
                raise RuntimeError(f"sshd of host {i} did not start:\n" +
                                   (self.root / f"sshd_h{i}.log").read_text())
            time.sleep(0.05)

    def _answers(self, i):
        try:
            with socket.create_connection((self.address(i), 22), timeout=0.5):
                return True
        except OSError:
            return False

    def login(self, i, command):
        """Runs `command` on host i through ssh as the test user; its stdout."""
        return sh("ssh", "-i", self.key, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                  "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                  f"{pwd.getpwuid(os.geteuid()).pw_name}@{self.address(i)}", command)

    def listing(self, i, path):
        """`ls -A path` as host i sees it (its own mounts)."""
        out = sh("nsenter", "-t", self.sshd[i].pid, "-m", "ls", "-A", path)
        return sorted(out.split())

    def sha256(self, i, path):
        out = sh("nsenter", "-t", self.sshd[i].pid, "-m", "sha256sum", path)
        return out.split()[0]

    def stop_sshd(self, i):
        proc = self.sshd[i]
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(10)

    def kill_sessions(self):
        """Ends everything running on the hosts but their sshd."""
        keep = {p.pid for p in self.sshd if p is not None}
        for ns in self.namespaces:
            for pid in sh("ip", "netns", "pids", ns, check=False).split():
                if int(pid) not in keep:
                    _kill(int(pid))

    def stop(self):
        """Kills everything in the namespaces and removes them. Idempotent."""
        for ns in self.namespaces:
            for pid in sh("ip", "netns", "pids", ns, check=False).split():
                _kill(int(pid))
        for proc in self.sshd:
            if proc is not None:
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    pass
        for ns in self.namespaces:
            sh("ip", "netns", "del", ns, check=False)
        sh("ip", "link", "del", self.bridge, check=False)


def _kill(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
