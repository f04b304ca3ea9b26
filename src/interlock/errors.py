"""One error type for everything a user can act on, and the exit codes it maps to."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes of the `interlock` command (documented in docs/cli.md)."""

    OK = 0
    FAILURE = 1  # the operation was tried and failed
    BAD_INPUT = 2  # bad arguments, request, config or site file; nothing was done
    NOT_RUNNING = 3  # the lab (or the thing asked about) is not running / not found
    ENVIRONMENT = 4  # this machine lacks something: root, a tool, a package


class InterlockError(Exception):
    """An error with a message meant for the user and an exit code."""

    def __init__(self, message: str, code: ExitCode = ExitCode.FAILURE) -> None:
        super().__init__(message, code)
        self.code = code

    def __str__(self) -> str:
        return str(self.args[0])
