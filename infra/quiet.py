"""Prefect's run logs, one line for an error the user can act on.

When a step fails on bad input, a corrupt artifact or a full disk, the CLI prints one line naming what
to fix (asymptote.preflight.user_error). Before it, Prefect's engines log the same failure with the
whole traceback: the flow engine as `logger.exception(...)`, the task engine as a "Finished in state
Failed(...)" message that embeds a Ray task error's remote traceback. This filter, on Prefect's run
loggers (console and API alike), turns those records into one line carrying the user's message; a
failure that is not the user's (a bug) keeps its traceback.
"""

from __future__ import annotations

import logging

from asymptote.preflight import user_error

RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")
# How the user-facing errors look inside a message that only carries their text (Ray flattens them).
MARKERS = ("IntegrityError: ", "ConfigError: ", "PreflightError: ", "[Errno 28] ")


class OneLineUserErrors(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        message = user_error(exc) if exc is not None else None
        if message is None and record.levelno >= logging.ERROR:
            message = _from_text(record.getMessage())
        if message is not None:
            text = record.getMessage()
            head = "Finished in state Failed" if text.startswith("Finished in state") else text.split(":")[0]
            record.msg, record.args = f"{head}: {message}", ()
            record.exc_info, record.exc_text = None, None
        return True


def _from_text(text: str) -> str | None:
    """The user's message from a multi-line text (a remote traceback's last frames), if it has one."""
    lines = text.replace("\\n", "\n").splitlines()  # a state's repr escapes its newlines
    if len(lines) < 2:
        return None
    for line in reversed(lines):
        for marker in MARKERS:
            if marker in line:
                return line.split(marker, 1)[1].rstrip("')\"").strip()
    return None


def install() -> None:
    """Add the filter to Prefect's run loggers (once; after Prefect configured its logging)."""
    import prefect.logging  # noqa: F401  (configures Prefect's loggers first)

    for name in RUN_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, OneLineUserErrors) for f in logger.filters):
            logger.addFilter(OneLineUserErrors())
