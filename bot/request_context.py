"""The request id: one per inbound HTTP request or proactive turn, in logs and in replies.

The id lives in a context variable, so every log record written while a request is
handled carries it (as ``record.request_id``), and handlers can quote it to the user
as a reference for support.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

REQUEST_ID_HEADER = "X-Request-Id"
LOG_FORMAT = "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"

# Accept a caller's id only if it is short and cannot forge log lines or headers.
_ACCEPTABLE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_NO_REQUEST_ID = "-"

_request_id: ContextVar[str | None] = ContextVar("switchboard_request_id", default=None)


def new_request_id() -> str:
    """Return a fresh request id, short enough for an admin to read out to support."""
    return secrets.token_hex(6)


def request_id_from_header(value: str | None) -> str:
    """Return the caller's request id if it is acceptable, otherwise a fresh one."""
    if value and _ACCEPTABLE_REQUEST_ID.fullmatch(value):
        return value
    return new_request_id()


def current_request_id() -> str | None:
    """Return the id of the request or turn being handled, or None outside one."""
    return _request_id.get()


@contextmanager
def request_id_scope(request_id: str | None = None) -> Iterator[str]:
    """Make ``request_id`` (or a fresh id) the current one for the enclosed block."""
    value = request_id or new_request_id()
    token = _request_id.set(value)
    try:
        yield value
    finally:
        _request_id.reset(token)


def install_request_id_log_records() -> None:
    """Give every log record a ``request_id`` attribute (``-`` outside a request).

    Idempotent: wraps the current log record factory once. Formatters can then use
    ``%(request_id)s``, as ``LOG_FORMAT`` does.
    """
    previous = logging.getLogRecordFactory()
    if getattr(previous, "_adds_request_id", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if not hasattr(record, "request_id"):
            record.request_id = _request_id.get() or _NO_REQUEST_ID
        return record

    factory._adds_request_id = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
