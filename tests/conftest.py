"""Fixtures for every test directory."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The url of one real PostgreSQL server for the whole session (interlock_lab.postgres):
    superuser and database `interlock`, loopback only, removed when the session ends."""
    from interlock_lab.postgres import find_binaries, postgres_server

    if os.geteuid() != 0:
        pytest.skip("a PostgreSQL server for tests needs root (it runs as the postgres user)")
    try:
        find_binaries()
    except RuntimeError as e:
        pytest.skip(str(e))
    with postgres_server() as server:
        yield server.url
