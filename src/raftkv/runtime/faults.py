"""Injected network faults (POST /v1/debug/net): what this node drops, delays, loses or
duplicates.

A blocked peer's traffic is dropped in both directions (outbound when queued and again when
written, inbound when decoded), and requests are not forwarded to it over HTTP either, so an
isolated node behaves as if its network cable were cut, except that clients still reach it.
"loss" and "duplicate" act on the Raft messages this node sends: each is dropped, or sent
twice, with the given probability (what a lossy link does to Raft, above TCP).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from raftkv.errors import BadRequest

MAX_DELAY_MS = 60_000.0


@dataclass(slots=True)
class NetFaults:
    isolate: bool = False
    drop: frozenset[str] = field(default_factory=frozenset)
    delay_ms: float = 0.0
    loss: float = 0.0  # probability that an outbound message is dropped
    duplicate: float = 0.0  # probability that an outbound message is sent twice
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def blocks(self, peer: str) -> bool:
        return self.isolate or peer in self.drop

    def loses(self) -> bool:
        return self.loss > 0.0 and self.rng.random() < self.loss

    def duplicates(self) -> bool:
        return self.duplicate > 0.0 and self.rng.random() < self.duplicate

    @property
    def delay_seconds(self) -> float:
        return self.delay_ms / 1000.0

    def apply(self, body: object, peers: frozenset[str]) -> None:
        """Apply a request body: {"heal": true} clears everything first; then "isolate" (bool),
        "drop_to" (list of peer ids, replacing the set), "delay_ms" (number), "loss" and
        "duplicate" (probabilities, 0..1) are set."""
        if not isinstance(body, dict) or not body:
            raise BadRequest(
                'expected a JSON object like {"isolate": true}, {"drop_to": ["n2"]}, '
                '{"delay_ms": 300}, {"loss": 0.2}, {"duplicate": 0.1} or {"heal": true}'
            )
        unknown = set(body) - {"heal", "isolate", "drop_to", "delay_ms", "loss", "duplicate"}
        if unknown:
            raise BadRequest(f"unknown fault field(s): {', '.join(sorted(unknown))}")
        isolate, drop, delay = self.isolate, self.drop, self.delay_ms
        loss, duplicate = self.loss, self.duplicate
        if _flag(body, "heal"):
            isolate, drop, delay, loss, duplicate = False, frozenset(), 0.0, 0.0, 0.0
        if "isolate" in body:
            isolate = _flag(body, "isolate")
        if "drop_to" in body:
            drop = _peer_set(body["drop_to"], peers)
        if "delay_ms" in body:
            delay = _delay(body["delay_ms"])
        if "loss" in body:
            loss = _probability(body, "loss")
        if "duplicate" in body:
            duplicate = _probability(body, "duplicate")
        self.isolate, self.drop, self.delay_ms = isolate, drop, delay
        self.loss, self.duplicate = loss, duplicate

    def as_json(self) -> dict[str, Any]:
        return {
            "isolate": self.isolate,
            "drop_to": sorted(self.drop),
            "delay_ms": self.delay_ms,
            "loss": self.loss,
            "duplicate": self.duplicate,
        }


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


def _probability(body: dict[str, Any], name: str) -> float:
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise BadRequest(f'"{name}" must be a probability in 0..1')
    return float(value)
