"""The main job: the digits example trains through `yard fit`, and the
README's two commands run one after the other as a newcomer runs them."""
import re
import shlex
import shutil
import subprocess

import pytest

from conftest import REPO

EXAMPLE = REPO / "examples" / "digits"


def readme_commands():
    """The bodies of README.md's first two ```bash blocks."""
    blocks = re.findall(r"^```bash[ \t]*\n(.*?)^```", (REPO / "README.md").read_text(),
                        flags=re.S | re.M)
    return blocks[:2]


def copy_example(dest):
    """Copies the example as it ships: what its .gitignore names (the
    outputs an earlier run left, such as the README's first command) stays
    behind, so no test depends on what ran before it."""
    ignored = [line.strip().strip("/") for line in (EXAMPLE / ".gitignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns(*ignored))


def test_digits_example_trains(yard, tmp_path):
    project = tmp_path / "digits"
    copy_example(project)
    proc = yard.run("fit", "train.py", "--ckpt-dir", "ckpt", "--log-dir", "tb", "--",
                    "--epochs", "5", cwd=project, timeout=300)
    acc = [l for l in proc.stdout.splitlines() if "accuracy" in l.lower()]
    assert acc, proc.stdout
    metrics = [l for l in proc.stderr.splitlines() if "metric" in l]
    assert len(metrics) == 5
    assert sorted(p.name for p in (project / "ckpt").glob("*.pt")) == \
        [f"ckpt-epoch-{e:03d}.pt" for e in range(1, 6)]
    assert list((project / "tb").rglob("events.out.tfevents.*"))


def test_ci_runs_the_readme_commands_in_order():
    first, second = readme_commands()
    assert "yard fit" in first and "--ckpt-dir" in first, first
    assert "scripts/test.sh" in second, second
    printed = subprocess.run([str(REPO / ".ci" / "run"), "--print"], capture_output=True,
                             text=True, timeout=30, check=True).stdout
    assert printed.split("\0")[:-1] == [first, second], \
        ".ci/run must run the README's first bash block, then its second"


def main_job_output_dirs():
    """(folder the README's first command runs in, its --ckpt-dir, its --log-dir)."""
    words = shlex.split(readme_commands()[0].replace("(", " ").replace(")", " "))
    folder = words[words.index("cd") + 1]
    return folder, words[words.index("--ckpt-dir") + 1], words[words.index("--log-dir") + 1]


def test_main_job_outputs_are_ignored_by_git():
    if subprocess.run(["git", "-C", str(REPO), "rev-parse"], capture_output=True).returncode:
        pytest.skip(f"{REPO} is not a git checkout")
    folder, ckpt, tb = main_job_output_dirs()
    paths = [f"{folder}/{ckpt}/ckpt-epoch-001.pt", f"{folder}/{tb}/events.out.tfevents.1",
             f"{folder}/outputs/metrics.jsonl"]
    proc = subprocess.run(["git", "-C", str(REPO), "check-ignore", "--no-index", *paths],
                          capture_output=True, text=True)
    assert proc.stdout.split() == paths, \
        f"what the README's main job writes must be ignored by git; not ignored: " \
        f"{sorted(set(paths) - set(proc.stdout.split()))}"
