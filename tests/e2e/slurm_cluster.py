"""A throwaway two-node Slurm cluster on loopback, for tests and benchmarks.

Everything lives under one folder: slurm.conf, state, spool, logs, and a
private munged (its own socket, Debian's key), so nothing of the machine's
own Slurm or munge is touched or needed. Nodes n1 and n2 are two slurmd
processes on this host (NodeAddr 127.0.0.1), on ports picked free at start.

    cluster = SlurmCluster(Path("/tmp/x"))
    cluster.start()          # ~2 s; raises with the daemons' logs if it fails
    env["SLURM_CONF"] = str(cluster.conf)
    ...
    cluster.stop()           # scancels everything, stops every daemon it started

Also a command line, for bench/slurm_bench.sh:
    python3 slurm_cluster.py start DIR   # prints the SLURM_CONF path
    python3 slurm_cluster.py stop DIR
"""
import hashlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

DAEMONS = ("/usr/sbin/slurmctld", "/usr/sbin/slurmd", "/usr/sbin/munged")
CLIENTS = ("sbatch", "squeue", "scancel", "sinfo", "scontrol", "srun")
MUNGE_KEY = Path("/etc/munge/munge.key")


def skip_reason():
    """Why this machine cannot run the cluster, or None."""
    if os.geteuid() != 0:
        return "the Slurm tests start slurmd, which needs root"
    missing = [d for d in DAEMONS if not os.access(d, os.X_OK)]
    missing += [c for c in CLIENTS if shutil.which(c) is None]
    if missing:
        return "Slurm is not installed (scripts/setup.sh installs slurm-wlm and munge): missing " + ", ".join(missing)
    if not MUNGE_KEY.exists():
        return f"{MUNGE_KEY} is missing (the munge package makes it)"
    try:
        pwd.getpwnam("munge")
    except KeyError:
        return "there is no 'munge' user (the munge package makes it)"
    return None


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class SlurmCluster:
    NODES = ("n1", "n2")

    def __init__(self, root: Path, cpus_per_node=2):
        self.root = Path(root)
        self.conf = self.root / "slurm.conf"
        self.cpus = cpus_per_node
        self.procs = {}  # name -> Popen (munged) or pid (forking slurm daemons)

    @property
    def env(self):
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *args, check=True, timeout=30):
        proc = subprocess.run(list(args), env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}")
        return proc.stdout

    # ---------------------------------------------------------------- start

    def _write_conf(self):
        r = self.root
        ctld, slurmd, n1, n2 = free_ports(4)
        host = socket.gethostname()
        nodes = "\n".join(
            f"NodeName={n} NodeHostname={host} NodeAddr=127.0.0.1 Port={p} CPUs={self.cpus} RealMemory=4000"
            for n, p in ((self.NODES[0], n1), (self.NODES[1], n2)))
        self.conf.write_text(f"""ClusterName=yard{os.getpid()}
SlurmctldHost=localhost
SlurmctldPort={ctld}
SlurmdPort={slurmd}
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket={self.munge_dir}/sock
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerParameters=sched_interval=1
ReturnToService=2
MessageTimeout=5
JobCompType=jobcomp/filetxt
JobCompLoc={r}/log/jobcomp.txt
AccountingStorageType=accounting_storage/none
MinJobAge=300
KillWait=5
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool/%n
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd-%n.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd-%n.log
{nodes}
PartitionName=debug Nodes={','.join(self.NODES)} Default=YES MaxTime=INFINITE State=UP
""")

    @property
    def munge_dir(self):
        # munged wants every folder above its socket searchable by all, which
        # a test's private temporary folder is not: a folder of its own in /tmp.
        return Path("/tmp") / f"yard-munge-{hashlib.sha256(str(self.root).encode()).hexdigest()[:12]}"

    def _start_munged(self):
        d = self.munge_dir
        d.mkdir(exist_ok=True)
        munge = pwd.getpwnam("munge")
        os.chown(d, munge.pw_uid, munge.pw_gid)
        os.chmod(d, 0o755)
        with open(self.root / "log" / "munged.out", "w") as log:
            self.procs["munged"] = subprocess.Popen(
                ["setpriv", f"--reuid={munge.pw_uid}", f"--regid={munge.pw_gid}", "--clear-groups",
                 "/usr/sbin/munged", "-F", f"--socket={d}/sock", f"--pid-file={d}/pid",
                 f"--log-file={d}/log", f"--seed-file={d}/seed", f"--key-file={MUNGE_KEY}"],
                stdout=log, stderr=log)
        self._wait(lambda: (d / "sock").exists(), 10, "munged's socket")

    def _wait(self, cond, timeout, what):
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}\n{self.logs()}")
            time.sleep(0.05)

    def start(self):
        for sub in ("state", "spool", "log"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._write_conf()
        try:
            self._start_munged()
            subprocess.run(["/usr/sbin/slurmctld", "-i", "-f", str(self.conf)], env=self.env, check=True)
            for n in self.NODES:
                subprocess.run(["/usr/sbin/slurmd", "-N", n, "-f", str(self.conf)], env=self.env, check=True)
            self._wait(self._nodes_idle, 30, "both nodes to be idle")
        except Exception:
            self.stop()
            raise
        return self

    def _nodes_idle(self):
        try:
            out = self.run("sinfo", "-h", "-N", "-o", "%N %t", check=False, timeout=10)
        except subprocess.TimeoutExpired:
            return False
        states = dict(line.split() for line in out.splitlines() if line.strip())
        return all(states.get(n) == "idle" for n in self.NODES)

    # ---------------------------------------------------------------- inspect

    def job_state(self, job_id):
        """Slurm's state of a job ("RUNNING", "CANCELLED"...), "" if unknown."""
        out = self.run("squeue", "-h", "-t", "all", "-j", str(job_id), "-o", "%T", check=False)
        return out.strip()

    def sacct_state(self, job_id):
        """The state in the job completion log (sacct -c), "" until it ended."""
        out = self.run("sacct", "-c", "-P", "-n", "-o", "JobID,State", check=False)
        for line in out.splitlines():
            jid, _, state = line.partition("|")
            if jid == str(job_id):
                return state
        return ""

    def node_of(self, job_id):
        return self.run("squeue", "-h", "-j", str(job_id), "-o", "%N").strip()

    def logs(self):
        out = []
        for f in sorted((self.root / "log").glob("*.*")) + [self.munge_dir / "log"]:
            if f.exists():
                out.append(f"--- {f.name}\n" + "\n".join(f.read_text(errors="replace").splitlines()[-15:]))
        return "\n".join(out)

    # ---------------------------------------------------------------- stop

    def _pids(self):
        pids = {}
        for name in ["slurmctld"] + [f"slurmd-{n}" for n in self.NODES]:
            f = self.root / f"{name}.pid"
            try:
                pids[name] = int(f.read_text().strip())
            except (OSError, ValueError):
                pass
        return pids

    def stop(self):
        """Cancels every job, then stops the daemons (by pid). Idempotent."""
        if self.conf.exists() and (self.root / "slurmctld.pid").exists():
            try:
                self.run("scancel", "--full", "-u", "root", check=False, timeout=15)
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and self.run("squeue", "-h", check=False, timeout=10).strip():
                    time.sleep(0.2)
            except (subprocess.TimeoutExpired, OSError):
                pass
        for name, pid in self._pids().items():
            _terminate(pid)
        munged = self.procs.pop("munged", None)
        if munged is not None:
            munged.terminate()
            try:
                munged.wait(5)
            except subprocess.TimeoutExpired:
                munged.kill()
        for pidfile in self.root.glob("*.pid"):
            pidfile.unlink()
        shutil.rmtree(self.munge_dir, ignore_errors=True)


def _terminate(pid, timeout=5):
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _main(argv):
    if len(argv) != 3 or argv[1] not in ("start", "stop"):
        print(__doc__, file=sys.stderr)
        return 2
    cluster = SlurmCluster(Path(argv[2]))
    if argv[1] == "start":
        reason = skip_reason()
        if reason:
            print(reason, file=sys.stderr)
            return 1
        cluster.start()
        # The munged Popen does not outlive us as an object: remember its pid.
        (cluster.root / "munged.pid").write_text(str(cluster.procs.pop("munged").pid))
        print(cluster.conf)
        return 0
    try:
        _terminate(int((cluster.root / "munged.pid").read_text()))
    except (OSError, ValueError):
        pass
    cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
