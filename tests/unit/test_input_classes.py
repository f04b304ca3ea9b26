"""Each class of bad input once by name (the fuzzing in test_bad_input.py goes wider): one
line naming file, line and field, exit 2, no traceback, never the secret."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from interlock import config
from interlock.conform import guideline
from interlock.engine import open_engine
from interlock.errors import ExitCode, InterlockError
from interlock.providers.base import TransientError
from interlock.ssh import keys
from interlock_lab.sitefile import builtin_sites, load_site_file
from tests.unit.planted import CANARY, leaked, pasted_private_key


def bad(load: Any, path: Path, *expected: str, secrets: tuple[str, ...] = ()) -> str:
    with pytest.raises(InterlockError) as e:
        load(path)
    message = str(e.value)
    assert e.value.code == ExitCode.BAD_INPUT
    assert "\n" not in message and message.startswith(str(path)) and not leaked(message, *secrets)
    for words in expected:
        assert re.search(words, message), (words, message)
    return message


def sites(tmp_path: Path, **site: Any) -> Path:
    path = tmp_path / "sites.yaml"
    doc = {"sites": {"aws": {"provider": "aws", "region": "us-east-1", **site}}}
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f'sites:\n  aws: {{provider: aws, password: "{CANARY}\n', r"\(line \d+\): not valid YAML"),
        (b"sites: {\xff\xfe}\n", r"\(line 1\): not UTF-8 text"),
        ("sites:\n  aws: {provider: aws, region: 2024-02-30}\n", r"\(line 2\).*cannot be read"),
        (f"sites: !!int {CANARY}\n", r"\(line 1\).*cannot be read"),
        ("sites: " + "9" * 5000 + "\n", r"\(line 1\).*cannot be read"),
        ("sites: " + "[" * 3000 + "]" * 3000 + "\n", r"nested too deeply|not valid YAML"),
        ("sites: {a: {provider: aws}}\nsites: {}\n", r"\(line 2\).*a key appears twice"),
        (f"sites: *{CANARY}\n", r"not valid YAML: found undefined alias '…'"),
    ],
)
def test_documents_yaml_cannot_read(tmp_path: Path, text: str | bytes, expected: str) -> None:
    path = tmp_path / "sites.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    bad(config.load_sites, path, expected)


def test_values_are_never_echoed(tmp_path: Path) -> None:
    bad(config.load_sites, sites(tmp_path, provider=CANARY), r"field 'sites\.aws\.provider'")
    bad(config.load_sites, sites(tmp_path, limits={"rate": CANARY}), r"sites\.aws\.limits\.rate")
    url = f"http://admin:{CANARY}@127.0.0.1:9"
    bad(config.load_sites, sites(tmp_path, endpoint=url), "credentials do not belong in the URL")


def test_wrong_places_and_kinds_of_files(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    keys.new_key(tmp_path / "locked", "x")
    lock = ["ssh-keygen", "-q", "-p", "-N", "hunter2", "-f", str(tmp_path / "locked")]
    subprocess.run(lock, check=True, capture_output=True)  # now it has a passphrase
    public = tmp_path / "key.pub"
    public.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG x\n")
    inline = pasted_private_key()  # pasted where its path belongs
    cases = {
        str(tmp_path / "missing"): "no such file",
        str(tmp_path): "not a regular file",
        str(tmp_path / "fifo"): "not a regular file",
        "/dev/zero": "not a regular file",
        str(public): "not a private key",
        str(tmp_path / "locked"): "passphrase",
        inline: "a private key's text, not the path of its file",
    }
    for given, problem in cases.items():
        path = tmp_path / "sites.yaml"
        doc = {"sites": {"a": {"provider": "aws"}}, "platform_keys": [given]}
        path.write_text(yaml.safe_dump(doc))
        bad(config.load_sites, path, r"field 'platform_keys\[0\]'", problem, secrets=(inline,))
    fifo = str(tmp_path / "fifo")
    for field in ("aws_config_file", "aws_credentials_file"):
        bad(config.load_sites, sites(tmp_path, **{field: fifo}), field, "not a regular file")
    os_site = tmp_path / "os.yaml"
    os_site.write_text(yaml.safe_dump({"sites": {"o": {"provider": "openstack", "cloud": "c",
                                                       "clouds_file": fifo}}}))  # fmt: skip
    bad(config.load_sites, os_site, "clouds_file", "not a regular file")


def test_names_that_are_not_names(tmp_path: Path) -> None:
    path = tmp_path / "sites.yaml"
    path.write_text(yaml.safe_dump({"sites": {"[/x]": {"provider": "aws"}}}))
    bad(config.load_sites, path, "should match pattern")
    bad(config.load_sites, sites(tmp_path, region="us east 1"), "not an AWS region name")


def test_what_cannot_be_fixed_by_retrying_fails_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance role to look for
    empty = tmp_path / "empty"
    empty.write_text("")
    path = sites(tmp_path, endpoint="http://127.0.0.1:9", aws_profile="nope",
                 aws_config_file=str(empty), aws_credentials_file=str(empty))  # fmt: skip
    e = open_engine(path, tmp_path / "home")
    with pytest.raises(InterlockError) as unknown:
        e.provider("aws")
    assert unknown.value.code == ExitCode.BAD_INPUT
    assert str(unknown.value).startswith(f"{path}: site 'aws': aws_profile")
    # No credentials at all: an auth error, at once (not retried as if transient).
    path = sites(tmp_path, endpoint="http://127.0.0.1:9",
                 aws_config_file=str(empty), aws_credentials_file=str(empty))  # fmt: skip
    e = open_engine(path, tmp_path / "home")
    with pytest.raises(InterlockError, match="NoCredentialsError") as none:
        asyncio.run(e.metadata("aws"))
    assert not isinstance(none.value, TransientError)


def test_a_rate_under_one_call_a_second_works(tmp_path: Path) -> None:
    e = open_engine(sites(tmp_path, limits={"rate": 0.5}), tmp_path / "home")

    async def one_call() -> str:
        return await e.call("aws", lambda: "called")

    assert asyncio.run(one_call()) == "called"


def test_provider_errors_never_show_a_urls_credentials() -> None:
    err = TransientError("s", f"could not connect to https://admin:{CANARY}@ec2.example/ :(")
    assert CANARY not in str(err) and "https://ec2.example/" in str(err)


def lab_site(tmp_path: Path, change: Any) -> Path:
    doc = yaml.safe_load(builtin_sites()["metal"].read_text())
    change(doc)
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_lab_site_files_name_the_field_a_cross_check_is_about(tmp_path: Path) -> None:
    def overlapping(d: Any) -> None:
        d["networks"].append({"name": "other", "cidr": "10.20.0.128/25"})

    def unknown_capability(d: Any) -> None:
        d["ground_truth"]["capabilities"]["teleport"] = "YES"

    def same_prefix(d: Any) -> None:
        d["machines"][1]["prefix"] = d["machines"][0]["prefix"]

    path = lab_site(tmp_path, overlapping)
    bad(load_site_file, path, r"\(line \d+\): field 'networks\[1\]\.cidr': overlaps networks\[0\]")
    path = lab_site(tmp_path, unknown_capability)
    bad(load_site_file, path, r"field 'ground_truth\.capabilities\.teleport': not a capability")
    path = lab_site(tmp_path, same_prefix)
    bad(load_site_file, path, r"field 'machines\[1\]\.prefix': appears twice")
    path = tmp_path / "dup.yaml"
    path.write_text(builtin_sites()["metal"].read_text() + "name: metal\n")
    bad(load_site_file, path, "a key appears twice")


def test_a_guideline_check_without_its_parameters_does_not_load(tmp_path: Path) -> None:
    doc = yaml.safe_load(guideline.builtin().read_text())
    step = next(ch for c in doc["capabilities"] for ch in c["checks"] if ch["kind"] == "step")
    del step["params"]["step"]
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    bad(guideline.load, path, r"field 'capabilities\[\d+\]\.checks\[\d+\]\.params\.step'")
