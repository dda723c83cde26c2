"""fahr's workflow (DESIGN.md point 11): `yard init` writes editable job
assets, `yard fit` with no script reads yard.yaml, `yard copy` starts the
next experiment from the last."""
import re

import pytest
import yaml

from conftest import YARD, wait_for


def test_init_writes_assets_and_refuses_to_overwrite(yard, project):
    (project / "train.py").write_text("print('hi')\n")
    (project / "requirements.txt").write_text("tinypkg==1.0\n")
    proc = yard.run("init", "train.py", "--machines", "local", "--set", "role=trainer",
                    "--cool-down", "5", "--", "--lr", "0.1", cwd=project)
    assert {"wrote yard.yaml", "wrote run.sh", "wrote Dockerfile"} <= set(proc.stdout.splitlines())
    conf = yaml.safe_load((project / "yard.yaml").read_text())
    assert conf["script"] == "train.py"
    assert conf["machines"] == ["local"]
    assert conf["args"] == ["--lr", "0.1"]
    assert conf["cool_down"] == 5
    assert conf["settings"] == {"role": "trainer"}
    docker = (project / "Dockerfile").read_text()
    assert "FROM localhost/trainyard/base-cpu" in docker.splitlines()
    assert "pip install --no-cache-dir -r /job/requirements.txt" in docker
    run_sh = (project / "run.sh").read_text()
    assert "exec python3 'train.py' \"$@\"" in run_sh  # the args come from yard.yaml
    # A second init does not touch what the user may have edited.
    (project / "run.sh").write_text("# mine\n")
    again = yard.run("init", "train.py", cwd=project, check=False)
    assert again.returncode == 1
    assert "yard.yaml" in again.stderr and "run.sh" in again.stderr and "--force" in again.stderr
    assert (project / "run.sh").read_text() == "# mine\n"
    gpu = yard.run("init", "train.py", "--image", "default-gpu", "--force", cwd=project)
    assert gpu.returncode == 0
    assert "FROM docker.io/nvidia/cuda:" in (project / "Dockerfile").read_text()
    assert (project / "run.sh").read_text() != "# mine\n"


def test_init_environment_yml_and_bad_script(yard, project):
    (project / "train.py").write_text("print('hi')\n")
    (project / "environment.yml").write_text(
        "dependencies:\n  - python=3.11\n  - pip:\n    - tinypkg\n")
    yard.run("init", "train.py", cwd=project)
    assert "environment.yml" in (project / "Dockerfile").read_text()
    bad = yard.run("init", "missing.py", cwd=project, check=False)
    assert bad.returncode == 1 and "missing.py does not exist" in bad.stderr


def test_fit_without_script_reads_yard_yaml_flags_win(yard, project):
    (project / "train.py").write_text(
        "import sys, os\nprint('args', sys.argv[1:])\nprint('mode', os.environ.get('MODE'))\n")
    yard.run("init", "train.py", "--machines", "local", "--cool-down", "0", "--", "--lr", "0.1", cwd=project)
    conf = (project / "yard.yaml").read_text().replace("env: {}", "env:\n  MODE: fromyaml")
    (project / "yard.yaml").write_text(conf)
    out = yard.run("fit", cwd=project).stdout
    assert "args ['--lr', '0.1']" in out and "mode fromyaml" in out
    out = yard.run("fit", "train.py", "-e", "MODE=flag", "--max-restarts", "3", "--", "--lr", "0.5", cwd=project).stdout
    assert "args ['--lr', '0.5']" in out and "mode flag" in out


def test_fit_without_script_or_yaml_is_a_clear_error(yard, project):
    proc = yard.run("fit", cwd=project, check=False)
    assert proc.returncode == 1 and "yard init" in proc.stderr
    (project / "yard.yaml").write_text("scrpit: train.py\n")
    proc = yard.run("fit", cwd=project, check=False)
    assert proc.returncode == 1 and "unknown key 'scrpit'" in proc.stderr


