"""NoopStone: does nothing, at once. Used by tests and the throughput benchmark, so keep it cheap."""

from __future__ import annotations

from typing import Any

from stones.base import Done, Stone, StoneContext, TerminalError


def _outputs(params: dict[str, Any]) -> dict[str, Any]:
    extra = params.get("outputs")
    if extra is None:
        return {"stone": "NoopStone"}
    if not isinstance(extra, dict):
        raise TerminalError(f"NoopStone: params.outputs must be an object, got {type(extra).__name__}")
    # Echoed values come last so a model may override "stone" if it really wants to.
    return {"stone": "NoopStone", **extra}


class NoopStone(Stone):
    """start does nothing; monitor is Done with ``{"stone": "NoopStone"}`` plus ``params["outputs"]``."""

    name = "NoopStone"

    def start(self, ctx: StoneContext) -> dict[str, Any] | None:
        return None

    def monitor(self, ctx: StoneContext) -> Done:
        return Done(_outputs(ctx.params))

    def mock(self, ctx: StoneContext) -> dict[str, Any]:
        return _outputs(ctx.params)
