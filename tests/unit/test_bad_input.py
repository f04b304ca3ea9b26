"""Hostile input, fuzzed (hypothesis): sites files, lab site files, guidelines and command
lines. Whatever comes in, the answer is either a working load or one line naming the file
(and line), the field and the problem, exit 2: never a traceback, never a secret.

A canary secret is planted in values (where a password or a key might be pasted by
mistake); it must appear in no message. Mapping keys are the user's own field names and
may be named back."""

from __future__ import annotations

import copy
import os
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from interlock import config
from interlock.conform import guideline
from interlock.errors import ExitCode, InterlockError
from interlock.ssh import keys
from interlock_lab.sitefile import builtin_sites, load_site_file
from tests.unit.planted import CANARY, leaked, pasted_private_key

PASTED_KEY = pasted_private_key()  # made at run time, never committed
# Examples per loader (the command line gets two thirds); more: INTERLOCK_FUZZ_EXAMPLES=3000.
EXAMPLES = int(os.environ.get("INTERLOCK_FUZZ_EXAMPLES", "300"))

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=False),
    st.text(max_size=30),
    st.just(CANARY),
    st.just(f"http://admin:{CANARY}@bmc.example/redfish/v1"),
    st.just(PASTED_KEY),
    st.just("/dev/zero"),
    st.just("/etc"),
    st.just("[/x]"),
    st.just("127.0.0.1"),
    st.just("2024-02-30"),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(min_size=1, max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
# Text-level damage: YAML that does not parse, values YAML cannot build, bytes not UTF-8.
damage = st.sampled_from(
    [
        f'password: "{CANARY}\n',  # a quote never closed, a secret in the line
        f"key: !!int {CANARY}\n",
        "when: 2024-02-30\n",
        "n: " + "9" * 5000 + "\n",
        "deep: " + "[" * 2000 + "]" * 2000 + "\n",
        f"- {CANARY}\n: :\n",
        f"\t{CANARY}: tab\n",
        "dup: 1\ndup: 2\n",
        f"x: *{CANARY}\n",
        f"y: !python/object {CANARY}\n",
    ]
)


def paths_in(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            found += paths_in(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            found += paths_in(v, (*prefix, i))
    return found


def mutate(doc: dict[str, Any], seed: int, value: Any, how: str) -> Any:
    """The document with one place changed: replaced, removed, or given an unknown field."""
    doc = copy.deepcopy(doc)
    places = [p for p in paths_in(doc) if p]
    where = random.Random(seed).choice(places)
    parent = doc
    for key in where[:-1]:
        parent = parent[key]
    last = where[-1]
    if how == "replace":
        parent[last] = value
    elif how == "remove":
        del parent[last]
    elif isinstance(parent, dict):
        parent[f"surprise-{seed % 7}"] = value
    return doc


documents = st.tuples(
    st.integers(min_value=0, max_value=10**6),
    values,
    st.sampled_from(["replace", "remove", "add"]),
)


def check(path: Path, load: Callable[[Path], object]) -> None:
    """`load(path)` works, or fails with one line of bad input naming the file."""
    try:
        load(path)
    except InterlockError as e:
        message = str(e)
        assert e.code == ExitCode.BAD_INPUT, message
        assert "\n" not in message and message.startswith(str(path)), message
        assert not leaked(message, PASTED_KEY), message


def write(path: Path, doc: object) -> Path:
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    return path


@pytest.fixture(scope="module")
def sites_doc(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A valid sites file of every provider kind, its files real."""
    d = tmp_path_factory.mktemp("files")
    for name in ("aws-config", "aws-credentials", "bmc-password", "clouds.yaml", "sa.json"):
        (d / name).write_text("x\n")
    keys.new_key(d / "pool-key", "pool")
    keys.new_key(d / "platform", "platform")
    doc = {
        "sites": {
            "aws": {"provider": "aws", "region": "us-east-1", "endpoint": "http://127.0.0.1:9",
                    "aws_profile": "p", "aws_config_file": str(d / "aws-config"),
                    "aws_credentials_file": str(d / "aws-credentials"),
                    "limits": {"concurrency": 4, "rate": 0.5, "ssh_timeout": 30},
                    "profile": {"login_users": {"ubuntu": "ubuntu"}, "floating_ip": False}},
            "dc1": {"provider": "metal", "endpoint": "http://127.0.0.1:9/redfish/v1",
                    "username": "admin", "password_file": str(d / "bmc-password"),
                    "pool_key": str(d / "pool-key"),
                    "machines": [{"name": "r1", "uuid": "u1", "public_ip": "127.0.0.9",
                                  "vcpus": 2, "ram_mib": 4096, "distro": "ubuntu",
                                  "version": "24.04"}]},
            "os": {"provider": "openstack", "cloud": "c", "clouds_file": str(d / "clouds.yaml")},
            "gcp": {"provider": "gce", "project": "p", "zone": "europe-west1-b",
                    "credentials_file": str(d / "sa.json")},
        },
        "platform_keys": [str(d / "platform")],
    }  # fmt: skip
    config.SitesFile.model_validate(doc)  # the starting point is valid
    return doc


SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@SETTINGS
@given(change=documents)
def test_sites_files_fuzzed(
    tmp_path: Path, sites_doc: dict[str, Any], change: tuple[int, Any, str]
) -> None:
    check(write(tmp_path / "sites.yaml", mutate(sites_doc, *change)), config.load_sites)


@SETTINGS
@given(change=documents, site=st.sampled_from(["aws", "metal", "os-tenant", "os-logins"]))
def test_lab_site_files_fuzzed(tmp_path: Path, change: tuple[int, Any, str], site: str) -> None:
    doc = yaml.safe_load(builtin_sites()[site].read_text())
    check(write(tmp_path / "site.yaml", mutate(doc, *change)), load_site_file)


@SETTINGS
@given(change=documents)
def test_guidelines_fuzzed(tmp_path: Path, change: tuple[int, Any, str]) -> None:
    doc = yaml.safe_load(guideline.builtin().read_text())
    check(write(tmp_path / "g.yaml", mutate(doc, *change)), guideline.load)


@SETTINGS
@given(text=st.one_of(damage, values.map(lambda v: yaml.safe_dump(v))), raw=st.binary(max_size=40))
def test_damaged_files_fuzzed(tmp_path: Path, text: str, raw: bytes) -> None:
    path = tmp_path / "damaged.yaml"
    for loader in (config.load_sites, load_site_file, guideline.load):
        path.write_text(text)
        check(path, loader)
        path.write_bytes(text.encode() + raw)
        check(path, loader)


def test_what_is_not_a_regular_file_is_refused(tmp_path: Path, sites_doc: dict[str, Any]) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for loader in (config.load_sites, load_site_file, guideline.load):
        for path in (fifo, tmp_path, Path("/dev/zero")):
            with pytest.raises(InterlockError, match="not a regular file"):
                loader(path)  # a FIFO would hang the reader, /dev/zero never end
    for field, bad in (("platform_keys", [str(fifo)]), ("platform_keys", ["/dev/zero"])):
        doc = {**sites_doc, field: bad}
        with pytest.raises(InterlockError, match="not a regular file"):
            config.load_sites(write(tmp_path / "s.yaml", doc))


# -- the command line ------------------------------------------------------------------

WORDS = [
    "sites", "plan", "up", "resume", "ls", "down", "ssh", "ssh-config", "inventory", "version",
    "conform", "run", "history", "compare", "--site", "--cpus", "--memory", "--os", "--count",
    "-n", "--json", "--sites", "--all", "--baseline", "--guideline", "--junit", "--html",
    "--host", "--list", "--", "aws", "0", "-1", "1.5", "abc", CANARY, "ubuntu-24.04", "x" * 300,
]  # fmt: skip
argv = st.lists(
    st.one_of(
        st.sampled_from(WORDS),
        st.text(min_size=1, max_size=12).filter(lambda t: t.strip() != "lab"),
    ),
    max_size=6,
)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(args=argv)
def test_command_lines_fuzzed(
    args: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from interlock.cli import main

    # No sites file (every command that gets past its arguments stops there, exit 2), a
    # home of the test's own, and no lab: nothing runs for real.
    monkeypatch.setenv("INTERLOCK_SITES", str(tmp_path / "no-sites.yaml"))
    monkeypatch.setenv("INTERLOCK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("INTERLOCK_LAB_DIR", str(tmp_path / "lab"))
    monkeypatch.setattr(sys, "argv", ["interlock", *args])
    with pytest.raises(SystemExit) as done:
        main()
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert done.value.code in (0, 2, 3), (args, done.value.code, err)
    if done.value.code == 2:  # a usage line and the problem (or, with no command, the help)
        assert err.strip() or "Usage:" in out, args
