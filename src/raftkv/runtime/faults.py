"""Injected network faults (POST /v1/debug/net): what this node drops or delays.

A blocked peer's traffic is dropped in both directions (outbound when queued and again when
written, inbound when decoded), and requests are not forwarded to it over HTTP either, so an
isolated node behaves as if its network cable were cut, except that clients still reach it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from raftkv.errors import BadRequest

MAX_DELAY_MS = 60_000.0


@dataclass(slots=True)
class NetFaults:
    isolate: bool = False
    drop: frozenset[str] = field(default_factory=frozenset)
    delay_ms: float = 0.0

    def blocks(self, peer: str) -> bool:
        return self.isolate or peer in self.drop

    @property
    def delay_seconds(self) -> float:
        return self.delay_ms / 1000.0

    def apply(self, body: object, peers: frozenset[str]) -> None:
        """Apply a request body: {"heal": true} clears everything first; then "isolate" (bool),
        "drop_to" (list of peer ids, replacing the set) and "delay_ms" (number) are set."""
        if not isinstance(body, dict) or not body:
            raise BadRequest(
                'expected a JSON object like {"isolate": true}, {"drop_to": ["n2"]}, '
                '{"delay_ms": 300} or {"heal": true}'
            )
        unknown = set(body) - {"heal", "isolate", "drop_to", "delay_ms"}
        if unknown:
            raise BadRequest(f"unknown fault field(s): {', '.join(sorted(unknown))}")
        isolate, drop, delay = self.isolate, self.drop, self.delay_ms
        if _flag(body, "heal"):
            isolate, drop, delay = False, frozenset(), 0.0
        if "isolate" in body:
            isolate = _flag(body, "isolate")
        if "drop_to" in body:
            drop = _peer_set(body["drop_to"], peers)
        if "delay_ms" in body:
            delay = _delay(body["delay_ms"])
        self.isolate, self.drop, self.delay_ms = isolate, drop, delay

    def as_json(self) -> dict[str, Any]:
        return {"isolate": self.isolate, "drop_to": sorted(self.drop), "delay_ms": self.delay_ms}


def _flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise BadRequest(f'"{name}" must be true or false')
    return value


def _peer_set(value: object, peers: frozenset[str]) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise BadRequest('"drop_to" must be a list of peer ids')
    unknown = set(value) - peers
    if unknown:
        raise BadRequest(f"unknown peer(s) in drop_to: {', '.join(sorted(unknown))}")
    return frozenset(value)


def _delay(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest('"delay_ms" must be a number')
    if not 0 <= value <= MAX_DELAY_MS:
        raise BadRequest(f'"delay_ms" must be in 0..{MAX_DELAY_MS:g}')
    return float(value)
