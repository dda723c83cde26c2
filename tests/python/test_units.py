"""Fast checks of the SDK's parts that need no server and no TensorFlow
(the pure-Python ones and the bound C++ engine)."""
import io
import json
import math
import os
import pty
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from trainyard import display, fit, interrupt, picker, record


def metric(epoch, **values):
    return {"kind": "metric", "values": {"epoch": epoch, "epochs": 3, **values}}


def test_history_from_events_spans_attempts_and_skips_progress():
    events = [
        {"kind": "metric", "values": {"event": "replicas", "devices": 2}},
        metric(1, loss=0.9, accuracy=0.5),
        {"kind": "metric", "values": {"event": "progress", "epoch": 2, "step": 3, "steps": 9, "loss": 0.8}},
        metric(2, loss=0.7, accuracy=0.6),
        {"kind": "state", "state": "requesting"},
        metric(2, loss=0.69, accuracy=0.61),  # re-run after a resume from epoch 1
        metric(3, loss=0.5, accuracy=0.8, samples_per_s=100.0),
    ]
    hist, epochs = fit.history_from_events(events)
    assert epochs == [1, 2, 3]
    assert hist == {"loss": [0.9, 0.69, 0.5], "accuracy": [0.5, 0.61, 0.8]}
    assert record.final_metrics(events) == {"epoch": 3, "loss": 0.5, "accuracy": 0.8}


HISTORY_CASES = Path(__file__).resolve().parents[1] / "sdk" / "history_cases.json"


def test_history_is_the_cpp_sdks_on_the_shared_cases():
    """The cases src/sdk/progress_test.cc checks the C++ face with: the
    Python face gives the same columns, floats, NaNs and epochs."""
    cases = json.loads(HISTORY_CASES.read_text())["cases"]
    assert cases
    for case in cases:
        hist, epochs = fit.history_from_events(case["events"])
        assert epochs == case["epochs"], case["name"]
        assert sorted(hist) == sorted(case["history"]), case["name"]
        for key, want in case["history"].items():
            got = hist[key]
            assert all(type(v) is float for v in got), (case["name"], key, got)
            assert [None if math.isnan(v) else v for v in got] == want, (case["name"], key)


def test_online_and_offline_fit_share_one_typed_parameter_list_without_mutable_defaults():
    import dataclasses
    import inspect
    online, offline = inspect.signature(fit.online_fit), inspect.signature(fit.offline_fit)
    assert list(online.parameters.values()) == list(offline.parameters.values())
    assert [f.name for f in dataclasses.fields(fit.FitRequest)] == list(online.parameters)
    for p in online.parameters.values():
        assert p.annotation is not inspect.Parameter.empty, p.name
        assert not isinstance(p.default, (list, dict, set)), p.name
    assert offline.return_annotation is str
    with pytest.raises(TypeError, match=r"^online_fit\(\) got an unexpected keyword argument 'epoch'"):
        fit.online_fit(None, [1], [1], epoch=3)


def test_fit_kwargs_values_must_be_data():
    assert fit._check_data_value("k", {"a": [1, np.int64(2)], 3: None}, "") == {"a": [1, 2], "3": None}
    with pytest.raises(ValueError, match=r"fit_kwargs\['k'\] holds a function"):
        fit._check_data_value("k", {"a": [lambda: 1]}, "")


def test_model_kind_is_recognised():
    with pytest.raises(ValueError, match="compiled tf.keras Model or a TorchScript module"):
        fit._framework(object())


def test_live_view_renders_keras_style_lines():
    out = io.StringIO()
    v = display.LiveView("j-1", out=out)
    v.show({"kind": "output", "data": "hello\nEpoch 1/3 - loss: 1.0000\n"})
    v.show({"kind": "metric", "values": {"event": "progress", "epoch": 1, "step": 1, "steps": 3, "loss": 1.0}})
    v.show({"kind": "metric", "values": {"epoch": 1, "epochs": 3, "loss": 0.41, "accuracy": 0.88,
                                         "val_loss": 0.39, "seconds": 0.2}})
    v.close()
    assert out.getvalue() == "hello\nEpoch 1/3 - loss: 0.4100 - accuracy: 0.8800 - val_loss: 0.3900\n"


def test_picker_takes_numbers_names_and_the_default():
    class Fake:
        def get(self, path):
            return json.dumps({"types": [{"name": "a"}, {"name": "b", "default": True}]})
    assert picker.pick(Fake(), ask=lambda _: "") == ["b"]
    assert picker.pick(Fake(), ask=lambda _: "2, a:spot") == ["b", "a:spot"]
    answers = iter(["7", "1"])
    assert picker.pick(Fake(), ask=lambda _: next(answers)) == ["a"]


