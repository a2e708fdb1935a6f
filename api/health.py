from __future__ import annotations

from flask_restx import Namespace, Resource

PATH = "/health"
ns = Namespace("health", description="Liveness")


@ns.route("")
class Health(Resource):
    def get(self):
        return {"status": "ok"}
