"""What the AWS stones share: building boto3 clients and turning botocore errors into stone errors.

Where a client points, first match wins:

- region: ``params.region``, then ``AWS_REGION``, ``AWS_DEFAULT_REGION``, else ``us-east-1``
- endpoint: ``ORCH_AWS_ENDPOINT_URL`` (the local moto server in tests and ``make run``), else
  the real AWS endpoint. ``params.endpointUrl`` is honoured only when the operator allows it
  with ``ORCH_AWS_ALLOW_ENDPOINT_PARAM=1``: otherwise a model's author could send requests
  signed with the workers' credentials to any host.
- credentials: the standard AWS chain (env, profile, instance role ...). When an endpoint
  is set and the chain finds nothing, dummy ones: moto accepts any.

Errors: throttling, 5xx answers, connection failures and garbled answers become
``RetryableError``; every other ``ClientError`` a ``TerminalError`` whose ``code`` is the AWS
error code (``InvalidAMIID.NotFound`` ...), for BPMN error boundary events to catch.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import boto3
import botocore.exceptions
from botocore.config import Config
from botocore.parsers import ResponseParserError

from stones.base import RetryableError, RetryPolicy, Stone, StoneContext, StoneError, TerminalError

DEFAULT_REGION = "us-east-1"
ENDPOINT_ENV = "ORCH_AWS_ENDPOINT_URL"
# Tags the AWS stones put on what they create: the key finds a task's resources again.
KEY_TAG = "orchestrator:idempotency-key"
TASK_TAG = "orchestrator:task"
PROCESS_TAG = "orchestrator:process"
_DUMMY_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}

# One short in-client retry for a blip; the orchestrator's retry policy does the rest.
_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": 2},
    connect_timeout=5,
    read_timeout=30,
    user_agent_extra="stone-orchestrator",
)

# Error codes that mean "later", whatever the HTTP status says.
RETRYABLE_CODES = frozenset(
    {
        "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled",
        "RequestThrottledException", "TooManyRequestsException", "RequestLimitExceeded",
        "ProvisionedThroughputExceededException", "BandwidthLimitExceeded", "SlowDown",
        "PriorRequestNotComplete", "EC2ThrottledException", "RequestTimeout",
        "RequestTimeoutException", "InternalError", "InternalFailure", "ServiceUnavailable",
        "Unavailable", "InsufficientInstanceCapacity",
    }
)  # fmt: skip

# A client per (service, region, endpoint): building one costs ~0.2 s, and botocore clients
# are thread-safe. Sessions are not, hence the lock around creation.
_MAX_CLIENTS = 64
_clients: dict[tuple[str, str, str | None], Any] = {}
_session: boto3.session.Session | None = None
_lock = threading.Lock()


def aws_region(params: dict[str, Any] | None = None) -> str:
    """The region a stone's calls go to (see the module doc for the order)."""
    value = (params or {}).get("region")
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise TerminalError(f"params.region must be an AWS region name, got {value!r}")
    return (value or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION).strip()


def aws_endpoint(params: dict[str, Any] | None = None) -> str | None:
    """The endpoint URL override, or None for AWS itself."""
    value = (params or {}).get("endpointUrl")
    if value is not None and os.environ.get("ORCH_AWS_ALLOW_ENDPOINT_PARAM") not in ("1", "true", "yes"):
        raise TerminalError("params.endpointUrl is not allowed here (the operator enables it with "
                            "ORCH_AWS_ALLOW_ENDPOINT_PARAM=1)")
    if value is not None and (not isinstance(value, str) or not value.startswith(("http://", "https://"))):
        raise TerminalError(f"params.endpointUrl must be an http(s) URL, got {value!r}")
    return value or os.environ.get(ENDPOINT_ENV) or None


def aws_client(service: str, params: dict[str, Any] | None = None) -> Any:
    """A boto3 client for ``service`` (``"ec2"``, ``"cloudformation"`` ...), configured from params and env."""
    global _session
    region, endpoint = aws_region(params), aws_endpoint(params)
    key = (service, region, endpoint)
    with _lock:
        client = _clients.get(key)
        if client is not None:
            return client
        if _session is None:
            _session = boto3.session.Session()
        extra: dict[str, str] = {}
        if endpoint is not None and _session.get_credentials() is None:
            extra = _DUMMY_CREDENTIALS
        try:
            client = _session.client(service, region_name=region, endpoint_url=endpoint, config=_CONFIG, **extra)
        except (ValueError, botocore.exceptions.BotoCoreError) as exc:
            raise TerminalError(f"cannot build an AWS {service} client: {exc}") from exc
        if len(_clients) >= _MAX_CLIENTS:
            _clients.clear()  # endpointUrl comes from params: never grow without bound
        _clients[key] = client
        return client


