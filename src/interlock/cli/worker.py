"""`interlock worker`: take allocations and node-role runs from the durable queues until
stopped (SIGTERM or Ctrl-C). Several may run, on several machines, sharing one
PostgreSQL `state_url`; the sites' limits hold across all of them."""

from __future__ import annotations

import json
import signal
import threading

from interlock.cli import render
from interlock.cli.options import JsonOpt, SitesOpt, engine

out = render.console()
err = render.console(stderr=True)


def worker(sites_file: SitesOpt = None, as_json: JsonOpt = False) -> None:
    """Run durable work from the queues: node allocations (each site's queue, its
    concurrency shared by all workers) and node-role runs. A dead worker's unfinished
    work is taken over by a live one and goes on from its last finished step."""
    import asyncio

    from interlock.durable import running

    e = engine(sites_file)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    async def serve() -> None:
        with running(e, "worker") as durable:
            line = {"worker": durable.executor, "state": str(e.state), "pid": _pid()}
            if as_json:
                print(json.dumps(line), flush=True)
            else:
                render.lines(
                    out, [f"worker {durable.executor} taking work ({e.state}); Ctrl-C stops"]
                )
            await asyncio.to_thread(stop.wait)
        if not as_json:
            render.lines(err, ["worker stopped"])

    asyncio.run(serve())


def _pid() -> int:
    import os

    return os.getpid()
