"""Server-sent events: open a stream, write events and keep-alive comments."""

from __future__ import annotations

from aiohttp import web

KEEPALIVE_S = 15.0


async def open_stream(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await resp.prepare(request)
    return resp


async def send(
    resp: web.StreamResponse, data: str, *, event: str | None = None, id: int | None = None
) -> None:
    """One event; data must not contain newlines (compact JSON never does)."""
    head = ""
    if event is not None:
        head += f"event: {event}\n"
    if id is not None:
        head += f"id: {id}\n"
    await resp.write(f"{head}data: {data}\n\n".encode())


async def keepalive(resp: web.StreamResponse) -> None:
    await resp.write(b": keepalive\n\n")
