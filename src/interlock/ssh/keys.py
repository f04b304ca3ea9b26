"""SSH keys: the node-specific key (lives only until step 8) and the platform keys."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519


def ed25519_pair() -> tuple[str, str]:
    """A fresh ed25519 key: (private key in OpenSSH PEM, public key line without comment)."""
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    return private, public


def _write_private(path: Path, pem: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(pem)


def new_key(path: Path, comment: str) -> str:
    """Create an ed25519 key at `path` (mode 0600); returns its OpenSSH public key."""
    private, public = ed25519_pair()
    _write_private(path, private)
    return f"{public} {comment}"


def public_of(path: Path) -> str:
    """The OpenSSH public key of a private key file."""
    import asyncssh

    key = asyncssh.read_private_key(path)
    return str(key.export_public_key().decode()).strip()


def key_body(public: str) -> str:
    """The base64 part of a public key line: what identifies it in authorized_keys."""
    return public.split()[1]


def platform_keys(configured: list[Path], home: Path) -> list[Path]:
    """The platform's private keys; without any configured, interlock's own (created once,
    when a node first needs it)."""
    if configured:
        return [p.expanduser() for p in configured]
    own = home / "platform_ed25519"
    if not own.exists():
        new_key(own, "interlock-platform")
    return [own]


def remove(path: Path) -> None:
    path.unlink(missing_ok=True)
