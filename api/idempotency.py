"""The ``Idempotency-Key`` header of the start endpoints."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from flask import request

from orchestrator.errors import InvalidInput

HEADER = "Idempotency-Key"
HEADER_DOC = {HEADER: {"description": "the same key and body return the same process (200); another body under "
                                      "the key answers 409. At most 255 characters.",
                       "in": "header", "type": "string", "required": False}}


def idempotency(scope: str, body: Any) -> tuple[str, str] | None:
    """``(key, hash of the request)`` when the header is given; the hash covers the endpoint and body."""
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not key.strip() or len(key) > 255:
        raise InvalidInput(f"{HEADER} must be 1 to 255 characters")
    digest = hashlib.sha256(f"{scope}\n{json.dumps(body, sort_keys=True)}".encode()).hexdigest()
    return key, digest
