"""Bundles: unchanged chunks never travel twice; ignore files are honoured."""
import hashlib
import os
import re
import stat


def chunk_counts(stderr):
    m = re.search(r"(\d+) of (\d+) chunks were new", stderr)
    assert m, stderr
    return int(m.group(1)), int(m.group(2))


def test_resubmit_sends_only_changed_chunks(yard, project):
    (project / "job.sh").write_text("ls -l data.bin\n")
    data = bytearray(os.urandom(20 * 1024 * 1024))
    (project / "data.bin").write_bytes(data)
    first = yard.run("submit", "job.sh", cwd=project)
    new, total = chunk_counts(first.stderr)
    assert new == total and total >= 5
    second = yard.run("submit", "job.sh", cwd=project)
    assert chunk_counts(second.stderr)[0] == 0
    data[10 * 1024 * 1024] ^= 0xFF
    (project / "data.bin").write_bytes(data)
    third = yard.run("submit", "job.sh", cwd=project)
    assert 1 <= chunk_counts(third.stderr)[0] <= 2


def test_ignored_files_are_not_sent(yard, project):
    (project / ".yardignore").write_text("secret.txt\nbig/\n")
    (project / ".gitignore").write_text("*.log\n")
    (project / "secret.txt").write_text("s")
    (project / "x.log").write_text("l")
    (project / "big").mkdir()
    (project / "big" / "f").write_text("f")
    (project / "keep.txt").write_text("k")
    (project / "job.sh").write_text("find . -type f | sort\n")
    out = yard.run("fit", "job.sh", cwd=project).stdout.split()
    assert "./keep.txt" in out and "./job.sh" in out
    assert not any(n in out for n in ("./secret.txt", "./x.log", "./big/f"))


def test_upload_progress_is_plain_lines_without_a_terminal(yard, project):
    # YARD_PROGRESS=always shows progress however fast the upload (by
    # default only uploads longer than half a second show it).
    (project / "job.sh").write_text("true\n")
    (project / "data.bin").write_bytes(os.urandom(24 * 1024 * 1024))
    env = dict(yard.env, YARD_PROGRESS="always")
    err = yard.run("submit", "job.sh", cwd=project, env=env).stderr
    lines = re.findall(r"^yard: sending project  ([\d.]+) MB / ([\d.]+) MB  (\d+)%  [\d.]+ [kMG]?B/s.*$",
                       err, re.M)
    assert len(lines) >= 3, err
    done = [float(d) for d, _, _ in lines]
    assert done == sorted(done) and float(lines[0][1]) >= 24.0, err
    assert "\r" not in err
    assert re.search(r"^yard: sending project  [\d.]+ MB in \d+:\d\d  ", err, re.M), err


def test_no_progress_when_asked(yard, project):
    (project / "job.sh").write_text("true\n")
    (project / "data.bin").write_bytes(os.urandom(8 * 1024 * 1024))
    env = dict(yard.env, YARD_PROGRESS="never")
    err = yard.run("submit", "job.sh", cwd=project, env=env).stderr
    assert "yard: sending project " not in err, err
    assert "chunks were new" in err


def test_a_job_writing_its_bundle_files_leaves_the_servers_blobs_intact(yard, project):
    """A local instance copies its bundle from the server's blob store
    (reflink or copy, never a hard link): a job that overwrites its copy
    changes nothing the next job gets, and blobs are read-only files."""
    data = os.urandom(6 * 1024 * 1024)
    (project / "data.bin").write_bytes(data)
    (project / "job.sh").write_text(
        "chmod u+w data.bin && printf XXXXXXXX | dd of=data.bin conv=notrunc status=none && sha256sum data.bin\n")
    first = yard.run("fit", "job.sh", cwd=project).stdout
    assert hashlib.sha256(b"XXXXXXXX" + data[8:]).hexdigest() in first, first
    (project / "job.sh").write_text("sha256sum data.bin\n")
    second = yard.run("fit", "job.sh", cwd=project).stdout
    assert hashlib.sha256(data).hexdigest() in second, second
    blobs = [p for p in (yard.home / "blobs").rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert blobs and all(stat.S_IMODE(p.stat().st_mode) == 0o444 for p in blobs)
    # Copied straight from there: nothing was fetched into an instance's chunk cache.
    cached = [p for p in (yard.home / "instances").glob("*/chunks/*/*") if p.is_file()]
    assert cached == [], cached
