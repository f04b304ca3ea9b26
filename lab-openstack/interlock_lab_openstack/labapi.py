"""Calls from inside OpenStack's services to the interlock lab's control API."""

from __future__ import annotations

import http.client
import json
import os
import urllib.parse
from typing import Any

TIMEOUT = 120.0  # a boot waits for the node's sandbox to start


class LabAPIError(RuntimeError):
    pass


def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST JSON to the lab (INTERLOCK_LAB_API, set by the lab for its OpenStack)."""
    url = urllib.parse.urlsplit(os.environ["INTERLOCK_LAB_API"])
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=TIMEOUT)
    try:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    if resp.status >= 300:
        raise LabAPIError(f"lab {path}: {resp.status} {data[:300]!r}")
    answer: dict[str, Any] = json.loads(data or b"{}")
    return answer
