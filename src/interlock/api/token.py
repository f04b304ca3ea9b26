"""The API's bearer token: made once, kept in a 0600 file in interlock's home, compared
in constant time."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from interlock import config

NAME = "api-token"


def path(home: Path | None = None) -> Path:
    return (home or config.home()) / NAME


def ensure(home: Path | None = None) -> str:
    """The token, made on first need (never overwritten: clients keep working)."""
    where = path(home)
    where.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(where, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return where.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(32) + "\n")
    return where.read_text().strip()


def matches(given: str, token: str) -> bool:
    return secrets.compare_digest(given.encode(), token.encode())
