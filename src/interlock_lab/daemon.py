"""The lab process: emulated sites, their nodes, and a small control API.

Started in the background by `interlock lab up` (python -m interlock_lab.daemon).
It writes `lab.pid` at once and `state.json` when every site answers; SIGTERM or
POST /v1/down tear everything down and remove the lab's files. If it dies
abruptly the kernel ends its nodes (parent-death signals) and the next
`interlock lab up` removes the files it left.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from pathlib import Path

from interlock_lab import claims, labdir
from interlock_lab.control import make_app
from interlock_lab.lab import Lab, claim_addresses
from interlock_lab.sitefile import load_site_file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="interlock_lab.daemon")
    parser.add_argument("--dir", required=True, type=Path)
    parser.add_argument("--site-file", action="append", type=Path, default=[])
    parser.add_argument("--ready-fd", type=int, default=None)
    args = parser.parse_args(argv)
    root: Path = args.dir
    os.environ[labdir.MARK] = str(root)  # every process of this lab inherits it
    labdir.become_subreaper()
    (root / labdir.PID).write_text(f"{os.getpid()}\n")
    lab: Lab | None = None
    held: claims.Claims | None = None
    try:
        specs = [load_site_file(p) for p in args.site_file]
        held = claim_addresses(root, specs)
        lab = Lab(root, specs, held, args.ready_fd)
        asyncio.run(lab.run(make_app))
    except Exception as e:
        message = f"lab failed: {type(e).__name__}: {e}"
        print(message, file=sys.stderr, flush=True)
        if lab is not None:
            lab.ready(message)
        elif args.ready_fd is not None:
            with contextlib.suppress(OSError):
                os.write(args.ready_fd, message.replace("\n", " ").encode() + b"\n")
        labdir.remove_lab_files(root, keep_log=True)
        return 1
    finally:
        if held is not None:
            held.release()
    labdir.remove_lab_files(root, keep_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
