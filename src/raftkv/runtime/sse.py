"""Server-sent events: open a stream (under the stream budget), write events and keep-alives.

A stream holds a slot of the node's stream budget (--max-streams, admission.py) until it
ends, and its connection closes with it. A client that stops reading must not hold its slot
forever: a write it does not take within write_timeout_s (the idle timeout) aborts the
connection, which ends the stream.
"""

from __future__ import annotations

import asyncio

from raftkv.runtime.admission import take_stream_slot
from raftkv.runtime.http_server import StreamedResponse
from raftkv.runtime.http_types import Request, StreamSink

KEEPALIVE_S = 15.0
HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


class Stream:
    def __init__(self, sink: StreamSink, write_timeout_s: float) -> None:
        self._sink = sink
        self._timeout = write_timeout_s
        self.resp = StreamedResponse()  # what the handler returns once the stream ends

    async def send(self, data: str, *, event: str | None = None, id: int | None = None) -> None:
        """One event; data must not contain newlines (compact JSON never does)."""
        head = ""
        if event is not None:
            head += f"event: {event}\n"
        if id is not None:
            head += f"id: {id}\n"
        await self.write(f"{head}data: {data}\n\n".encode())

    async def keepalive(self) -> None:
        await self.write(b": keepalive\n\n")

    async def write(self, chunk: bytes) -> None:
        """Raises ConnectionError once the client is gone or stopped reading."""
        try:
            async with asyncio.timeout(self._timeout):
                await self._sink.write_stream(chunk)
        except TimeoutError:
            self._sink.abort()  # close() would wait for the unread buffer to drain
            raise ConnectionResetError(
                f"the client took no stream data for {self._timeout:g}s"
            ) from None


def open_stream(request: Request, write_timeout_s: float) -> Stream:
    """Start an SSE answer, or TooManyStreams (503) when the stream budget is full."""
    take_stream_slot(request.conn)
    sink = request.sink
    if sink is None:
        raise ConnectionResetError("this request has no connection to stream to")
    sink.start_stream(200, HEADERS)
    return Stream(sink, write_timeout_s)
