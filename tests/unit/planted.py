"""Secrets the bad-input tests plant where a user might paste one by mistake: a canary
string, and a private key made at run time (none is committed)."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

CANARY = "CANARY-s3cr3t-7f3a9c"


def pasted_private_key() -> str:
    """A fresh ed25519 private key in OpenSSH's text form, as it would be pasted."""
    key = Ed25519PrivateKey.generate()
    return key.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()).decode()


def leaked(message: str, *secrets: str) -> list[str]:
    """The parts of `secrets` (the canary, each line of a key's body) found in `message`."""
    parts = [CANARY]
    for s in secrets:
        parts += [line for line in s.splitlines() if line and not line.startswith("-----")]
    return [p for p in parts if p in message]
