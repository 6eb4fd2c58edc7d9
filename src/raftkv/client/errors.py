"""Client-side errors, all inside the raftkv.errors tree, and the mapping from HTTP answers.

The server answers errors as JSON {"error": code, "message": text}; `error_from_response` turns
one into the matching exception. Which answers may be retried, and whether a write's outcome is
then unknown, is decided by `classify`.
"""

from __future__ import annotations

import enum
import json
import re
from typing import Any

from raftkv.errors import (
    BadRequest,
    CallerError,
    DiskFull,
    Forbidden,
    NoQuorum,
    NotLeader,
    RaftkvError,
    SessionExpired,
    Timeout,
    TooLarge,
    Unauthorized,
)


class Conflict(CallerError):
    """A precondition (prev_revision, compare-and-set) did not hold; nothing changed.
    mod_revision: the key's mod_revision now (0: absent), when the server said."""

    def __init__(self, message: str, mod_revision: int | None = None) -> None:
        super().__init__(message)
        self.mod_revision = mod_revision


class NotFound(CallerError):
    """The server has no such route or object (e.g. fault injection not enabled)."""


class NotSupported(CallerError):
    """The server does not implement this request yet (HTTP 501)."""


class Unavailable(CallerError):
    """No endpoint could be reached (connection refused, unreachable) before the deadline."""


class WrongEndpoint(CallerError):
    """The endpoint answered, but not as a raftkv node does (e.g. another web server's HTML
    page): the endpoint list is wrong. Not retried."""


class ServerError(RaftkvError):
    """The server failed in an unexpected way (HTTP 500 and other unknown answers)."""


class AnswerVerdict(enum.Enum):
    """What an HTTP answer means for the request that got it."""

    FINAL = "final"  # success or a definite error: hand it to the caller
    RETRY = "retry"  # definitely not applied (no leader, no quorum, shutting down): retry
    UNKNOWN = "unknown"  # may or may not have been applied: retry with the same session seq


def classify(status: int, code: str) -> AnswerVerdict:
    """410 session_expired is FINAL for the attempt (it was not applied); what it means for
    the write, whose earlier attempts may have been, the router decides."""
    if status == 503:
        # disk_error: the node stopped on a disk failure, perhaps after it had sent the write
        # to its followers, which may commit it. Every other 503 is a definite "not applied".
        return AnswerVerdict.UNKNOWN if code == "disk_error" else AnswerVerdict.RETRY
    if status in (502, 504):
        return AnswerVerdict.UNKNOWN
    return AnswerVerdict.FINAL


def is_raftkv_error(body: bytes) -> bool:
    """body is raftkv's error shape: a JSON object with a string "error" code (every error a
    raftkv node answers has it, runtime/http_errors.py)."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(doc, dict) and isinstance(doc.get("error"), str)


def wrong_endpoint(
    endpoint: str,
    request: str,
    status: int,
    ctype: str,
    body: bytes,
    lacks: str = "raftkv's JSON",
) -> WrongEndpoint:
    """The error for an answer that no raftkv node would give: it names the endpoint and
    describes the answer in a few words (an HTML page by its title, never the whole page)."""
    kind = ctype.partition(";")[0].strip()
    text = " ".join(body[:4096].decode("utf-8", "replace").split())
    title = _TITLE.search(text) if "html" in kind else None
    if title is not None:
        sample = f", title {title.group(1).strip()[:60]!r}"
    else:
        sample = f", starting {text[:60]!r}" if text else ", empty"
    what = f"{kind}{sample}" if kind else sample.lstrip(", ")
    return WrongEndpoint(
        f"{endpoint} is not a raftkv node: {request} answered HTTP {status} ({what}) "
        f"without {lacks}; is it the HTTP address of a node?"
    )


_TITLE = re.compile(r"<title>(.*?)</title>", re.IGNORECASE)


def parse_error_body(body: bytes) -> tuple[str, str, dict[str, Any]]:
    """(code, message, whole object) of an error body; tolerant of non-JSON bodies."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        doc = None
    if isinstance(doc, dict):
        code = str(doc.get("error", ""))
        message = str(doc.get("message", "")) or code
        return code, message, doc
    text = body.decode("utf-8", "replace").strip()
    return "", text[:200], {}


def error_from_response(status: int, body: bytes, where: str) -> RaftkvError:
    """The exception for an error answer `status` with `body` from `where` (an endpoint)."""
    code, message, doc = parse_error_body(body)
    message = message or f"HTTP {status}"
    match status, code:
        case 400, _:
            return BadRequest(message)
        case 401, _:
            return Unauthorized(f"{where}: {message}")
        case 403, _:
            return Forbidden(f"{where}: {message}")
        case 404, _:
            return NotFound(message)
        case 409, _:
            current = doc.get("mod_revision")
            return Conflict(message, current if isinstance(current, int) else None)
        case 410, "session_expired":
            return SessionExpired(message)
        case 410, _:
            return BadRequest(message)
        case 413, _:
            return TooLarge(message)
        case 501, _:
            return NotSupported(message)
        case 503, "no_quorum":
            return NoQuorum(message)
        case 503, "no_leader":
            leader = doc.get("leader")
            return NotLeader(message, leader if isinstance(leader, str) else None)
        case 503, _:
            return Unavailable(f"{where}: {message}")
        case 504, _:
            return Timeout(message)
        case 507, _:
            return DiskFull(f"{where}: {message}")
    return ServerError(f"{where} answered HTTP {status}: {message}")
