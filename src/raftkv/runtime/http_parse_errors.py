"""aiohttp's own answers to malformed HTTP (bad request line, header, length...) as raftkv JSON.

aiohttp answers a request its parser refuses with a text/plain 400 and logs a traceback at
ERROR level for each one, which lets any client flood the log. JsonErrorHandler answers
{"error": "bad_request", "message": ...} like every other raftkv error, logs refused input at
DEBUG, and keeps ERROR logs for real 500s. The connection guard (conn_guard.py) gives every
aiohttp connection this class.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from aiohttp import web_protocol
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from raftkv.runtime.http_errors import error_response

log = logging.getLogger("raftkv.http")
MAX_MESSAGE = 300


class JsonErrorHandler(web_protocol.RequestHandler):
    __slots__ = ()  # same layout as RequestHandler, so a handler can be switched to this class

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> StreamResponse:
        if request.writer.output_size > 0:
            raise ConnectionError("an answer was sent already; the connection is broken")
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "error"
        if status >= 500:
            log.error("error handling a request from %s", request.remote, exc_info=exc)
            text = phrase if status == 500 else (message or phrase)
        else:
            log.debug("refused malformed HTTP from %s: %s", request.remote, message or exc)
            text = " ".join((message or str(exc or "") or phrase).split())[:MAX_MESSAGE]
            text = f"malformed HTTP request: {text}"
        code = "bad_request" if status == 400 else phrase.lower().replace(" ", "_")
        resp = error_response(status, code, text)
        resp.force_close()
        return resp


def use_json_errors(protocol: object) -> None:
    """Make an aiohttp RequestHandler answer parser errors as JSON (others are left alone)."""
    if type(protocol) is web_protocol.RequestHandler:
        protocol.__class__ = JsonErrorHandler
