"""State is typed: steps and fix-ups are data, every write is validated, old records load."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from pydantic import ValidationError

from interlock.model import Fixup
from interlock.state import NodeRecord, open_store


def test_a_fixup_is_data_written_as_the_line_people_read() -> None:
    f = Fixup(step="public_address", text="floating IP allocated")
    assert str(f) == "public_address: floating IP allocated"
    node = NodeRecord(name="n-1", deployment="n", fixups=[f])
    again = NodeRecord.model_validate_json(node.model_dump_json())
    assert again.fixups == [f] and again.fixups[0].step == "public_address"
    assert json.loads(node.model_dump_json())["fixups"] == ["public_address: floating IP allocated"]
    with pytest.raises(ValidationError):
        Fixup.model_validate("teleport: beamed up")  # not one of the eight steps


def test_updates_are_validated_before_they_are_written(tmp_path: Path) -> None:
    store = open_store(tmp_path / "state.db")
    store.put(NodeRecord(name="n-1", deployment="n"))
    with pytest.raises(ValidationError):
        store.update("n-1", status="sleeping")
    with pytest.raises(ValidationError):
        store.update("n-1", step="teleport")
    with pytest.raises(ValidationError):
        store.update("n-1", colour="blue")
    node = store.update("n-1", status="allocating", step="login")
    assert (node.status, node.step, node.stage) == ("allocating", "login", "login")
    assert list(node.timeline) == ["login"]
    assert store.get("n-1") == node


def test_records_written_before_steps_were_typed_still_load(tmp_path: Path) -> None:
    # A node an older interlock left half-way (its steps by their labels): still readable,
    # so `interlock resume` and `down` work across an upgrade.
    store = open_store(tmp_path / "state.db")
    store.close()
    old = {
        "name": "n-1", "deployment": "n", "status": "allocating", "step": "public address",
        "timeline": {"start": 1.0, "node key": 2.0, "select": 3.0, "public address": 4.0},
        "fixups": ["selection: network net-b told apart by its router"],
        "attempts": [{"site": "a", "result": "failed", "why": "request: quota"}],
    }  # fmt: skip
    with sqlite3.connect(tmp_path / "state.db") as db:
        db.execute("INSERT INTO nodes VALUES (?, ?, ?, ?)", ("n-1", "n", json.dumps(old), 1.0))
    node = open_store(tmp_path / "state.db").get("n-1")
    assert node is not None and node.step == "public_address"
    assert node.timeline == {"node_key": 2.0, "selection": 3.0, "public_address": 4.0}
    assert node.fixups == [Fixup(step="selection", text="network net-b told apart by its router")]
