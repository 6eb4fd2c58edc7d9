"""Errors as HTTP: every failure is JSON {"error": code, "message": text} with a fitting status.

| status | code              | when                                                           |
|--------|-------------------|----------------------------------------------------------------|
| 400    | bad_request       | malformed input (path, query, headers, JSON)                   |
| 401    | unauthorized      | no token or client certificate, or one this node does not know  |
| 403    | forbidden         | the caller's role (read < write < admin) does not allow this    |
| 404    | not_found         | unknown route, or an absent key                                 |
| 405    | method_not_allowed| known route, wrong method                                       |
| 403    | wrong_cluster     | a forwarded request from a node of another cluster              |
| 409    | conflict          | a precondition (prev_revision, CAS) did not hold               |
| 409    | not_caught_up     | a learner to promote lags the leader (match_index, commit_index)|
| 410    | compacted         | watch from a revision older than the kept history               |
| 410    | session_expired   | unknown or expired session (the write was NOT applied), or the |
|        |                   | session forgot this seq's answer: open a new session           |
| 413    | too_large         | key, value, body or txn over its limit                          |
| 501    | not_implemented   | membership changes (a later issue)                              |
| 502    | forward_failed    | the leader broke the connection mid-request: outcome unknown    |
| 503    | no_leader         | no known leader, or leadership changed (write NOT applied)      |
| 503    | no_quorum         | the leader could not confirm a read with a quorum               |
| 503    | unavailable       | the node is shutting down                                       |
| 503    | disk_error        | this node's disk failed; it stopped                              |
| 503    | too_many_connections | over --max-connections (client connections; admission.py)    |
| 503    | too_many_streams  | over --max-streams (SSE streams: watches, event streams)        |
| 504    | timeout           | no answer in time: a write's outcome is unknown                 |
| 507    | insufficient_storage | the leader's disk has no room for the write (NOT applied)   |

503 and 507 answers that a retry may fix carry Retry-After (seconds). `exception_from` turns
an answer back into its exception: how a follower raises again what the leader answered to a
forwarded request (forward.py).
"""

from __future__ import annotations

from typing import Any

import msgspec

from raftkv.errors import (
    BadRequest,
    DiskError,
    DiskFull,
    Forbidden,
    ForwardFailed,
    NodeStopped,
    NoQuorum,
    NotCaughtUp,
    NotLeader,
    ProposalDropped,
    RaftkvError,
    Timeout,
    TooLarge,
    TooManyConnections,
    TooManyStreams,
    Unauthorized,
    WrongCluster,
)
from raftkv.kv.history import Compacted
from raftkv.runtime.http_types import Response

RETRY_AFTER_S = "1"
_json = msgspec.json.Encoder()


def json_bytes(doc: Any) -> bytes:
    return _json.encode(doc)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_json.encode(body), status, "application/json", headers)


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    retry: bool = False,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    hdrs = dict(headers or {})
    if retry:
        hdrs["Retry-After"] = RETRY_AFTER_S
    return json_response({"error": code, "message": message, **extra}, status, hdrs)


def from_exception(exc: RaftkvError) -> Response:
    """The HTTP answer for a raftkv error."""
    msg = str(exc)
    match exc:
        case TooLarge():
            return error_response(413, "too_large", msg)
        case Compacted():
            return error_response(410, "compacted", msg, first_revision=exc.first_revision)
        case BadRequest():
            return error_response(400, "bad_request", msg)
        case Unauthorized():
            challenge = {"WWW-Authenticate": 'Bearer realm="raftkv"'}
            return error_response(401, "unauthorized", msg, headers=challenge)
        case Forbidden():
            return error_response(403, "forbidden", msg)
        case WrongCluster():
            return error_response(403, "wrong_cluster", msg)
        case NotCaughtUp():
            return error_response(
                409,
                "not_caught_up",
                msg,
                match_index=exc.match_index,
                commit_index=exc.commit_index,
            )
        case ForwardFailed():
            return error_response(502, "forward_failed", msg)
        case NotLeader():
            leader_hint = {"X-Raftkv-Leader": exc.leader} if exc.leader else None
            return error_response(
                503, "no_leader", msg, retry=True, headers=leader_hint, leader=exc.leader
            )
        case ProposalDropped():
            return error_response(503, "no_leader", msg, retry=True)
        case NoQuorum():
            return error_response(503, "no_quorum", msg, retry=True)
        case Timeout():
            return error_response(504, "timeout", msg)
        case NodeStopped():
            return error_response(503, "unavailable", msg, retry=True)
        case DiskFull():  # before DiskError, its base: the node keeps running
            return error_response(507, "insufficient_storage", msg, retry=True)
        case DiskError():
            return error_response(503, "disk_error", msg)
        case TooManyConnections():
            return error_response(503, "too_many_connections", msg, retry=True)
        case TooManyStreams():
            return error_response(503, "too_many_streams", msg, retry=True)
    return error_response(500, "internal", msg)


def exception_from(status: int, doc: dict[str, Any]) -> RaftkvError:
    """The exception whose from_exception() answer is (status, doc): what the leader raised
    for a forwarded request. Anything else is ForwardFailed (for a write: outcome unknown)."""
    code, msg = doc.get("error"), str(doc.get("message", ""))
    match status, code:
        case 400, "bad_request":
            return BadRequest(msg)
        case 401, "unauthorized":
            return Unauthorized(msg)
        case 403, "forbidden":
            return Forbidden(msg)
        case 403, "wrong_cluster":
            return WrongCluster(msg)
        case 409, "not_caught_up":
            return NotCaughtUp(msg, _int(doc, "match_index"), _int(doc, "commit_index"))
        case 413, "too_large":
            return TooLarge(msg)
        case 502, "forward_failed":
            return ForwardFailed(msg)
        case 503, "no_leader" if "leader" in doc:
            leader = doc["leader"]
            return NotLeader(msg, leader if isinstance(leader, str) else None)
        case 503, "no_leader":
            return ProposalDropped(msg)
        case 503, "no_quorum":
            return NoQuorum(msg)
        case 503, "unavailable":
            return NodeStopped(msg)
        case 503, "disk_error":
            return DiskError(msg)
        case 503, "too_many_connections":
            return TooManyConnections(msg)
        case 503, "too_many_streams":
            return TooManyStreams(msg)
        case 504, "timeout":
            return Timeout(msg)
        case 507, "insufficient_storage":
            return DiskFull(msg)
    return ForwardFailed(f"the leader answered {status} {code}: {msg}")


def _int(doc: dict[str, Any], name: str) -> int:
    value = doc.get(name)
    return value if isinstance(value, int) else 0


def timeout_error(timeout: float, *, write: bool) -> Timeout:
    if write:
        return Timeout(
            f"the write was not acknowledged within {timeout:g}s; its outcome is "
            "unknown (it may still commit): read the key, or retry with the same "
            "session seq"
        )
    return Timeout(
        f"the leader could not confirm the read with a quorum within {timeout:g}s; "
        "the read had no effect, retry"
    )
