"""A large checkpoint is mirrored while the agent still uploads it: the
agent tells the chunks the server holds in artifact_part events before the
file's artifact event, and `yard fit` ends with an exact copy and nothing
else in its folder (docs/api.md, "artifact_part")."""
import hashlib
import json
import urllib.request


def events_of(yard, job_id):
    url = yard.server_info()["url"]
    req = urllib.request.Request(f"{url}/v1/jobs/{job_id}/events?follow=0")
    req.add_header("Authorization", f"Bearer {yard.token()}")
    with urllib.request.urlopen(req, timeout=60) as r:
        text = r.read().decode()
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


def test_fit_mirrors_a_large_checkpoint_told_in_parts_exactly(yard, project):
    size = 24 << 20  # three times the 8 MiB a part names at least
    (project / "job.sh").write_text(
        f'head -c {size} /dev/urandom > "$YARD_CHECKPOINT_DIR/model.bin"\n'
        'sha256sum "$YARD_CHECKPOINT_DIR/model.bin"; echo "$YARD_JOB_ID"\n')
    proc = yard.run("fit", "job.sh", "--ckpt-dir", "mirror", cwd=project)
    job_hash, job_id = proc.stdout.split()[0], proc.stdout.split()[-1]
    copy = project / "mirror" / "model.bin"
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == job_hash
    assert sorted(p.name for p in (project / "mirror").iterdir()) == ["model.bin"]

    events = events_of(yard, job_id)
    kinds = [e["kind"] for e in events]
    assert "artifact_part" in kinds, kinds
    record = next(e for e in events if e["kind"] == "artifact" and e["entry"]["path"] == "model.bin")
    chunks = record["entry"]["chunks"]
    offsets, at = {}, 0
    for h, n in chunks:
        offsets[at] = h
        at += n
    for part in (e for e in events if e["kind"] == "artifact_part"):
        assert part["seq"] < record["seq"] and part["path"] == "model.bin"
        at = part["offset"]
        for h, n in part["chunks"]:  # each where the file has it
            assert offsets[at] == h
            at += n
