"""online_fit at a terminal and in Jupyter: the machine picker when
machine_ids is None, and Ctrl-C while a job runs (cancel it, or detach and
leave it running).

The terminal cases run a small script under a pseudo-terminal (pexpect),
because both behaviours exist only when stdin and stderr are a terminal;
the Jupyter case runs the same code in an IPython kernel and answers the
picker through the kernel's stdin channel, as the notebook front end does."""
import io
import json
import random
import sys
import textwrap

import pytest

from conftest import YARD_TRAIN, wait_for

pexpect = pytest.importorskip("pexpect")
pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not YARD_TRAIN.exists(), reason=f"{YARD_TRAIN} not built (libtorch-dev)")

# A TorchScript job (torch imports faster than TensorFlow). `epochs` comes
# from argv: 1 for the picker, many for the Ctrl-C cases, which interrupt
# the job long before it could end.
SCRIPT = textwrap.dedent("""
    import json, signal, sys
    # As an interactive shell would: a test run started in the background
    # (`cmd &` without job control) inherits SIGINT ignored, and Python then
    # installs no KeyboardInterrupt handler.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    import numpy as np, torch, trainyard
    mode, epochs = sys.argv[1], int(sys.argv[2])
    torch.manual_seed(0)
    model = torch.jit.script(torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2)))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 8)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    machines = None if mode == "pick" else ["local-1cpu"]
    job_id, trained, history = trainyard.online_fit(
        model, x, y, machine_ids=machines, batch_size=1, epochs=epochs,
        fit_kwargs={"loss": "cross_entropy", "optimizer": "sgd", "learning_rate": 0.01})
    print("RESULT " + json.dumps({"job": job_id, "model": trained is not None}), flush=True)
""")


def run_script(home, tmp_path, mode, epochs):
    script = tmp_path / "fit_at_terminal.py"
    script.write_text(SCRIPT)
    return pexpect.spawn(sys.executable, [str(script), mode, str(epochs)], env=home.env(),
                         encoding="utf-8", timeout=120, dimensions=(40, 200))


def result_of(child):
    child.expect(r"RESULT (\{.*\})\r?\n")
    return json.loads(child.match.group(1))


def job_of(home, job_id):
    return json.loads(home.client().get(f"/v1/jobs/{job_id}"))["job"]


def test_picker_offers_the_machine_types_and_uses_the_choice(home, tmp_path):
    child = run_script(home, tmp_path, "pick", 1)
    child.expect("Choose machines, in order of preference:")
    child.expect(r"Numbers or names, comma-separated \[(\d+)\]: ")
    # The catalog lists local (default) then local-1cpu: choose the second.
    child.sendline("2")
    result = result_of(child)
    child.expect(pexpect.EOF)
    assert result["model"], result
    assert job_of(home, result["job"])["machines"] == ["local-1cpu"]


def test_picker_rejects_an_out_of_range_number_and_asks_again(home, tmp_path):
    child = run_script(home, tmp_path, "pick", 1)
    child.expect(r"Numbers or names, comma-separated \[\d+\]: ")
    child.sendline("9")
    child.expect(r"no machine number 9 \(1-2\)")
    child.expect(r"Numbers or names, comma-separated \[\d+\]: ")
    child.sendline("")  # the default
    result = result_of(child)
    assert job_of(home, result["job"])["machines"] == ["local"]


LONG = 5000  # epochs: the job cannot end before the test interrupts it
PROMPT = r"\[d\]etach \(the job goes on\), \[c\]ancel the job, or \[w\]atch on\? \[d/c/w\] "


def interrupt(child):
    """Ctrl-C, as a user presses it, and the question it brings."""
    child.sendintr()
    child.expect(PROMPT, timeout=30)


def interrupt_after_first_epoch(child):
    child.expect(rf"Epoch 1/{LONG}")
    interrupt(child)


