"""One error tree for all of raftkv. Every error says whose fault it was.

- CallerError: the caller asked for something invalid or impossible right now
  (bad input, not the leader, no quorum). Retrying elsewhere or later may help.
- PeerError: another node sent something we cannot accept (garbage frame,
  wrong cluster, incompatible version). The connection is dropped; we keep running.
- DiskError: local storage failed or is corrupt. The node must stop acknowledging.
  DiskFull, its one exception: no room for a write, nothing written, the node keeps running.
"""

from __future__ import annotations


class RaftkvError(Exception):
    """Base of every error raised by raftkv."""


# --- the caller's fault ---------------------------------------------------------------


class CallerError(RaftkvError):
    """The request was invalid or cannot be served by this node right now."""


class BadRequest(CallerError):
    """Malformed or out-of-range input."""


class TooLarge(BadRequest):
    """A key, value or batch is over the configured limit."""


class NotLeader(CallerError):
    """This node is not the leader; `leader` is the known leader, if any."""

    def __init__(self, message: str, leader: str | None = None) -> None:
        super().__init__(message)
        self.leader = leader


class ProposalDropped(CallerError):
    """The proposal was not appended (leadership transfer in progress, or not leader)."""


class NoQuorum(CallerError):
    """The leader cannot reach a quorum; nothing can be committed or read now."""


class NodeStopped(CallerError):
    """The node is shutting down (or has stopped); try another node."""


class Timeout(CallerError):
    """The request timed out. For a write the outcome is unknown: it may have committed."""


class SessionExpired(Timeout):
    """A write's session expired (or forgot the write's answer) while an earlier attempt of
    the write may have been applied: its outcome is unknown, as after a Timeout. (A write whose
    attempts certainly never reached the log is retried in a new session instead.)"""


class ForwardFailed(CallerError):
    """The connection to the leader broke while it held a forwarded request (or its answer
    made no sense): for a write, the outcome is unknown, as after a Timeout (HTTP 502)."""


class NotCaughtUp(CallerError):
    """A learner cannot be promoted yet: its log (match_index) lags the leader's commit
    index too far (HTTP 409 not_caught_up)."""

    def __init__(self, message: str, match_index: int, commit_index: int) -> None:
        super().__init__(message)
        self.match_index = match_index
        self.commit_index = commit_index


class Overloaded(CallerError):
    """A capacity limit of this node is reached (connections, streams): retry later."""


class TooManyConnections(Overloaded):
    """Over the node's HTTP connection budget (--max-connections)."""


class TooManyStreams(Overloaded):
    """Over the node's budget of SSE streams: watches and event streams (--max-streams)."""


class Unauthorized(CallerError):
    """The request carries no credentials, or ones this node does not accept (HTTP 401)."""


class Forbidden(CallerError):
    """The caller is known but its role does not allow this request (HTTP 403)."""


# --- a peer's fault -------------------------------------------------------------------


class PeerError(RaftkvError):
    """A peer sent something we cannot accept."""


class ProtocolError(PeerError):
    """A frame could not be decoded: bad length, checksum, version or content."""


class WrongCluster(PeerError):
    """A peer belongs to a different cluster (cluster id mismatch)."""


# --- the disk's fault -----------------------------------------------------------------


class DiskError(RaftkvError):
    """Local storage failed; the node must not acknowledge anything further. The message names
    the node and the file or directory; path holds the latter when one is known."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class DiskFull(DiskError):
    """There is no room on the disk for this write (ENOSPC or EDQUOT while allocating space).
    Nothing was written: the storage stays usable, and the write can succeed once space is
    freed. Refused writes answer HTTP 507 insufficient_storage."""


class CorruptionError(DiskError):
    """Stored data that cannot be trusted (a bad snapshot file or segment header, a missing
    segment, or lost synced data with no other node to get it from): refuse to start."""

    def __init__(self, message: str, path: str | None = None, offset: int | None = None) -> None:
        super().__init__(message, path)
        self.offset = offset
