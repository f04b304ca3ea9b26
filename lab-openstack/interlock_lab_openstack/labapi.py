"""Calls from inside OpenStack's services to the interlock lab's control API."""

from __future__ import annotations

import http.client
import json
import logging
import os
import queue
import threading
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


def post_later(path: str, body: dict[str, Any]) -> None:
    """POST without waiting, in the order given: for bookkeeping the API call must not wait
    on (the lab serves its control API only once every site is set up, and setting one up
    makes such events). One sender thread per process keeps the order."""
    global _sender
    with _lock:
        if _sender is None or not _sender.is_alive():
            _sender = threading.Thread(target=_send, name="interlock-lab-post", daemon=True)
            _sender.start()
    _outbox.put((path, body))


_outbox: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
_lock = threading.Lock()
_sender: threading.Thread | None = None


def _send() -> None:
    while True:
        path, body = _outbox.get()
        try:
            post(path, body)
        except Exception:
            logging.getLogger(__name__).exception("interlock lab: %s not delivered", path)
