"""Node: one replica of the application's state machine, embedded in the application's process.

    async with Node(machine, node_id="n1", peers=PEERS, data_dir="data/n1") as node:
        result = await node.apply({"op": "add", "n": 5})     # committed + applied: its result
        value = await node.read(lambda m: m.value)          # linearizable (ReadIndex)

The same pieces as `raftkv serve`: the pure core, the durable LogStorage (one fsync per batch),
the TCP peer transport with its cluster-id handshake, and the runtime's Ready loop, which here
applies to a Replica wrapping the application's state machine.

apply() works on every node: a follower forwards the command to the leader (NodeOptions.forward;
off, it raises NotLeader with the leader's id). Failed attempts are retried until the deadline;
every command carries this Node's session (client id, seq), so a retried command whose first
attempt did commit is answered from the session cache instead of being applied twice. The
session is opened through the log (an OpenSessionEntry) before the first command, and again
when the replicas have forgotten it (see submit()).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, Literal, TypeVar

import msgspec

from raftkv.client.session import SessionKeeper
from raftkv.core.membership import ConfChange, ConfChangeKind
from raftkv.core.types import NodeId
from raftkv.driver import SnapshotPolicy
from raftkv.embed.codec import Decoder, encode
from raftkv.embed.errors import CommandFailed
from raftkv.embed.events import EventBus, EventStream, Listener
from raftkv.embed.hooks import EmbedHooks
from raftkv.embed.machine import AnyMachine
from raftkv.embed.membership import already
from raftkv.embed.options import NodeOptions, build_settings
from raftkv.embed.protocol import (
    ENCODER,
    MAX_COMMAND_SIZE,
    ApplyStatus,
    Outcome,
    encode_envelope,
    encode_open_session,
)
from raftkv.embed.replica import Replica
from raftkv.embed.replicated import Call, Replicated
from raftkv.errors import (
    BadRequest,
    CallerError,
    DiskError,
    ForwardFailed,
    NoQuorum,
    NotLeader,
    ProposalDropped,
    SessionExpired,
    Timeout,
    TooLarge,
    WrongCluster,
)
from raftkv.runtime.admission import PeerPolicy
from raftkv.runtime.faults import NetFaults
from raftkv.runtime.forward import (
    MAX_FORWARD_BODY,
    MEMBER,
    PROPOSE,
    READ_INDEX,
    ForwardClient,
    ForwardServer,
    OpAnswer,
    add_internal_route,
    encode_lease,
)
from raftkv.runtime.http_server import HttpServer
from raftkv.runtime.http_types import Router
from raftkv.runtime.node import NodeStopped, RaftRuntime
from raftkv.runtime.settings import PeerAddress
from raftkv.runtime.shell import EMBEDDED, HttpFront, NodeShell, Parts, wait_applied
from raftkv.storage import Recovered

log = logging.getLogger("raftkv.embed")

M = TypeVar("M", bound=AnyMachine)
T = TypeVar("T")
Consistency = Literal["linearizable", "lease", "stale"]

_RETRYABLE = (NotLeader, ProposalDropped, NoQuorum)


class _Retry(Exception):
    """One attempt of a request at the leader failed and may be tried again (str: why)."""

    def __init__(self, why: str, *, maybe_applied: bool = False) -> None:
        super().__init__(why)
        self.maybe_applied = maybe_applied  # the attempt may have taken effect


@dataclass(slots=True)
class _Tried:
    """What the attempts of one envelope so far tell."""

    maybe_applied: bool = False  # some attempt may have taken effect


_SESSION_ID: Decoder[str] = Decoder(str, "the session id")
_OUTCOME = msgspec.msgpack.Decoder(Outcome)
_CHANGES = msgspec.msgpack.Decoder(ConfChange)


@dataclass(frozen=True, slots=True)
class NodeStatus:
    id: str
    role: str  # follower | pre-candidate | candidate | leader
    term: int
    leader: str | None
    commit_index: int
    applied_index: int
    last_index: int
    snapshot_index: int
    voters: tuple[str, ...]
    running: bool
    learners: tuple[str, ...] = ()


class Node(Generic[M]):
    """One embedded replica. See the module docstring; docs/library.md for the guarantees."""

    def __init__(
        self,
        machine: M,
        *,
        node_id: str,
        peers: Mapping[str, str | PeerAddress],
        data_dir: str | Path,
        cluster_id: str = "raftkv",
        command_type: Any = Any,
        result_type: Any = Any,
        options: NodeOptions | None = None,
        voters: Collection[str] | None = None,
    ) -> None:
        """peers: the address of every node that is or may become a member, this one included
        (`ID -> "HOST:RAFT_PORT@http://HOST:API_PORT"`, the same on every node). voters: the
        cluster's first configuration (default: every peer), the same on every node; a node
        outside it starts as a non-member that waits to be added (add_learner / add_voter).
        Once the log holds a membership change, the log's configuration is what counts."""
        self.options = opts = options or NodeOptions()
        self.settings = build_settings(node_id, peers, data_dir, cluster_id, opts)
        self.id = node_id
        self.machine = machine
        initial = tuple(sorted(set(voters))) if voters is not None else self.settings.voters
        unknown = sorted(set(initial) - set(self.settings.peers))
        if not initial or unknown:
            raise BadRequest(f"voters must be a non-empty subset of peers (unknown: {unknown})")
        self._initial_voters = initial
        self._replicated: Replicated | None = None
        if isinstance(machine, Replicated):
            command_type = Call
            machine._raftkv_attach(self)
            self._replicated = machine
        self._results: Decoder[Any] = Decoder(result_type, "the result")
        self._replica = Replica(machine, Decoder(command_type, "the command"), opts.sessions)
        self._bus = EventBus(node_id)
        self._hooks = EmbedHooks(node_id, self._bus)
        # The session of this Node's commands (exactly-once retries), opened through the log.
        self._sessions = SessionKeeper(self._open_session)
        self._runtime: RaftRuntime[Replica, Outcome] | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._forward: ForwardClient | None = None
        self._faults = NetFaults()
        self._used = False

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Open storage (recovering the state machine from its snapshot and log), start the
        peer transport, the forwarding listener and the Ready loop. A Node runs once."""
        if self._used:
            raise CallerError(f"node {self.id} was started before; create a new Node")
        self._used = True
        stack = contextlib.AsyncExitStack()
        try:
            await self._start(stack)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        if self._replicated is not None:
            await self._replicated.on_node_start(self)

    async def stop(self) -> None:
        """Finish the Ready in flight, fail what is pending (NodeStopped), close everything."""
        stack, self._stack = self._stack, None
        if stack is None:
            return
        try:
            if self._replicated is not None:
                await self._replicated.on_node_stop(self)
        finally:
            await stack.aclose()

    async def __aenter__(self) -> Node[M]:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _start(self, stack: contextlib.AsyncExitStack) -> None:
        s, opts = self.settings, self.options
        joining = () if self.id in self._initial_voters else (self.id,)

        async def build(recovered: Recovered) -> Parts[Replica]:
            # not a voter at first when joining: listen until the leader adds us
            return Parts(self._replica, self._initial_voters, joining, s, self._hooks)

        stack.callback(self._bus.close)
        if opts.forward:
            self._forward = ForwardClient(s.node_id, s.cluster_id, s.peers.get, self._faults)
            stack.push_async_callback(self._forward.close)
        shell: NodeShell[Replica, Outcome] = await NodeShell.start(
            stack,
            s,
            EMBEDDED,
            build,
            front=self._front,
            policy=SnapshotPolicy(opts.snapshot_every, 0, opts.snapshot_log_ratio),
            faults=self._faults,
        )
        self._runtime = shell.runtime

    def _front(self, shell: NodeShell[Replica, Outcome]) -> HttpFront:
        settings = shell.settings
        server = ForwardServer(
            shell.runtime,
            settings.cluster_id,
            settings.request_timeout_s,
            {MEMBER: self._member_op},
        )
        peers = PeerPolicy.of(settings, lambda p: p != self.id and p in settings.peers)
        router = Router(MAX_FORWARD_BODY)
        add_internal_route(router, server, peers)
        return HttpServer(settings, router, peers)

    async def _member_op(self, body: bytes, peer: str | None) -> tuple[int, bytes]:
        """A follower's membership change, at this node (forward.py)."""
        try:
            change = _CHANGES.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            raise BadRequest(f"malformed membership change: {e}") from None
        return await self._change_here(change, self.settings.request_timeout_s), b""

    # --- state ----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._stack is not None and self._runtime is not None and self._runtime.running

    @property
    def failed(self) -> BaseException | None:
        """Why the Ready loop ended on its own (a DiskError, or a bug), if it did."""
        return None if self._runtime is None else self._runtime.failed

    @property
    def is_leader(self) -> bool:
        return self._runtime is not None and self._runtime.is_leader

    @property
    def leader(self) -> str | None:
        return None if self._runtime is None else self._runtime.leader

    @property
    def faults(self) -> NetFaults:
        """Injected network faults (tests): faults.isolate = True cuts this node off."""
        return self._faults

    @property
    def voters(self) -> tuple[str, ...]:
        """The voters of the latest configuration in this node's log (initially `voters`)."""
        rt = self._runtime
        return self._initial_voters if rt is None else rt.raft.voters

    @property
    def learners(self) -> tuple[str, ...]:
        rt = self._runtime
        return () if rt is None else rt.raft.learners

    def status(self) -> NodeStatus:
        rt = self._runtime
        if rt is None:
            return NodeStatus(self.id, "stopped", 0, None, 0, 0, 0, 0, self.voters, False, ())
        raft = rt.raft
        return NodeStatus(
            id=self.id,
            role=raft.role.value,
            term=raft.term,
            leader=raft.leader,
            commit_index=raft.commit_index,
            applied_index=rt.applied_index,
            last_index=raft.last_index,
            snapshot_index=raft.snapshot_index,
            voters=raft.voters,
            running=self.running,
            learners=raft.learners,
        )

    # --- events ---------------------------------------------------------------------------

    def events(self, maxsize: int = 256) -> EventStream:
        """Leadership events from now on: `async for event in node.events(): ...`."""
        return self._bus.subscribe(maxsize)

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call listener(event) inside the event loop for every leadership event (it must
        return quickly and not block). Returns a function that removes it."""
        return self._bus.add_listener(listener)

    async def wait_for_leader(self, timeout: float | None = None) -> str:
        """The leader's id, once one is known (Timeout if none in time)."""
        stream = self._bus.subscribe()
        try:
            async with asyncio.timeout(timeout or self.options.apply_timeout_s):
                while (leader := self._running().leader) is None:
                    await stream.next(self.settings.tick_seconds * 2)
                return leader
        except TimeoutError:
            raise Timeout(f"no leader known to {self.id} in time") from None
        finally:
            stream.close()

    async def transfer_leadership(self, target: str, timeout: float | None = None) -> str:
        """Hand leadership to target (leader only); returns the new leader once seen."""
        runtime = self._running()
        try:
            async with asyncio.timeout(timeout or self.options.apply_timeout_s):
                return await runtime.transfer(target)
        except TimeoutError:
            raise Timeout(f"leadership did not move to {target} in time") from None

    # --- membership -----------------------------------------------------------------------

    async def add_learner(self, node_id: str, *, timeout: float | None = None) -> int:
        """Add node_id (a peer outside the configuration) as a learner: the leader replicates
        to it (a snapshot first if the log was compacted), it never votes. Returns the log index
        of the committed change. Works from any node (forwarded to the leader)."""
        change = ConfChange(ConfChangeKind.ADD_LEARNER, node_id)
        return await self._change_members(change, timeout)

    async def promote(self, node_id: str, *, timeout: float | None = None) -> int:
        """Make learner node_id a voter, once it has caught up with the leader's commit index
        (so the change does not stall commits while it catches up)."""
        return await self._change_members(ConfChange(ConfChangeKind.PROMOTE, node_id), timeout)

    async def add_voter(self, node_id: str, *, timeout: float | None = None) -> int:
        """add_learner, then promote: grow the cluster by one voter, one safe step at a time."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout or self.options.apply_timeout_s)
        if node_id not in self.voters:  # this node's view; promote below is idempotent
            await self.add_learner(node_id, timeout=deadline - loop.time())
        return await self.promote(node_id, timeout=max(0.001, deadline - loop.time()))

    async def remove_member(self, node_id: str, *, timeout: float | None = None) -> int:
        """Remove node_id (voter or learner; the leader itself too: it steps down once its
        removal has committed). The removed node keeps running but never campaigns: stop it."""
        return await self._change_members(ConfChange(ConfChangeKind.REMOVE, node_id), timeout)

    async def _change_members(self, change: ConfChange, timeout: float | None) -> int:
        if change.node not in self.settings.peers:
            raise BadRequest(
                f"{change.node!r} is not in peers: every node's peers must hold the address "
                "of every node that may become a member"
            )
        timeout = timeout or self.options.apply_timeout_s

        async def here(runtime: RaftRuntime[Replica, Outcome], attempt: float) -> int:
            try:
                return await self._change_here(change, attempt)
            except (*_RETRYABLE, Timeout) as e:
                raise _Retry(str(e)) from e

        async def there(forward: ForwardClient, leader: NodeId, attempt: float) -> int:
            body = ENCODER.encode(change)
            answer = await _call(forward, leader, MEMBER, body, attempt, write=True)
            return answer.index

        def failed(why: str, _: bool) -> str:
            return (
                f"{self.id}: {change.kind.value} {change.node} not committed within "
                f"{timeout:g}s; it may or may not take effect (asking again is safe) "
                f"(last: {why})"
            )

        return await self._at_leader(timeout, here, there, failed)

    async def _change_here(self, change: ConfChange, timeout: float) -> int:
        """On the leader: propose change through the Ready loop (the runtime's
        change_membership, as the KV server does) and wait until it is applied here; its index.
        NotLeader / ProposalDropped (retry) / BadRequest / Timeout."""
        runtime = self._running()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        raft = runtime.raft
        if not runtime.is_leader:
            raise NotLeader(f"{self.id} is not the leader", raft.leader)
        if already(raft.membership, change):
            # In the leader's latest configuration: done once the entry that made it so (at or
            # before the end of the log) has committed and applied.
            index = raft.last_index
            await self._applied_through(index, deadline)
            return index
        if change.kind is ConfChangeKind.PROMOTE:
            await self._caught_up(change.node, deadline)
        try:
            async with asyncio.timeout(max(0.0, deadline - loop.time())):
                _, index = await runtime.change_membership(change)
        except TimeoutError:
            raise Timeout(f"{change.kind.value} {change.node} not applied in time") from None
        return index

    async def _caught_up(self, node: str, deadline: float) -> None:
        """Wait until learner node's log matches the leader's commit index (leader only)."""
        loop = asyncio.get_running_loop()
        while True:
            runtime = self._running()
            raft = runtime.raft
            if not runtime.is_leader:
                raise NotLeader(f"{self.id} is not the leader", raft.leader)
            if node not in raft.learners:
                raise BadRequest(f"{node} is not a learner (add it as a learner first)")
            match = raft.match_index(node)
            if match is not None and match >= raft.commit_index:
                return
            if loop.time() >= deadline:
                raise Timeout(f"learner {node} has not caught up with the leader yet")
            await asyncio.sleep(self.settings.tick_seconds)

    # --- writes ---------------------------------------------------------------------------

    async def apply(self, command: object, *, timeout: float | None = None) -> Any:
        """Replicate command; once it is committed and applied, the state machine's result
        (decoded as result_type). Raises EncodeError / TooLarge (nothing proposed),
        CommandFailed (applied, but apply raised), NotLeader (forwarding off), Timeout
        (the deadline passed: it may or may not have been applied), NodeStopped."""
        data = encode(command, "the command")
        outcome, index = await self.submit(data, timeout=timeout)
        return self.result(outcome, index, self._results)

    async def submit(self, command: bytes, *, timeout: float | None = None) -> tuple[Outcome, int]:
        """apply() below the codec: an encoded command in, (Outcome, log index) out."""
        if len(command) > MAX_COMMAND_SIZE:
            raise TooLarge(f"command of {len(command)} bytes is over {MAX_COMMAND_SIZE}")
        self._running()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout or self.options.apply_timeout_s)
        session = await self._sessions.current(deadline - loop.time(), "the command")
        while True:
            seq, tried = session.begin(), _Tried()
            try:
                envelope = encode_envelope(session.client_id, seq, session.ack, command)
                outcome, index = await self._replicate(envelope, deadline - loop.time(), tried)
            finally:
                session.finish(seq)
            if outcome.status is not ApplyStatus.SESSION_EXPIRED:
                return outcome, index
            if tried.maybe_applied:
                raise SessionExpired(
                    f"{self.id}: the session expired while an earlier attempt's outcome was "
                    f"unknown: the command may or may not have been applied ({outcome.error})"
                )
            # Refused and never applied: number it again in a new session.
            remaining = max(0.001, deadline - loop.time())
            session = await self._sessions.renew(session, remaining, "the command")

    @property
    def client_id(self) -> str | None:
        """This Node's session id (assigned by the log; None before its first command)."""
        session = self._sessions.session
        return None if session is None else session.client_id

    async def _open_session(self, timeout: float, what: str) -> str:
        """Open a session through the log (an OpenSessionEntry) for `what`; its id. A retry
        after an unknown outcome may open two: the unused one expires like any other."""
        entry = encode_open_session(secrets.token_hex(8))
        try:
            outcome, index = await self._replicate(entry, timeout)
        except Timeout as e:
            raise Timeout(f"{what} was not proposed: no session could be opened ({e})") from None
        return self.result(outcome, index, _SESSION_ID)

    @staticmethod
    def result(outcome: Outcome, index: int, decoder: Decoder[T]) -> T:
        """The caller's view of an Outcome: the decoded result, or the matching error."""
        match outcome.status:
            case ApplyStatus.OK:
                try:
                    return decoder.decode(outcome.result)
                except BadRequest as e:
                    raise CommandFailed(
                        f"applied at index {index}, but {e}",
                        error_type="DecodeError",
                        index=index,
                    ) from None
            case ApplyStatus.BAD_COMMAND:
                raise BadRequest(f"{outcome.error} (nothing was applied)")
            case ApplyStatus.SESSION_EXPIRED:
                raise SessionExpired(outcome.error)
            case _:
                raise CommandFailed(
                    f"{outcome.error_type}: {outcome.error} "
                    f"(the command was applied at index {index})",
                    error_type=outcome.error_type,
                    index=index,
                )

    async def _replicate(
        self, envelope: bytes, timeout: float, tried: _Tried | None = None
    ) -> tuple[Outcome, int]:
        if tried is None:
            tried = _Tried()

        async def here(
            runtime: RaftRuntime[Replica, Outcome], attempt: float
        ) -> tuple[Outcome, int]:
            try:
                async with asyncio.timeout(attempt):
                    return await runtime.propose(envelope)
            except _RETRYABLE as e:
                raise _Retry(str(e)) from e
            except TimeoutError as e:
                tried.maybe_applied = True
                raise _Retry(f"not applied within {attempt:g}s", maybe_applied=True) from e

        async def there(
            forward: ForwardClient, leader: NodeId, attempt: float
        ) -> tuple[Outcome, int]:
            try:
                answer = await _call(forward, leader, PROPOSE, envelope, attempt, write=True)
            except _Retry as e:
                tried.maybe_applied = tried.maybe_applied or e.maybe_applied
                raise
            return _OUTCOME.decode(answer.result), answer.index

        def failed(why: str, maybe_applied: bool) -> str:
            outcome = (
                "it may or may not have been applied" if maybe_applied else "it was not applied"
            )
            return f"{self.id}: no answer within {timeout:g}s, {outcome} (last: {why})"

        return await self._at_leader(timeout, here, there, failed)

    # --- reads ----------------------------------------------------------------------------

    async def read(
        self,
        fn: Callable[[M], T],
        *,
        consistency: Consistency = "linearizable",
        timeout: float | None = None,
    ) -> T:
        """fn(machine), run here once this replica has applied everything committed before
        the call (linearizable: a ReadIndex round confirmed by a quorum, via the leader when
        this node follows; lease: the leader's lease instead of the round; stale: no wait).
        fn runs in the event loop: keep it short, and do not mutate the state machine."""
        if consistency != "stale":
            await self.barrier(lease=consistency == "lease", timeout=timeout)
        return fn(self.machine)

    async def barrier(self, *, lease: bool = False, timeout: float | None = None) -> int:
        """Wait until this replica has applied everything committed before the call (as the
        leader confirms it); returns that index."""
        timeout = timeout or self.options.apply_timeout_s
        deadline = asyncio.get_running_loop().time() + timeout

        async def here(runtime: RaftRuntime[Replica, Outcome], attempt: float) -> int:
            try:
                async with asyncio.timeout(attempt):
                    return await runtime.read_barrier(lease=lease)
            except _RETRYABLE as e:
                raise _Retry(str(e)) from e
            except TimeoutError as e:
                raise _Retry(f"leadership not confirmed within {attempt:g}s") from e

        async def there(forward: ForwardClient, leader: NodeId, attempt: float) -> int:
            body = encode_lease(lease)
            answer = await _call(forward, leader, READ_INDEX, body, attempt, write=False)
            await self._applied_through(answer.index, deadline)
            return answer.index

        def failed(why: str, _: bool) -> str:
            return f"{self.id}: read not confirmed within {timeout:g}s (last: {why})"

        return await self._at_leader(timeout, here, there, failed, deadline=deadline)

    async def _applied_through(self, index: int, deadline: float) -> None:
        await wait_applied(self._running(), index, deadline)

    # --- helpers --------------------------------------------------------------------------

    def _running(self) -> RaftRuntime[Replica, Outcome]:
        rt = self._runtime
        if rt is None or self._stack is None:
            raise NodeStopped(f"node {self.id} is not running (start it first)")
        if not rt.running:
            failure = rt.failed
            raise NodeStopped(
                f"node {self.id} has stopped" + (f" after a failure: {failure}" if failure else "")
            )
        return rt

    async def _at_leader(
        self,
        timeout: float,
        here: Callable[[RaftRuntime[Replica, Outcome], float], Awaitable[T]],
        there: Callable[[ForwardClient, NodeId, float], Awaitable[T]],
        failed: Callable[[str, bool], str],
        *,
        deadline: float | None = None,
    ) -> T:
        """Run a request where the leader is, until it succeeds or the deadline passes: here()
        when this node leads, there() (forwarded) when another does, a wait for an election
        when none is known. Each attempt gets at most attempt_timeout_s; one that raises
        _Retry is tried again after a backoff. Timeout(failed(last reason, maybe applied)) at
        the deadline; NotLeader at once when another node leads and forwarding is off."""
        loop = asyncio.get_running_loop()
        if deadline is None:
            deadline = loop.time() + timeout
        why, maybe_applied = "no leader was known", False
        while (remaining := deadline - loop.time()) > 0:
            runtime = self._running()
            attempt = min(remaining, self.options.attempt_timeout_s)
            leader = runtime.leader
            try:
                if runtime.is_leader:
                    return await here(runtime, attempt)
                if leader is None:
                    await self._leader_change(min(remaining, 0.5))
                    continue
                if self._forward is None:
                    raise NotLeader(f"{self.id} is not the leader; {leader} is", leader)
                return await there(self._forward, leader, attempt)
            except _Retry as e:
                why, maybe_applied = str(e), maybe_applied or e.maybe_applied
            await self._backoff(deadline)
        raise Timeout(failed(why, maybe_applied))

    async def _leader_change(self, timeout: float) -> None:
        stream = self._bus.subscribe()
        try:
            if self._running().leader is None:
                await stream.next(timeout)
        finally:
            stream.close()

    async def _backoff(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        pause = self.settings.tick_seconds * random.uniform(0.5, 1.5)
        await asyncio.sleep(max(0.0, min(pause, deadline - loop.time())))


async def _call(
    forward: ForwardClient, leader: NodeId, op: str, body: bytes, attempt: float, *, write: bool
) -> OpAnswer:
    """One attempt of op at the leader (forward.py). Raises BadRequest / WrongCluster (final),
    else _Retry: maybe applied when a write was sent and its answer lost or unknown."""
    try:
        return await forward.call(leader, op, body, attempt, write=write)
    except (BadRequest, WrongCluster):
        raise
    except (Timeout, ForwardFailed, DiskError) as e:
        raise _Retry(str(e), maybe_applied=write) from e
    except CallerError as e:  # not the leader, dropped, no quorum, stopping: not applied
        raise _Retry(str(e)) from e


__all__ = ["Consistency", "Node", "NodeStatus"]