def reset_clients() -> None:
    """Forget cached clients and the session (credentials or endpoints changed; tests)."""
    global _session
    with _lock:
        _clients.clear()
        _session = None


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a ``ClientError`` (or a stone error made from one)."""
    if isinstance(exc, StoneError):
        return exc.code
    if isinstance(exc, botocore.exceptions.ClientError):
        return exc.response.get("Error", {}).get("Code") or None
    return None


def map_aws_error(exc: Exception, action: str) -> StoneError:
    """The stone error for a botocore failure of ``action`` (e.g. ``"ec2 RunInstances"``)."""
    if isinstance(exc, StoneError):
        return exc
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code") or "Unknown"
        message = error.get("Message") or str(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        reason = f"{action} failed: {code}: {message}"
        if code in RETRYABLE_CODES or status >= 500 or status == 429:
            return RetryableError(reason, code=code)
        return TerminalError(reason, code=code)
    if isinstance(exc, botocore.exceptions.HTTPClientError | botocore.exceptions.ConnectionError):
        # Connect/read timeouts, refused or reset connections: the endpoint may come back.
        return RetryableError(f"{action} failed: {type(exc).__name__}: {exc}", code="ConnectionError")
    if isinstance(exc, ResponseParserError):
        # Not AWS's XML/JSON: typically a proxy's or a crashed server's HTML error page.
        return RetryableError(f"{action} failed: unreadable answer ({type(exc).__name__})", code="ResponseParserError")
    if isinstance(exc, botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError):
        return TerminalError(f"{action} failed: no AWS credentials configured ({exc})", code="NoCredentials")
    if isinstance(exc, botocore.exceptions.ParamValidationError):
        return TerminalError(f"{action} failed: {exc}", code="ParamValidation")
    if isinstance(exc, botocore.exceptions.BotoCoreError):
        return TerminalError(f"{action} failed: {type(exc).__name__}: {exc}", code=type(exc).__name__)
    return TerminalError(f"{action} failed: {type(exc).__name__}: {exc}")


@contextmanager
def aws_errors(action: str) -> Iterator[None]:
    """Re-raise botocore failures inside the block as ``RetryableError`` / ``TerminalError``."""
    try:
        yield
    # ResponseParserError is no BotoCoreError: named on its own.
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, ResponseParserError) as exc:
        raise map_aws_error(exc, action) from exc


def short_token(key: str, limit: int) -> str:
    """``key`` itself when it fits in ``limit`` characters, else its SHA-256 (cut to ``limit``)."""
    return key if len(key) <= limit else hashlib.sha256(key.encode()).hexdigest()[:limit]


def idempotency_key(ctx: StoneContext) -> str:
    """The task's idempotency key; derived from task and attempt when the worker gave none."""
    return ctx.idempotency_key or f"task-{ctx.task_id}-{ctx.attempt}"


def truthy(value: Any) -> bool:
    # Params may come from BPMN text fields, where "true" is a string.
    if isinstance(value, str):
        return value.strip().lower() in {"true", "yes", "1", "on"}
    return bool(value)


# (service, params) -> boto3 client; tests inject one that fails or wraps a stub.
ClientFactory = Callable[[str, dict[str, Any]], Any]


class AwsStone(Stone):
    """Base of the stones that drive one AWS service (``service``, e.g. ``"ec2"``).

    Undoing what ``start`` made serves ``rollback``, ``delete`` and ``cancel`` alike:
    subclasses implement ``_undo``, tolerating "already gone".
    """

    service: ClassVar[str] = ""
    # Throttling and capacity errors pass; a retried start (same key) finds what it made by its key tag.
    retry = RetryPolicy(attempts=3, backoff_s=2.0, max_backoff_s=30.0)

    def __init__(self, client_factory: ClientFactory = aws_client) -> None:
        self._client_factory = client_factory

    def _client(self, ctx: StoneContext) -> Any:
        """The ``service`` client for this task."""
        params = ctx.params
        # Later events go where start went, even if the environment changed since.
        if ctx.state.get("region") and not params.get("region"):
            params = {**params, "region": ctx.state["region"]}
        return self._client_factory(self.service, params)

    def _undo(self, ctx: StoneContext) -> None:
        raise NotImplementedError

    def rollback(self, ctx: StoneContext) -> None:
        self._undo(ctx)

    def delete(self, ctx: StoneContext) -> None:
        self._undo(ctx)

    def cancel(self, ctx: StoneContext) -> None:
        # AWS work in flight (a launch, a stack creation) cannot be paused: stopping it means
        # undoing it, which also removes what it made so far.
        self._undo(ctx)
