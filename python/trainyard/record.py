"""Record archives (record=True): everything that reproduces a fit job, in
one tar.gz that `python -m trainyard.replay ARCHIVE` (or `yard replay`) runs
again on any server. Format: docs/formats.md, "Record archive".

At submission the bundle (model, arrays, fit spec) and the job spec are
stashed under $YARD_HOME/sdk/records/<job>/; when the job ends (online_fit,
or attach after offline_fit) the archive is written with the environment,
the scheduling decisions and the whole event stream, into
$TRAINYARD_RECORD_DIR or the current folder.
"""
import io
import json
import os
import platform
import re
import shutil
import sys
import tarfile
import time
from pathlib import Path

FORMAT = "trainyard-record"
VERSION = 1
SECRET = re.compile(r"TOKEN|KEY|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH|COOKIE|SESSION", re.I)

last_archive = None  # path of the newest archive this process wrote


def _home():
    return Path(os.environ.get("YARD_HOME") or Path.home() / ".local" / "share" / "trainyard")


def _stash_dir(job_id):
    return _home() / "sdk" / "records" / job_id


def stash(job_id, bundle_top, spec):
    d = _stash_dir(job_id)
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    shutil.copytree(bundle_top, d / "bundle")
    (d / "spec.json").write_text(json.dumps(spec))
    (d / "environment.json").write_text(json.dumps(environment()))


def remember_dirs(job_id, ckpt, log):
    d = _home() / "sdk" / "dirs"
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{job_id}.json").write_text(json.dumps({
        "ckpt": str(Path(ckpt).expanduser().resolve()) if ckpt else None,
        "log": str(Path(log).expanduser().resolve()) if log else None}))


def remembered_dirs(job_id):
    p = _home() / "sdk" / "dirs" / f"{job_id}.json"
    try:
        return {k: v for k, v in json.loads(p.read_text()).items() if v}
    except (OSError, ValueError):
        return {}


def environment():
    from importlib import metadata
    packages = {}
    for dist in metadata.distributions():
        name = dist.metadata.get("Name")
        if name:
            packages[name] = dist.version
    return {
        "os": {"system": platform.system(), "release": platform.release(), "machine": platform.machine(),
               "platform": platform.platform()},
        "python": sys.version,
        "packages": dict(sorted(packages.items(), key=lambda kv: kv[0].lower())),
        "env": {k: v for k, v in sorted(os.environ.items()) if not SECRET.search(k)},
    }


def final_metrics(events):
    last = {}
    for ev in events:
        v = ev.get("values") or {}
        if ev.get("kind") == "metric" and "epoch" in v and "event" not in v:
            if int(v["epoch"]) >= int(last.get("epoch", 0)):
                last = v
    return {k: v for k, v in last.items() if k not in ("seconds", "samples_per_s", "epochs")}


def _add_bytes(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time())
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def complete(client, job_id, job, events):
    """Writes the archive if job_id was submitted with record=True."""
    global last_archive
    d = _stash_dir(job_id)
    if not (d / "spec.json").exists():
        return None
    spec = json.loads((d / "spec.json").read_text())
    manifest = spec.pop("bundle")
    record = {
        "format": FORMAT, "version": VERSION, "job_id": job_id, "created_at": time.time(),
        "spec": spec, "job": job,
        "environment": json.loads((d / "environment.json").read_text()),
        "decisions": [ev.get("message", "") for ev in events if ev.get("kind") == "decision"],
        "final_metrics": final_metrics(events),
    }
    out_dir = Path(os.environ.get("TRAINYARD_RECORD_DIR") or os.getcwd())
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"trainyard-record-{job_id}.tar.gz"
    tmp = path.with_suffix(".tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        _add_bytes(tar, "record.json", json.dumps(record, indent=2).encode())
        _add_bytes(tar, "events.jsonl", "".join(json.dumps(ev) + "\n" for ev in events).encode())
        _add_bytes(tar, "bundle/manifest.json", json.dumps(manifest).encode())
        tar.add(d / "bundle" / "main", arcname="bundle/main")
        tar.add(d / "bundle" / "data", arcname="bundle/data")
    os.replace(tmp, path)
    shutil.rmtree(d, ignore_errors=True)
    last_archive = str(path)
    print(f"trainyard: recorded job {job_id} in {path}", file=sys.stderr, flush=True)
    return str(path)
