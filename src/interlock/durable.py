"""DBOS launched on an engine's home, with the durable work it runs bound to the engine:
node allocations (the eight steps) and node-role runs (compose). DBOS resumes the home's
unfinished workflows of both at launch."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass

from dbos import DBOS, DBOSConfiguredInstance

from interlock.allocate.workflow import Allocator
from interlock.compose.converge import Converger
from interlock.engine import Engine


@dataclass(frozen=True)
class Durable:
    allocator: Allocator
    converger: Converger


@contextmanager
def running(engine: Engine) -> Iterator[Durable]:
    """Afterwards the home is closed for this process (another engine may open it, or
    another home, next)."""
    # Registered before launch, so recovery finds them.
    durable = Durable(Allocator(engine), Converger(engine))
    DBOS(
        config={
            "name": "interlock",
            "system_database_url": f"sqlite:///{engine.home / 'workflows.sqlite'}",
            "log_level": "WARNING",
        }
    )
    try:
        DBOS.launch()
        yield durable
    finally:
        DBOS.destroy(destroy_registry=False)
        _unregister(durable.allocator)
        _unregister(durable.converger)
        with suppress(RuntimeError):  # outside an event loop: nothing to mend
            # DBOS lent the running loop its thread pool (asyncio.to_thread) and has shut it
            # down with itself; the loop gets a pool again for the work that follows.
            asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor())


def _unregister(instance: DBOSConfiguredInstance) -> None:
    # DBOS keeps configured instances for the life of the process and refuses a second
    # one of the same name; an engine opened again on this home brings a new one.
    from dbos._dbos import _get_or_create_dbos_registry
    from dbos._registrations import _class_fqn

    registry = _get_or_create_dbos_registry()
    registry.instance_info_map.pop(f"{_class_fqn(type(instance))}/{instance.config_name}", None)
