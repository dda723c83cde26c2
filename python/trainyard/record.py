"""Record archives (record=True): everything that reproduces a fit job, in
one tar.gz that `yard replay ARCHIVE` runs again on any server. Format:
docs/formats.md, "Record archive".

At submission the bundle (model, arrays, fit spec), the job spec and the
environment are stashed under $YARD_HOME/sdk/records/<job>/; when the job
ends (online_fit, or attach after offline_fit, perhaps in another process)
the archive is written with the scheduling decisions and the whole event
stream, into $TRAINYARD_RECORD_DIR or the current folder.

The archive, its environment's secret filter and its final metrics are the
C++ SDK's (src/sdk/record.h, bound): what stays here is what only Python
knows (its version and installed packages) and the stash between the two.
"""
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional

from trainyard._native import native

last_archive: Optional[str] = None  # path of the newest archive this process wrote


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


def environment() -> Dict[str, Any]:
    """{os, sdk, python, packages, env}: this interpreter's version and
    installed packages; the environment variables without those whose names
    look secret (TOKEN, KEY, SECRET, PASSWORD, ...: the C++ filter)."""
    from importlib import metadata
    packages = {}
    for dist in metadata.distributions():
        name = dist.metadata.get("Name")
        if name:
            packages[name] = dist.version
    return json.loads(native().record_environment(packages, sys.version))


def final_metrics(events: Iterable[Mapping[str, Any]]) -> Dict[str, Any]:
    """The last epoch's metric values (epoch included; seconds,
    samples_per_s and epochs left out)."""
    return json.loads(native().final_metrics([json.dumps(ev) for ev in events]))


def complete(client: Any, job_id: str, job: Mapping[str, Any], events: List[Mapping[str, Any]]) -> Optional[str]:
    """Writes the archive if job_id was submitted with record=True; -> its path."""
    global last_archive
    d = _stash_dir(job_id)
    if not (d / "spec.json").exists():
        return None
    spec = json.loads((d / "spec.json").read_text())
    manifest = spec.pop("bundle")
    path = native().write_record_archive(
        job_id, json.dumps(spec), json.dumps(manifest), str(d / "bundle"), json.dumps(job),
        [json.dumps(ev) for ev in events], (d / "environment.json").read_text(),
        os.environ.get("TRAINYARD_RECORD_DIR", ""))
    shutil.rmtree(d, ignore_errors=True)
    last_archive = path
    print(f"trainyard: recorded job {job_id} in {path}", file=sys.stderr, flush=True)
    return path
