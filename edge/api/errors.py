"""Typed API errors and the handlers that turn every failure into a JSON body.

Guarantees:
- Every error response is ``{"error": CODE, "message": TEXT}`` (plus ``details`` for
  validation errors) with a fitting status; broker errors map by type (unknown topic → 404,
  invalid topic → 400, broker unavailable → 503, anything else from the broker → 502).
- An unexpected exception is logged with its traceback on the server and answered with a
  500 that carries no stack trace, path or exception text.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from broker import errors as be

logger = logging.getLogger("edge.api")


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: str
    message: str
    details: list[dict[str, Any]] | None = None


class ApiError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class BadRequest(ApiError):
    status, code = 400, "bad_request"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class NotFound(ApiError):
    status, code = 404, "not_found"


class Conflict(ApiError):
    status, code = 409, "conflict"


class Unprocessable(ApiError):
    """The request is well formed but the data cannot be turned into what was asked
    (e.g. a record that is not a camera frame)."""

    status, code = 422, "unprocessable"


class TooManyJobs(ApiError):
    status, code = 429, "too_many_jobs"


class NotAvailable(ApiError):
    """A feature whose library is not installed in this build."""

    status, code = 501, "not_available"


class Unavailable(ApiError):
    status, code = 503, "unavailable"


_BROKER_STATUS: list[tuple[type[be.BrokerError], int, str]] = [
    (be.InvalidTopicError, 400, "invalid_topic"),
    (be.UnknownTopicError, 404, "unknown_topic"),
    (be.UnknownPartitionError, 404, "unknown_partition"),
    (be.OffsetOutOfRangeError, 404, "offset_out_of_range"),
    (be.InvalidRequestError, 400, "bad_request"),
    (be.BrokerUnavailableError, 503, "broker_unavailable"),
    (be.CorruptBatchError, 502, "corrupt_data"),
]

STANDARD_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "invalid request (bad topic name, bad time, …)"},
    401: {"model": ErrorBody, "description": "missing or wrong token"},
    403: {"model": ErrorBody, "description": "request from a host or origin that is not allowed"},
    422: {"model": ErrorBody, "description": "parameters do not validate"},
    503: {"model": ErrorBody, "description": "the broker is not reachable"},
}


def error_response(status: int, code: str, message: str, details: list[Any] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": code, "message": message}
    if details is not None:
        body["details"] = details
    return JSONResponse(body, status_code=status, headers=headers)


def broker_error_response(exc: be.BrokerError) -> JSONResponse:
    for cls, status, code in _BROKER_STATUS:
        if isinstance(exc, cls):
            return error_response(status, code, exc.message)
    return error_response(502, "broker_error", exc.message)


def _clean_validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        out.append({"loc": [str(p) for p in err.get("loc", ())], "msg": str(err.get("msg", "")),
                    "type": str(err.get("type", ""))})
    return out


_HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def _allowed_methods(request: Request) -> str:
    """Every documented method of this path (several routes may share a path); a literal
    path (``/api/jobs/export``) wins over a template that also matches it (``/api/jobs/{id}``)."""
    paths = request.app.openapi().get("paths", {})
    items = [paths[request.url.path]] if request.url.path in paths else [
        item for template, item in paths.items()
        if re.match("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$", request.url.path)]
    return ", ".join(sorted({m.upper() for item in items for m in item if m in _HTTP_METHODS}))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return error_response(exc.status, exc.code, exc.message, headers=headers)

    @app.exception_handler(be.BrokerError)
    async def _broker_error(request: Request, exc: be.BrokerError) -> JSONResponse:
        if not isinstance(exc, (be.UnknownTopicError, be.InvalidTopicError, be.UnknownPartitionError,
                                be.OffsetOutOfRangeError)):
            logger.warning("broker error on %s %s: %s", request.method, request.url.path, exc.message)
        return broker_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = _clean_validation_errors(exc)
        first = details[0] if details else {"loc": [], "msg": "invalid request"}
        where = ".".join(p for p in first["loc"] if p not in ("body", "query", "path"))
        return error_response(422, "invalid_request", f"{where or 'request'}: {first['msg']}", details)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:  # Starlette names only the first route of the path: name them all
            headers = {**(headers or {}), "Allow": _allowed_methods(request)}
        return error_response(exc.status_code, code, str(exc.detail), headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("internal error on %s %s", request.method, request.url.path)
        return error_response(500, "internal", "internal error; see the API log")
