"""``/health``: liveness, answered without authentication or touching the database."""

from __future__ import annotations

from typing import Any

from flask_restx import Namespace, Resource

from api.schemas import register_models

PATH = "/health"
ns = Namespace("health", description="Liveness")
M = register_models(ns)


@ns.route("")
class Health(Resource):
    @ns.response(200, "the API process is up", M["health"])
    def get(self) -> Any:
        """Liveness: the API process answers."""
        return {"status": "ok"}
