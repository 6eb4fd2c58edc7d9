"""Pure pieces of the client: endpoints, sessions, SSE parsing, error mapping, percentiles."""

from __future__ import annotations

import pytest

from raftkv.client import parse_endpoints, resolve_endpoints
from raftkv.client.bench import percentile
from raftkv.client.errors import (
    AnswerVerdict,
    Conflict,
    NotSupported,
    ServerError,
    Unavailable,
    classify,
    error_from_response,
)
from raftkv.client.session import ClientSession
from raftkv.client.sse import SseEvent, SseParser
from raftkv.client.types import decode_value, encode_value
from raftkv.errors import (
    BadRequest,
    DiskFull,
    NoQuorum,
    NotLeader,
    SessionExpired,
    Timeout,
    TooLarge,
)


def test_parse_endpoints_normalizes_and_rejects_garbage() -> None:
    assert parse_endpoints(" http://a:1/, 127.0.0.1:8001,http://a:1 ,") == [
        "http://a:1",
        "http://127.0.0.1:8001",
    ]
    assert parse_endpoints(["https://h:9"]) == ["https://h:9"]
    for bad in ("", " , ", "ftp://x:1", "http://x:1/v1", "http://x:port"):
        with pytest.raises(BadRequest):
            parse_endpoints(bad)


def test_resolve_endpoints_uses_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAFTKV_ENDPOINTS", "http://e:1,http://e:2")
    assert resolve_endpoints() == ["http://e:1", "http://e:2"]
    assert resolve_endpoints("http://x:1") == ["http://x:1"]
    monkeypatch.delenv("RAFTKV_ENDPOINTS")
    with pytest.raises(BadRequest, match="RAFTKV_ENDPOINTS"):
        resolve_endpoints()


def test_session_ack_is_the_lowest_unanswered_seq() -> None:
    s = ClientSession("7-abc")
    assert s.ack == 1
    a, b, c = s.begin(), s.begin(), s.begin()
    assert (a, b, c, s.ack) == (1, 2, 3, 1)
    s.finish(b)
    assert s.ack == 1
    s.finish(a)
    assert s.ack == 3
    s.finish(c)
    assert s.ack == 4
    h = s.headers(4)
    assert h == {"X-Raftkv-Client": "7-abc", "X-Raftkv-Seq": "4", "X-Raftkv-Ack": "4"}


def test_sse_parser() -> None:
    p = SseParser()
    lines = [": keepalive", "", "event: put", "id: 7", 'data: {"a":', "data: 1}", "", "data: x", ""]
    events = [e for line in lines if (e := p.feed_line(line)) is not None]
    assert events == [SseEvent("put", '{"a":\n1}', "7"), SseEvent("message", "x", "7")]


@pytest.mark.parametrize(
    ("status", "code", "kind", "verdict"),
    [
        (400, "bad_request", BadRequest, AnswerVerdict.FINAL),
        (409, "conflict", Conflict, AnswerVerdict.FINAL),
        (410, "session_expired", SessionExpired, AnswerVerdict.FINAL),  # for the attempt
        (413, "too_large", TooLarge, AnswerVerdict.FINAL),
        (501, "not_implemented", NotSupported, AnswerVerdict.FINAL),
        (502, "forward_failed", ServerError, AnswerVerdict.UNKNOWN),
        (503, "no_leader", NotLeader, AnswerVerdict.RETRY),
        (503, "no_quorum", NoQuorum, AnswerVerdict.RETRY),
        # the node stopped on a disk failure, maybe after sending the write to its followers
        (503, "disk_error", Unavailable, AnswerVerdict.UNKNOWN),
        (507, "insufficient_storage", DiskFull, AnswerVerdict.FINAL),  # refused: not applied
        (504, "timeout", Timeout, AnswerVerdict.UNKNOWN),
        (500, "internal", ServerError, AnswerVerdict.FINAL),
    ],
)
def test_error_mapping(
    status: int, code: str, kind: type[Exception], verdict: AnswerVerdict
) -> None:
    body = f'{{"error": "{code}", "message": "m {code}", "leader": "n2"}}'.encode()
    err = error_from_response(status, body, "http://h:1")
    assert isinstance(err, kind)
    assert f"m {code}" in str(err)
    assert classify(status, code) is verdict


def test_error_mapping_tolerates_non_json() -> None:
    err = error_from_response(502, b"<html>bad gateway</html>", "http://h:1")
    assert isinstance(err, ServerError) and "bad gateway" in str(err)


def test_value_encoding_round_trips() -> None:
    for value in (b"", b"text", "h\u00e9".encode(), b"\xff\x00"):
        assert decode_value(encode_value(value)) == value


def test_percentile_nearest_rank() -> None:
    data = [float(i) for i in range(1, 101)]
    assert percentile(data, 50) == 50.0
    assert percentile(data, 99) == 99.0
    assert percentile(data, 99.9) == 100.0
    assert percentile([], 50) == 0.0
    assert percentile([3.0], 99.9) == 3.0
