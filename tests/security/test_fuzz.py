"""Fuzzing a live node: random and mutated HTTP requests and peer frames never crash it, never
change its state when they carry no valid write credential, and get a clear 4xx error.

RAFTKV_FUZZ_EXAMPLES sets the examples per test (40 in `make test`; `make fuzz` runs thousands).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raftkv.core.messages import AppendEntries, RequestVote
from raftkv.core.types import Entry, EntryKind
from raftkv.kv.commands import Put, encode_command
from raftkv.wire import encode_handshake, encode_messages

from .fuzz_node import EXAMPLES, LiveNode, live_node
from .secure import TOKENS

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=EXAMPLES <= 100,  # `make test` runs the same examples every time
)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    root: Path = tmp_path_factory.mktemp("fuzz")
    with live_node(
        root, max_key_size=256, max_value_size=4096, security={"read_timeout_s": 0.3}
    ) as n:
        yield n


# --- HTTP ------------------------------------------------------------------------------------

METHODS = [b"GET", b"PUT", b"POST", b"DELETE", b"HEAD", b"PATCH", b"OPTIONS", b"G\x00T", b""]
PATHS = [
    b"/v1/kv/a",
    b"/v1/kv/a/b",
    b"/v1/kv/",
    b"/v1/kv/%ff%fe",
    b"/v1/kv/" + b"k" * 300,
    b"/v1/txn",
    b"/v1/sessions",
    b"/v1/watch?prefix=a&from_revision=-1",
    b"/v1/status",
    b"/v1/members",
    b"/v1/members/n1",
    b"/v1/leader/transfer",
    b"/v1/debug/net",
    b"/metrics",
    b"/healthz",
    b"/../../etc/passwd",
    b"*",
    b"/v1/kv/a?prev_revision=x&consistency=bogus",
]
CREDENTIALS = [
    b"",
    b"Authorization: Bearer not-a-token-not-a-token\r\n",
    b"Authorization: Basic YWRtaW46YWRtaW4=\r\n",
    b"Authorization: Bearer\r\n",
    b"Authorization: " + b"A" * 9000 + b"\r\n",
    b"X-Raftkv-Identity: admin mallory\r\n",
    f"Authorization: Bearer {TOKENS['read']}\r\n".encode(),  # may read, never write
]
BODIES = [
    b"",
    b"value",
    b'{"compare":[],"success":[{"put":{"key":"a","value":"x"}}],"failure":[]}',
    b'{"to":"n1"}',
    b'{"isolate":true}',
    b"\x00\xff" * 100,
    b"v" * 5000,
]


@st.composite
def raw_requests(draw: st.DrawFn, credentials: list[bytes]) -> bytes:
    method = draw(st.sampled_from(METHODS))
    path = draw(st.sampled_from(PATHS) | st.binary(max_size=40).map(lambda b: b"/v1/kv/" + b))
    body = draw(st.sampled_from(BODIES) | st.binary(max_size=300))
    cred = draw(st.sampled_from(credentials))
    length = draw(st.sampled_from([str(len(body)).encode(), b"-1", b"99999999999", b"abc", b"0"]))
    extra = draw(
        st.lists(
            st.sampled_from(
                [
                    b"Transfer-Encoding: chunked\r\n",
                    b"Expect: 100-continue\r\n",
                    b"Connection: close\r\n",
                    b"X-Raftkv-Client: c\r\nX-Raftkv-Seq: x\r\n",
                    b"Content-Type: application/json\r\n",
                    b"Bad Header\r\n",
                    b" folded\r\n",
                ]
            ),
            max_size=3,
        )
    )
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1x"]))
    data = (
        method
        + b" "
        + path
        + b" "
        + version
        + b"\r\nHost: fuzz\r\n"
        + cred
        + b"".join(extra)
        + b"Content-Length: "
        + length
        + b"\r\n\r\n"
        + body
    )
    # Byte-level mutations of the whole request.
    for _ in range(draw(st.integers(0, 3))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        match draw(st.sampled_from(["flip", "cut", "insert", "delete"])):
            case "flip":
                data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
            case "cut":
                data = data[:at]
            case "insert":
                data = data[:at] + draw(st.binary(min_size=1, max_size=20)) + data[at:]
            case "delete":
                data = data[:at] + data[at + 1 :]
    return data


@FUZZ
@given(raw_requests(CREDENTIALS))
def test_unauthenticated_fuzzed_requests_change_nothing(node: LiveNode, data: bytes) -> None:
    before = node.state()
    answer = node.send_http(data)
    if answer.status is not None:  # 2xx: a read with the read token
        assert answer.status < 500, (answer.status, answer.body[:200], data[:300])
        answer.check_clear_error()
    assert node.alive()
    assert node.state() == before, data[:300]


WRITE = [f"Authorization: Bearer {TOKENS['admin']}\r\n".encode()]


@FUZZ
@given(raw_requests(WRITE))
def test_authenticated_fuzzed_requests_never_get_a_server_error(
    node: LiveNode, data: bytes
) -> None:
    answer = node.send_http(data)
    if answer.status is not None:
        # 503 is a definite "cannot now" (a one-node leader has no one to hand over to).
        assert answer.status < 500 or answer.status == 503, (answer.status, answer.body[:200])
        answer.check_clear_error()
    assert node.alive()


# --- peer frames -------------------------------------------------------------------------------

_ENTRY = Entry(99, 1, EntryKind.NORMAL, encode_command(Put("fuzz", b"x", None), None))
VALID_FRAMES = [
    encode_handshake("raftkv", "n9"),
    encode_handshake("other-cluster", "n1"),
    encode_messages([RequestVote(99, "n9", "n1", last_log_index=99, last_log_term=99)]),
    encode_messages(
        [
            AppendEntries(
                99, "n9", "n1", prev_log_index=0, prev_log_term=0, entries=(_ENTRY,), commit=1
            )
        ]
    ),
]


@st.composite
def peer_streams(draw: st.DrawFn) -> bytes:
    frames = draw(st.lists(st.sampled_from(VALID_FRAMES), min_size=1, max_size=3))
    data = b"".join(frames)
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, max(0, len(data) - 1)))
        match draw(st.sampled_from(["flip", "cut", "insert", "garbage"])):
            case "flip" if data:
                data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
            case "cut":
                data = data[:at]
            case "insert":
                data = data[:at] + draw(st.binary(min_size=1, max_size=16)) + data[at:]
            case _:
                data = draw(st.binary(max_size=64))
    return data


@FUZZ
@given(peer_streams())
def test_fuzzed_peer_frames_are_refused_and_change_nothing(node: LiveNode, data: bytes) -> None:
    """Only a handshake from a configured peer of this cluster is answered; nothing else (an
    unknown node, another cluster, messages without a handshake, garbage) reaches the core."""
    before = node.state()
    reply = node.send_raft(data)
    assert reply == b"", reply[:100]
    assert node.alive()
    assert node.state() == before