def test_ctrl_c_then_cancel_cancels_the_job(home, tmp_path):
    child = run_script(home, tmp_path, "fixed", LONG)
    interrupt_after_first_epoch(child)
    child.send("c")  # one key, no Enter
    result = result_of(child)
    child.expect(pexpect.EOF)
    assert not result["model"]
    assert job_of(home, result["job"])["state"] == "cancelled"


def test_ctrl_c_then_detach_leaves_the_job_running(home, tmp_path):
    child = run_script(home, tmp_path, "fixed", LONG)
    interrupt_after_first_epoch(child)
    child.send("d")
    child.expect(r"detached; the job goes on\. Attach again with trainyard\.attach\('([^']+)'\)")
    result = result_of(child)
    child.expect(pexpect.EOF)
    assert not result["model"]
    # The job outlives the process that submitted it.
    assert job_of(home, result["job"])["state"] == "running"
    home.client().post(f"/v1/jobs/{result['job']}/cancel", "{}")
    wait_for(lambda: job_of(home, result["job"])["state"] == "cancelled", timeout=60,
             what="the detached job to be cancelled")


def test_ctrl_c_pressed_twenty_times_at_random_never_shows_a_traceback_or_hangs(home, tmp_path):
    child = run_script(home, tmp_path, "fixed", LONG)
    child.logfile_read = seen = io.StringIO()
    child.expect(rf"Epoch 1/{LONG}")
    rng = random.Random()
    for _ in range(19):  # each at a random moment of the live view; watch on
        child.expect([pexpect.TIMEOUT], timeout=rng.uniform(0.0, 0.8))
        interrupt(child)
        child.send("w")
        child.expect("watch on")
    child.sendintr()  # the 20th, then a second Ctrl-C at the question: cancel
    child.expect(PROMPT, timeout=30)
    child.sendintr()
    child.expect(r"cancelling (job-\S+)")
    result = result_of(child)
    child.expect(pexpect.EOF, timeout=60)
    assert "Traceback" not in seen.getvalue() and "KeyboardInterrupt" not in seen.getvalue(), seen.getvalue()
    assert not result["model"]
    assert job_of(home, result["job"])["state"] == "cancelled"


def test_ctrl_c_question_goes_away_when_the_job_ends(home, tmp_path):
    child = run_script(home, tmp_path, "fixed", 4)
    child.expect(r"Epoch 1/4")
    interrupt(child)
    child.expect(r"\(the job ended meanwhile\)", timeout=120)
    result = result_of(child)
    child.expect(pexpect.EOF)
    assert result["model"]


def test_picker_in_jupyter_asks_through_the_kernel(home, tmp_path):
    jupyter_client = pytest.importorskip("jupyter_client")
    from jupyter_client.kernelspec import KernelSpec
    km = jupyter_client.KernelManager(kernel_name="python3")
    # This interpreter (the project's venv), not the system kernelspec's.
    km._kernel_spec = KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                                 display_name="trainyard test", language="python")
    km.start_kernel(env=home.env(), cwd=str(tmp_path))
    kc = km.client()
    try:
        kc.start_channels()
        kc.wait_for_ready(timeout=120)
        code = 'import sys\nsys.argv = ["fit_in_jupyter", "pick", "1"]\n' + SCRIPT
        msg_id = kc.execute(code, allow_stdin=True)
        request = kc.get_stdin_msg(timeout=120)
        assert request["content"]["prompt"].startswith("Numbers or names, comma-separated")
        kc.input("local-1cpu")
        text = ""
        while True:
            msg = kc.get_iopub_msg(timeout=120)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                text += msg["content"]["text"]
            if msg["msg_type"] == "error":
                raise AssertionError("\n".join(msg["content"]["traceback"]))
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    assert "Choose machines, in order of preference:" in text
    result = json.loads(text.split("RESULT ", 1)[1].splitlines()[0])
    assert result["model"], text[-2000:]
    assert job_of(home, result["job"])["machines"] == ["local-1cpu"]
