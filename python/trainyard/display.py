"""Live display of a fit job: Keras-style epoch lines from metric events, a
progress bar within the epoch on a terminal, the job's own output and the
scheduling decisions."""
import json
import re
import sys

from trainyard._native import native

# The server's messages name the CLI's flags; here the caller wrote Python.
_PARAMETER_OF_FLAG = {
    "--wait-new-job-interval": "wait_new_job_create_interval", "--wait-new-job": "wait_new_job_create_s",
    "--wait-request": "wait_request_s", "--cool-down": "cool_down_period_s", "--machines": "machine_ids",
    "--description": "description",
}
_FLAG = re.compile(r"--[a-z][a-z-]*")


def python_words(msg):
    """`msg` with each CLI flag that is an online_fit parameter named as one."""
    return _FLAG.sub(lambda m: _PARAMETER_OF_FLAG.get(m.group(0), m.group(0)), msg)


def info(msg):
    print(f"trainyard: {python_words(msg)}", file=sys.stderr, flush=True)


def human(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def format_values(values):
    """'loss: 0.4100 - accuracy: 0.8800 - val_loss: ...': the C++ SDK's
    FormatEpochValues (bound): Keras' order, numbers only, null as nan."""
    return native().format_epoch_values(json.dumps(values))


def _is_terminal():
    try:
        return sys.stdout.isatty()
    except Exception:  # noqa: BLE001
        return False


class LiveView:
    def __init__(self, job_id, out=None, epochs=None, verbose=1):
        self.job_id = job_id
        self.verbose = verbose  # as Model.fit's: 0 no epochs shown, 2 no bar
        self.epochs = epochs  # total, when the metrics do not say
        self.out = out or sys.stdout
        self.tty = _is_terminal()
        self.bar_open = False
        self.instance = None
        self.pending = ""
        self.work_files = {}  # written in the job's working folder: path -> size

    def _end_bar(self):
        if self.bar_open:
            self.out.write("\n")
            self.bar_open = False

    def show(self, ev):
        kind = ev.get("kind")
        if kind == "state":
            self._end_bar()
            state, msg = ev.get("state"), ev.get("message", "")
            if ev.get("instance"):
                self.instance = ev["instance"]
            where = f" on {ev['instance']}" if ev.get("instance") else ""
            if msg.startswith(f"{state}: "):  # "waiting: ..." after the state: say it once
                msg = msg[len(state) + 2:]
            info(f"{self.job_id} {state}{where}" + (f": {msg}" if msg else ""))
        elif kind == "decision":
            self._end_bar()
            info(ev.get("message", ""))
        elif kind == "output":
            # Epoch lines of the runner / yard-train are shown from metrics.
            text = self.pending + ev.get("data", "")
            lines = text.split("\n")
            self.pending = lines.pop()
            shown = [ln for ln in lines if not native().is_epoch_line(ln)]
            if shown:
                self._end_bar()
                self.out.write("\n".join(shown) + "\n")
                self.out.flush()
        elif kind == "metric":
            self._metric(ev.get("values") or {}, ev.get("instance"))
        elif kind == "artifact" and ev.get("dir") == "work":
            entry = ev.get("entry") or {}
            self.work_files[entry.get("path", "")] = entry.get("size", 0)

    def _metric(self, v, instance):
        event = v.get("event")
        if event == "replicas":
            self._end_bar()
            info(f"training on {v.get('devices')} replica(s)" + (f" on {instance}" if instance else ""))
        elif event == "warning":
            self._end_bar()
            info("warning: " + str(v.get("message")))
        elif event == "progress":
            if not self.tty or self.verbose != 1:
                return
            step, steps = v.get("step", 0), v.get("steps", 0) or 1
            width = 30
            done = int(width * step / steps)
            bar = "=" * max(done - 1, 0) + (">" if done < width else "=") + "." * (width - done)
            self.out.write(f"\rEpoch {v.get('epoch')}/{v.get('epochs') or self.epochs} {step}/{steps} [{bar}] - "
                           f"{format_values(v)}")
            self.out.flush()
            self.bar_open = True
        elif "epoch" in v:
            if self.verbose == 0:
                return
            if self.bar_open:
                self.out.write("\r\033[K")
                self.bar_open = False
            total = v.get("epochs") or self.epochs
            head = f"Epoch {v['epoch']}/{total}" if total else f"Epoch {v['epoch']}"
            self.out.write(f"{head} - {format_values(v)}\n")
            self.out.flush()

    def disconnected(self, message):
        self._end_bar()
        info(f"connection lost ({message}); reconnecting")

    def close(self):
        if self.pending:
            self.out.write(self.pending + "\n")
            self.pending = ""
        self._end_bar()
        self.out.flush()
        if self.work_files:  # e.g. a CSVLogger's file
            listed = ", ".join(f"{p} ({human(n)})" for p, n in sorted(self.work_files.items())[:10])
            more = len(self.work_files) - 10
            info(f"the job wrote {listed}{f' and {more} more' if more > 0 else ''} in its working folder: "
                 f"`yard fetch {self.job_id} --all` fetches "
                 f"{'it' if len(self.work_files) == 1 else 'them'}")