def test_record_environment_drops_secrets(monkeypatch):
    monkeypatch.setenv("MY_API_TOKEN", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("DB_PASSWORD", "x")
    monkeypatch.setenv("HARMLESS", "1")
    env = record.environment()
    assert env["env"].get("HARMLESS") == "1"
    assert not {"MY_API_TOKEN", "AWS_SECRET_ACCESS_KEY", "DB_PASSWORD"} & set(env["env"])
    assert env["packages"].get("numpy") == np.__version__


class _PromptWithCtrlC(io.StringIO):
    """stderr whose writing of the question brings a real SIGINT, as a user's
    second Ctrl-C the instant the question appears."""

    def write(self, text):
        n = super().write(text)
        if text == interrupt.PROMPT:
            os.kill(os.getpid(), signal.SIGINT)
        return n


def test_a_second_ctrl_c_the_moment_the_question_shows_cancels(monkeypatch):
    # A terminal for stdin (the one-key question exists only there).
    leader, follower = pty.openpty()
    with os.fdopen(follower, "r") as tty_in, interrupt.Interrupts() as presses:
        monkeypatch.setattr(sys, "stdin", tty_in)
        monkeypatch.setattr(sys, "stderr", _PromptWithCtrlC())
        presses._on_sigint(signal.SIGINT, None)  # the press that brings the question
        deadline = time.monotonic() + 5
        # Before the fix the second press was forgotten after the question
        # was written: no key came, and only the job's end took it away.
        choice = interrupt.ask(lambda: time.monotonic() > deadline, presses)
    os.close(leader)
    assert choice == "cancel"
    assert sys.stderr.getvalue().endswith(interrupt.PROMPT + "cancel\n")


def test_torchscript_jobs_carry_the_openmp_wait_policy(monkeypatch):
    """yard-train's wait policy comes with the job: otherwise it starts twice
    (loading libtorch again) to set it, because libgomp reads it only as it loads."""
    torch = pytest.importorskip("torch")
    sent = {}

    class Submitted(Exception):
        pass

    class Client:
        def post(self, path, body):
            sent[path] = json.loads(body)
            raise Submitted()

    monkeypatch.setattr(fit, "_connect", lambda: Client())
    monkeypatch.setattr(fit, "_upload_bundle", lambda client, root, arrays: {"files": []})
    with pytest.raises(Submitted):
        fit.offline_fit(torch.jit.script(torch.nn.Linear(2, 2)), np.zeros((4, 2), np.float32),
                        np.zeros(4, np.int64), machine_ids=["local"], batch_size=2, epochs=1,
                        fit_kwargs={"loss": "cross_entropy"})
    assert sent["/v1/jobs"]["command"][0] == "yard-train"
    assert sent["/v1/jobs"]["env"]["OMP_WAIT_POLICY"] == "PASSIVE"


@pytest.mark.filterwarnings("ignore:Stored array in format 2.0")
@pytest.mark.parametrize("arr", [
    np.arange(12, dtype=np.float32).reshape(3, 4),
    np.arange(5, dtype=">i8"),
    np.array([True, False, True]),
    np.zeros((0, 7), np.int16),
    np.array(["a", "bcd"]),
    np.array(["2026-12-07", "2026-12-08"], dtype="datetime64[D]"),
    np.zeros(3, dtype=[("a", "<i4"), ("b", "u1", (2,))]),
    np.zeros(2, dtype=[(f"field_{i:05d}", "u1") for i in range(3000)]),  # a header over 64 KiB: format 2.0
    np.ascontiguousarray(np.arange(20.0).reshape(4, 5).T),
], ids=["float32", "big-endian", "bool", "empty", "unicode", "datetime", "structured", "wide", "transposed"])
def test_npy_parts_are_the_bytes_np_save_writes(arr):
    """The SDK sends an array as header + its memory instead of writing a .npy
    file: the two must be the file's bytes exactly."""
    header, data = fit._npy_parts(arr)
    buf = io.BytesIO()
    np.save(buf, arr)
    assert header + data.tobytes() == buf.getvalue()
    assert data.dtype == np.uint8 and (arr.size == 0 or np.shares_memory(data, arr))  # no copy


def test_arrays_holding_python_objects_are_refused_with_what_to_do():
    with pytest.raises(ValueError, match="Python objects.*numeric"):
        fit._as_array("train_X", np.zeros(3, dtype=[("a", "<i4"), ("b", object)]))
    with pytest.raises(ValueError, match="numeric"):
        fit._as_array("train_X", np.array([{}, []], dtype=object))
