"""The node init binary, built from labinit.c on first use and cached by content."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from importlib import resources
from pathlib import Path


class InitBuildError(RuntimeError):
    pass


def init_binary(cache_dir: Path) -> Path:
    source = (resources.files("interlock_lab") / "node" / "labinit.c").read_bytes()
    target = cache_dir / f"labinit-{hashlib.sha256(source).hexdigest()[:16]}"
    if target.exists():
        return target
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise InitBuildError("no C compiler (cc) found: run the install script (make install)")
    cache_dir.mkdir(parents=True, exist_ok=True)
    src = cache_dir / "labinit.c"
    src.write_bytes(source)
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    done = subprocess.run(
        [cc, "-O2", "-Wall", "-o", str(tmp), str(src)], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise InitBuildError(f"building the node init failed:\n{done.stderr.strip()}")
    tmp.rename(target)
    return target
