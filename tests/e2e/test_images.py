"""Container images (docs/workflow.md, "Images"): a job folder with a
Dockerfile, or `--image NAME`, runs in a podman container on the instance.
Needs podman and the local base image (scripts/setup.sh installs podman and
runs scripts/base_image.sh)."""
import re
import shutil
import subprocess
import uuid

import pytest

from conftest import wait_for

BASE = "localhost/trainyard/base-cpu:latest"


def podman(*args, check=True, timeout=300):
    proc = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


@pytest.fixture(scope="module", autouse=True)
def usable_podman():
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (scripts/setup.sh installs it)")
    info = podman("info", check=False, timeout=60)
    if info.returncode != 0:
        pytest.skip(f"podman cannot run here: {info.stderr.strip()[-500:]}")
    # Installed but without the base image is a broken setup, not a reason to skip.
    assert podman("image", "exists", BASE, check=False).returncode == 0, (
        f"{BASE} is missing: run scripts/base_image.sh (scripts/setup.sh does)")


def image_list():
    """Every image podman has, as "id names" lines: what a build would change."""
    out = podman("images", "--all", "--no-trunc", "--format", "{{.ID}} {{.Names}}").stdout
    return sorted(out.splitlines())


def images_made_since(before, token):
    """Images new or renamed since `before` whose history holds `token`: those
    of this test's Dockerfile (other suites may build images meanwhile)."""
    new = set(image_list()) - set(before)
    return [line for line in new
            if token in podman("history", "--no-trunc", "--format", "{{.CreatedBy}}",
                               line.split()[0]).stdout]


@pytest.fixture
def job_images():
    """A list the test adds the images its jobs built to; removed afterwards
    (only those: other suites may be building images at the same time)."""
    built = []
    yield built
    for image in built:
        podman("rmi", "--force", image, check=False)


def image_of(output):
    match = re.search(r"^yard: image (\S+) (?:built in|\(cached\))", output, re.M)
    assert match, output
    return match.group(1)


TRAIN = """\
import os, pathlib
print("marker:", pathlib.Path("/marker").read_text().strip())
for var, name in [("YARD_CHECKPOINT_DIR", "model.ckpt"), ("YARD_LOG_DIR", "events.log"),
                  ("YARD_OUTPUT_DIR", "result.txt")]:
    pathlib.Path(os.environ[var], name).write_text(f"{name} from {os.environ['GREETING']}\\n")
print("done in", os.getcwd())
"""


def test_dockerfile_job_runs_in_its_image_artifacts_sync_and_a_second_job_builds_nothing(
        yard, project, job_images):
    token = uuid.uuid4().hex  # a Dockerfile no earlier run has built
    (project / "Dockerfile").write_text(
        f"FROM localhost/trainyard/base-cpu\nRUN echo baked-{token} > /marker\n")
    (project / "train.py").write_text(TRAIN)
    args = ["fit", "train.py", "-e", "GREETING=hello", "--ckpt-dir", "ck", "--log-dir", "tb",
            "--out-dir", "out"]
    first = yard.run(*args, cwd=project, timeout=300)
    job_images.append(image_of(first.stdout))
    assert f"marker: baked-{token}" in first.stdout  # the file exists only in the image
    assert "yard: image localhost/trainyard-job:" in first.stdout
    assert " built in " in first.stdout
    for folder, name in [("ck", "model.ckpt"), ("tb", "events.log"), ("out", "result.txt")]:
        assert (project / folder / name).read_text() == f"{name} from hello\n"
    images = image_list()
    second = yard.run(*args, cwd=project, timeout=300)
    assert f"marker: baked-{token}" in second.stdout
    assert "(cached)" in second.stdout and " built in " not in second.stdout
    assert images_made_since(images, token) == []
    assert podman("ps", "--all", "--quiet", "--filter", "ancestor=localhost/trainyard-job").stdout == ""


