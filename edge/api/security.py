"""Access control for the API: token, host and origin checks, safe names, response headers.

Guarantees:
- ``AccessGuard`` is one ASGI middleware in front of every HTTP and WebSocket request.
  The token is given as ``Authorization: Bearer TOKEN`` or ``?token=TOKEN`` (browsers
  cannot set headers on WebSockets or <img>); comparison is constant-time.
- Writes (every POST, PUT, PATCH, DELETE: jobs, cancels, any future topic or event change)
  need the token on every bind, loopback included; without a token configured they are
  refused (401), never open.
- Reads (GET, HEAD, the live WebSocket, ``/metrics``) are open without the token only on a
  loopback bind with ``api.open_loopback_reads`` (the default; ``open_reads`` here);
  otherwise every path under ``/api`` and ``/metrics`` needs it. Public whatever the mode:
  the dashboard's static files, ``/healthz``, ``/readyz`` and the OpenAPI schema/docs,
  none of which carries vehicle data.
- A request served without a valid token in the open-reads mode must name a loopback host
  (or one of ``allowed_hosts``) in its Host header: a web page cannot reach the API
  through DNS rebinding. In both modes a cross-origin ``Origin`` on a WebSocket or on a
  state-changing request is refused (no cross-site WebSocket hijacking or CSRF).
- Refusals are JSON ``{"error", "message"}`` (HTTP) or a close with code 1008 (WebSocket).
- Tokens never reach the logs: the access log line has method, path, status and time (no
  query), and ``RedactTokens`` masks ``token=…`` in uvicorn's own lines (it logs WebSocket
  paths with their query string).
- Topic names in paths go through ``broker.storage.layout.validate_topic_name``; no
  endpoint takes a file path.
"""

from __future__ import annotations

import hmac
import logging
import re
import time
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Path, Request
from fastapi.security import APIKeyQuery, HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import Headers, QueryParams
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from broker.errors import BrokerError
from broker.storage.layout import MAX_TOPIC_NAME_LENGTH, validate_topic_name

from .config import is_loopback
from .errors import BadRequest, Unauthorized, error_response

access_log = logging.getLogger("edge.api.access")

TOPIC_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9._-]*$"
PUBLIC_PREFIXES = ("/static/",)
PUBLIC_PATHS = frozenset({"/", "/index.html", "/favicon.ico", "/healthz", "/readyz", "/openapi.json",
                          "/docs", "/docs/oauth2-redirect", "/redoc"})
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
WRITE_NEEDS_TOKEN = ("this request changes the appliance and needs the API token (Authorization: Bearer TOKEN; "
                     "`edge api --print-url` shows the dashboard link with it)")

DASHBOARD_CSP = ("default-src 'self'; img-src 'self' blob: data:; connect-src 'self' ws: wss:; "
                 "style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'")


def token_matches(given: str | None, token: str) -> bool:
    if not given:
        return False
    return hmac.compare_digest(given.encode("utf-8", "replace"), token.encode("utf-8"))


def _bearer(headers: Headers) -> str | None:
    value = headers.get("authorization", "")
    scheme, _, credentials = value.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return None


def _host_name(host_header: str) -> str:
    """The host part of a Host header value ("[::1]:8080" → "::1")."""
    if host_header.startswith("["):
        return host_header[1:].partition("]")[0].lower()
    return host_header.rpartition(":")[0].lower() if host_header.count(":") == 1 else host_header.lower()


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


