"""Long work the API was asked for (apply, down, conform), as jobs with a stream of events.

The work itself is durable where the CLI's is (DBOS workflows in interlock's home: a
server killed mid-apply is finished by `interlock resume`); a job is how this server
reports it. One job runs at a time: each launches DBOS on the home for its length, and
DBOS is one per process. Others wait their turn, queued.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any, Literal

from pydantic import BaseModel

from interlock.errors import InterlockError

JobKind = Literal["apply", "down", "conform"]
JobState = Literal["queued", "running", "done", "failed"]


class Event(BaseModel):
    seq: int
    kind: Literal["progress", "done", "failed"]
    text: str  # one line, for people
    result: dict[str, Any] | None = None  # with `done`: what the work returned


class JobView(BaseModel):
    id: str
    kind: JobKind
    target: str  # the deployment, or the sites conform runs on
    state: JobState
    created: float
    finished: float | None = None
    error: str | None = None  # one line, the CLI's message
    result: dict[str, Any] | None = None


Work = Callable[["Job"], Awaitable[dict[str, Any]]]


class Job:
    def __init__(self, kind: JobKind, target: str) -> None:
        self.view = JobView(id=uuid.uuid4().hex[:12], kind=kind, target=target,
                            state="queued", created=time.time())  # fmt: skip
        self.events: list[Event] = []
        self._changed = asyncio.Condition()
        self._adding = threading.Lock()
        self._loop = asyncio.get_running_loop()  # jobs are started on the server's loop
        self.task: asyncio.Task[None] | None = None

    def add(self, kind: Literal["progress", "done", "failed"], text: str,
            result: dict[str, Any] | None = None) -> None:  # fmt: skip
        """An event, in the order of the calls (from the loop or any thread the work
        uses); followers are woken on the loop."""
        with self._adding:
            self.events.append(Event(seq=len(self.events), kind=kind, text=text, result=result))
        self._loop.call_soon_threadsafe(self._loop.create_task, self._wake())

    def progress(self, text: str) -> None:
        self.add("progress", text)

    async def _wake(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _beyond(self, count: int) -> bool:
        return len(self.events) > count

    async def follow(self, after: int = -1) -> AsyncIterator[Event]:
        """Every event after `after`, as it comes, up to the last one."""
        seen = after + 1
        while True:
            async with self._changed:
                await self._changed.wait_for(partial(self._beyond, seen))
                new = self.events[seen:]
            for ev in new:
                yield ev
                if ev.kind != "progress":
                    return
            seen += len(new)


class Jobs:
    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._one = asyncio.Lock()

    def all(self) -> list[JobView]:
        return [j.view for j in sorted(self._jobs.values(), key=lambda j: -j.view.created)]

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def start(self, kind: JobKind, target: str, work: Work) -> Job:
        """On the server's loop (from an `async def` route)."""
        job = Job(kind, target)
        self._jobs[job.view.id] = job
        job.task = asyncio.create_task(self._run(job, work))
        return job

    async def _run(self, job: Job, work: Work) -> None:
        async with self._one:
            job.view.state = "running"
            job.progress(f"{job.view.kind} {job.view.target}: started")
            try:
                result = await work(job)
            except InterlockError as e:
                job.view.state, job.view.error = "failed", str(e)
                job.add("failed", str(e))
            except Exception as e:  # a bug: its type and message, the server keeps serving
                job.view.state, job.view.error = "failed", f"{type(e).__name__}: {e}"
                job.add("failed", job.view.error)
            else:
                job.view.state, job.view.result = "done", result
                job.add("done", f"{job.view.kind} {job.view.target}: done", result)
            finally:
                job.view.finished = time.time()
