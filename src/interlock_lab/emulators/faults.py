"""API fault injection shared by the emulators: which call fails, and when."""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence

from interlock_lab.sitefile import Fault


class FaultPicker:
    """Decides, per API call, whether a site's declared fault fires (seeded, so
    a run can be replayed)."""

    def __init__(self, faults: Sequence[Fault], seed: int) -> None:
        self._faults = list(faults)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.fired: dict[str, int] = {}
        self.calls: dict[str, int] = {}  # every API call the site answered, by action
        self._spent: dict[int, int] = {}  # fault index -> times fired

    def counted(self) -> dict[str, int]:
        with self._lock:
            return dict(self.calls)

    def pick(self, action: str) -> Fault | None:
        with self._lock:
            self.calls[action] = self.calls.get(action, 0) + 1
            for i, fault in enumerate(self._faults):
                if fault.action not in (action, "*"):  # "*": every action of the API
                    continue
                if fault.times is not None and self._spent.get(i, 0) >= fault.times:
                    continue
                if self._rng.random() < fault.rate:
                    self._spent[i] = self._spent.get(i, 0) + 1
                    self.fired[action] = self.fired.get(action, 0) + 1
                    return fault
        return None
