"""A YAML file read into a pydantic model: the sites file, lab site files, guidelines.

Every problem becomes one line naming the file, the line where there is one, the field
and the problem, and it never shows what the file holds there: the source line of a
YAML error and the value a field was given are left out (a sites file may hold a
password where a path belongs). Only regular files are read (a FIFO would hang, a device
never end), at most 1 MiB of UTF-8; YAML's duplicate keys are refused, not overwritten.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from interlock.errors import ExitCode, InterlockError

M = TypeVar("M", bound=BaseModel)
MAX_BYTES = 1 << 20


class FieldProblem(ValueError):
    """Raised by a model's validator about a field below it: `path` is where, relative to
    the model the validator belongs to (so a cross-field error names the right field)."""

    def __init__(self, path: Sequence[str | int], message: str) -> None:
        super().__init__(message)
        self.path = tuple(path)
        self.message = message


def read_text(
    path: Path, missing: str | None = None, error: type[InterlockError] = InterlockError
) -> str:
    """A regular file's UTF-8 text, or one line (exit 2) saying why not."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise _bad(f"{path}: {missing or 'cannot read: no such file'}", error) from None
    except OSError as e:
        raise _bad(f"{path}: cannot read: {e.strerror}", error) from None
    if not stat.S_ISREG(info.st_mode):
        raise _bad(f"{path}: not a regular file", error)
    if info.st_size > MAX_BYTES:
        raise _bad(f"{path}: larger than {MAX_BYTES >> 20} MiB", error)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise _bad(f"{path}: cannot read: {e.strerror}", error) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise _bad(f"{path} (line {line}): not UTF-8 text", error) from None


def load(
    path: Path,
    model: type[M],
    missing: str | None = None,
    error: type[InterlockError] = InterlockError,
    context: Any = None,
) -> M:
    """`path` as a `model`; `missing` is the message when the file does not exist.
    `context` reaches the model's validators (what a file refers to: a library of roles)."""
    text = read_text(path, missing, error)
    data, tree = parse(path, text, error)
    if not isinstance(data, dict):
        raise _bad(f"{path}: the top level must be a mapping of fields", error)
    try:
        return model.model_validate(data, context=context)
    except ValidationError as e:
        raise _bad(describe(path, data, tree, e), error) from None
    except RecursionError:
        raise _bad(f"{path}: nested too deeply", error) from None


def parse(
    path: Path, text: str, error: type[InterlockError] = InterlockError
) -> tuple[Any, yaml.Node | None]:
    """The document's data and its node tree (for line numbers)."""
    try:
        tree = yaml.compose(text, Loader=_Loader)
        data = _Loader(text).get_single_data() if tree is not None else None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f" (line {mark.line + 1})" if mark is not None else ""
        # e.problem only: str(e) would quote the source line, secrets and all; and of the
        # problem, what it quotes from the document (an alias, a tag) is left out too.
        problem = QUOTED.sub(_unquoted, e.problem or "cannot be read")
        raise _bad(f"{path}{where}: not valid YAML: {problem}", error) from None
    except yaml.YAMLError:
        raise _bad(f"{path}: not valid YAML", error) from None
    except RecursionError:
        raise _bad(f"{path}: not valid YAML: nested too deeply", error) from None
    return data, tree


def describe(path: Path, data: Any, tree: yaml.Node | None, err: ValidationError) -> str:
    """The first problem of a validation, as one line: file, line, field, problem."""
    problem = err.errors(include_url=False)[0]
    loc: list[Any] = list(problem["loc"])
    found = (problem.get("ctx") or {}).get("error")
    if isinstance(found, FieldProblem):
        loc += found.path
        message = found.message
    else:
        message = _message(problem)
    fields = list(_path(data, loc))
    line = _line_of(tree, fields)
    where = f" (line {line})" if line else ""
    name = dotted(fields)
    return f"{path}{where}: field '{name or '(top level)'}': {message}"


def dotted(fields: list[str | int]) -> str:
    """A field's path as the user writes it (`groups.web.roles[0]`), on one line: a key
    with a line break or another control character in it shows it escaped."""
    parts = (f"[{p}]" if isinstance(p, int) else _printable(str(p)) for p in fields)
    return ".".join(parts).replace(".[", "[")


def _printable(key: str) -> str:
    return key if key.isprintable() else key.encode("unicode_escape").decode("ascii")


def _message(problem: Any) -> str:
    """pydantic's message without the value it was given (it may be a secret)."""
    kind = problem["type"]
    if kind == "union_tag_invalid":
        return f"unknown kind; one of: {problem['ctx']['expected_tags']}"
    message = str(problem["msg"]).removeprefix("Value error, ")
    given = problem.get("input")
    if isinstance(given, str | int | float) and str(given):
        for shown in (repr(given), f"'{given}'", f'"{given}"'):
            message = message.replace(shown, "the value given")
    return " ".join(message.split())


def _path(data: Any, loc: list[Any]) -> Iterator[str | int]:
    """The fields of `loc` that are in the document (pydantic adds a union's tag and its
    validators' names to the path; the user wrote neither)."""
    node = data
    for i, key in enumerate(loc):
        inside = (isinstance(node, dict) and key in node) or (
            isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node)
        )
        after = loc[i + 1] if i + 1 < len(loc) else None
        if inside:
            node = node[key]
            yield key
        elif isinstance(key, str) and key.startswith(("function-", "tagged-union")):
            continue
        elif isinstance(node, dict) and after is not None and after in node:
            continue  # a union's tag: the field after it is in the document
        else:
            yield key  # a field the document lacks (or below what it holds)
            node = None


def _line_of(node: yaml.Node | None, loc: list[str | int]) -> int | None:
    """Line number of the deepest YAML node along `loc` that exists."""
    line = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == key), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int):
            node = node.value[key] if key < len(node.value) else None
        else:
            node = None
        if node is None:
            break
        line = node.start_mark.line + 1
    return line


QUOTED = re.compile(r"'([^']*)'")


def _unquoted(m: re.Match[str]) -> str:
    """A quoted bit of a YAML problem: a token's name or one character stays, text goes."""
    quoted = m.group(1)
    return m.group(0) if len(quoted) <= 1 or quoted.startswith("<") else "'…'"


def _bad(message: str, error: type[InterlockError] = InterlockError) -> InterlockError:
    return error(message, ExitCode.BAD_INPUT)


bad = _bad  # for checks made after loading: one line, exit 2


def field_error(path: Path, fields: list[str | int], message: str) -> InterlockError:
    """A check made after loading, as one line naming the file, the line where the field
    is written (a default the file does not set has none) and the field."""
    line = None
    try:
        data, tree = parse(path, read_text(path))
        found = list(_path(data, fields))
        line = _line_of(tree, found) if found == fields else None
    except InterlockError:  # the file changed since it was read: no line, still the field
        pass
    where = f" (line {line})" if line else ""
    name = dotted(fields)
    return _bad(f"{path}{where}: field '{name}': {message}")


class _Loader(yaml.SafeLoader):
    """YAML's safe loader, stricter: a key twice in one mapping is an error (not the last
    one silently winning), and a value that cannot be built (`!!int abc`, 2024-02-30, a
    number of 5000 digits) is an error at its line, not a raw exception."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: SafeLoader's own error says so
                break
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, "a key appears twice in this mapping", key_node.start_mark
                )
        return super().construct_mapping(node, deep=deep)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, OverflowError, ArithmeticError) as e:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"a {node.tag.rsplit(':', 1)[-1]} that cannot be read ({type(e).__name__})",
                node.start_mark,
            ) from None
