"""The service of the app handling the current request (``create_app`` puts it there)."""

from __future__ import annotations

from flask import current_app

from orchestrator.service import Service


def service() -> Service:
    return current_app.extensions["orchestrator"]
