"""Facts read from a node over SSH, each read once (pyinfra's facts, in miniature)."""

from __future__ import annotations

from dataclasses import dataclass

SSHD_T = "$(command -v sshd || echo /usr/sbin/sshd) -T"


@dataclass(frozen=True)
class SshdSettings:
    """sshd's effective settings (`sshd -T`), lower-cased."""

    values: dict[str, str]

    @classmethod
    def parse(cls, text: str) -> SshdSettings:
        pairs = (line.split(" ", 1) for line in text.lower().splitlines() if " " in line)
        return cls({k: v for k, v in pairs})

    @property
    def password_login(self) -> bool:
        return self.values.get("passwordauthentication") != "no"

    @property
    def permit_root_login(self) -> str:
        return self.values.get("permitrootlogin", "")
