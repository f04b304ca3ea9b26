"""A YAML file read into a pydantic model, every problem one line naming the file (and
the field): the sites file, guidelines."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from interlock.errors import ExitCode, InterlockError

M = TypeVar("M", bound=BaseModel)


def load(path: Path, model: type[M], missing: str | None = None) -> M:
    """`path` as a `model`; `missing` is the message when the file does not exist."""
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError as e:
        raise InterlockError(
            f"{path}: {missing or f'cannot read: {e.strerror}'}", ExitCode.BAD_INPUT
        ) from None
    except OSError as e:
        raise InterlockError(f"{path}: cannot read: {e.strerror}", ExitCode.BAD_INPUT) from None
    except yaml.YAMLError as e:
        raise InterlockError(f"{path}: not valid YAML: {e}", ExitCode.BAD_INPUT) from None
    try:
        return model.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise InterlockError(
            f"{path}: field '{field}': {first['msg']}", ExitCode.BAD_INPUT
        ) from None