class AccessGuard:
    """ASGI middleware: token, Host and Origin checks, security headers, access log."""

    def __init__(self, app: ASGIApp, *, token: str | None, allowed_hosts: list[str] | tuple[str, ...] = (),
                 open_reads: bool = True):
        self.app = app
        self.token = token
        self.open_reads = open_reads or token is None
        self.allowed_hosts = {h.lower() for h in allowed_hosts}

    def problem(self, scope: Scope, headers: Headers) -> tuple[int, str, str] | None:
        """(status, code, message) when the request must be refused, else None."""
        path: str = scope["path"]
        host = headers.get("host", "")
        writes = scope.get("method") in UNSAFE_METHODS
        origin = headers.get("origin")
        cross_origin = bool(origin) and urlsplit(origin).netloc.lower() != host.lower()
        if cross_origin and (scope["type"] == "websocket" or writes):
            return 403, "forbidden_origin", "cross-origin request refused"
        given = _bearer(headers) or QueryParams(scope.get("query_string", b"")).get("token")
        if self.token is not None and token_matches(given, self.token):
            return None
        if self.open_reads:
            name = _host_name(host)
            if not (is_loopback(name) or name in self.allowed_hosts):
                return 403, "forbidden_host", "this API answers loopback hosts only (set api.allowed_hosts or a token)"
        if writes:
            return 401, "unauthorized", WRITE_NEEDS_TOKEN
        if self.open_reads or is_public(path):
            return None
        return 401, "unauthorized", "missing or wrong token (Authorization: Bearer TOKEN, or ?token=TOKEN)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = Headers(scope=scope)
        refused = self.problem(scope, headers)
        if scope["type"] == "websocket":
            if refused is not None:
                access_log.info("websocket %s refused: %s", scope["path"], refused[1])
                await send({"type": "websocket.close", "code": 1008, "reason": refused[2]})
                return
            await self.app(scope, receive, send)
            return

        status_holder = {"status": 500}
        path: str = scope["path"]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                raw = list(message.get("headers", []))
                raw.append((b"x-content-type-options", b"nosniff"))
                raw.append((b"referrer-policy", b"no-referrer"))
                if path.startswith("/api/") or path == "/metrics":
                    raw.append((b"cache-control", b"no-store"))
                elif not path.startswith("/docs") and path != "/redoc":
                    raw.append((b"content-security-policy", DASHBOARD_CSP.encode()))
                    raw.append((b"x-frame-options", b"DENY"))
                message = {**message, "headers": raw}
            await send(message)

        if refused is not None:
            status, code, message = refused
            extra = {"WWW-Authenticate": "Bearer"} if status == 401 else None
            await error_response(status, code, message, headers=extra)(scope, receive, send_with_headers)
        else:
            await self.app(scope, receive, send_with_headers)
        status = status_holder["status"]
        level = logging.DEBUG if status < 400 else logging.INFO
        if access_log.isEnabledFor(level):
            access_log.log(level, "%s %s %d %.1fms", scope.get("method"), path, status,
                           (time.perf_counter() - started) * 1000)


_TOKEN_IN_TEXT = re.compile(r"(token=)[^&\s\"']+", re.IGNORECASE)


class RedactTokens(logging.Filter):
    """Masks ``token=…`` in log records (uvicorn logs WebSocket paths with their query)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            record.args = tuple(_TOKEN_IN_TEXT.sub(r"\1***", a) if isinstance(a, str) else a for a in args)
        if isinstance(record.msg, str) and "token=" in record.msg.lower():
            record.msg = _TOKEN_IN_TEXT.sub(r"\1***", record.msg)
        return True


def install_log_redaction() -> None:
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "edge.api", "edge.api.access"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())


# -- dependencies: documented in the OpenAPI schema, enforced again per route -------------

bearer_scheme = HTTPBearer(auto_error=False, description="the API token (always for writes; for reads off loopback)")
query_scheme = APIKeyQuery(name="token", auto_error=False, description="the API token, for WebSocket and links")


def require_token(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    query: Annotated[str | None, Depends(query_scheme)],
) -> None:
    """Second line of defence behind AccessGuard (and the schema's security declaration):
    writes always need the token, reads only when they are not open (``open_reads``)."""
    token: str | None = getattr(request.app.state, "token", None)
    writes = request.method in UNSAFE_METHODS
    if not writes and (token is None or getattr(request.app.state, "open_reads", False)):
        return
    given = bearer.credentials if bearer is not None else query
    if token is None or not token_matches(given, token):
        raise Unauthorized(WRITE_NEEDS_TOKEN if writes else
                           "missing or wrong token (Authorization: Bearer TOKEN, or ?token=TOKEN)")


def checked_topic(name: str) -> str:
    """The topic name if it is one the broker would accept, else BadRequest (400)."""
    try:
        return validate_topic_name(name)
    except BrokerError as exc:
        raise BadRequest(exc.message) from None


def _topic_path(
    topic: Annotated[str, Path(min_length=1, max_length=MAX_TOPIC_NAME_LENGTH, pattern=TOPIC_PATTERN,
                               description="topic name (letters, digits, '.', '_', '-')")],
) -> str:
    return checked_topic(topic)


TopicName = Annotated[str, Depends(_topic_path)]
