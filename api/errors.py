"""Every error answers JSON ``{"code", "message"}`` with its status."""

from __future__ import annotations

import logging

from flask import Flask
from flask_restx import Api
from werkzeug.exceptions import HTTPException

from orchestrator.errors import OrchestratorError

log = logging.getLogger(__name__)


def error_body(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}


def register_error_handlers(app: Flask, api: Api) -> None:
    def orchestrator_error(exc: OrchestratorError):
        return error_body(exc.code, exc.message), exc.http_status

    def http_error(exc: HTTPException):
        code = (exc.name or "error").lower().replace(" ", "_")
        return error_body(code, exc.description or exc.name), exc.code or 500

    def unexpected(exc: Exception):
        log.exception("unhandled error")
        return error_body("internal_error", "internal error; see the server log"), 500

    api.errorhandler(OrchestratorError)(orchestrator_error)
    api.errorhandler(HTTPException)(http_error)
    api.errorhandler(Exception)(unexpected)

    # Outside RESTX resources (unknown paths, body too large before routing).
    @app.errorhandler(OrchestratorError)
    def _app_orch(exc):
        body, status = orchestrator_error(exc)
        return body, status

    @app.errorhandler(HTTPException)
    def _app_http(exc):
        body, status = http_error(exc)
        return body, status
