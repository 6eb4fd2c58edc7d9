"""Pending (runtime/http_types.py): the driver's Waiter for an HTTP answer, without a future."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from raftkv.errors import NotLeader
from raftkv.runtime.http_types import Pending, Response


def pending() -> Pending:
    return Pending(
        lambda result: Response(repr(result).encode()),
        timeout=1.0,
        on_timeout=lambda: TimeoutError("late"),
        otherwise=lambda error: None,
    )


class Heard:
    def __init__(self) -> None:
        self.calls: list[tuple[Pending, Any, BaseException | None]] = []

    def __call__(self, p: Pending, result: Any, error: BaseException | None) -> None:
        self.calls.append((p, result, error))


def test_an_outcome_reaches_the_listener_once() -> None:
    p, heard = pending(), Heard()
    p.listen(heard)
    assert not p.done()
    p.set_result((1, 2))
    p.set_result((3, 4))  # a waiter resolves once
    p.set_exception(NotLeader("late", None))
    assert heard.calls == [(p, (1, 2), None)]
    assert p.done()


def test_an_outcome_before_the_listener_is_kept_until_it_listens() -> None:
    # A stopped driver fails the waiter inside submit(), before the server listens.
    p, heard = pending(), Heard()
    error = NotLeader("not the leader", None)
    p.set_exception(error)
    assert p.done() and heard.calls == []
    p.listen(heard)
    assert heard.calls == [(p, None, error)]


def test_a_cancelled_pending_is_done_and_hears_nothing() -> None:
    # The driver skips a waiter that is done(): a late or abandoned request stops waiting.
    p, heard = pending(), Heard()
    p.listen(heard)
    p.cancel()
    assert p.done()
    p.set_result((1, 2))
    assert heard.calls == []


def test_a_failing_listener_never_reaches_the_driver(caplog: pytest.LogCaptureFixture) -> None:
    p = pending()

    def broken(_: Pending, result: Any, error: BaseException | None) -> None:
        raise RuntimeError("the answer could not be written")

    p.listen(broken)
    with caplog.at_level(logging.ERROR, logger="raftkv.http"):
        p.set_result((1, 2))  # the driver's call returns normally
    assert "answering an HTTP request failed" in caplog.text
    assert "the answer could not be written" in caplog.text
