"""`state_url`: where interlock's state and DBOS's system database live. SQLite files in
the home by default; `postgresql://…` puts both in one PostgreSQL database, shared by
every worker. The URL may hold a password: it is shown only with the password masked."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.exc import ArgumentError

from interlock.errors import ExitCode, InterlockError

SCHEMES = ("sqlite", "postgresql")


@dataclass(frozen=True)
class StateUrl:
    url: sa.URL
    home: Path  # where SQLite's second file (DBOS's workflows) goes

    @classmethod
    def parse(cls, text: str, home: Path, where: str = "state_url") -> StateUrl:
        """A URL as a user wrote it; a bad one raises a bad-input error naming `where`."""
        try:
            url = sa.make_url(text.strip())
        except ArgumentError:
            # Never quote the text: it may hold a password.
            raise InterlockError(
                f"{where}: not a URL (sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DB)",
                ExitCode.BAD_INPUT,
            ) from None
        scheme = url.drivername.split("+")[0]
        if scheme not in SCHEMES:
            raise InterlockError(
                f"{where}: unsupported database {scheme!r} (sqlite or postgresql)",
                ExitCode.BAD_INPUT,
            )
        if scheme == "sqlite" and not url.database:
            raise InterlockError(
                f"{where}: sqlite needs a file (sqlite:///PATH)", ExitCode.BAD_INPUT
            )
        if scheme == "postgresql" and not (url.host and url.database):
            raise InterlockError(
                f"{where}: postgresql needs a host and a database "
                "(postgresql://USER:PASSWORD@HOST:PORT/DB)",
                ExitCode.BAD_INPUT,
            )
        return cls(url, home)

    @classmethod
    def default(cls, home: Path) -> StateUrl:
        return cls(sa.make_url(f"sqlite:///{home / 'state.db'}"), home)

    @property
    def is_sqlite(self) -> bool:
        return self.url.drivername.startswith("sqlite")

    @property
    def path(self) -> Path | None:
        return Path(self.url.database) if self.is_sqlite and self.url.database else None

    @property
    def sqlalchemy(self) -> sa.URL:
        """The URL for SQLAlchemy, with the driver interlock ships (psycopg 3)."""
        if self.is_sqlite:
            return self.url
        return self.url.set(drivername="postgresql+psycopg")

    @property
    def workflows(self) -> str:
        """DBOS's system database: beside the state (SQLite), or in the same database."""
        if self.is_sqlite:
            return f"sqlite:///{self.home / 'workflows.sqlite'}"
        return self.sqlalchemy.render_as_string(hide_password=False)

    @property
    def shared(self) -> bool:
        """Whether processes on other machines can share it (workers elsewhere)."""
        return not self.is_sqlite

    def __str__(self) -> str:
        return self.url.render_as_string(hide_password=True)

    def __repr__(self) -> str:
        return f"StateUrl({self})"
