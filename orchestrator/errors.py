"""The error tree. Each error carries the HTTP status the API answers with."""

from __future__ import annotations


class OrchestratorError(Exception):
    """Base of every error the orchestrator raises on purpose."""

    http_status = 500
    code = "internal_error"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidInput(OrchestratorError):
    http_status = 400
    code = "invalid_input"


class ModelInvalid(InvalidInput):
    """A BPMN document that does not parse or validate."""

    code = "invalid_model"


class NotFound(OrchestratorError):
    http_status = 404
    code = "not_found"


class Conflict(OrchestratorError):
    """The request makes no sense in the current state (a guarded update matched nothing)."""

    http_status = 409
    code = "conflict"


class IllegalTransition(Conflict):
    code = "illegal_transition"


class Unauthorized(OrchestratorError):
    http_status = 401
    code = "unauthorized"


class PayloadTooLarge(OrchestratorError):
    http_status = 413
    code = "payload_too_large"


class UnsupportedMediaType(OrchestratorError):
    http_status = 415
    code = "unsupported_media_type"


class DispatchError(OrchestratorError):
    """A job could not be handed to the broker."""

    code = "dispatch_failed"
