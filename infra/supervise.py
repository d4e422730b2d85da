"""Ctrl-C that stops a run in seconds and leaves nothing "Running".

A terminal's Ctrl-C sends SIGINT to the whole foreground process group: the CLI, and with it the Ray
processes and the Prefect API server it started. Those die first, so the flow cannot record its end:
it retries a dead API, then stays "Running", and Ray may crash in its shutdown. So the CLI forks and
runs the command in the child, in its own process group, and stays a thin supervisor: the first Ctrl-C is
forwarded to the child alone, which raises KeyboardInterrupt in the flow while Ray and Prefect still
run, so the flow ends Crashed and every committed step and checkpoint stays; a second Ctrl-C, or a
child that takes longer than GRACE_S, is killed with its process group. The child dies with the
supervisor (PR_SET_PDEATHSIG), so killing the CLI never leaves an orphan training.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import time

# Not a setting: the supervisor's private parent -> child handshake (set by the parent on the child it
# starts, so the child runs the command instead of supervising again). No config field stands for it.
CHILD_ENV = "ASYMPTOTE_SUPERVISED"
GRACE_S = 30.0


def _die_with_parent() -> None:
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


_ENABLED = False  # set by the console entry point only: a CLI invoked in-process (tests, other
# programs calling the typer app) runs the command in its own process.


def enable() -> None:
    global _ENABLED
    _ENABLED = True


def supervise() -> None:
    """In the user's CLI process: fork, run the command in the child (its own process group) and exit
    with its code. In the child, off Linux, or when the app was not started from the console entry
    point, return at once and let the command run here.

    A fork, not a new interpreter: at this point the process has imported only the CLI (no threads,
    no Ray, no Prefect), so the child starts in microseconds instead of re-importing it all."""
    if not _ENABLED or os.environ.get(CHILD_ENV) or not sys.platform.startswith("linux"):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: its own session (so a terminal's Ctrl-C reaches only the supervisor)
        os.setsid()
        _die_with_parent()
        os.environ[CHILD_ENV] = "1"
        return
    interrupted: list[float] = []

    def on_signal(signum, frame) -> None:
        if interrupted:  # a second Ctrl-C: stop now
            _kill_group(pid, signal.SIGKILL)
        interrupted.append(time.monotonic())
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    code = _wait(pid, interrupted)
    os._exit(code)  # the child ran the command; nothing of it is left to run or flush here


def _wait(pid: int, interrupted: list[float]) -> int:
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if interrupted and time.monotonic() - interrupted[0] > GRACE_S:
            _kill_group(pid, signal.SIGKILL)
        time.sleep(0.05)
    _kill_group(pid, signal.SIGKILL)  # whatever the child left in its group (a stray Ray worker)
    if interrupted:
        return 130
    return os.waitstatus_to_exitcode(status) % 256
