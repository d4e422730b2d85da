"""A user's error (a corrupt artifact, bad input, a full disk) is one line in Prefect's run logs too;
a bug keeps its traceback. And Ray does not retry a corrupt artifact as if it were an I/O error."""

from __future__ import annotations

import logging

from asymptote.infra.quiet import OneLineUserErrors
from asymptote.preflight import user_error
from asymptote.store import IntegrityError

BAD = "/s/runs/k/model.safetensors does not match its manifest checksum; refusing it"


def _record(msg: str, exc: BaseException | None = None) -> logging.LogRecord:
    info = (type(exc), exc, None) if exc is not None else None
    return logging.LogRecord("prefect.task_runs", logging.ERROR, __file__, 1, msg, (), info)


def test_an_integrity_error_is_one_line_without_traceback():
    rec = _record("Encountered exception during execution: %r", IntegrityError(BAD))
    rec.args = (IntegrityError(BAD),)
    assert OneLineUserErrors().filter(rec)
    assert rec.getMessage() == f"Encountered exception during execution: {BAD}" and rec.exc_info is None


def test_a_failed_state_embedding_a_remote_traceback_is_one_line():
    state = (
        "Finished in state Failed('Task run encountered an exception RayTaskError(IntegrityError): "
        'ray::_evaluate_remote() (pid=1)\\n  File "tasks/pretrain.py", line 102, in f\\n'
        f"asymptote.store.IntegrityError: {BAD}')"
    )
    rec = _record(state)
    OneLineUserErrors().filter(rec)
    assert rec.getMessage() == f"Finished in state Failed: {BAD}"


def test_a_bug_keeps_its_traceback():
    rec = _record("Encountered exception during execution", RuntimeError("a bug"))
    OneLineUserErrors().filter(rec)
    assert rec.exc_info is not None and rec.getMessage() == "Encountered exception during execution"


def test_ray_wrapped_integrity_error_is_named_and_not_retried_as_oserror():
    from ray.exceptions import RayTaskError

    try:
        raise IntegrityError(BAD)
    except IntegrityError as err:
        wrapped = RayTaskError("f", "remote traceback", err).as_instanceof_cause()
    assert user_error(wrapped) == BAD
    assert not isinstance(IntegrityError(BAD), OSError)  # launch.py retries OSError


def test_a_full_disk_inside_a_remote_task_is_still_named():
    import traceback

    from ray.exceptions import RayTaskError

    try:
        try:
            raise OSError(28, "No space left on device", "/mnt/store/ck")
        except OSError as full:
            raise RuntimeError("writing a checkpoint failed") from full
    except RuntimeError as err:
        wrapped = RayTaskError("f", traceback.format_exc(), err).as_instanceof_cause()
    assert user_error(wrapped).startswith("no space left on the disk of")


def test_errors_known_only_by_their_text_are_named():
    flattened = RuntimeError(f"Training failed.\n  File x\nasymptote.store.IntegrityError: {BAD}\n")
    assert user_error(flattened) == BAD
    full = RuntimeError("x\nOSError: [Errno 28] No space left on device: '/mnt/s/runs/k/ck'\n")
    assert user_error(full) == (
        "no space left on the disk of /mnt/s/runs/k/ck; free space or point --store elsewhere, then rerun"
    )
    copy = RuntimeError(
        "x\nOSError: [Errno 28] No space left on device: '/tmp/stage/w' -> '/mnt/s/runs/k/w.tmp-0123abcd'"
    )
    assert "of /mnt/s/runs/k/w;" in user_error(copy)
