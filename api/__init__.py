"""The REST API: ``create_app()`` builds the Flask app over one ``Service``."""

from __future__ import annotations

import hmac
import logging
from typing import Any

from flask import Flask, request
from flask_restx import Api

from api.errors import register_error_handlers
from orchestrator.config import Settings
from orchestrator.errors import Unauthorized
from orchestrator.service import Service

log = logging.getLogger(__name__)


def create_app(test_config: dict[str, Any] | None = None, service: Service | None = None) -> Flask:
    """Build the app. ``service`` defaults to one built from the environment's settings."""
    app = Flask(__name__)
    settings: Settings = (test_config or {}).get("SETTINGS") or Settings.from_env()
    app.config.update(
        RESTX_MASK_SWAGGER=False,
        RESTX_ERROR_404_HELP=False,
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        JSON_SORT_KEYS=False,
    )
    app.json.sort_keys = False
    app.json.ensure_ascii = False
    if test_config:
        app.config.update(test_config)
    if service is None:
        from orchestrator.wiring import build_service

        # An engine runs beside a served API: it records the API's published jobs as produced.
        service = build_service(settings, marks="relay")
    app.extensions["orchestrator"] = service

    tokens = settings.token_set
    if not tokens:
        log.warning("API authentication is OFF (ORCH_API_TOKENS is empty): only for local runs")

    @app.before_request
    def _authenticate():
        if tokens and request.path not in ("/health", "/swagger.json"):
            header = request.headers.get("Authorization", "")
            offered = header[7:].strip() if header.startswith("Bearer ") else ""
            # Constant-time comparison: the answer time must not tell how much of a token matched.
            if not any(hmac.compare_digest(offered.encode(), t.encode()) for t in tokens):
                raise Unauthorized("a valid 'Authorization: Bearer <token>' header is required")

    api = Api(app, version="1.0", title="Stone orchestrator",
              description="BPMN processes whose service tasks run as stones on Celery workers",
              doc="/docs", validate=False)
    from api import health, model, process, query, repository, runtime, task

    for module in (process, task, model, runtime, query, repository, health):
        api.add_namespace(module.ns, path=module.PATH)
    register_error_handlers(app, api)
    return app
