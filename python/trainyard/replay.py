"""`python -m trainyard.replay ARCHIVE`: runs a record archive's job again
on the configured server (YARD_SERVER/YARD_TOKEN, else the embedded one
under YARD_HOME) and reports how the final metrics differ.

    python -m trainyard.replay trainyard-record-j-1.tar.gz [--machines local] [--tolerance 1e-3] [--json]

Exit status: 0 when the replayed job succeeded and every final metric is
within the tolerance, 1 when they differ or the job failed, 2 for a bad
archive."""
import argparse
import json
import os
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

from trainyard import display, fit, record


def _safe_extract(tar, dest):
    for m in tar.getmembers():
        p = Path(m.name)
        if p.is_absolute() or ".." in p.parts or not (m.isfile() or m.isdir()):
            raise ValueError(f"archive entry {m.name!r} is not a plain relative file")
    tar.extractall(dest)


def load(archive):
    """-> (record dict, temp folder holding bundle/ and events.jsonl)."""
    tmp = tempfile.mkdtemp(prefix="trainyard-replay-")
    with tarfile.open(archive, "r:gz") as tar:
        _safe_extract(tar, tmp)
    rec = json.loads((Path(tmp) / "record.json").read_text())
    if rec.get("format") != record.FORMAT:
        raise ValueError(f"{archive} is not a trainyard record archive")
    if rec.get("version") != record.VERSION:
        raise ValueError(f"{archive}: record version {rec.get('version')} is not supported "
                         f"(this trainyard reads version {record.VERSION})")
    return rec, tmp


def compare(recorded, replayed, tolerance):
    rows = []
    for key in sorted(set(recorded) | set(replayed)):
        if key == "epoch":
            continue
        a, b = recorded.get(key), replayed.get(key)
        diff = None if a is None or b is None else b - a
        ok = diff is not None and abs(diff) <= tolerance * max(1.0, abs(a))
        rows.append({"metric": key, "recorded": a, "replayed": b, "diff": diff, "within_tolerance": ok})
    return rows


def replay(archive, machines=None, tolerance=1e-3, out=None):
    rec, tmp = load(archive)
    try:
        client = fit._connect()
        manifest = fit._upload_bundle(client, Path(tmp) / "bundle")
        spec = dict(rec["spec"])
        spec["bundle"] = manifest
        spec["machines"] = machines if machines is not None else []
        command = list(spec.get("command") or [])
        if command[1:3] == ["-m", "trainyard.runner"]:  # the recording machine's interpreter may not be here
            spec["command"] = [fit._instance_python(client, spec["machines"])] + command[1:]
        spec["description"] = f"replay of {rec['job_id']}" + (
            f": {rec['spec'].get('description')}" if rec["spec"].get("description") else "")
        job = json.loads(client.post("/v1/jobs", json.dumps(spec)))["job"]
        display.info(f"replaying {rec['job_id']} as {job['id']}")
        events = []
        final = fit._follow(client, job["id"], None, None, events, out=out)
        replayed = record.final_metrics(events)
        rows = compare(rec.get("final_metrics", {}), replayed, tolerance)
        return {"recorded_job": rec["job_id"], "job": job["id"], "state": final["state"] if final else "detached",
                "tolerance": tolerance, "metrics": rows,
                "same": bool(final and final["state"] == "succeeded" and rows and
                             all(r["within_tolerance"] for r in rows))}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m trainyard.replay", description=__doc__.split("\n\n")[0])
    ap.add_argument("archive")
    ap.add_argument("--machines", help="machine ids, comma-separated (default: the server's default)")
    ap.add_argument("--tolerance", type=float, default=1e-3, help="relative tolerance (default 1e-3)")
    ap.add_argument("--json", action="store_true", help="print the comparison as JSON")
    a = ap.parse_args(argv)
    try:
        result = replay(a.archive, a.machines.split(",") if a.machines else None, a.tolerance,
                        out=sys.stderr if a.json else None)
    except (ValueError, OSError, tarfile.TarError, KeyError) as e:
        print(f"trainyard.replay: error: {e}", file=sys.stderr)
        return 2
    if a.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"replay of {result['recorded_job']} as {result['job']}: {result['state']}")
        print(f"{'metric':<16} {'recorded':>12} {'replayed':>12} {'diff':>12}")
        for r in result["metrics"]:
            f = lambda v: "-" if v is None else f"{v:.6f}"  # noqa: E731
            print(f"{r['metric']:<16} {f(r['recorded']):>12} {f(r['replayed']):>12} {f(r['diff']):>12}"
                  f"{'' if r['within_tolerance'] else '  DIFFERS'}")
        print("final metrics " + ("match" if result["same"] else "differ") + f" (tolerance {a.tolerance})")
    return 0 if result["same"] else 1


if __name__ == "__main__":
    sys.exit(main())
