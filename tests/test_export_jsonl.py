"""The jsonl export against its versioned JSON Schema, shipped in the package."""

from __future__ import annotations

import json
from importlib import resources

import pytest
from jsonschema_subset import errors
from richrun import ENV_SECRET, rich_run

from tenax.core.status import GoalStatus
from tenax.export.transcript import SCHEMA_VERSION, to_jsonl


def schema() -> dict:
    return json.loads(resources.files("tenax.export").joinpath("transcript.schema.json").read_text())


def test_schema_is_versioned_and_rejects_what_it_should():
    s = schema()
    assert s["version"] == SCHEMA_VERSION == s["$defs"]["goal"]["properties"]["schema_version"]["const"]
    assert set(s["$defs"]["goal"]["properties"]["status"]["enum"]) == {g.value for g in GoalStatus}
    step = {"type": "step", "session_id": "s", "seq": 1, "created_at": "2026-01-01T00:00:00+00:00"}
    assert not errors({**step, "kind": "tool_result", "payload": {"tool_call_id": "c", "content": "x"}}, s)
    assert errors({**step, "kind": "tool_result", "payload": {"tool_call_id": "c"}}, s)  # no content
    assert errors({**step, "kind": "mystery", "payload": {}}, s)  # a new kind needs a new version
    assert errors({**step, "kind": "event", "payload": {"type": "check", "passed": "yes", "command": "x"}}, s)
    assert not errors({**step, "kind": "event", "payload": {"type": "egress", "host": "h"}}, s)
    assert errors({**step, "seq": 0, "kind": "request", "payload": {"turn": 1}}, s)


@pytest.mark.docker
def test_jsonl_export_of_a_rich_run_matches_its_schema(workspace, store, monkeypatch):
    gid = rich_run(store, workspace, monkeypatch)
    lines = [json.loads(line) for line in to_jsonl(store, gid)]
    s = schema()
    for i, obj in enumerate(lines):
        assert not errors(obj, s), (i, errors(obj, s), json.dumps(obj)[:300])
    assert lines[0]["type"] == "goal" and lines[0]["schema_version"] == SCHEMA_VERSION
    kinds = {(o["type"], o.get("kind"), (o.get("payload") or {}).get("type") if o.get("kind") == "event" else None)
             for o in lines}
    for want in [("agent", None, None), ("session", None, None), ("step", "compaction", None),
                 ("step", "tool_result", None), ("step", "event", "check"), ("step", "user", None)]:
        assert want in kinds, want
    assert any(o.get("kind") == "user" and o["payload"].get("why") == "steering" for o in lines)
    assert ENV_SECRET not in json.dumps(lines)
