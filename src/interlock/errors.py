"""One error type for everything a user can act on, and the exit codes it maps to."""

from __future__ import annotations

from enum import IntEnum
from pathlib import Path
from typing import Any


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


def bad_file(path: Path, errors: list[Any]) -> InterlockError:
    """One line for a file pydantic refused: the file, the first bad field, the problem."""
    first = errors[0]
    field = ".".join(str(p) for p in first["loc"]) or "(top level)"
    return InterlockError(f"{path}: field '{field}': {first['msg']}", ExitCode.BAD_INPUT)