def test_failing_dockerfile_fails_the_job_with_podmans_output_and_frees_the_machine(
        yard, project):
    (project / "Dockerfile").write_text(
        f"FROM localhost/trainyard/base-cpu\nRUN echo building-{uuid.uuid4().hex} "
        "&& echo no-such-step-works >&2 && exit 7\n")
    (project / "train.py").write_text("print('SCRIPT RAN')\n")
    proc = yard.run("fit", "train.py", cwd=project, check=False, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "SCRIPT RAN" not in out
    assert "podman build of the job's Dockerfile failed" in out
    assert "no-such-step-works" in out  # podman's own build output
    job_id = yard.json("jobs")[0]["id"]
    assert yard.job(job_id)["state"] == "failed"
    # No cool-down asked: the instance is ended, not kept busy or warm.
    wait_for(lambda: yard.json("machines")["instances"] == [], timeout=30, interval=0.2,
             what="the instance to be released")


def test_image_flag_runs_in_that_image_before_any_dockerfile(yard, project, tmp_path):
    token = uuid.uuid4().hex
    name = f"localhost/yard-e2e-{token}:v1"
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {BASE}\nRUN echo named-{token} > /marker\n")
    podman("build", "-t", name, str(context))
    try:
        # --image wins over the folder's Dockerfile, which would fail to build.
        (project / "Dockerfile").write_text("FROM localhost/trainyard/base-cpu\nRUN exit 1\n")
        (project / "train.py").write_text(TRAIN)
        before = image_list()
        proc = yard.run("fit", "train.py", "--image", name, "-e", "GREETING=hi", "--out-dir", "out",
                        cwd=project, timeout=300)
        assert f"marker: named-{token}" in proc.stdout
        assert f"yard: image {name} (cached)" in proc.stdout
        assert (project / "out" / "result.txt").read_text() == "result.txt from hi\n"
        assert images_made_since(before, token) == []
        # default-cpu is the local base image: python3 and no marker.
        (project / "Dockerfile").unlink()
        (project / "probe.py").write_text(
            "import os, sys; print('in base', os.path.exists('/marker'), sys.version_info[0])\n")
        proc = yard.run("fit", "probe.py", "--image", "default-cpu", cwd=project, timeout=300)
        assert "in base False 3" in proc.stdout
        assert f"yard: image {BASE} (cached)" in proc.stdout
        missing = f"localhost/yard-e2e-missing-{token}:v1"
        bad = yard.run("fit", "probe.py", "--image", missing, cwd=project, check=False)
        assert bad.returncode != 0 and "in base" not in bad.stdout
        assert f"image {missing} is not on this instance and could not be pulled" in bad.stdout
    finally:
        podman("rmi", "--force", name, check=False)


def test_cancel_stops_the_container_and_keeps_what_the_job_wrote(yard, project):
    (project / "job.sh").write_text(
        'trap \'echo "stopped cleanly" > "$YARD_OUTPUT_DIR/last.txt"; exit 0\' TERM\n'
        'echo started\n'
        'while true; do sleep 0.1; done\n')
    job_id = yard.run("submit", "job.sh", "--image", "default-cpu", cwd=project).stdout.strip()
    wait_for(lambda: "started" in yard.run("logs", job_id).stdout, timeout=60, interval=0.1,
             what="the job to start in its container")
    cidfiles = list(yard.home.glob(f"instances/*/jobs/{job_id}-*/container.id"))
    assert len(cidfiles) == 1
    cid = cidfiles[0].read_text().strip()
    assert podman("container", "exists", cid, check=False).returncode == 0
    yard.run("cancel", job_id)
    assert yard.wait_state(job_id, "cancelled", timeout=30)["state"] == "cancelled"
    assert podman("container", "exists", cid, check=False).returncode == 1
    fetched = project / "fetched"
    yard.run("fetch", job_id, "--to", fetched)
    assert (fetched / "outputs" / "last.txt").read_text() == "stopped cleanly\n"


@pytest.mark.parametrize("manifest", ["requirements.txt", "environment.yml"])
def test_yard_init_dockerfile_builds_on_the_local_base_image(yard, project, job_images, manifest):
    token = uuid.uuid4().hex  # in the copied manifest: a fresh build
    # PyYAML is in the base image: pip runs (and would refuse an externally
    # managed Python) without needing a package index.
    text = (f"# {token}\nPyYAML>=5\n" if manifest == "requirements.txt" else
            f"# {token}\ndependencies:\n  - python=3.11\n  - pip:\n    - PyYAML>=5\n")
    (project / manifest).write_text(text)
    (project / "train.py").write_text("import yaml, sys\nprint('yaml', yaml.__version__, sys.argv[1:])\n")
    yard.run("init", "train.py", "--", "--epochs", "2", cwd=project)
    proc = yard.run("fit", cwd=project, timeout=300)
    job_images.append(image_of(proc.stdout))
    assert " built in " in proc.stdout
    assert "yaml 6.0 ['--epochs', '2']" in proc.stdout


def test_image_build_shows_podmans_steps_while_it_builds(yard, project, job_images):
    token = uuid.uuid4().hex  # a Dockerfile no earlier run has built
    # The second RUN outlasts the first's line by seconds: its line must be
    # on the user's screen while the build still runs.
    (project / "Dockerfile").write_text(
        f"FROM {BASE}\nRUN echo first-step-{token}\nRUN sleep 3 && echo second-step-{token}\n")
    (project / "train.py").write_text("print('trained')\n")
    fit = yard.start("fit", "train.py", cwd=project, text=True)
    seen = []
    for line in fit.stdout:
        seen.append(line)
        if line == f"yard: build: first-step-{token}\n":  # what the RUN printed
            break
    assert any(line.startswith("yard: build: STEP 1/3: FROM") for line in seen), seen
    assert f"yard: build: first-step-{token}\n" in seen, seen
    assert not any(f"second-step-{token}" in line or " built in " in line for line in seen), seen
    rest, err = fit.communicate(timeout=300)
    assert fit.returncode == 0, rest + err
    job_images.append(image_of(rest))
    lines = rest.splitlines()
    assert f"yard: build: second-step-{token}" in lines
    assert lines.index(f"yard: build: second-step-{token}") < [
        i for i, line in enumerate(lines) if " built in " in line][0]
    assert "trained" in lines
