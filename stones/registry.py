"""Which stones exist: the built-ins plus third-party ones from the ``orchestrator.stones`` entry points.

A package adds a stone by declaring, in its pyproject.toml::

    [project.entry-points."orchestrator.stones"]
    MachineStone = "acme_stones.machine:MachineStone"

Stones are keyed by their ``Stone.name`` (the name a BPMN service task uses, and the one the
queue ``stone.<name>`` is built from). The mapping is loaded once per process and cached.
"""

from __future__ import annotations

import importlib.metadata
import logging
import threading

from stones.base import Stone

ENTRY_POINT_GROUP = "orchestrator.stones"

log = logging.getLogger(__name__)


class UnknownStoneError(KeyError):
    """A ``KeyError`` whose message prints without the quotes KeyError adds."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


_cache: dict[str, type[Stone]] | None = None
_lock = threading.Lock()


def builtin_stones() -> dict[str, type[Stone]]:
    """The stones shipped with the orchestrator, by name."""
    # Imported here so that ``import stones.registry`` stays cheap until stones are needed.
    from stones.http import HttpStone
    from stones.machine import MachineStone
    from stones.noop import NoopStone
    from stones.shell import ShellStone
    from stones.sleep import SleepStone
    from stones.stack import StackStone

    return {cls.name: cls for cls in (NoopStone, SleepStone, ShellStone, HttpStone, MachineStone, StackStone)}


def _entry_point_stones(builtins: dict[str, type[Stone]]) -> dict[str, type[Stone]]:
    found: dict[str, type[Stone]] = {}
    # Looked up through the module attribute so tests can monkeypatch it.
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as exc:
            # One broken plug-in must not take the whole worker down.
            log.warning("stone entry point %r (%s) failed to load, skipped: %r", ep.name, ep.value, exc)
            continue
        if not (isinstance(obj, type) and issubclass(obj, Stone)):
            log.warning("stone entry point %r (%s) is not a Stone subclass, skipped", ep.name, ep.value)
            continue
        name = obj.name
        if ep.name != name:
            log.warning("stone entry point %r loads a stone named %r; registered as %r", ep.name, name, name)
        if name in builtins:
            if builtins[name] is not obj:
                log.warning("stone %r from entry point %s clashes with a built-in; the built-in wins",
                            name, ep.value)
            continue
        if name in found:
            if found[name] is not obj:
                log.warning("stone %r from entry point %s clashes with %s.%s loaded earlier; the first wins",
                            name, ep.value, found[name].__module__, found[name].__qualname__)
            continue
        found[name] = obj
    return found


def load_stones(reload: bool = False) -> dict[str, type[Stone]]:
    """Built-ins plus entry-point stones, by name. Cached; ``reload=True`` looks again."""
    global _cache
    with _lock:
        if _cache is None or reload:
            builtins = builtin_stones()
            _cache = {**builtins, **_entry_point_stones(builtins)}
        # A copy, so a caller cannot change what every other caller sees.
        return dict(_cache)


def get_stone(name: str) -> type[Stone]:
    """The stone class called ``name``; ``KeyError`` naming the known stones otherwise."""
    stones = _cache if _cache is not None else load_stones()
    try:
        return stones[name]
    except KeyError:
        known = ", ".join(sorted(stones)) or "(none)"
        raise UnknownStoneError(f"unknown stone {name!r}; known stones: {known}") from None
