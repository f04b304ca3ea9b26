"""DBOS launched on an engine's state, with the durable work it runs bound to the engine:
node allocations (the eight steps), node-role runs (compose) and detached applies, taken
from DBOS queues.

Each site has its queue, whose global concurrency is the site's `concurrency`: it holds
across every process taking work from it. A process runs as one of three kinds:
- "worker" (`interlock worker`): takes work from every queue until stopped;
- "embedded": a command that runs its own work because no worker is up (the default,
  one process on SQLite);
- "client": a command that only enqueues and follows, while workers run the work.
Workers and embedded processes beat and take over a dead one's work (interlock.workers).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Literal

from dbos import DBOS, DBOSConfiguredInstance

from interlock import workers
from interlock.allocate.workflow import Allocator
from interlock.compose.converge import Converger
from interlock.engine import Engine
from interlock.queues import DEPLOYMENTS, ROLES, site_queue
from interlock.services.applier import Applier

Kind = Literal["worker", "embedded", "client"]
POLL = 0.5  # seconds between a queue's looks for work


@dataclass(frozen=True)
class Durable:
    allocator: Allocator
    converger: Converger
    applier: Applier
    kind: Kind
    executor: str


def kind_for(engine: Engine) -> Kind:
    """A command runs its own work unless a worker is up to take it."""
    return "client" if workers.live(engine.store).any else "embedded"


@contextmanager
def running(engine: Engine, kind: Kind | None = None, applies: bool = False) -> Iterator[Durable]:
    """Afterwards DBOS is closed for this process (another engine may open it, or
    another state, next). Detached applies are taken by workers, and by an embedded
    process only where it will wait for them (`applies`): one that ends with its own
    work must not leave one half-run."""
    kind = kind or kind_for(engine)
    executor = workers.new_executor()
    engine.executor = executor
    # Registered before launch, so recovery finds them.
    allocator, converger = Allocator(engine), Converger(engine)
    applier = Applier(engine, allocator, converger)
    durable = Durable(allocator, converger, applier, kind, executor)
    DBOS(
        config={
            "name": "interlock",
            "system_database_url": engine.state.workflows,
            "executor_id": executor,
            "log_level": "WARNING",
        }
    )
    if kind == "client":
        DBOS.listen_queues([])
    elif kind == "embedded" and not applies:
        DBOS.listen_queues([*map(site_queue, engine.sites.sites), ROLES])
    try:
        DBOS.launch()
        # DBOS refuses its blocking calls on a thread running an event loop.
        with ThreadPoolExecutor(1) as pool:
            pool.submit(_register_queues, engine).result()
        if kind == "client":
            yield durable
        else:
            # It stays registered when it ends: whatever it took and left unfinished
            # (another command's nodes, maybe) is taken over by the next live process
            # that sees its pid gone (or its beat old), which then retires it.
            with workers.registered(engine.store, executor, kind, engine.share_rate):
                yield durable
    finally:
        DBOS.destroy(destroy_registry=False)
        _unregister(durable.allocator)
        _unregister(durable.converger)
        _unregister(durable.applier)
        with suppress(RuntimeError):  # outside an event loop: nothing to mend
            # DBOS lent the running loop its thread pool (asyncio.to_thread) and has shut it
            # down with itself; the loop gets a pool again for the work that follows.
            asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor())


def _register_queues(engine: Engine) -> None:
    # The last process to register a queue sets its limits (a changed sites file wins).
    for name, site in engine.sites.sites.items():
        DBOS.register_queue(
            site_queue(name),
            global_concurrency=site.limits.concurrency,
            polling_interval_sec=POLL,
            on_conflict="always_update",
        )
    for name in (ROLES, DEPLOYMENTS):
        DBOS.register_queue(name, polling_interval_sec=POLL, on_conflict="always_update")


def _unregister(instance: DBOSConfiguredInstance) -> None:
    # DBOS keeps configured instances for the life of the process and refuses a second
    # one of the same name; an engine opened again on this home brings a new one.
    from dbos._dbos import _get_or_create_dbos_registry
    from dbos._registrations import _class_fqn

    registry = _get_or_create_dbos_registry()
    registry.instance_info_map.pop(f"{_class_fqn(type(instance))}/{instance.config_name}", None)
