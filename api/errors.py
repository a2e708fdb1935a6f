"""Every error answers JSON ``{"code", "message"}`` with its status, inside resources and outside
them (unknown paths 404, wrong methods 405, bodies over the limit 413)."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, current_app, request
from flask_restx import Api
from werkzeug.exceptions import HTTPException

from api.schemas import ERROR
from orchestrator.errors import OrchestratorError

log = logging.getLogger(__name__)

# The codes werkzeug's errors answer with, named like the orchestrator's own where both exist.
HTTP_CODES = {400: "invalid_input", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
              409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type", 500: "internal_error"}

Answer = tuple[dict[str, str], int, dict[str, str]]


def error_body(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}


def orchestrator_error(exc: OrchestratorError) -> Answer:
    """An error the orchestrator raised on purpose, with its own status and code."""
    headers = {"WWW-Authenticate": "Bearer"} if exc.http_status == 401 else {}  # RFC 9110: a 401 names its scheme
    return error_body(exc.code, exc.message), exc.http_status, headers


def http_error(exc: HTTPException) -> Answer:
    """An HTTP error from routing or request parsing: 404, 405, 413 and the like."""
    status = exc.code or 500
    code = HTTP_CODES.get(status) or (exc.name or "error").lower().replace(" ", "_")
    message = exc.description or exc.name
    if status == 413:
        message = _too_large()
    # Keep what the error says besides its HTML body, such as the ``Allow`` header of a 405.
    headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
    return error_body(code, message), status, headers


def _too_large() -> str:
    """Which limit a 413 is about: the whole body, or werkzeug's limits on a multipart form's fields."""
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    length = request.content_length if request else None
    if limit is not None and (length is None or length > limit):
        return f"the request body is larger than the limit of {limit} bytes"
    return (f"a multipart text field is larger than {request.max_form_memory_size} bytes (send big values as "
            f"file parts) or the form has more than {request.max_form_parts} parts")


def unexpected(exc: Exception) -> Answer:
    """A bug: 500, details only in the server log."""
    log.exception("unhandled error")
    return error_body("internal_error", "internal error; see the server log"), 500, {}


def register_error_handlers(app: Flask, api: Api) -> None:
    for handler in (orchestrator_error, http_error, unexpected):
        # Swagger's top-level ``responses`` name each handler: its docstring and the ``Error`` model.
        handler.__apidoc__ = {"responses": {"default": (handler.__doc__, ERROR, {})}}  # type: ignore[attr-defined]
    # Inside RESTX resources: its handler picks the first registered class the error is an instance of.
    api.errorhandler(OrchestratorError)(orchestrator_error)
    api.errorhandler(HTTPException)(http_error)
    api.errorhandler(Exception)(unexpected)

    # Outside them (routing errors, before_request, non-RESTX views): Flask picks by the error's class.
    @app.errorhandler(OrchestratorError)
    def _app_orchestrator_error(exc: OrchestratorError) -> Any:
        return orchestrator_error(exc)

    @app.errorhandler(HTTPException)
    def _app_http_error(exc: HTTPException) -> Any:
        return http_error(exc)

    @app.errorhandler(Exception)
    def _app_unexpected(exc: Exception) -> Any:
        return unexpected(exc)