def test_copy_assets_and_training_artifact(yard, tmp_path):
    exp1, exp2 = tmp_path / "exp1", tmp_path / "exp2"
    exp1.mkdir()
    (exp1 / "train.py").write_text("print('hi')\n")
    (exp1 / "requirements.txt").write_text("tinypkg\n")
    (exp1 / ".yardignore").write_text("data/\n")
    (exp1 / "big.bin").write_text("not copied\n")
    yard.run("init", "train.py", cwd=exp1)
    proc = yard.run("copy", exp1, exp2, "--include-training-artifact", "train.py")
    copied = {l.split(" ", 1)[1] for l in proc.stdout.splitlines()}
    assert copied == {"yard.yaml", "run.sh", "Dockerfile", "requirements.txt", ".yardignore",
                      "train.py"}
    assert sorted(p.name for p in exp2.iterdir()) == sorted(copied)
    assert (exp2 / "train.py").read_text() == "print('hi')\n"
    (exp2 / "train.py").write_text("print('changed')\n")
    refused = yard.run("copy", exp1, exp2, "--include-training-artifact", "train.py", check=False)
    assert refused.returncode == 1 and "train.py" in refused.stderr and "--force" in refused.stderr
    assert (exp2 / "train.py").read_text() == "print('changed')\n"
    yard.run("copy", exp1, exp2, "--include-training-artifact", "train.py", "--force")
    assert (exp2 / "train.py").read_text() == "print('hi')\n"
    missing = yard.run("copy", exp1, tmp_path / "exp3", "--include-training-artifact", "nope.py",
                       check=False)
    assert missing.returncode == 1 and "nope.py is not in" in missing.stderr


# ------------------------------------------------ environments on the instance

def _tiny_wheel(folder):
    """A pure-Python wheel `tinypkg 1.0` in folder/tinypkg/, built by hand."""
    import base64, hashlib, zipfile
    files = {"tinypkg/__init__.py": "VALUE = 'tiny-1.0'\n",
             "tinypkg-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: tinypkg\nVersion: 1.0\n",
             "tinypkg-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(text.encode())}")
    record.append("tinypkg-1.0.dist-info/RECORD,,")
    (folder / "tinypkg").mkdir(parents=True)
    with zipfile.ZipFile(folder / "tinypkg" / "tinypkg-1.0-py3-none-any.whl", "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
        z.writestr("tinypkg-1.0.dist-info/RECORD", "\n".join(record) + "\n")


@pytest.fixture
def index(tmp_path):
    """A package index on loopback serving tinypkg; yields (url, access log path)."""
    import socket, subprocess, sys
    root = tmp_path / "index"
    _tiny_wheel(root)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "index.log"
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                             "--directory", str(root)], stderr=open(log, "w"), stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    import urllib.request
    wait_for(lambda: _reachable(url), timeout=10, what="the package index")
    yield url, log
    proc.kill()
    proc.wait()


def _reachable(url):
    import urllib.request
    try:
        urllib.request.urlopen(url, timeout=1).read()
        return True
    except OSError:
        return False


def test_requirements_venv_is_built_once_per_instance(yard, project, index):
    url, log = index
    (project / "requirements.txt").write_text("tinypkg==1.0\n")
    (project / "train.py").write_text("import tinypkg, sys\nprint('using', tinypkg.VALUE, sys.prefix)\n")
    env = ["-e", f"PIP_INDEX_URL={url}", "-e", "PIP_NO_CACHE_DIR=1"]
    first = yard.run("fit", "train.py", *env, "--cool-down", "60", cwd=project)
    assert "using tiny-1.0" in first.stdout
    assert re.search(r"yard: environment \w+ \(built\) ready in [\d.]+ s", first.stdout + first.stderr)
    second = yard.run("fit", "train.py", *env, "--cool-down", "60", cwd=project)
    assert "using tiny-1.0" in second.stdout
    assert re.search(r"yard: environment \w+ \(cached\) ready in [\d.]+ s", second.stdout + second.stderr)
    downloads = [l for l in log.read_text().splitlines() if "GET /tinypkg/tinypkg-1.0" in l]
    assert len(downloads) == 1, log.read_text()


