"""Process ``outputs``: the model's output template applied to the final data.

Templates are Jinja2, rendered in a sandbox (a model is uploaded by users). The final
data's keys are template variables; ``data`` is the whole mapping (for namespaces such as
``slave-1`` that are not identifiers), ``tasks`` the outputs by namespace or task name.
A result that parses as JSON is kept as JSON, anything else as a string.
"""

from __future__ import annotations

import json
from typing import Any

from jinja2 import TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from orchestrator.errors import ModelInvalid

_ENV = ImmutableSandboxedEnvironment(autoescape=False, keep_trailing_newline=False)
_ENV.filters["tojson"] = lambda value: json.dumps(value, ensure_ascii=False)


def check_template(text: str) -> None:
    try:
        _ENV.parse(text)
    except TemplateSyntaxError as exc:
        raise ModelInvalid(f"output template line {exc.lineno}: {exc.message}") from exc


def render(text: str, data: dict[str, Any], tasks: dict[str, Any]) -> Any:
    """Render; raises ``ValueError`` with the template's error."""
    context = {k: v for k, v in data.items() if isinstance(k, str) and k.isidentifier()}
    context.update(data=data, tasks=tasks)
    try:
        rendered = _ENV.from_string(text).render(context)
    except Exception as exc:
        raise ValueError(f"{type(exc).__name__}: {exc}") from exc
    try:
        return json.loads(rendered)
    except ValueError:
        return rendered.strip()
