"""The main job: the digits example trains through `yard fit`."""
import json
import shutil
from pathlib import Path

from conftest import REPO


def test_digits_example_trains(yard, tmp_path):
    project = tmp_path / "digits"
    shutil.copytree(REPO / "examples" / "digits", project)
    proc = yard.run("fit", "train.py", "--ckpt-dir", "ckpt", "--log-dir", "tb", "--",
                    "--epochs", "5", cwd=project, timeout=300)
    acc = [l for l in proc.stdout.splitlines() if "accuracy" in l.lower()]
    assert acc, proc.stdout
    metrics = [l for l in proc.stderr.splitlines() if "metric" in l]
    assert len(metrics) == 5
    assert len(list((project / "ckpt").glob("*.pt"))) == 5
    assert list((project / "tb").rglob("events.out.tfevents.*"))