def test_failed_install_fails_the_job_before_the_script(yard, project, index):
    url, _ = index
    (project / "requirements.txt").write_text("nosuchpkg==9.9\n")
    (project / "train.py").write_text("print('SCRIPT RAN')\n")
    proc = yard.run("fit", "train.py", "-e", f"PIP_INDEX_URL={url}", cwd=project, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "SCRIPT RAN" not in out
    assert "pip install -r requirements.txt failed" in out
    assert "nosuchpkg" in out  # pip's own words


def test_environment_yml_gets_its_pip_packages_and_is_reused(yard, project, index):
    url, log = index
    (project / "environment.yml").write_text(
        "name: exp\nchannels: [conda-forge]\ndependencies:\n"
        "  - python=3.11\n  - pip\n  - cudatoolkit=11.8\n"
        "  - pip:\n    - tinypkg==1.0\n")
    (project / "train.py").write_text("import tinypkg, sys\nprint('using', tinypkg.VALUE, sys.prefix)\n")
    env = ["-e", f"PIP_INDEX_URL={url}", "-e", "PIP_NO_CACHE_DIR=1"]
    first = yard.run("fit", "train.py", *env, "--cool-down", "60", cwd=project)
    out = first.stdout + first.stderr
    assert "using tiny-1.0" in first.stdout
    assert "environment.yml: skipped python=3.11 (the job runs on the instance's python3)" in out
    assert "environment.yml: skipped cudatoolkit==11.8.*: pip cannot serve it" in out
    assert re.search(r"yard: environment \w+ \(built\) ready in [\d.]+ s", out)
    downloads = [l for l in log.read_text().splitlines() if "GET /tinypkg/tinypkg-1.0" in l]
    second = yard.run("fit", "train.py", *env, "--cool-down", "60", cwd=project)
    out = second.stdout + second.stderr
    assert "using tiny-1.0" in second.stdout
    assert re.search(r"yard: environment \w+ \(cached\) ready in [\d.]+ s", out)
    assert "skipped cudatoolkit==11.8.*: pip cannot serve it" in out  # said again when reused
    again = [l for l in log.read_text().splitlines() if "GET /tinypkg/tinypkg-1.0" in l]
    assert again == downloads, log.read_text()


def test_bad_environment_yml_fails_before_the_script_with_the_parsers_words(yard, project):
    (project / "environment.yml").write_text("dependencies:\n  - numpy\n  pip: [\n")
    (project / "train.py").write_text("print('SCRIPT RAN')\n")
    proc = yard.run("fit", "train.py", cwd=project, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "SCRIPT RAN" not in out
    assert "environment: environment.yml: yaml-cpp: error at line" in out


def test_repeatable_option_right_before_double_dash(yard, project):
    (project / "x.py").write_text("import os, sys\nprint('A is', os.environ['A'], 'argv', sys.argv[1:])\n")
    proc = yard.run("fit", "-m", "local", "-e", "A=1", "--", "python3", "x.py", "--lr", "1", cwd=project)
    assert "A is 1 argv ['--lr', '1']" in proc.stdout
    proc = yard.run("fit", "x.py", "-e", "A=2", "-m", "local", "--", "--lr", "2", cwd=project)
    assert "A is 2 argv ['--lr', '2']" in proc.stdout
    yard.run("init", "x.py", "--set", "role=a", "--", "--lr", "3", cwd=project)
    conf = yaml.safe_load((project / "yard.yaml").read_text())
    assert conf["settings"] == {"role": "a"} and conf["args"] == ["--lr", "3"]
