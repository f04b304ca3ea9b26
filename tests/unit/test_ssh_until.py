"""`until`: SSH work tried again while the node is not ready, one line past the deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from interlock.ssh.remote import AccessError, until


def flaky(failures: int, error: BaseException) -> tuple[list[int], Callable[[], Awaitable[str]]]:
    calls: list[int] = []

    async def attempt() -> str:
        calls.append(1)
        if len(calls) <= failures:
            raise error
        return "done"

    return calls, attempt


def test_an_attempt_is_tried_again_until_it_works() -> None:
    calls, attempt = flaky(3, ConnectionRefusedError("refused"))
    assert asyncio.run(until(time.monotonic() + 60, "x", attempt)) == "done"
    assert len(calls) == 4


def test_past_the_deadline_one_line_names_the_work() -> None:
    calls, attempt = flaky(10**6, ConnectionRefusedError("refused"))
    with pytest.raises(AccessError, match=r"^securing root: refused$"):
        asyncio.run(until(time.monotonic() - 1, "securing root", attempt))
    assert len(calls) == 1  # the deadline had passed: tried once


def test_an_error_it_is_not_told_to_wait_out_is_raised_at_once() -> None:
    calls, attempt = flaky(1, ValueError("a bug"))
    with pytest.raises(ValueError, match="a bug"):
        asyncio.run(until(time.monotonic() + 60, "x", attempt))
    assert len(calls) == 1
