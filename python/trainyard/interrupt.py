"""Ctrl-C while online_fit follows a job: never a traceback, never a hang.

While the live view runs, SIGINT only counts presses (Interrupts); the view
loop then asks once (ask): one key, no Enter, on a terminal — [d]etach,
[c]ancel, [w]atch on — where a second Ctrl-C means cancel and the question
goes away by itself when the job ends meanwhile. In Jupyter the kernel's
input() asks instead (a line). Without a terminal a Ctrl-C detaches."""
import os
import select
import signal
import sys
import threading

PROMPT = "\ntrainyard: interrupted. [d]etach (the job goes on), [c]ancel the job, or [w]atch on? [d/c/w] "


class Interrupts:
    """Counts SIGINTs instead of raising KeyboardInterrupt, while in use (a
    context manager). Outside the main thread signals cannot be taken: it
    counts nothing and Ctrl-C raises as usual."""

    def __init__(self):
        self.count = 0
        self._old = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False

    def _on_sigint(self, signum, frame):
        self.count += 1

    def take(self):
        """The presses since the last take."""
        n, self.count = self.count, 0
        return n


def _in_jupyter():
    return "ipykernel" in sys.modules


def _terminal():
    try:
        return sys.stdin.isatty()
    except Exception:  # noqa: BLE001 - a replaced stdin
        return False


def ask(job_ended, interrupts):
    """-> "detach", "cancel", "watch" or "ended" (the job ended first)."""
    if _in_jupyter():
        try:
            answer = input(PROMPT.lstrip("\n")).strip().lower()
        except (EOFError, KeyboardInterrupt):
            return "cancel"
        return {"c": "cancel", "w": "watch"}.get(answer[:1], "detach")
    if not _terminal():
        return "detach"
    import termios
    import tty
    fd = sys.stdin.fileno()
    # Presses before the question are the one that brought it; every press
    # from the moment it can be on screen is "a second Ctrl-C", so forget
    # the earlier ones before writing it, never after (a press between the
    # two was lost, and the question stayed up).
    interrupts.take()
    sys.stderr.write(PROMPT)
    sys.stderr.flush()
    old = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)  # one key, no Enter; Ctrl-C still signals
        choice = _read_choice(fd, job_ended, interrupts)
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)
    sys.stderr.write({"ended": "(the job ended meanwhile)\n", "cancel": "cancel\n",
                      "detach": "detach\n", "watch": "watch on\n"}[choice])
    sys.stderr.flush()
    return choice


def _read_choice(fd, job_ended, interrupts):
    while True:
        if interrupts.take():
            return "cancel"  # a second Ctrl-C
        if job_ended():
            return "ended"
        try:
            ready, _, _ = select.select([fd], [], [], 0.1)
        except InterruptedError:
            continue
        if not ready:
            continue
        key = os.read(fd, 1).decode(errors="replace").lower()
        if key == "":
            return "detach"  # end of input
        if key in ("c", "\x03"):
            return "cancel"
        if key in ("d", "\n", "\r"):
            return "detach"
        if key == "w":
            return "watch"
