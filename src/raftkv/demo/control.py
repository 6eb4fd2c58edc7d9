"""What the page's buttons do, on the real cluster: client requests through the nodes' HTTP
API, network faults through POST /v1/debug/net, crashes and restarts through the supervisor.

Every action is announced on the event stream ("kind": "demo") when it starts and when the
cluster answered, so the page narrates what the cluster actually said, including failures.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from raftkv.demo.broker import EventBroker
from raftkv.demo.supervisor import DemoError

KEY = "X"
CONTROL_TIMEOUT_S = 3.0
NET_ACTIONS = ("isolate_leader", "isolate_follower", "isolate", "split", "heal")


class Processes(Protocol):
    """The node processes (the Supervisor; a fake in the unit tests)."""

    def node_ids(self) -> list[str]: ...
    def http_url(self, node_id: str) -> str: ...
    def is_running(self, node_id: str) -> bool: ...
    def pid(self, node_id: str) -> int | None: ...
    async def crash(self, node_id: str) -> int: ...
    async def start(self, node_id: str) -> int: ...


@dataclass(frozen=True, slots=True)
class Timing:
    """The cluster's pace, for the page's animation and the slow-motion slider."""

    slow: float
    tick_ms: float = 50.0
    election_ticks: int = 10
    request_timeout_s: float = 5.0

    @property
    def tick_effective_ms(self) -> float:
        return self.tick_ms * self.slow

    @property
    def message_delay_ms(self) -> float:
        """The delay every peer message gets from --slow (see NodeSettings)."""
        return (self.slow - 1.0) * self.tick_ms / 2.0

    @property
    def election_timeout_ms(self) -> float:
        return self.election_ticks * self.tick_effective_ms

    @property
    def base_transit_ms(self) -> float:
        """What slow motion x1 means: the --slow delay, or half a tick at full speed."""
        return max(self.message_delay_ms, self.tick_effective_ms / 2.0)

    @property
    def max_extra_delay_ms(self) -> float:
        """Extra delay kept well under the election timeout, so elections still finish."""
        return self.election_timeout_ms / 4.0

    def extra_delay_for(self, factor: float) -> float:
        extra = (factor - 1.0) * self.base_transit_ms
        return round(max(0.0, min(extra, self.max_extra_delay_ms)), 1)


@dataclass(slots=True)
class NetState:
    isolated: set[str] = field(default_factory=set)
    delay_ms: float = 0.0
    factor: float = 1.0

    def body_for(self, node_id: str) -> dict[str, Any]:
        return {"heal": True, "isolate": node_id in self.isolated, "delay_ms": self.delay_ms}


class ActionFailed(DemoError):
    """An action was refused before reaching the cluster (HTTP 409 to the page)."""


class ClusterControl:
    def __init__(
        self,
        procs: Processes,
        broker: EventBroker,
        session: aiohttp.ClientSession,
        timing: Timing,
    ) -> None:
        self.procs = procs
        self.broker = broker
        self.session = session
        self.timing = timing
        self.net = NetState()
        self._seq = 0
        self._background: set[asyncio.Task[None]] = set()

    # --- what the page sees --------------------------------------------------------------

    def cluster_json(self) -> dict[str, Any]:
        t = self.timing
        nodes = [
            {
                "id": n,
                "http": self.procs.http_url(n),
                "pid": self.procs.pid(n),
                "running": self.procs.is_running(n),
                "isolated": n in self.net.isolated,
            }
            for n in self.procs.node_ids()
        ]
        return {
            "nodes": nodes,
            "key": KEY,
            "slow": t.slow,
            "tick_ms": t.tick_effective_ms,
            "message_delay_ms": t.message_delay_ms,
            "base_transit_ms": t.base_transit_ms,
            "election_timeout_ms": t.election_timeout_ms,
            "request_timeout_s": t.request_timeout_s,
            "extra_delay_ms": self.net.delay_ms,
            "max_extra_delay_ms": t.max_extra_delay_ms,
            "factor": self.net.factor,
        }

    def announce_cluster(self) -> None:
        self.broker.publish("cluster", **self.cluster_json())

    def leader(self) -> str | None:
        """The leader of the highest term among the nodes whose stream is live."""
        best: tuple[int, str] | None = None
        for node_id, st in self.broker.states.items():
            if not self.broker.connected.get(node_id) or not self.procs.is_running(node_id):
                continue
            if st.get("role") == "leader":
                term = int(st.get("term", 0))
                if best is None or term > best[0]:
                    best = (term, node_id)
        return None if best is None else best[1]

    # --- client requests -----------------------------------------------------------------

    async def set_value(self, value: str, via: str | None) -> dict[str, Any]:
        if not value or len(value) > 64:
            raise ActionFailed("the value must be 1 to 64 characters")
        target = self._target(via)
        url = f"{self.procs.http_url(target)}/v1/kv/{KEY}"
        return await self._request("SET", target, "PUT", url, value.encode(), value=value)

    async def read_value(self, via: str | None) -> dict[str, Any]:
        target = self._target(via)
        url = f"{self.procs.http_url(target)}/v1/kv/{KEY}?consistency=linearizable"
        return await self._request("READ", target, "GET", url, None)

    async def transfer(self, to: str | None) -> dict[str, Any]:
        if to is not None:
            self._check_node(to)
        leader = self.leader()
        target = leader if leader is not None else self._any_running()
        url = f"{self.procs.http_url(target)}/v1/leader/transfer"
        body = json.dumps({} if to is None else {"to": to}).encode()
        return await self._request("TRANSFER", target, "POST", url, body, to=to)

    async def _request(
        self, op: str, target: str, method: str, url: str, body: bytes | None, **extra: Any
    ) -> dict[str, Any]:
        self._seq += 1
        rid = self._seq
        self.broker.publish("client", id=rid, op=op, phase="sent", node=target, key=KEY, **extra)
        started = time.monotonic()
        timeout = aiohttp.ClientTimeout(total=self.timing.request_timeout_s + 3.0)
        result: dict[str, Any] = {"id": rid, "op": op, "node": target, "key": KEY, **extra}
        try:
            async with self.session.request(method, url, data=body, timeout=timeout) as resp:
                payload = await resp.read()
                result["status"] = resp.status
                result.update(_answer(op, resp.status, payload, resp.headers))
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            result.update(
                status=0,
                ok=False,
                error="unreachable",
                message=f"{target} did not answer: {type(e).__name__} {e}".strip(),
            )
        result["ms"] = round((time.monotonic() - started) * 1000.0, 1)
        self.broker.publish("client", phase="ok" if result["ok"] else "error", **result)
        return result

    # --- network faults ------------------------------------------------------------------

    async def net_action(self, action: str, node: str | None) -> dict[str, Any]:
        if action not in NET_ACTIONS:
            raise ActionFailed(f"unknown network action {action!r}: one of {NET_ACTIONS}")
        running = [n for n in self.procs.node_ids() if self.procs.is_running(n)]
        if action == "heal":
            self.net.isolated.clear()
            text = "network healed: every node can reach every other"
        elif action == "split":
            self.net.isolated = set(self.procs.node_ids())
            text = "network split: every node is cut off from every other"
        else:
            target = self._fault_target(action, node, running)
            self.net.isolated.add(target)
            text = f"{target} isolated: its Raft traffic is cut both ways (clients still reach it)"
            node = target
        errors = await self._push_net(running)
        self.broker.publish(
            "net",
            action=action,
            node=node,
            text=text,
            errors=errors,
            isolated=sorted(self.net.isolated),
        )
        self.announce_cluster()
        return {
            "ok": not errors,
            "action": action,
            "node": node,
            "text": text,
            "isolated": sorted(self.net.isolated),
            "errors": errors,
        }

    async def set_factor(self, factor: float) -> dict[str, Any]:
        if not 1.0 <= factor <= 4.0:
            raise ActionFailed("the slow-motion factor must be between 1 and 4")
        self.net.factor = factor
        self.net.delay_ms = self.timing.extra_delay_for(factor)
        running = [n for n in self.procs.node_ids() if self.procs.is_running(n)]
        errors = await self._push_net(running)
        self.announce_cluster()
        return {
            "ok": not errors,
            "factor": factor,
            "extra_delay_ms": self.net.delay_ms,
            "errors": errors,
        }

    async def reapply_net(self, node_id: str) -> None:
        """A restarted node forgot its faults: give it the current ones."""
        if self.net.isolated or self.net.delay_ms:
            await self._push_net([node_id])

    def _fault_target(self, action: str, node: str | None, running: list[str]) -> str:
        if action == "isolate":
            if node is None:
                raise ActionFailed("which node? pass node")
            self._check_node(node)
            return node
        leader = self.leader()
        if action == "isolate_leader":
            if leader is None:
                raise ActionFailed("no leader right now (an election may be running): wait")
            return leader
        followers = [n for n in running if n != leader and n not in self.net.isolated]
        if node is not None:
            self._check_node(node)
            followers = [node]
        if not followers:
            raise ActionFailed("no connected follower to isolate")
        return followers[0]

    async def _push_net(self, nodes: list[str]) -> dict[str, str]:
        async def push(n: str) -> tuple[str, str | None]:
            url = f"{self.procs.http_url(n)}/v1/debug/net"
            timeout = aiohttp.ClientTimeout(total=CONTROL_TIMEOUT_S)
            try:
                async with self.session.post(
                    url, json=self.net.body_for(n), timeout=timeout
                ) as resp:
                    if resp.status == 200:
                        return n, None
                    return n, f"HTTP {resp.status}: {(await resp.text())[:200]}"
            except (aiohttp.ClientError, OSError, TimeoutError) as e:
                return n, f"unreachable ({type(e).__name__})"

        results = await asyncio.gather(*(push(n) for n in nodes))
        return {n: err for n, err in results if err is not None}

    # --- processes -----------------------------------------------------------------------

    async def crash(self, node_id: str) -> dict[str, Any]:
        self._check_node(node_id)
        if not self.procs.is_running(node_id):
            raise ActionFailed(f"{node_id} is not running")
        pid = await self.procs.crash(node_id)
        text = f"{node_id} crashed: kill -9 of pid {pid} (no shutdown, no flush)"
        self.broker.publish("process", node=node_id, state="crashed", pid=pid, text=text)
        self.announce_cluster()
        return {"ok": True, "node": node_id, "pid": pid, "text": text}

    async def restart(self, node_id: str) -> dict[str, Any]:
        self._check_node(node_id)
        if self.procs.is_running(node_id):
            raise ActionFailed(f"{node_id} is already running")
        pid = await self.procs.start(node_id)
        text = f"{node_id} restarting (pid {pid}) from its data directory"
        self.broker.publish("process", node=node_id, state="started", pid=pid, text=text)
        self.announce_cluster()
        task = asyncio.create_task(self._after_restart(node_id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return {"ok": True, "node": node_id, "pid": pid, "text": text}

    async def _after_restart(self, node_id: str) -> None:
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline and self.procs.is_running(node_id):
            if self.broker.connected.get(node_id):
                await self.reapply_net(node_id)
                return
            await asyncio.sleep(0.1)

    def process_exited(self, node_id: str, code: int, expected: bool) -> None:
        if not expected:
            self.broker.publish(
                "process",
                node=node_id,
                state="exited",
                code=code,
                text=f"{node_id} exited on its own with code {code} (see its node.log)",
            )
            self.announce_cluster()

    # --- helpers -------------------------------------------------------------------------

    def _target(self, via: str | None) -> str:
        if via not in (None, "", "auto"):
            assert via is not None
            self._check_node(via)
            if not self.procs.is_running(via):
                raise ActionFailed(f"{via} is down: restart it or send via another node")
            return via
        leader = self.leader()
        return leader if leader is not None else self._any_running()

    def _any_running(self) -> str:
        for n in self.procs.node_ids():
            if self.procs.is_running(n):
                return n
        raise ActionFailed("every node is down: restart one")

    def _check_node(self, node_id: str) -> None:
        if node_id not in self.procs.node_ids():
            raise ActionFailed(f"no node {node_id!r}")


def _answer(op: str, status: int, payload: bytes, headers: Any) -> dict[str, Any]:
    """The page's view of one HTTP answer from a node."""
    text = payload.decode("utf-8", "replace")
    if op == "READ" and status == 200:
        return {"ok": True, "value": text, "revision": _int(headers.get("X-Raftkv-Revision"))}
    if op == "READ" and status == 404:
        return {"ok": True, "value": None, "message": f"{KEY} is not set yet"}
    try:
        doc = json.loads(text) if text else {}
    except ValueError:
        doc = {"message": text[:300]}
    if not isinstance(doc, dict):
        doc = {"message": str(doc)[:300]}
    if 200 <= status < 300:
        return {
            "ok": True,
            **{k: v for k, v in doc.items() if k in ("revision", "index", "leader", "term")},
        }
    return {
        "ok": False,
        "error": str(doc.get("error", f"http_{status}")),
        "message": str(doc.get("message", text[:300])),
    }


def _int(text: str | None) -> int | None:
    try:
        return None if text is None else int(text)
    except ValueError:
        return None
