"""Ctrl-C that stops a run in seconds and leaves nothing "Running".

A terminal's Ctrl-C sends SIGINT to the whole foreground process group: the CLI, and with it the Ray
processes and the Prefect API server it started. Those die first, so the flow cannot record its end
(it retried a dead API for ~140 s, then stayed "Running"; once Ray segfaulted). So the CLI runs a
command in a child process in its own process group and stays a thin supervisor: the first Ctrl-C is
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
import subprocess
import sys
import time

CHILD_ENV = "ASYMPTOTE_SUPERVISED"
GRACE_S = 30.0


def _die_with_parent() -> None:
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _kill_group(child: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, sig)


_ENABLED = False  # set by the console entry point only: a CLI invoked in-process (tests, other
# programs calling the typer app) runs the command in its own process.


def enable() -> None:
    global _ENABLED
    _ENABLED = True


def supervise() -> None:
    """In the user's CLI process: run this same command in a supervised child and exit with its code.
    In the child, off Linux, or when the app was not started from the console entry point, return at
    once and let the command run here."""
    if not _ENABLED or os.environ.get(CHILD_ENV) or not sys.platform.startswith("linux"):
        return
    child = subprocess.Popen(
        [sys.executable, "-m", "asymptote.cli", *sys.argv[1:]],
        env=os.environ | {CHILD_ENV: "1"},
        start_new_session=True,
        preexec_fn=_die_with_parent,  # noqa: PLW1509 - only prctl, async-signal-safe enough
    )
    interrupted: list[float] = []

    def on_signal(signum, frame) -> None:
        if interrupted:  # a second Ctrl-C: stop now
            _kill_group(child, signal.SIGKILL)
        interrupted.append(time.monotonic())
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGINT)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    raise SystemExit(_wait(child, interrupted))


def _wait(child: subprocess.Popen, interrupted: list[float]) -> int:
    while True:
        try:
            code = child.wait(timeout=0.5)
            break
        except subprocess.TimeoutExpired:
            if interrupted and time.monotonic() - interrupted[0] > GRACE_S:
                _kill_group(child, signal.SIGKILL)
    _kill_group(child, signal.SIGKILL)  # whatever the child left in its group (a stray Ray worker)
    if interrupted:
        return 130
    return code if code >= 0 else 128 - code
